"""The router's pod and what runs it for a RoutingPolicy: Deployment, Service, PDB.

Pure; used by ``policyrender``, which renders the policy's other children.
Every object is named ``labels.router_name(P)``, labelled ``labels.policy_labels(P)``
plus component ``router`` and owned by the policy. The pod runs ``gpufleet router``
under the restricted Pod Security profile with its own ServiceAccount, reads its
configuration from the ConfigMap mounted at ``CONFIG_DIR`` (and then watches it through
the API), and is scraped by Prometheus through the ``prometheus.io`` annotations. Its
template holds nothing of the policy but the router's shape, so a policy edit restarts
no router.
"""

from __future__ import annotations

from gpufleet import labels as contract
from gpufleet.api import common
from gpufleet.api.routingpolicy import RoutingPolicySpec
from gpufleet.controller import bodies, owned, restricted

KIND = "RoutingPolicy"
# A RoutingPolicy's identity has a ModelPool's shape: name, namespace, uid.
PolicyRef = owned.OwnerRef

CONFIG_DIR = "/etc/gpufleet/router"
CA_DIR = "/etc/gpufleet/prometheus-ca"
CA_FILE = f"{CA_DIR}/ca.crt"
PORT_NAME = "http"
CONTAINER = "router"
# The distroless "nonroot" user; any non-zero UID satisfies the restricted profile.
RUN_AS = 65532


def ca_ref(spec: RoutingPolicySpec) -> common.ConfigMapKeyRef | None:
    """The ConfigMap key holding Prometheus's CA bundle, if the policy names one."""
    return spec.prometheus.tls.ca_config_map_ref if spec.prometheus else None


def child_labels(ref: PolicyRef) -> dict[str, str]:
    return contract.policy_labels(ref.name) | {contract.COMPONENT: contract.ROUTER}


def metadata(ref: PolicyRef) -> bodies.Metadata:
    """Metadata of every child of the policy (one name for all of them)."""
    name = contract.router_name(ref.name)
    return owned.child_metadata(ref, name, child_labels(ref), kind=KIND)


def _resources(spec: RoutingPolicySpec) -> bodies.ResourceRequirements:
    wanted = spec.router.resources
    return bodies.ResourceRequirements(
        requests=wanted.requests.model_dump(exclude_none=True),
        limits=wanted.limits.model_dump(exclude_none=True),
    )


def _probe(path: str, *, period: int) -> bodies.Probe:
    return bodies.Probe(
        httpGet={"path": path, "port": PORT_NAME},
        periodSeconds=period,
        failureThreshold=3,
        timeoutSeconds=2,
    )


def _mounts(spec: RoutingPolicySpec) -> list[bodies.VolumeMount]:
    out = [
        bodies.VolumeMount(name="config", mountPath=CONFIG_DIR, readOnly=True),
        bodies.VolumeMount(name="tmp", mountPath="/tmp"),
    ]
    if ca_ref(spec) is not None:
        out.append(bodies.VolumeMount(name="prometheus-ca", mountPath=CA_DIR, readOnly=True))
    return out


def _volumes(ref: PolicyRef, spec: RoutingPolicySpec) -> list[bodies.Volume]:
    out = [
        bodies.Volume(name="config", configMap={"name": contract.router_name(ref.name)}),
        bodies.Volume(name="tmp", emptyDir={"sizeLimit": "64Mi"}),
    ]
    ca = ca_ref(spec)
    if ca is not None:
        source = bodies.ConfigMapVolumeSource(
            name=ca.name, items=[{"key": ca.key, "path": CA_FILE.rsplit("/", 1)[1]}]
        )
        out.append(bodies.Volume(name="prometheus-ca", configMap=source))
    return out


def router_args(spec: RoutingPolicySpec, *, host: str) -> list[str]:
    """The arguments after ``gpufleet``: the Deployment listens on ``$(POD_IP)``, a
    sidecar on ``127.0.0.1`` (docs/router.md)."""
    config = f"{CONFIG_DIR}/{contract.ROUTER_CONFIG_KEY}"
    port = str(spec.router.port)
    return ["router", "--config", config, "--host", host, "--port", port, "--log-level", "INFO"]


def _container(spec: RoutingPolicySpec, *, image: str) -> bodies.RouterContainer:
    return bodies.RouterContainer(
        name=CONTAINER,
        image=image,
        command=["gpufleet"],
        args=router_args(spec, host="$(POD_IP)"),
        env=[{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        ports=[{"name": PORT_NAME, "containerPort": spec.router.port, "protocol": "TCP"}],
        resources=_resources(spec),
        volumeMounts=_mounts(spec),
        readinessProbe=_probe("/readyz", period=2),
        livenessProbe=_probe("/healthz", period=10),
        securityContext=restricted.container(),
    )


def _pod_spec(ref: PolicyRef, spec: RoutingPolicySpec, *, image: str) -> bodies.RouterPodSpec:
    return bodies.RouterPodSpec(
        serviceAccountName=contract.router_name(ref.name),
        automountServiceAccountToken=True,
        enableServiceLinks=False,
        # The router drains for up to drainSeconds (default 10) after SIGTERM.
        terminationGracePeriodSeconds=30,
        securityContext=restricted.pod(run_as=RUN_AS),
        containers=[_container(spec, image=image)],
        volumes=_volumes(ref, spec),
    )


def deployment(ref: PolicyRef, spec: RoutingPolicySpec, *, image: str) -> bodies.RouterDeployment:
    """The router Deployment under the restricted Pod Security profile, scraped by
    Prometheus. Nothing of the policy but the router's shape is in the template."""
    template_annotations = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(spec.router.port),
        "prometheus.io/path": "/metrics",
    }
    body_spec = bodies.RouterDeploymentSpec(
        replicas=spec.router.replicas,
        selector={"matchLabels": contract.policy_labels(ref.name)},
        # Surge one and never drop below the desired count: routers keep serving.
        strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        revisionHistoryLimit=3,
        template={
            "metadata": {"labels": child_labels(ref), "annotations": template_annotations},
            "spec": _pod_spec(ref, spec, image=image),
        },
    )
    return owned.with_hash(
        bodies.RouterDeployment(
            apiVersion="apps/v1", kind="Deployment", metadata=metadata(ref), spec=body_spec
        )
    )


def service(ref: PolicyRef, spec: RoutingPolicySpec) -> bodies.Service:
    """The router's Service (``spec.router.serviceType``), port ``router.port``."""
    port = bodies.ServicePort(
        name=PORT_NAME, port=spec.router.port, targetPort=PORT_NAME, protocol="TCP"
    )
    return owned.with_hash(
        bodies.Service(
            apiVersion="v1",
            kind="Service",
            metadata=metadata(ref),
            spec={
                "type": spec.router.service_type,
                "selector": contract.policy_labels(ref.name),
                "ports": [port],
            },
        )
    )


def disruption_budget(ref: PolicyRef) -> bodies.PodDisruptionBudget:
    """At most one router voluntarily disrupted at a time."""
    return owned.with_hash(
        bodies.PodDisruptionBudget(
            apiVersion="policy/v1",
            kind="PodDisruptionBudget",
            metadata=metadata(ref),
            spec={
                "selector": {"matchLabels": contract.policy_labels(ref.name)},
                "maxUnavailable": 1,
            },
        )
    )
