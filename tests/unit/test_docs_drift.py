"""docs/api.md against the code: its generated field reference equals what the models
generate (as ``gpufleet crds --check`` checks in ``make lint``), every spec field is
there with its default read straight from the pydantic models, and what the prose says
of timeouts and the admission queue is what the router does."""

from __future__ import annotations

import asyncio
import json
import pathlib
import re
import typing
from collections.abc import Iterator
from typing import Any

import pydantic
import pytest
from pydantic_core import PydanticUndefined

from gpufleet import cli
from gpufleet.api import reference
from gpufleet.api.admission import Queue
from gpufleet.api.modelpool import ModelPoolSpec
from gpufleet.api.routingpolicy import RoutingPolicySpec
from gpufleet.api.runtime import FailureHandling
from gpufleet.chart import command
from gpufleet.router import errors, gate
from gpufleet.routing import waitqueue

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs/api.md").read_text(encoding="utf-8")
PROSE = DOC[: DOC.index(reference.BEGIN)]


def section(kind: str, part: str) -> dict[str, list[str]]:
    """Rows of one generated table: field path -> cells after the path."""
    start = DOC.index(f"### {kind} `{part}` fields")
    end = DOC.find("\n### ", start + 1)
    rows = {}
    for line in DOC[start : end if end > 0 else None].splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if cells and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = cells[1:]
    return rows


def _nested(annotation: Any, in_list: bool = False) -> Iterator[tuple[type[Any], bool]]:
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        yield annotation, in_list
        return
    origin = typing.get_origin(annotation)
    for arg in typing.get_args(annotation):
        yield from _nested(arg, in_list or origin in (tuple, list))


def model_fields(
    model: type[pydantic.BaseModel], prefix: str = ""
) -> Iterator[tuple[str, pydantic.fields.FieldInfo]]:
    """Every field of ``model`` by wire path, walked from the models (not the CRDs)."""
    for name, field in model.model_fields.items():
        path = prefix + (field.alias or name)
        yield path, field
        for sub, in_list in _nested(field.annotation):
            yield from model_fields(sub, path + ("[]." if in_list else "."))


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def expected_default(field: pydantic.fields.FieldInfo) -> Any:
    """The documented default: a value, ``reference.OBJECT_DEFAULT``, or None for none."""
    extra = field.json_schema_extra
    if field.default is PydanticUndefined:
        has_object_default = isinstance(extra, dict) and "default" in extra
        return reference.OBJECT_DEFAULT if has_object_default else None
    if field.default is None:
        return None
    dumped = pydantic.TypeAdapter(field.annotation).dump_python(
        field.default, mode="json", by_alias=True
    )
    return _without_nulls(dumped)


def documented_default(cell: str) -> Any:
    if cell in ("", reference.OBJECT_DEFAULT):
        return cell or None
    return json.loads(cell.strip("`").replace("\\|", "|"))


def test_generated_reference_matches_the_models() -> None:
    assert command.doc_drift(ROOT) == [], "run `gpufleet crds` to regenerate docs/api.md"


@pytest.mark.parametrize(("kind", "model"), [("ModelPool", ModelPoolSpec),
                                             ("RoutingPolicy", RoutingPolicySpec)])  # fmt: skip
def test_every_spec_field_is_documented_with_its_default(
    kind: str, model: type[pydantic.BaseModel]
) -> None:
    rows = section(kind, "spec")
    walked = dict(model_fields(model))
    assert set(walked) == set(rows)
    for path, field in walked.items():
        assert documented_default(rows[path][1]) == expected_default(field), path


def test_drift_and_missing_markers_fail_the_check(tmp_path: pathlib.Path) -> None:
    (tmp_path / "docs").mkdir()
    doc = tmp_path / "docs/api.md"
    assert cli.main(["crds", "--root", str(tmp_path)]) == 0  # no doc there: CRDs only
    stale = DOC.replace("| `failureHandling.chunkIdleTimeoutSeconds` |", "| `chunkIdle` |")
    doc.write_text(stale, encoding="utf-8")
    assert cli.main(["crds", "--check", "--root", str(tmp_path)]) == 1
    assert cli.main(["crds", "--root", str(tmp_path)]) == 0
    assert doc.read_text(encoding="utf-8") == DOC
    doc.write_text(PROSE, encoding="utf-8")
    assert cli.main(["crds", "--check", "--root", str(tmp_path)]) == 1
    assert cli.main(["crds", "--root", str(tmp_path)]) == 1


def test_every_timeout_is_described_in_the_prose() -> None:
    for field in FailureHandling.model_fields.values():
        if field.alias and field.alias.endswith("TimeoutSeconds"):
            assert f"`{field.alias}`" in PROSE, field.alias


def _shed_status() -> int:
    door = gate.Gate(waitqueue.WaitQueue(0, "priority"), clock=lambda: 0.0)
    with pytest.raises(errors.RouterError) as shed:
        door.enter(priority=0)
    return shed.value.status


def _queue_timeout_status() -> int:
    door = gate.Gate(waitqueue.WaitQueue(1, "priority"), clock=lambda: 10.0)
    ticket = door.enter(priority=0)
    with pytest.raises(errors.RouterError) as late:
        asyncio.run(door.wait(ticket, deadline=0.0))
    return late.value.status


def test_queue_statuses_in_the_docs_are_the_routers() -> None:
    full, late = _shed_status(), _queue_timeout_status()
    said_full = re.search(r"When the queue is full[^.;]*?\b(\d{3})\b", PROSE)
    said_late = re.search(r"times out in the queue[^.;]*?\b(\d{3})\b", PROSE)
    assert said_full and int(said_full[1]) == full
    assert said_late and int(said_late[1]) == late
    max_size = Queue.model_fields["max_size"].description or ""
    timeout = Queue.model_fields["timeout_seconds"].description or ""
    assert str(full) in max_size and str(late) in timeout
