"""The ModelPool operator: Kopf handlers over pure builders of child objects.

Pure (no Kubernetes client, no Kopf): ``variants`` (planning every variant),
``podspec`` and ``render`` (the children as apply intents), ``observe`` (projections of
what the watches deliver), ``plan`` (desired versus observed → writes), ``status``
(conditions and per-variant numbers), ``liveness`` (is the watch still delivering?),
``workqueue``. I/O: ``kube`` (API calls), ``reconciler`` (one pool), ``runtime`` (caches
and loops), ``handlers`` (Kopf registrations), ``command`` (``gpufleet operator``).

Importing this package registers the handlers with Kopf's default registry, so
``kopf run -m gpufleet.controller`` runs the operator (settings from
``GPUFLEET_OPERATOR_*`` environment variables, see ``controller.config``).
"""

from gpufleet.controller import handlers

__all__ = ["handlers"]
