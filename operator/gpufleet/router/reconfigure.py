"""Applying a new configuration to a running router, without a restart.

``apply`` swaps ``Router.config`` and brings every component that was built from it up
to date in place: tenant quotas (in-flight counts kept), the key ring, session TTL, the
admission queue's bound and order, breaker settings and signal staleness, the learner's
half-life, and static backends' endpoints. What is read per request or per loop pass
(aliases, classes, scorer weights, strategy, retries, Prometheus, health checks) follows
``Router.config`` by itself. Requests in flight are not touched; those admitted before
keep their endpoint and lease.
"""

from __future__ import annotations

import asyncio
import dataclasses

from gpufleet.router import discovery, liveconfig
from gpufleet.router.liveconfig import ConfigState
from gpufleet.router.service import Router
from gpufleet.routing import admission


def apply(router: Router, resolved: liveconfig.Resolved, *, at: float) -> None:
    """Serve ``resolved`` from now on; ``at`` is the wall-clock time (for /stats)."""
    config = resolved.config
    policy = config.policy
    router.config = config
    router.keyring = admission.KeyRing(resolved.keys)
    router.quotas.reconfigure(
        {t.name: t for t in policy.admission.tenants},
        policy.admission.anonymous_tokens_per_minute,
    )
    router.sessions.ttl_s = policy.affinity.session.ttl_seconds
    router.gate.reconfigure(policy.admission.queue.max_size, policy.admission.queue.order)
    prometheus = policy.prometheus
    router.registry.reconfigure(
        policy.failure_handling.circuit_breaker,
        staleness_s=prometheus.staleness_seconds if prometheus else 30.0,
    )
    gen = policy.generation_weights
    router.learner.half_life_s, router.learner.min_samples = (
        gen.learning_half_life_seconds,
        gen.min_samples,
    )
    if config.backends:
        router.registry.replace(
            discovery.weigh(config, router.learner, discovery.static_endpoints(config))
        )
    router.config_state = ConfigState(
        generation=config.policy_generation,
        applied_at=at,
        version=router.config_state.version + 1,
    )
    woken, router.reconfigured = router.reconfigured, asyncio.Event()
    woken.set()


def reject(router: Router, error: str) -> bool:
    """Record that the latest change could not be applied; True when the error is new
    (so it is logged once per change)."""
    state = router.config_state
    if state.error == error:
        return False
    router.config_state = dataclasses.replace(state, error=error)
    return True
