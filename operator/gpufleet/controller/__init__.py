"""The gpufleet operator: a kind-agnostic runtime, then one package per kind.

``modelpool`` (planning, children, status and reconcile of a ModelPool),
``routingpolicy`` (a RoutingPolicy's router, its configuration and status) and
``autoscaling`` (the loop that sizes pools' variants) sit over what every kind shares.
Pure (no Kubernetes client, no Kopf, no HTTP): ``bodies`` (the raw objects rendered),
``owned`` (owner references, the spec hash, desired versus observed → writes),
``conditions`` (conditions and Events of any status), ``selection`` (which pools a
policy routes), ``observe`` (projections of what the watches deliver), ``ownership``,
``restricted``, ``images``, ``liveness`` (is a watch still delivering?), ``workqueue``.
I/O: ``kube`` (API calls), ``writes`` (executing a plan), ``runtime`` (kind-agnostic
caches and loops), ``kinds`` (the kinds bound to their reconcilers), ``handlers``
(Kopf registrations), ``command`` (``gpufleet operator``).

This package imports nothing: importing a pure module does not import Kopf. Kopf's
entry point is ``kopf run -m gpufleet.controller.handlers`` (settings from
``GPUFLEET_OPERATOR_*`` environment variables, see ``gpufleet.operatorconfig``).
"""
