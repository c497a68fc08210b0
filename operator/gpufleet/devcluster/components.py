"""The command lines of the control-plane components (pure).

Given where a cluster keeps its files and which loopback ports it got, each function
returns the argv of one component. Kept apart from process handling so the flags can be
read and tested in one place.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

from gpufleet.devcluster import certs

SERVICE_CIDR = "10.96.0.0/16"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
# KWOK renews each node's Lease every quarter of its duration, as a kubelet does. At
# the kubelet's 40 s a 5,000-node fleet renews 500 Leases a second, more than two cores
# can serve; at 240 s it is ~80/s (a fifth of a core idle, bench/RESULTS.md).
NODE_LEASE_SECONDS = 240
# The node lifecycle controller marks a node NotReady when its Lease has not been
# renewed for this long: three missed renewals, the kubelet defaults' margin.
NODE_MONITOR_GRACE_SECONDS = 3 * NODE_LEASE_SECONDS // 4
KWOK_OPTIONS = Path(__file__).with_name("data") / "kwok-options.yaml"


@dataclasses.dataclass(frozen=True, slots=True)
class Ports:
    """The loopback ports of one cluster; an optional component's is None when it is off."""

    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    kwok: int
    prometheus: int | None = None
    pod_runner: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Layout:
    """Where one cluster keeps its files."""

    root: Path

    @property
    def pki(self) -> certs.Pki:
        return certs.Pki(self.root / "pki")

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    def kubeconfig(self, stem: str) -> Path:
        return self.root / "kubeconfigs" / f"{stem}.kubeconfig"

    @property
    def kwok_config(self) -> Path:
        return self.root / "kwok.yaml"

    @property
    def prometheus_config(self) -> Path:
        return self.root / "prometheus.yml"

    @property
    def prometheus_data(self) -> Path:
        return self.root / "prometheus"


def pod_cidr(name: str) -> str:
    """A /16 of 127.0.0.0/8 chosen from the cluster name, so clusters run side by side.

    Pod IPs on loopback let a simulator process listen at its pod's own address. The
    second octet stays within 64..191, clear of 127.0.0.1 and of the ranges people use
    for other loopback services.
    """
    octet = 64 + int(hashlib.sha256(name.encode()).hexdigest(), 16) % 128
    return f"127.{octet}.0.0/16"


def etcd(binary: Path, layout: Layout, ports: Ports, name: str) -> list[str]:
    client = f"http://127.0.0.1:{ports.etcd_client}"
    peer = f"http://127.0.0.1:{ports.etcd_peer}"
    return [
        str(binary),
        f"--name={name}",
        f"--data-dir={layout.etcd_data}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster={name}={peer}",
        "--initial-cluster-state=new",
        "--log-level=warn",
        "--quota-backend-bytes=2147483648",
        # Compact often: tests create and delete many objects.
        "--auto-compaction-mode=periodic",
        "--auto-compaction-retention=5m",
    ]


def apiserver(binary: Path, layout: Layout, ports: Ports) -> list[str]:
    pki = layout.pki
    return [
        str(binary),
        f"--etcd-servers=http://127.0.0.1:{ports.etcd_client}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={ports.apiserver}",
        f"--cert-dir={layout.root / 'apiserver-certs'}",
        f"--tls-cert-file={pki.apiserver_cert}",
        f"--tls-private-key-file={pki.apiserver_key}",
        f"--client-ca-file={pki.ca_cert}",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        f"--service-account-issuer={SA_ISSUER}",
        f"--service-account-key-file={pki.sa_pub}",
        f"--service-account-signing-key-file={pki.sa_key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--allow-privileged=true",
        "--profiling=false",
        "--event-ttl=1h",
    ]


def _component_auth(layout: Layout, stem: str) -> list[str]:
    kubeconfig = layout.kubeconfig(stem)
    return [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        "--leader-elect=false",
        "--profiling=false",
        f"--cert-dir={layout.root / (stem + '-certs')}",
    ]


def controller_manager(binary: Path, layout: Layout, ports: Ports) -> list[str]:
    pki = layout.pki
    return [
        str(binary),
        *_component_auth(layout, "controller-manager"),
        f"--secure-port={ports.controller_manager}",
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={pki.sa_key}",
        f"--root-ca-file={pki.ca_cert}",
        f"--cluster-signing-cert-file={pki.ca_cert}",
        f"--cluster-signing-key-file={pki.ca_key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        # The TTL controller sizes kubelets' Secret and ConfigMap cache TTL (there are no
        # kubelets here) and patches every node again whenever the fleet crosses one of
        # its size bands: thousands of writes while a large fleet registers.
        "--controllers=*,bootstrapsigner,tokencleaner,-ttl-controller",
        # The default client limit, 20 QPS with a burst of 30, lets the node lifecycle
        # controller untaint ~4 new nodes a second (a GET, a PATCH and an Event each): a
        # 500-node fleet waited 105 s for it. It is the controller-manager's only limit
        # that a fleet registration reaches.
        "--kube-api-qps=500",
        "--kube-api-burst=1000",
        f"--node-monitor-grace-period={NODE_MONITOR_GRACE_SECONDS}s",
    ]


def scheduler(binary: Path, layout: Layout, ports: Ports) -> list[str]:
    return [str(binary), *_component_auth(layout, "scheduler"), f"--secure-port={ports.scheduler}"]


def kwok(binary: Path, layout: Layout, ports: Ports, name: str) -> list[str]:
    return [
        str(binary),
        f"--kubeconfig={layout.kubeconfig('kwok')}",
        f"--config={layout.kwok_config}",
        f"--config={KWOK_OPTIONS}",
        # At INFO KWOK logs every Lease renewal and status patch: at fleet size, a
        # steady 80 lines a second to a file nobody reads unless something fails.
        "--v=WARN",
        "--manage-all-nodes=false",
        "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
        f"--cidr={pod_cidr(name)}",
        "--node-ip=127.0.0.1",
        f"--node-lease-duration-seconds={NODE_LEASE_SECONDS}",
        f"--server-address=127.0.0.1:{ports.kwok}",
    ]


def prometheus(binary: Path, layout: Layout, port: int) -> list[str]:
    """Prometheus on ``127.0.0.1:port``; retention and scrape settings are in its config."""
    return [
        str(binary),
        f"--config.file={layout.prometheus_config}",
        f"--storage.tsdb.path={layout.prometheus_data}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-lifecycle",
        "--log.level=warn",
    ]
