"""The pure routing core: cost, triggers, filters, scorers, picker (table-driven)."""

from __future__ import annotations

import pytest

from gpufleet.api.routingpolicy import RoutingPolicySpec
from gpufleet.api.traffic import LargeRequests, TokenEstimation
from gpufleet.routing import affinity, cost, filters, picker, scorers
from gpufleet.routing.model import Candidate, Endpoint, Load, RoutingRequest, Signals

MODEL = "llama-3.1-8b"


def ep(name: str, gpu: str = "A100-40GB", *, throughput: float = 1.0, tp: int = 1,
       kv: int = 100_000, limit: int = 256, model: str = MODEL) -> Endpoint:  # fmt: skip
    return Endpoint(name, model, gpu, tp, throughput, kv, limit)


def cand(endpoint: Endpoint, **load: object) -> Candidate:
    return Candidate(endpoint, Load(**load))  # type: ignore[arg-type]


def req(inp: int = 100, out: int = 100, **kw: object) -> RoutingRequest:
    return RoutingRequest(MODEL, inp, out, **kw)  # type: ignore[arg-type]


def policy(**kw: object) -> RoutingPolicySpec:
    return RoutingPolicySpec.model_validate({"pools": ["p"], **kw})


@pytest.mark.parametrize(
    ("chars", "max_tokens", "fraction", "expected_in", "expected_out"),
    [
        (400, 50, 1.0, 100, 50),
        (1, None, 1.0, 1, 512),
        (0, 10, 0.5, 1, 5),
        (4001, 1, 1.0, 1001, 1),
    ],
)
def test_estimate(
    chars: int, max_tokens: int | None, fraction: float, expected_in: int, expected_out: int
) -> None:
    estimation = TokenEstimation(expected_output_fraction=fraction)
    tokens = cost.input_tokens(chars, estimation)
    est = cost.estimate(
        input_token_count=tokens, max_tokens=max_tokens, estimation=estimation, kv_bytes=1024**2
    )
    assert (est.input_tokens, est.output_tokens) == (expected_in, expected_out)
    assert est.kv_mb == pytest.approx(expected_in + expected_out)


def test_kv_bytes_from_catalog() -> None:
    # Llama 3.1 8B: 2 x 32 layers x 8 KV heads x 128 x 2 bytes.
    assert cost.kv_bytes_per_token(MODEL) == 131072
    assert cost.kv_bytes_per_token("not-a-model") == 0


@pytest.mark.parametrize(
    ("inp", "kv_mb", "memory", "expected"),
    [
        (100, 10.0, None, None),
        (8001, 10.0, None, "large_input"),
        (8000, 10.0, None, None),
        (100, 6001.0, None, "large_kv"),
        (4001, 10.0, 90.0, "memory_pressure"),
        (4001, 10.0, 80.0, None),
        (100, 3001.0, 86.0, "memory_pressure"),
        (100, 2999.0, 99.0, None),
    ],
)
def test_triggers(inp: int, kv_mb: float, memory: float | None, expected: str | None) -> None:
    est = cost.Estimate(inp, 10, kv_mb)
    assert cost.trigger(est, LargeRequests(), memory) == expected
    assert cost.trigger(est, LargeRequests(enabled=False), memory) is None


def test_memory_percent_prefers_kv_usage() -> None:
    a = cand(ep("a"), signals=Signals(kv_usage=0.5, gpu_memory_percent=90))
    b = cand(ep("b"), signals=Signals(gpu_memory_percent=70))
    c = cand(ep("c"))
    assert cost.memory_percent([a, b, c]) == pytest.approx(60)
    assert cost.memory_percent([c]) is None


@pytest.mark.parametrize(
    ("circuits", "probes", "expected"),
    [
        (("closed", "open", "half-open"), (True, True, True), ["e0", "e2"]),
        (("closed", "open", "half-open"), (True, True, False), ["e0"]),
        (("open", "open"), (True, True), ["e0", "e1"]),
    ],
)
def test_circuit_filter_never_ejects_all(
    circuits: tuple[str, ...], probes: tuple[bool, ...], expected: list[str]
) -> None:
    cands = [
        cand(ep(f"e{i}"), circuit=c, probe_available=p)
        for i, (c, p) in enumerate(zip(circuits, probes, strict=True))
    ]
    assert [c.id for c in filters.circuit(cands)] == expected


def test_fits_kv_and_large_placement() -> None:
    small, big = ep("s", kv=1000), ep("b", "B200", tp=2, kv=0)
    other = ep("h", "H100-80GB", tp=1)
    assert [c.id for c in filters.fits_kv(req(900, 200), [cand(small), cand(big)])] == ["b"]
    placed = filters.large_placement(LargeRequests(), [cand(small), cand(big), cand(other)])
    assert [c.id for c in placed] == ["b"]
    assert filters.large_placement(LargeRequests(), [cand(small)]) == []


@pytest.mark.parametrize(
    ("pending", "throughput", "expected"),
    [
        ((0, 0), (1.0, 4.0), [0.25, 1.0]),
        ((1000, 0), (4.0, 1.0), [1.0, 0.5]),
        ((7000, 0), (4.0, 1.0), [0.5, 1.0]),
        ((0, 0), (1.0, 1.0), [1.0, 1.0]),
    ],
)
def test_load_scorer(
    pending: tuple[float, float], throughput: tuple[float, float], expected: list[float]
) -> None:
    cands = [
        cand(ep(f"e{i}", throughput=t), pending_tokens=p)
        for i, (p, t) in enumerate(zip(pending, throughput, strict=True))
    ]
    scores = scorers.load(req(0, 1000), cands, scorers.Context())
    assert scores == pytest.approx(expected)


@pytest.mark.parametrize(
    ("load", "expected"),
    [
        ({"signals": Signals(kv_usage=0.25)}, 0.75),
        ({"pending_tokens": 50_000}, 0.498),
        ({"signals": Signals(kv_usage=None), "pending_tokens": 200_000}, 0.0),
    ],
)
def test_kv_scorer(load: dict[str, object], expected: float) -> None:
    assert scorers.kv_cache(req(100, 100), [cand(ep("e"), **load)], scorers.Context()) == [
        pytest.approx(expected)
    ]


@pytest.mark.parametrize(
    ("waiting", "expected"), [(None, 1.0), (0.0, 1.0), (3.0, 0.25), (-1.0, 1.0)]
)
def test_queue_scorer(waiting: float | None, expected: float) -> None:
    c = cand(ep("e"), signals=Signals(waiting=waiting))
    assert scorers.queue(req(), [c], scorers.Context()) == [expected]


@pytest.mark.parametrize(
    ("preferred", "expected"),
    [
        ((), [1.0, 1.0, 1.0]),
        (("A100-40GB", "H100-80GB"), [1.0, 0.0, 0.5]),
    ],
)
def test_class_preference(preferred: tuple[str, ...], expected: list[float]) -> None:
    cands = [
        cand(ep("a", "A100-40GB", throughput=1.0)),
        cand(ep("b", "B200", throughput=8.0, tp=2)),
        cand(ep("h", "H100-80GB", throughput=2.0)),
    ]
    ctx = scorers.Context(preferred_generations=preferred)
    assert scorers.class_preference(req(), cands, ctx) == pytest.approx(expected)


def _fleet() -> list[Candidate]:
    return [
        cand(ep("a1", throughput=0.76), in_flight=1, pending_tokens=500),
        cand(ep("a2", throughput=0.76), in_flight=0),
        cand(ep("b1", "B200", throughput=3.9), in_flight=3, pending_tokens=1200),
    ]


@pytest.mark.parametrize(
    ("strategy", "turn", "expected"),
    [
        ("round-robin", 0, "a1"),
        ("round-robin", 1, "a2"),
        ("round-robin", 5, "b1"),
        ("least-request", 0, "a2"),
        ("least-request", 7, "a2"),
        ("cost", 0, "a2"),  # idle A100: 110 / 0.76 beats (1200 + 110) / 3.9
    ],
)
def test_strategies(strategy: str, turn: int, expected: str) -> None:
    got = picker.pick(req(), _fleet(), picker.Inputs(policy(strategy=strategy), turn=turn))
    assert isinstance(got, picker.Decision)
    assert got.endpoint.id == expected


@pytest.mark.parametrize(
    ("candidates", "request_", "kind"),
    [
        ([], req(), "unavailable"),
        ([cand(ep("x", model="other"))], req(), "unavailable"),
        ([cand(ep("x"), healthy=False)], req(), "unavailable"),
        ([cand(ep("x", kv=100))], req(100, 100), "too_large"),
        ([cand(ep("x", limit=2), in_flight=2)], req(), "saturated"),
    ],
)
def test_no_capacity(candidates: list[Candidate], request_: RoutingRequest, kind: str) -> None:
    got = picker.pick(request_, candidates, picker.Inputs(policy()))
    assert isinstance(got, picker.NoCapacity)
    assert got.kind == kind


def test_exclude_skips_tried_endpoints() -> None:
    inputs = picker.Inputs(policy(strategy="cost"), exclude=frozenset({"b1"}))
    got = picker.pick(req(), _fleet(), inputs)
    assert isinstance(got, picker.Decision) and got.endpoint.id != "b1"


@pytest.mark.parametrize(
    ("placement", "b200_in_flight", "expected"),
    [("prefer", 0, "b"), ("prefer", 4, "a"), ("require", 4, None)],
)
def test_large_request_placement(placement: str, b200_in_flight: int, expected: str | None) -> None:
    cands = [
        cand(ep("a", throughput=5.0)),
        cand(ep("b", "B200", throughput=3.9, tp=2, limit=4), in_flight=b200_in_flight),
    ]
    p = policy(largeRequests={"placement": placement})
    got = picker.pick(req(9000, 10), cands, picker.Inputs(p))
    if expected is None:
        assert isinstance(got, picker.NoCapacity) and got.kind == "saturated"
        assert got.trigger == "large_input"
    else:
        assert isinstance(got, picker.Decision)
        assert (got.endpoint.id, got.trigger) == (expected, "large_input")


def test_session_affinity_wins_among_equals() -> None:
    cands = [cand(ep(f"e{i}")) for i in range(4)]
    inputs = picker.Inputs(policy(), session_target="e2")
    got = picker.pick(req(), cands, inputs)
    assert isinstance(got, picker.Decision) and got.endpoint.id == "e2"


@pytest.mark.parametrize("scorer", [scorers.prefix_affinity, scorers.session_affinity])
@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("fast", [0.0, 1.0, 0.0]),  # the cheapest endpoint is affine: full bonus
        ("slow", [0.2, 0.0, 0.0]),  # an idle endpoint 5x slower: a fifth of it
        ("busy", [0.0, 0.0, 0.5]),  # as fast, but as much work queued as this request
        (None, [0.0, 0.0, 0.0]),
    ],
)
def test_affinity_bonus_shrinks_with_expected_cost(
    scorer: scorers.Scorer, target: str | None, expected: list[float]
) -> None:
    cands = [
        cand(ep("slow", throughput=1.0)),
        cand(ep("fast", "B200", throughput=5.0)),
        cand(ep("busy", "B200", throughput=5.0), pending_tokens=110),
    ]
    ctx = scorers.Context(prefix_target=target, session_target=target)
    assert scorer(req(), cands, ctx) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("affine_pending", "expected"),
    [
        (0, "affine"),  # equal cost: the cache hit decides
        (50, "affine"),  # a little more work queued: still worth the hit
        (5000, "other"),  # many times the cost: affinity no longer pins the request
    ],
)
def test_session_affinity_yields_to_a_much_cheaper_endpoint(
    affine_pending: int, expected: str
) -> None:
    cands = [
        cand(ep("affine", "H100-80GB", throughput=1.6), pending_tokens=affine_pending),
        cand(ep("other", "H100-80GB", throughput=1.6)),
    ]
    inputs = picker.Inputs(policy(strategy="cost"), session_target="affine")
    got = picker.pick(req(), cands, inputs)
    assert isinstance(got, picker.Decision) and got.endpoint.id == expected


def test_prefix_affine_slow_generation_loses_to_an_idle_fast_one() -> None:
    ids = ["a100", "b200"]
    ring = affinity.Ring(ids)
    key = next(k for k in range(1000) if next(ring.walk(k)) == "a100")
    cands = [cand(ep("a100", throughput=0.76)), cand(ep("b200", "B200", throughput=3.9))]
    got = picker.pick(req(2000, 100, prefix_key=key), cands, picker.Inputs(policy(), ring=ring))
    assert isinstance(got, picker.Decision) and got.endpoint.id == "b200"


def test_slow_generation_gets_work_when_the_fast_ones_are_loaded() -> None:
    cands = [
        cand(ep("a100", throughput=0.76)),
        cand(ep("h100", "H100-80GB", throughput=1.64), in_flight=8, pending_tokens=2000),
        cand(ep("b200", "B200", throughput=3.9), in_flight=16, pending_tokens=6000),
    ]
    got = picker.pick(req(1000, 100), cands, picker.Inputs(policy(strategy="cost")))
    assert isinstance(got, picker.Decision) and got.endpoint.id == "a100"


def test_prefix_affinity_is_consistent_and_bounded() -> None:
    ids = [f"e{i}" for i in range(6)]
    ring = affinity.Ring(ids)
    key = affinity.prefix_key("You are a helpful assistant." * 20, 512)
    idle = dict.fromkeys(ids, 0.0)
    first = affinity.bounded_target(ring, key, idle, ratio=1.5)
    assert first == affinity.bounded_target(affinity.Ring(reversed(ids)), key, idle, ratio=1.5)
    hot = {**idle, str(first): 100.0}
    spilled = affinity.bounded_target(ring, key, hot, ratio=1.5)
    assert spilled not in (None, first)
    assert spilled == next(m for m in ring.walk(key) if m != first)
    cands = [cand(ep(i)) for i in ids]
    got = picker.pick(req(prefix_key=key), cands, picker.Inputs(policy(), ring=ring))
    assert isinstance(got, picker.Decision) and got.endpoint.id == first


def test_ring_walk_visits_each_member_once() -> None:
    ring = affinity.Ring(["a", "b", "c"])
    assert sorted(ring.walk(12345)) == ["a", "b", "c"]
    assert list(affinity.Ring([]).walk(1)) == []


@pytest.mark.parametrize(
    ("ops", "expected"),
    [
        ([("put", "s", "e1", 0.0), ("get", "s", 5.0)], "e1"),
        ([("put", "s", "e1", 0.0), ("get", "s", 10.0)], None),
        ([("put", "s", "e1", 0.0), ("put", "s", "e2", 8.0), ("get", "s", 15.0)], "e2"),
        ([("put", "s", "e1", 0.0), ("put", "t", "e2", 0.0), ("put", "u", "e3", 0.0),
          ("get", "s", 1.0)], None),
    ],
)  # fmt: skip
def test_session_table(ops: list[tuple[object, ...]], expected: str | None) -> None:
    table = affinity.SessionTable(ttl_s=10, max_entries=2)
    got: str | None = "unset"
    for op in ops:
        if op[0] == "put":
            table.put(str(op[1]), str(op[2]), float(op[3]))  # type: ignore[arg-type]
        else:
            got = table.get(str(op[1]), float(op[2]))  # type: ignore[arg-type]
    assert got == expected
