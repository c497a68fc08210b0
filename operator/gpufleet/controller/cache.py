"""What every reconciler reads of the watches: each object parsed once, where it enters.

Pure. A watch delivers raw bodies; ``parse`` turns each one, as it arrives, into a
``Cached``: the typed object (the kind's pydantic model) or why it is invalid (the
field at fault and what is accepted — what the reconcilers report), its status as last
written, and the metadata the runtime keys, versions and compares on. Nothing past the
watch reads a raw body. ``Cache`` is the one read side every kind's reconciler and the
autoscaler are given, generic over the kind's object and status types
(``controller.runtime.KindState`` implements it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import Any, Generic, Protocol, TypeVar

import pydantic

from gpufleet.controller import observe
from gpufleet.controller.workqueue import Key

T = TypeVar("T", bound=pydantic.BaseModel)
S = TypeVar("S", bound=pydantic.BaseModel)


@dataclasses.dataclass(frozen=True, slots=True)
class Cached(Generic[T, S]):
    """One object as its watch last delivered it. ``obj`` is None exactly when the
    object is invalid, and ``problem`` then says why; ``status`` is the empty status when
    the object has none yet, None when it does not validate (the next write replaces it)."""

    kind: str
    namespace: str
    name: str
    uid: str
    generation: int
    resource_version: str
    labels: Mapping[str, str]
    spec_digest: str  # tells a spec edit apart without keeping the raw spec
    obj: T | None
    problem: str
    status: S | None

    @property
    def key(self) -> Key:
        return (self.namespace, self.name)

    @property
    def version(self) -> int:
        """The resourceVersion as a number (0 when it is not one)."""
        rv = self.resource_version
        return int(rv) if rv.isdigit() else 0

    def follows_differently(self, before: Cached[T, S] | None) -> bool:
        """Whether a kind that follows this one must look again: the object appeared,
        was relabelled or its spec changed (a status alone changes nothing for it)."""
        return (
            before is None or before.labels != self.labels or before.spec_digest != self.spec_digest
        )


def _digest(value: Any) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), default=dict)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _typed(body: Mapping[str, Any], kind: str, model: type[T]) -> T | str:
    try:
        # The status is not the object's to validate: a status the operator wrote with
        # an older schema must not make the object itself invalid.
        return model.model_validate({k: v for k, v in body.items() if k != "status"})
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        return f"invalid {kind}: {where}: {first['msg']}"


def _status(body: Mapping[str, Any], model: type[S]) -> S | None:
    try:
        return model.model_validate(body.get("status") or {})
    except pydantic.ValidationError:
        return None


def parse(
    body: Mapping[str, Any], *, kind: str, model: type[T], status_model: type[S]
) -> Cached[T, S]:
    """The object of a raw watch body (as Kopf hands it over, possibly read-only)."""
    copied: Any = observe.plain(body)  # detached: Kopf's body is read-only and reused
    body = copied if isinstance(copied, dict) else {}
    meta = body.get("metadata") or {}
    typed = _typed(body, kind, model)
    return Cached(
        kind=kind,
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        generation=int(meta.get("generation", 0) or 0),
        resource_version=str(meta.get("resourceVersion", "")),
        labels={str(k): str(v) for k, v in (meta.get("labels") or {}).items()},
        spec_digest=_digest(body.get("spec")),
        obj=None if isinstance(typed, str) else typed,
        problem=typed if isinstance(typed, str) else "",
        status=_status(body, status_model),
    )


class Cache(Protocol[T, S]):
    """A kind's objects, their children and pods as the watches show them, plus what
    the operator itself just wrote (so a reconcile that runs before the watch echoes a
    write does not repeat it)."""

    def get(self, key: Key) -> Cached[T, S] | None:
        """The object; None once it is gone."""

    def keys_in(self, namespace: str | None = None) -> list[Key]: ...

    def children(self, key: Key) -> dict[tuple[str, str], observe.ObservedChild]:
        """The owner's children by (kind, name), the operator's own writes included."""

    def pods(self, key: Key) -> list[observe.ObservedPod]:
        """Every pod labelled as the owner's."""

    def owned_pods(self, key: Key, deployment: str) -> list[observe.ObservedPod]:
        """The pods of the owner's Deployment ``deployment``, by controller chain."""

    def remember_applied(self, obj: Mapping[str, Any]) -> None: ...

    def forget_applied(self, kind: str, namespace: str, name: str) -> None: ...

    def previous_status(self, key: Key) -> S | None:
        """The status last written: the operator's own write until the watch shows a
        later version, then the watch's."""

    def remember_status(self, key: Key, written: S, resource_version: str) -> None: ...
