"""Typed shapes of the raw Kubernetes objects the operator renders and reads.

``TypedDict`` mirrors of the API's JSON (camelCase keys, as sent over the wire), limited
to the fields gpufleet writes or reads. Rendered bodies are server-side-apply intents:
every key present is a field the operator owns, so a key is only present when it has a
value (``NotRequired`` rather than ``None``).
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

# One JSON value as it appears in a Kubernetes body (for the drift comparison).
Json = None | bool | int | float | str | list["Json"] | dict[str, "Json"]


class OwnerReference(TypedDict):
    apiVersion: str
    kind: str
    name: str
    uid: str
    controller: bool
    blockOwnerDeletion: bool


class Metadata(TypedDict):
    name: str
    namespace: str
    labels: dict[str, str]
    annotations: NotRequired[dict[str, str]]
    ownerReferences: NotRequired[list[OwnerReference]]


class LabelSelector(TypedDict):
    matchLabels: dict[str, str]


class NodeSelectorRequirement(TypedDict):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]
    values: NotRequired[list[str]]


class NodeSelectorTerm(TypedDict):
    matchExpressions: list[NodeSelectorRequirement]


class NodeSelector(TypedDict):
    nodeSelectorTerms: list[NodeSelectorTerm]


class NodeAffinity(TypedDict):
    requiredDuringSchedulingIgnoredDuringExecution: NodeSelector


class Affinity(TypedDict):
    nodeAffinity: NodeAffinity


class Toleration(TypedDict):
    key: NotRequired[str]
    operator: str
    value: NotRequired[str]
    effect: NotRequired[str]
    tolerationSeconds: NotRequired[int]


class SecretKeySelector(TypedDict):
    name: str
    key: str


class EnvVarSource(TypedDict, total=False):
    secretKeyRef: SecretKeySelector
    fieldRef: ObjectFieldSelector


class EnvVar(TypedDict):
    name: str
    value: NotRequired[str]
    valueFrom: NotRequired[EnvVarSource]


class HttpGet(TypedDict):
    path: str
    port: str


class Probe(TypedDict):
    httpGet: HttpGet
    periodSeconds: int
    failureThreshold: int
    timeoutSeconds: int


class ContainerPort(TypedDict):
    name: str
    containerPort: int
    protocol: Literal["TCP"]


class ResourceRequirements(TypedDict):
    requests: dict[str, str]
    limits: dict[str, str]


class VolumeMount(TypedDict):
    name: str
    mountPath: str
    readOnly: NotRequired[bool]
    subPath: NotRequired[str]


class Capabilities(TypedDict):
    drop: list[str]


class SeccompProfile(TypedDict):
    type: Literal["RuntimeDefault"]


class ContainerSecurityContext(TypedDict):
    allowPrivilegeEscalation: bool
    readOnlyRootFilesystem: bool
    runAsNonRoot: bool
    capabilities: Capabilities
    seccompProfile: SeccompProfile


class Container(TypedDict):
    name: str
    image: str
    command: list[str]
    args: list[str]
    env: list[EnvVar]
    ports: list[ContainerPort]
    resources: ResourceRequirements
    volumeMounts: list[VolumeMount]
    startupProbe: Probe
    readinessProbe: Probe
    livenessProbe: Probe
    securityContext: ContainerSecurityContext


class EmptyDirSource(TypedDict):
    medium: NotRequired[Literal["Memory"]]
    sizeLimit: str


class PvcSource(TypedDict):
    claimName: str
    readOnly: bool


class KeyToPath(TypedDict):
    key: str
    path: str


class ConfigMapVolumeSource(TypedDict):
    name: str
    items: NotRequired[list[KeyToPath]]


class Volume(TypedDict):
    name: str
    emptyDir: NotRequired[EmptyDirSource]
    persistentVolumeClaim: NotRequired[PvcSource]
    configMap: NotRequired[ConfigMapVolumeSource]


class PodSecurityContext(TypedDict):
    runAsNonRoot: bool
    runAsUser: int
    runAsGroup: int
    fsGroup: int
    seccompProfile: SeccompProfile


class PodSpec(TypedDict):
    containers: list[Container]
    volumes: list[Volume]
    affinity: Affinity
    tolerations: list[Toleration]
    securityContext: PodSecurityContext
    terminationGracePeriodSeconds: int
    enableServiceLinks: bool
    automountServiceAccountToken: bool
    nodeSelector: NotRequired[dict[str, str]]
    priorityClassName: NotRequired[str]


class TemplateMetadata(TypedDict):
    labels: dict[str, str]
    annotations: dict[str, str]


class PodTemplate(TypedDict):
    metadata: TemplateMetadata
    spec: PodSpec


class RollingUpdate(TypedDict):
    maxSurge: int
    maxUnavailable: int


class Strategy(TypedDict):
    type: Literal["RollingUpdate"]
    rollingUpdate: RollingUpdate


class DeploymentSpec(TypedDict):
    replicas: NotRequired[int]
    selector: LabelSelector
    strategy: Strategy
    revisionHistoryLimit: int
    progressDeadlineSeconds: int
    template: PodTemplate


class Deployment(TypedDict):
    apiVersion: Literal["apps/v1"]
    kind: Literal["Deployment"]
    metadata: Metadata
    spec: DeploymentSpec


class ServicePort(TypedDict):
    name: str
    port: int
    targetPort: str
    protocol: Literal["TCP"]


class ServiceSpec(TypedDict):
    type: Literal["ClusterIP", "NodePort", "LoadBalancer"]
    selector: dict[str, str]
    ports: list[ServicePort]


class Service(TypedDict):
    apiVersion: Literal["v1"]
    kind: Literal["Service"]
    metadata: Metadata
    spec: ServiceSpec


class PdbSpec(TypedDict):
    selector: LabelSelector
    maxUnavailable: int


class PodDisruptionBudget(TypedDict):
    apiVersion: Literal["policy/v1"]
    kind: Literal["PodDisruptionBudget"]
    metadata: Metadata
    spec: PdbSpec


class SelectorRequirement(TypedDict):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: NotRequired[list[str]]


class PeerSelector(TypedDict):
    matchLabels: NotRequired[dict[str, str]]
    matchExpressions: NotRequired[list[SelectorRequirement]]


class NetworkPolicyPeer(TypedDict):
    podSelector: NotRequired[PeerSelector]
    namespaceSelector: NotRequired[PeerSelector]


class NetworkPolicyPort(TypedDict):
    port: int
    protocol: Literal["TCP"]


# ``from`` is a Python keyword, hence the functional form. Never empty: a rule without
# ``from`` admits every source (``controller.modelpool.netpolicy`` leaves such a rule out).
NetworkPolicyRule = TypedDict(
    "NetworkPolicyRule", {"ports": list[NetworkPolicyPort], "from": list[NetworkPolicyPeer]}
)


class NetworkPolicySpec(TypedDict):
    podSelector: LabelSelector
    policyTypes: list[Literal["Ingress"]]
    ingress: list[NetworkPolicyRule]


class NetworkPolicy(TypedDict):
    apiVersion: Literal["networking.k8s.io/v1"]
    kind: Literal["NetworkPolicy"]
    metadata: Metadata
    spec: NetworkPolicySpec


class ConfigMap(TypedDict):
    apiVersion: Literal["v1"]
    kind: Literal["ConfigMap"]
    metadata: Metadata
    data: dict[str, str]


class ServiceAccount(TypedDict):
    apiVersion: Literal["v1"]
    kind: Literal["ServiceAccount"]
    metadata: Metadata
    automountServiceAccountToken: bool


class PolicyRule(TypedDict):
    apiGroups: list[str]
    resources: list[str]
    verbs: list[str]
    resourceNames: NotRequired[list[str]]


class Role(TypedDict):
    apiVersion: Literal["rbac.authorization.k8s.io/v1"]
    kind: Literal["Role"]
    metadata: Metadata
    rules: list[PolicyRule]


class RoleRef(TypedDict):
    apiGroup: Literal["rbac.authorization.k8s.io"]
    kind: Literal["Role"]
    name: str


class Subject(TypedDict):
    kind: Literal["ServiceAccount"]
    name: str
    namespace: str


class RoleBinding(TypedDict):
    apiVersion: Literal["rbac.authorization.k8s.io/v1"]
    kind: Literal["RoleBinding"]
    metadata: Metadata
    roleRef: RoleRef
    subjects: list[Subject]


# The router's Deployment: a plain pod (no GPU affinity or tolerations, no startup
# probe), its own ServiceAccount, its address from the downward API.
class ObjectFieldSelector(TypedDict):
    fieldPath: str


class FieldEnvSource(TypedDict):
    fieldRef: ObjectFieldSelector


class FieldEnvVar(TypedDict):
    name: str
    valueFrom: FieldEnvSource


class RouterContainer(TypedDict):
    name: str
    image: str
    command: list[str]
    args: list[str]
    env: list[FieldEnvVar]
    ports: list[ContainerPort]
    resources: ResourceRequirements
    volumeMounts: list[VolumeMount]
    readinessProbe: Probe
    livenessProbe: Probe
    securityContext: ContainerSecurityContext


class RouterPodSpec(TypedDict):
    serviceAccountName: str
    automountServiceAccountToken: bool
    enableServiceLinks: bool
    terminationGracePeriodSeconds: int
    securityContext: PodSecurityContext
    containers: list[RouterContainer]
    volumes: list[Volume]


class RouterPodTemplate(TypedDict):
    metadata: TemplateMetadata
    spec: RouterPodSpec


class RouterDeploymentSpec(TypedDict):
    replicas: int
    selector: LabelSelector
    strategy: Strategy
    revisionHistoryLimit: int
    template: RouterPodTemplate


class RouterDeployment(TypedDict):
    apiVersion: Literal["apps/v1"]
    kind: Literal["Deployment"]
    metadata: Metadata
    spec: RouterDeploymentSpec


Child = (
    Deployment
    | Service
    | PodDisruptionBudget
    | ConfigMap
    | ServiceAccount
    | Role
    | RoleBinding
    | RouterDeployment
    | NetworkPolicy
)
ChildKind = Literal[
    "Deployment",
    "Service",
    "PodDisruptionBudget",
    "NetworkPolicy",
    "ConfigMap",
    "ServiceAccount",
    "Role",
    "RoleBinding",
]
