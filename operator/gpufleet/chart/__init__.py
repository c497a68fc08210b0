"""The Helm chart's Python side (pure): its values model and the files generated from it.

``values`` is the one validated model of ``charts/gpufleet/values.yaml``; ``generate``
renders ``values.schema.json`` from it and the chart's RBAC rules from
``deploy/rbac/operator-rbac.yaml``. ``gpufleet crds`` (``command``) writes them with
the CRDs generated from ``gpufleet.api`` and ``--check`` reports drift. It reads the
API and the operator's settings (``gpufleet.operatorconfig``), never the operator.
"""
