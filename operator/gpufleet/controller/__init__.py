"""The gpufleet operator: Kopf handlers over pure builders of child objects, per kind.

Pure (no Kubernetes client, no Kopf, no HTTP): ``variants`` (planning every variant),
``podspec`` and ``render`` (a ModelPool's children as apply intents), ``policyrender``
and ``policystatus`` (a RoutingPolicy's), ``observe`` (projections of what the watches
deliver), ``plan`` (desired versus observed → writes), ``status`` (conditions and
per-variant numbers), ``liveness`` (is a watch still delivering?), ``workqueue``,
``config``. I/O: ``kube`` (API calls), ``reconciler`` and ``policyreconciler`` (one
object of each kind), ``runtime`` (kind-agnostic caches and loops), ``kinds`` (the kinds
bound to their reconcilers), ``handlers`` (Kopf registrations), ``command``
(``gpufleet operator``).

This package imports nothing: importing a pure module does not import Kopf. Kopf's
entry point is ``kopf run -m gpufleet.controller.handlers`` (settings from
``GPUFLEET_OPERATOR_*`` environment variables, see ``gpufleet.operatorconfig``).
"""
