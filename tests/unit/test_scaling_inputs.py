"""The autoscaler's inputs from what the operator observes: signals per variant from
Prometheus series, the routers' demand, the pool handed to ``scaling.decide``, and TP
planned for the node shape seen."""

from __future__ import annotations

from typing import Any

import pytest

from gpufleet.api.modelpool import ModelPoolSpec, ModelPoolStatus, VariantStatus
from gpufleet.controller import observe
from gpufleet.controller.autoscaling import scalinginputs
from gpufleet.controller.modelpool import scalingreport, status, variants
from gpufleet.scaling import inventory, model

Q = scalinginputs.queries()


def spec(**autoscaling: Any) -> ModelPoolSpec:
    return ModelPoolSpec.model_validate({
        "model": {"name": "m", "source": "hf://org/m", "catalogName": "llama-3.1-8b",
                  "maxModelLen": 8192},
        "variants": [
            {"name": "h100", "gpu": "H100-80GB", "minReplicas": 1, "maxReplicas": 4,
             "costPerGpuHour": 3.0},
            {"name": "a100", "gpu": "A100-80GB", "minReplicas": 1},
        ],
        "autoscaling": autoscaling,
    })  # fmt: skip


def pod(name: str, variant: str, ip: str, *, ready: bool = True, **kw: Any) -> observe.ObservedPod:
    return observe.ObservedPod(name=name, variant=variant, node="n", phase="Running",
                               ready=ready, ip=ip, **kw)  # fmt: skip


PODS = (pod("h-1", "h100", "10.0.0.1"), pod("h-2", "h100", "10.0.0.2"),
        pod("h-3", "h100", "10.0.0.3", ready=False, started=100.0),
        pod("a-1", "a100", "10.0.0.9"))  # fmt: skip


def test_series_map_to_ready_pods_by_instance_or_pod_and_sum_per_variant() -> None:
    results = {
        Q.kv_usage: [({"instance": "10.0.0.1:8000"}, 0.6), ({"pod": "h-2"}, 0.2),
                     ({"instance": "10.0.0.3:8000"}, 0.99), ({"instance": "10.9.9.9:8000"}, 1.0)],
        Q.waiting: [({"pod_ip": "10.0.0.1"}, 3.0), ({"pod_ip": "10.0.0.2"}, 1.0)],
        Q.running: [({"pod_ip": "10.0.0.1"}, 5.0)],
        Q.tokens_per_second: [({"instance": "10.0.0.2:8000"}, 250.0)],
        Q.ttft_p90: [({"pod": "h-1"}, 0.4), ({"pod": "h-2"}, 1.5), ({"pod": "h-3"}, 9.0)],
    }  # fmt: skip
    got = scalinginputs.signals(results, PODS, Q)
    assert got == {"h100": model.Signals(kv_usage=0.4, waiting=4.0, running=5.0,
                                         tokens_per_second=250.0, ttft_p90_s=1.5)}  # fmt: skip
    assert Q.ttft_p90 == (
        "histogram_quantile(0.9, rate(vllm:time_to_first_token_seconds_bucket[1m]))"
    )
    assert Q.ttft_p90 in Q.all() and len(Q.all()) == 5
    assert "a100" not in got, "a variant without a KV-cache series has no fresh signals"


@pytest.mark.parametrize(
    ("bodies", "expected"),
    [
        ([{"demand": {"p": {"queued": 2, "held": 1}}}, {"demand": {"p": {"held": 3}}}], (2, 4)),
        ([{"demand": {"other": {"queued": 5}}}, None, "x", {"demand": []}], (0, 0)),
        ([{"demand": {"p": {"queued": -1, "held": "2"}}}, {}], (0, 0)),
    ],
)
def test_demand_adds_up_what_routers_report_for_the_pool(
    bodies: list[object], expected: tuple[int, int]
) -> None:
    d = scalinginputs.demand(bodies, "p")
    assert (d.queued, d.held) == expected


def deployment(replicas: int) -> observe.ObservedChild:
    return observe.ObservedChild(kind="Deployment", namespace="ns", name="x", uid="u",
                                 owner="p", spec_hash="", body={}, replicas=replicas)  # fmt: skip


def planned(name: str, gpu: str, tp: int | None, *, feasible: bool = True) -> VariantStatus:
    return VariantStatus(name=name, gpu=gpu, feasible=feasible, tensor_parallel_size=tp)


PLANNED = (planned("h100", "H100-80GB", 2), planned("a100", "A100-80GB", 1))


def test_pool_gives_scaled_variants_their_range_and_pins_the_others() -> None:
    s = spec()
    pool = scalinginputs.pool(
        s, PLANNED, deployments={"h100": deployment(3), "a100": deployment(2)},
        pods=PODS, signals={}, demand=model.Demand(held=1), nodes=None,
    )  # fmt: skip
    h, a = pool.variants
    assert (h.min_replicas, h.max_replicas, h.replicas, h.ready) == (1, 4, 3, 2)
    assert h.loading_since == (100.0,) and h.cost_per_gpu_hour == 3.0
    assert (a.min_replicas, a.max_replicas, a.replicas) == (1, 1, 1), "not the autoscaler's"
    assert (h.tensor_parallel_size, a.tensor_parallel_size) == (2, 1), "the published TP"
    assert h.prior_speed > a.prior_speed > 0
    assert scalinginputs.blind(pool) == ["h100", "a100"]
    assert scalinginputs.scaled(spec(mode="external")) == []


@pytest.mark.parametrize(
    ("published", "names"),
    [
        (PLANNED, ["h100", "a100"]),
        ((planned("h100", "H100-80GB", None, feasible=False), PLANNED[1]), ["a100"]),
        ((*PLANNED, planned("gone", "L4", 1)), ["h100", "a100"]),  # a variant since removed
    ],
)
def test_pool_takes_the_feasible_variants_the_reconciler_planned(
    published: tuple[VariantStatus, ...], names: list[str]
) -> None:
    pool = scalinginputs.pool(spec(), published, deployments={}, pods=(), signals={},
                              demand=model.Demand(), nodes=None)  # fmt: skip
    assert [v.name for v in pool.variants] == names


@pytest.mark.parametrize(
    ("written", "generation", "expected"),
    [
        (None, 3, None),
        (ModelPoolStatus(), 3, None),  # not written yet
        (ModelPoolStatus(observed_generation=2, variants=PLANNED), 3, None),  # older spec
        (ModelPoolStatus(observed_generation=3, variants=PLANNED), 3, PLANNED),
    ],
)
def test_the_plan_is_read_from_the_status_only_for_the_current_spec(
    written: ModelPoolStatus | None, generation: int, expected: Any
) -> None:
    assert status.published_plan(written, generation=generation) == expected


NODES: list[inventory.Node] = [
    {"metadata": {"name": f"l40s-{i}", "labels": {"nvidia.com/gpu.product": "NVIDIA-L40S",
                                                 "nvidia.com/gpu.memory": "46068"}},
     "status": {"allocatable": {"nvidia.com/gpu": "4"}}}
    for i in range(2)
]  # fmt: skip


def test_tp_is_planned_for_the_node_shape_seen() -> None:
    s = ModelPoolSpec.model_validate({
        "model": {"name": "m", "source": "hf://org/m", "catalogName": "llama-3.1-8b",
                  "maxModelLen": 8192},
        "variants": [{"name": "l40s", "gpu": "L40S", "tensorParallelSize": 8}],
    })  # fmt: skip
    view = scalingreport.ScalingView(nodes=inventory.inventory(NODES, []))
    assert view.shapes() == {"L40S": 4}
    assert variants.plan_pool(s)[0].feasible, "the catalog's largest L40S node has 8"
    (shaped,) = variants.plan_pool(s, gpus_per_node=view.shapes())
    assert not shaped.feasible and "exceeds the 4 L40S GPUs per node" in shaped.plan.reason
    (gen,) = scalingreport.generations(view.nodes, ["L40S", "L40S"])
    assert (gen.nodes, gen.gpus_per_node, gen.free_gpus, gen.largest_free_block) == (2, 4, 8, 4)
    (none,) = scalingreport.generations(view.nodes, ["H100-80GB"])
    assert (none.nodes, none.free_gpus) == (0, 0)
    assert scalingreport.generations(None, ["L40S"]) == ()
