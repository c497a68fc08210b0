"""Apply then delete what a reconcile planned (``owned.Plan``), whatever the kind.

Blocking Kubernetes calls (``controller.kube``): the reconcilers run ``execute`` in a
thread. Each write is remembered in the kind's cache so a reconcile that runs before
the watch echoes it does not repeat it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from gpufleet.controller import kube, observe, owned


class Applied(Protocol):
    """Where ``execute`` records what it wrote (``controller.runtime.KindState``)."""

    def remember_applied(self, obj: Mapping[str, Any]) -> None: ...

    def forget_applied(self, kind: str, namespace: str, name: str) -> None: ...


def execute(
    client: kube.Kube,
    cache: Applied,
    todo: owned.Plan,
    observed: Mapping[tuple[str, str], observe.ObservedChild],
) -> None:
    """Apply then delete, remembering what was written (blocking: run it in a thread).

    A child that no watch shows as this owner's is read first: an object of that name
    that someone else controls is refused (``kube.Rejected``), never taken over."""
    for intent in todo.apply:
        if (intent["kind"], intent["metadata"]["name"]) not in observed:
            problem = owned.claim_problem(intent, client.live(intent))
            if problem:
                raise kube.Rejected(problem)
        cache.remember_applied(client.apply(intent))
    for target in todo.delete:
        client.delete(target)
        cache.forget_applied(target.kind, target.namespace, target.name)
