"""The RoutingPolicy kind: its router's children and configuration, polling, its status.

Pure: ``policyrender`` (ConfigMap with ``router.yaml``, ServiceAccount, Role,
RoleBinding), ``routerpod`` (the router Deployment, Service and PodDisruptionBudget),
``policystatus`` (the status from the routers' ``/stats``). I/O: ``routerstats`` (the
routers' ``/stats``, also read by the autoscaler), ``policyreconciler`` (one policy).
Imports nothing itself, so importing a pure module does not import Kopf.
"""

KIND = "RoutingPolicy"
