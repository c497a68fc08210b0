"""gpufleet's autoscaler: every ``autoscale_seconds``, one decision per ModelPool (I/O).

A pass reads, once for every pool: the nodes and the pods holding GPUs (two LISTs from
the API server's cache → ``scaling.inventory``), vLLM's signals (four instant queries
through ``gpufleet.promquery``, when ``prometheus_url`` is set) and the routers'
``/stats`` (their ``demand``). Then, for each pool with ``autoscaling.mode: gpufleet``
and a variant that asks for a replica range, it gathers the inputs
(``scalinginputs``: the variants' TP and feasibility as the pool reconciler planned and
published them in the status — ``modelpool.status.published_plan``; a pool whose status
is not yet for its current spec waits for the next pass), decides (``scaling.decide``,
with the pool's ``History`` kept in memory) and applies each changed variant's
``spec.replicas`` by server-side apply under its own field manager
(``kube.AUTOSCALER_FIELD_MANAGER``); the pool
reconciler then leaves that field alone (``plan.replicas_intent``). Each change is
posted as an Event; the decision goes to the pool reconciler through the
``ScalingView``, which re-queues the pool when what its status says changed — the
reconciler alone writes the status. A failed read leaves that input unknown for the
pass (no nodes: no free-GPU limit; no signals: replicas held), never a crash; a router
whose ``/stats`` cannot be read counts as silent (``controller.routingpolicy.routerstats``),
and a pool whose decision fails is skipped for the pass, never the pools after it. Each
pass logs how many pools it decided and how long it took (a warning when that is longer
than its interval).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from gpufleet import labels
from gpufleet.api.modelpool import ModelPoolStatus
from gpufleet.api.resources import ModelPool, RoutingPolicy
from gpufleet.controller import conditions, kube, runtime
from gpufleet.controller.autoscaling import scalinginputs
from gpufleet.controller.modelpool import scalingreport, status
from gpufleet.controller.modelpool.scalingreport import PoolReport, VariantReport
from gpufleet.controller.routingpolicy import routerstats
from gpufleet.controller.workqueue import Key
from gpufleet.operatorconfig import OperatorConfig
from gpufleet.promquery import client as promclient
from gpufleet.promquery import series
from gpufleet.scaling import decide, inventory, model

LOG = logging.getLogger("gpufleet.autoscaler")
# The router port of a policy that does not parse (RouterSpec's default): its routers
# still serve the last good configuration, so their demand still counts.
DEFAULT_ROUTER_PORT = 8080


class Autoscaler:
    """The loop and what it remembers between passes (histories, last scale times)."""

    def __init__(
        self,
        config: OperatorConfig,
        *,
        view: scalingreport.ScalingView,
        pools: str,
        policies: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``view`` is shared with the pool reconciler; ``pools`` and ``policies`` name
        the ModelPool and RoutingPolicy kinds in the runtime."""
        self.config = config
        self.view = view
        self.pools, self.policies = pools, policies
        self.clock = clock
        self.queries = scalinginputs.queries()
        self.histories: dict[Key, model.History] = {}
        self.last_scale: dict[tuple[Key, str], float] = {}
        self.poller = routerstats.Poller(timeout=config.router_stats_timeout_seconds)
        self.reader = (
            promclient.PrometheusReader(
                config.prometheus_url,
                verify=promclient.verify_option(
                    insecure_skip_verify=config.prometheus_insecure_skip_verify,
                    ca_file=config.prometheus_ca_file,
                ),
                timeout_s=config.prometheus_timeout_seconds,
            )
            if config.prometheus_url
            else None
        )

    async def run(self, state: runtime.OperatorState) -> None:
        while True:
            try:
                await self.tick(state)
            except Exception:  # one bad pass must not stop autoscaling for good
                LOG.exception("autoscaler pass failed")
            await asyncio.sleep(self.config.autoscale_seconds)

    async def close(self) -> None:
        await self.poller.close()
        if self.reader is not None:
            self.reader.close()

    # --- one pass ---------------------------------------------------------------------
    async def tick(self, state: runtime.OperatorState) -> None:
        pools: runtime.KindState[ModelPool, Any] = state.kind(self.pools)
        await self._read_nodes(state)
        scaled = {key: p for key, found in pools.objects.items() if (p := _scaled_pool(found.obj))}
        for key in list(self.histories):
            if key not in scaled:
                self._forget(state, key)
        if not scaled:
            return
        started = time.monotonic()
        results = await self._signals()
        stats = await self._router_stats(state, {key[0] for key in scaled})
        decided = 0
        for key, pool in scaled.items():
            try:
                decided += await self._decide(state, key, pool, results, stats.get(key[0], []))
            except Exception:  # one pool's failure is its own: the others still scale
                LOG.exception("autoscaler: %s/%s skipped this pass", *key)
        self._took(decided, time.monotonic() - started)

    def _took(self, decided: int, seconds: float) -> None:
        """One line per pass: how long deciding every pool takes is what bounds the
        interval (a pass longer than it delays the next)."""
        late = seconds > self.config.autoscale_seconds
        LOG.log(
            logging.WARNING if late else logging.INFO,
            "autoscaler pass: %d pools in %.2fs%s",
            decided,
            seconds,
            f", longer than its {self.config.autoscale_seconds:g}s interval" if late else "",
        )

    async def _read_nodes(self, state: runtime.OperatorState) -> None:
        view, before = self.view, self.view.shapes()
        try:
            nodes = await asyncio.to_thread(state.client.nodes)
            pods = await asyncio.to_thread(state.client.running_pods)
        except kube.KubeError as exc:
            if not view.nodes_problem:
                LOG.warning("autoscaler: cannot read the nodes, so no free-GPU limit: %s", exc)
            view.nodes, view.nodes_problem = None, str(exc)
        else:
            view.nodes, view.nodes_problem = inventory.inventory(nodes, pods), ""  # type: ignore[arg-type]
        if view.shapes() != before:  # TP is planned for the node shape: re-plan every pool
            pools = state.kind(self.pools)
            for key in pools.keys_in():
                pools.queue.add(key)

    async def _signals(self) -> series.Results | None:
        """Query results, {} without Prometheus, None when it failed (signals unknown)."""
        if self.reader is None:
            return {}
        try:
            return await self.reader.query(self.queries.all())
        except Exception as exc:  # prometheus-api-client raises several unrelated types
            LOG.info("autoscaler: Prometheus query failed: %s", exc)
            return None

    async def _router_stats(
        self, state: runtime.OperatorState, namespaces: set[str]
    ) -> dict[str, list[object]]:
        """Decoded ``/stats`` bodies of every ready router pod, per namespace: the pods
        of each policy's own router Deployment, found by owner, never by label."""
        policies: runtime.KindState[RoutingPolicy, Any] = state.kind(self.policies)
        out: dict[str, list[object]] = {ns: [] for ns in namespaces}
        for key in policies.keys_in():
            if key[0] not in namespaces:
                continue
            owned = policies.owned_pods(key, labels.router_name(key[1]))
            pods = [p for p in owned if p.ready and p.ip]
            found = policies.get(key)
            port = found.obj.spec.router.port if found and found.obj else DEFAULT_ROUTER_PORT
            out[key[0]] += await self.poller.bodies(pods, port=port)
        return out

    async def _decide(
        self,
        state: runtime.OperatorState,
        key: Key,
        pool: ModelPool,
        results: series.Results | None,
        stats: list[object],
    ) -> bool:
        """Decide one pool; False when its reconciler has not yet published a plan for
        its current spec (the pool is decided on the next pass)."""
        cache: runtime.KindState[ModelPool, ModelPoolStatus] = state.kind(self.pools)
        spec, view = pool.spec, self.view
        found = cache.get(key)
        planned = status.published_plan(
            cache.previous_status(key), generation=found.generation if found else -1
        )
        if planned is None:
            return False
        children = cache.children(key)
        deployments = {
            p.name: children[("Deployment", labels.deployment_name(key[1], p.name))]
            for p in planned
            if ("Deployment", labels.deployment_name(key[1], p.name)) in children
        }
        pods = cache.pods(key)
        signals = scalinginputs.signals(results or {}, pods, self.queries)
        inputs = scalinginputs.pool(
            spec,
            planned,
            deployments=deployments,
            pods=pods,
            signals=signals,
            demand=scalinginputs.demand(stats, key[1]),
            nodes=view.nodes,
        )
        now = self.clock()
        decision = decide.decide(inputs, self.histories.get(key, model.History()), now=now)
        self.histories[key] = decision.history
        mine = set(scalinginputs.scaled(spec))
        for said in decision.variants:
            live = deployments.get(said.name)
            if said.name in mine and live is not None and live.replicas != said.desired:
                await self._apply(state, key, live.replicas or 0, said, now)
        report = self._report(key, decision, inputs, mine, results)
        if view.reports.get(key) != report:
            view.reports[key] = report
            cache.queue.add(key)
        return True

    async def _apply(
        self,
        state: runtime.OperatorState,
        key: Key,
        current: int,
        said: model.VariantDecision,
        now: float,
    ) -> None:
        cache = state.kind(self.pools)
        name = labels.deployment_name(key[1], said.name)
        try:
            written = await asyncio.to_thread(state.client.scale, key[0], name, said.desired)
        except kube.KubeError as exc:
            LOG.warning(
                "autoscaler: scaling %s/%s to %d failed: %s", key[0], name, said.desired, exc
            )
            return
        cache.remember_applied(written)
        self.last_scale[(key, said.name)] = now
        LOG.info("%s/%s: %s %d -> %d: %s", *key, said.name, current, said.desired, said.reason)
        event = conditions.Event(
            type="Normal",
            reason="ScaledUp" if said.desired > current else "ScaledDown",
            message=f"{said.name}: {current} -> {said.desired} replicas: {said.reason}"[:1024],
        )
        found = cache.get(key)
        if found is not None:
            at = conditions.rfc3339(state.clock())
            await asyncio.to_thread(state.client.event, found, event, at=at)

    def _report(
        self,
        key: Key,
        decision: model.Decision,
        inputs: model.Pool,
        mine: set[str],
        results: series.Results | None,
    ) -> PoolReport:
        variants_said = {
            v.name: VariantReport(
                desired=v.desired,
                reason=v.reason,
                feasible=v.feasible,
                last_scale=self.last_scale.get((key, v.name)),
            )
            for v in decision.variants
            if v.name in mine
        }
        summary = decision.summary
        if self.reader is None:
            state = "BoundsOnly"
            summary = (
                "no Prometheus (--prometheus-url): replicas kept within minReplicas.."
                "maxReplicas and started from zero for held requests; " + summary
            )
        elif results is None or scalinginputs.blind(inputs):
            state = "SignalsUnavailable"
        else:
            state = "Scaling"
        return PoolReport(state=state, summary=summary[:4096], variants=variants_said)

    def _forget(self, state: runtime.OperatorState, key: Key) -> None:
        self.histories.pop(key, None)
        self.last_scale = {k: v for k, v in self.last_scale.items() if k[0] != key}
        if self.view.reports.pop(key, None) is not None:
            state.kind(self.pools).child_event(key)


def _scaled_pool(pool: ModelPool | None) -> ModelPool | None:
    """The pool when gpufleet's autoscaler sizes one of its variants; None otherwise
    (absent, invalid — the reconciler reports that —, external or fixed)."""
    return pool if pool is not None and scalinginputs.scaled(pool.spec) else None
