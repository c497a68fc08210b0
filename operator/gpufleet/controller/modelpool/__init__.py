"""The ModelPool kind: planning its variants, rendering and reconciling its children, its status.

Pure: ``variants`` (the planner's verdict per variant, and the specs no reconcile can
satisfy), ``podspec`` and ``render`` (the Deployments, Service and PodDisruptionBudget),
``netpolicy`` (the pool's NetworkPolicy), ``plan`` (the intents and price patches),
``status`` (conditions and per-variant numbers), ``scalingreport`` (what the autoscaler
tells the reconciler). I/O: ``reconciler`` (one pool). Imports nothing itself, so
importing a pure module does not import Kopf.
"""

KIND = "ModelPool"
