"""Which pods a Deployment of an object really runs: the controller chain, not labels (pure).

Labels say what a pod claims to be, and anyone who may create pods in a namespace may
write them; the ``ownerReferences`` marked ``controller`` say who made it. A pod belongs
to object O's Deployment D only when O controls D, D controls a ReplicaSet and that
ReplicaSet controls the pod, each link checked by uid. The operator asks this before it
sends a pod a request of its own (a router's ``/stats``): a look-alike pod carrying the
router labels is never polled.
"""

from __future__ import annotations

from collections.abc import Iterable

from gpufleet.controller import observe


def controlled_pods(
    owner_uid: str,
    deployment: observe.ObservedChild | None,
    replica_sets: Iterable[observe.ObservedChild],
    pods: Iterable[observe.ObservedPod],
) -> list[observe.ObservedPod]:
    """The ``pods`` made by ``deployment``'s ReplicaSets, when the object whose uid is
    ``owner_uid`` controls that Deployment; none otherwise (no Deployment yet, or one
    of that name someone else controls)."""
    if deployment is None or not (owner_uid and deployment.uid):
        return []
    if deployment.controller != owner_uid:
        return []
    mine = {rs.uid for rs in replica_sets if rs.uid and rs.controller == deployment.uid}
    return [p for p in pods if p.controller in mine]
