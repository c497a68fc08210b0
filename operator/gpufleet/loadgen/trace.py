"""Seeded, reproducible request traces, and their file format (pure apart from file I/O).

``generate(spec)`` draws a trace from ``TraceSpec``: arrival times (Poisson; bursty —
gamma inter-arrivals with coefficient of variation 2; or a step change of rate halfway),
a workload per request (``workloads``), a tenant (Zipf-like weights 1/i), a class
(interactive or batch, each with an SLO), one of a few shared system prompts, and
multi-turn sessions whose later turns resend the whole conversation so far. The same
spec and seed give the same trace on every machine.

The file is JSON Lines: a header ``{"trace": 1, "spec": {...}, "slos": {...}}``, then one
request per line. ``messages(trace_seed, request)`` rebuilds the exact chat of a request
from the trace, so a saved trace replays byte-identical prompts against any URL.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import pydantic

from gpufleet.loadgen import workloads

Arrival = Literal["poisson", "bursty", "step"]
Klass = Literal["interactive", "batch"]
TRACE_VERSION = 1
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


@dataclasses.dataclass(frozen=True, slots=True)
class Slo:
    """A class's service-level objective; a bound of 0 is not checked."""

    ttft_s: float = 0.0
    tpot_s: float = 0.0
    e2e_s: float = 0.0


DEFAULT_SLOS: Mapping[str, Slo] = {
    "interactive": Slo(ttft_s=1.0, tpot_s=0.1),
    "batch": Slo(e2e_s=120.0),
}


@dataclasses.dataclass(frozen=True, slots=True)
class TraceSpec:
    """What to generate. ``mix`` maps workload names to weights."""

    seed: int = 0
    requests: int = 200
    rate: float = 5.0
    arrival: Arrival = "poisson"
    step_factor: float = 3.0
    mix: Mapping[str, float] = dataclasses.field(default_factory=lambda: {"chat": 1.0})
    tenants: int = 4
    batch_share: float = 0.2
    system_prompts: int = 4
    system_prompt_tokens: int = 400
    session_share: float = 0.3
    mean_turns: float = 3.0
    think_time_s: float = 5.0

    def __post_init__(self) -> None:
        if self.requests <= 0 or self.rate <= 0 or self.tenants <= 0:
            raise ValueError("requests, rate and tenants must be positive")
        if not (0 <= self.batch_share <= 1 and 0 <= self.session_share <= 1):
            raise ValueError("batch_share and session_share must be in [0, 1]")
        for name in self.mix:
            workloads.get(name)


@dataclasses.dataclass(frozen=True, slots=True)
class TraceRequest:
    """One request of a trace. ``history`` holds the (user, assistant) token counts of
    the session's earlier turns, which the request resends."""

    index: int
    at_s: float
    tenant: str
    klass: Klass
    workload: str
    session: int
    turn: int
    system_prompt: int | None
    input_tokens: int
    output_tokens: int
    history: tuple[tuple[int, int], ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class Trace:
    spec: TraceSpec
    requests: tuple[TraceRequest, ...]
    slos: Mapping[str, Slo] = dataclasses.field(default_factory=lambda: dict(DEFAULT_SLOS))


def _gaps(spec: TraceSpec, rng: random.Random, n: int) -> list[float]:
    gaps = []
    for i in range(n):
        rate = spec.rate
        if spec.arrival == "step" and i >= n // 2:
            rate *= spec.step_factor
        if spec.arrival == "bursty":
            # Gamma with shape 1/4 has CV 2: clusters of arrivals separated by lulls.
            gaps.append(rng.gammavariate(0.25, 4.0 / rate))
        else:
            gaps.append(rng.expovariate(rate))
    return gaps


@dataclasses.dataclass(slots=True)
class _Session:
    tenant: str
    klass: Klass
    workload: str
    system_prompt: int | None
    turns_left: int
    history: list[tuple[int, int]]


def generate(spec: TraceSpec) -> Trace:
    """The trace ``spec`` describes; deterministic in ``spec``."""
    rng = random.Random(spec.seed)
    names = list(spec.mix)
    weights = [spec.mix[n] for n in names]
    tenant_weights = [1 / (i + 1) for i in range(spec.tenants)]
    follow_ups: list[tuple[float, int]] = []  # (time, session id) of pending later turns
    sessions: dict[int, _Session] = {}
    requests: list[TraceRequest] = []
    now = 0.0
    gaps = iter(_gaps(spec, rng, spec.requests))
    while len(requests) < spec.requests:
        follow_ups.sort()
        if follow_ups and follow_ups[0][0] <= now:
            at, sid = follow_ups.pop(0)
        else:
            now += next(gaps, 1.0 / spec.rate)
            if follow_ups and follow_ups[0][0] <= now:
                at, sid = follow_ups.pop(0)
            else:
                at, sid = now, len(sessions)
                sessions[sid] = _new_session(spec, rng, names, weights, tenant_weights)
        session = sessions[sid]
        work = workloads.get(session.workload)
        request = TraceRequest(
            index=len(requests),
            at_s=round(at, 6),
            tenant=session.tenant,
            klass=session.klass,
            workload=session.workload,
            session=sid,
            turn=len(session.history),
            system_prompt=session.system_prompt,
            input_tokens=work.input.draw(rng) if not session.history else work.output.draw(rng),
            output_tokens=work.output.draw(rng),
            history=tuple(session.history),
        )
        requests.append(request)
        session.history.append((request.input_tokens, request.output_tokens))
        session.turns_left -= 1
        if session.turns_left > 0:
            follow_ups.append((at + rng.expovariate(1 / spec.think_time_s), sid))
    requests.sort(key=lambda r: (r.at_s, r.index))
    return Trace(spec, tuple(dataclasses.replace(r, index=i) for i, r in enumerate(requests)))


def _new_session(
    spec: TraceSpec,
    rng: random.Random,
    names: Sequence[str],
    weights: Sequence[float],
    tenant_weights: Sequence[float],
) -> _Session:
    tenant = f"tenant-{rng.choices(range(spec.tenants), tenant_weights)[0]}"
    klass: Klass = "batch" if rng.random() < spec.batch_share else "interactive"
    workload = rng.choices(list(names), list(weights))[0]
    system = rng.randrange(spec.system_prompts) if spec.system_prompts else None
    turns = 1
    if rng.random() < spec.session_share:
        turns = 1 + int(rng.expovariate(1 / max(spec.mean_turns - 1, 0.1)))
    return _Session(tenant, klass, workload, system, turns, [])


def _words(seed: str, n: int) -> str:
    """``n`` four-letter words: ``n`` tokens under the simulator's estimate (and about
    n to 2n under BPE tokenizers)."""
    rng = random.Random(seed)
    return "".join(" " + "".join(rng.choices(_LETTERS, k=4)) for _ in range(n)).strip()


def messages(trace_seed: int, request: TraceRequest, spec: TraceSpec) -> list[dict[str, str]]:
    """The chat messages of ``request``: system prompt, earlier turns, the new turn."""
    chat: list[dict[str, str]] = []
    if request.system_prompt is not None:
        text = _words(f"{trace_seed}:sys:{request.system_prompt}", spec.system_prompt_tokens)
        chat.append({"role": "system", "content": text})
    for turn, (user, assistant) in enumerate(request.history):
        chat.append(
            {"role": "user", "content": _words(f"{trace_seed}:u:{request.session}:{turn}", user)}
        )
        chat.append(
            {
                "role": "assistant",
                "content": _words(f"{trace_seed}:a:{request.session}:{turn}", assistant),
            }
        )
    new = _words(f"{trace_seed}:u:{request.session}:{request.turn}", request.input_tokens)
    chat.append({"role": "user", "content": new})
    return chat


def save(trace: Trace, path: Path) -> None:
    """Write ``trace`` as JSON Lines."""
    header = {
        "trace": TRACE_VERSION,
        "spec": dataclasses.asdict(trace.spec),
        "slos": {k: dataclasses.asdict(v) for k, v in trace.slos.items()},
    }
    lines = [json.dumps(header)] + [json.dumps(dataclasses.asdict(r)) for r in trace.requests]
    path.write_text("\n".join(lines) + "\n")


_SPEC = pydantic.TypeAdapter(TraceSpec)
_REQUEST = pydantic.TypeAdapter(TraceRequest)
_SLOS = pydantic.TypeAdapter(dict[str, Slo])


def load(path: Path) -> Trace:
    """Read a trace file; ``ValueError`` naming the line at fault."""
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"{path}: empty trace file")
    try:
        header = json.loads(lines[0])
        if header.get("trace") != TRACE_VERSION:
            raise ValueError(f"unsupported trace version {header.get('trace')!r}")
        spec = _SPEC.validate_python(header["spec"])
        slos = _SLOS.validate_python(header.get("slos", {})) or dict(DEFAULT_SLOS)
    except (ValueError, KeyError, pydantic.ValidationError) as exc:
        raise ValueError(f"{path}:1: bad header: {exc}") from exc
    return Trace(spec, tuple(_parse_lines(path, lines[1:])), slos)


def _parse_lines(path: Path, lines: Iterable[str]) -> Iterable[TraceRequest]:
    for number, line in enumerate(lines, start=2):
        try:
            yield _REQUEST.validate_python(json.loads(line))
        except (ValueError, pydantic.ValidationError) as exc:
            raise ValueError(f"{path}:{number}: bad request: {exc}") from exc
