"""``gpufleet operator``: run the operator (Kopf: ModelPools, RoutingPolicies) with gpufleet's
settings.

Cluster-wide unless ``--namespace`` is given (repeatable). ``--liveness`` serves Kopf's
health endpoint, which fails when the ModelPool watch has missed changes. Run one
replica (Deployment strategy Recreate): Kopf peering is not leader election.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from gpufleet import cliargs, logsetup
from gpufleet import prometheustarget as target
from gpufleet.operatorconfig import ROUTER_DISCOVERY, OperatorConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = OperatorConfig()
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch only this namespace; repeatable",
    )
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="watch every namespace (the default)"
    )
    parser.add_argument("--kubeconfig", type=Path, help="default: in-cluster, then $KUBECONFIG")
    parser.add_argument(
        "--resync-seconds",
        type=cliargs.positive_float,
        default=defaults.resync_seconds,
        help="reconcile interval: every pool is reconciled at least this often",
    )
    parser.add_argument(
        "--workers",
        type=cliargs.positive_int,
        default=defaults.workers,
        help="ModelPools reconciled at once",
    )
    parser.add_argument(
        "--liveness",
        default="http://127.0.0.1:8080/healthz",
        help="health endpoint URL (in a pod: http://0.0.0.0:8080/healthz so the kubelet "
        "reaches it); 'none' to serve none",
    )
    parser.add_argument(
        "--watch-check-seconds",
        type=cliargs.positive_float,
        default=defaults.watch_check_seconds,
        help="how often the ModelPool watch is checked against a fresh list",
    )
    parser.add_argument(
        "--watch-grace-seconds",
        type=cliargs.positive_float,
        default=defaults.watch_grace_seconds,
        help="how long a change may be missing from the watch before liveness fails",
    )
    parser.add_argument(
        "--router-image",
        default=defaults.router_image,
        help="image of RoutingPolicy routers that name none in spec.router.image",
    )
    parser.add_argument(
        "--gpu-agent-image",
        default=defaults.gpu_agent_image,
        help="image of the gpu-agent sidecar in model-server pods (it runs gpufleet "
        "gpu-agent); default: the --router-image",
    )
    parser.add_argument(
        "--router-discovery",
        choices=ROUTER_DISCOVERY,
        default=defaults.router_discovery,
        help="how routers find model-server pods (pods: where no EndpointSlice controller runs)",
    )
    parser.add_argument(
        "--policy-poll-seconds",
        type=cliargs.positive_float,
        default=defaults.policy_poll_seconds,
        help="how often each RoutingPolicy's routers are asked for /stats",
    )
    parser.add_argument(
        "--allowed-image-prefix",
        dest="allowed_image_prefixes",
        action="append",
        metavar="PREFIX",
        help="a ModelPool's spec.serving.image must start with one of these (a repository: "
        "any tag or digest of it; ending in '/': anything under it; '*': any image); "
        "repeatable; default: " + ", ".join(defaults.allowed_image_prefixes),
    )
    parser.add_argument(
        "--allow-trust-remote-code",
        action="store_true",
        help="honour spec.serving.trustRemoteCode (vLLM runs the model repository's code)",
    )
    parser.add_argument(
        "--autoscale-seconds",
        type=cliargs.positive_float,
        default=defaults.autoscale_seconds,
        help="how often the autoscaler decides every ModelPool with autoscaling.mode gpufleet",
    )
    parser.add_argument(
        "--prometheus-url",
        default=defaults.prometheus_url,
        help="Prometheus the autoscaler reads vLLM's signals from; without one it only keeps "
        "replicas within minReplicas..maxReplicas and starts pools from zero",
    )
    parser.add_argument(
        "--prometheus-ca-file",
        type=Path,
        help="verify an https Prometheus against this CA bundle (default: the system CAs)",
    )
    parser.add_argument(
        "--prometheus-insecure-skip-verify",
        action="store_true",
        help="do not verify an https Prometheus's certificate",
    )
    parser.add_argument(
        "--no-network-policies",
        dest="network_policies",
        action="store_false",
        help="render no NetworkPolicy for ModelPools: for clusters whose network plugin "
        "enforces none (vLLM's port is then open to every pod that can reach it)",
    )
    parser.add_argument(
        "--metrics-scraper-namespace",
        default=defaults.metrics_scraper_namespace,
        help="namespace of the metrics scraper (Prometheus) that pools' NetworkPolicies admit",
    )
    parser.add_argument(
        "--metrics-scraper-label",
        dest="metrics_scraper_labels",
        action="append",
        metavar="KEY=VALUE",
        help="a pod label of the metrics scraper that pools' NetworkPolicies admit; "
        "repeatable; default: " + ", ".join(defaults.metrics_scraper_labels),
    )
    parser.add_argument(
        target.FLAG,
        action="store_true",
        help="allow a loopback, link-local or unspecified Prometheus host, here and in "
        "RoutingPolicies (refused by default: from a pod that is the pod itself or the "
        "node's metadata service); for the dev cluster, where every pod is on loopback",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log every reconcile (--log-level DEBUG)"
    )
    logsetup.add_arguments(parser)


def config_from(args: argparse.Namespace) -> OperatorConfig:
    return OperatorConfig(
        namespaces=tuple(args.namespace),
        kubeconfig=args.kubeconfig,
        resync_seconds=args.resync_seconds,
        workers=args.workers,
        watch_check_seconds=args.watch_check_seconds,
        watch_grace_seconds=args.watch_grace_seconds,
        router_image=args.router_image,
        gpu_agent_image=args.gpu_agent_image,
        router_discovery=args.router_discovery,
        policy_poll_seconds=args.policy_poll_seconds,
        allowed_image_prefixes=tuple(
            args.allowed_image_prefixes or OperatorConfig().allowed_image_prefixes
        ),
        allow_trust_remote_code=args.allow_trust_remote_code,
        autoscale_seconds=args.autoscale_seconds,
        prometheus_url=args.prometheus_url,
        prometheus_ca_file=args.prometheus_ca_file,
        prometheus_insecure_skip_verify=args.prometheus_insecure_skip_verify,
        allow_local_prometheus=args.allow_local_prometheus,
        network_policies=args.network_policies,
        metrics_scraper_namespace=args.metrics_scraper_namespace,
        metrics_scraper_labels=tuple(
            args.metrics_scraper_labels or OperatorConfig().metrics_scraper_labels
        ),
    )


def run(args: argparse.Namespace) -> int:
    try:
        config = config_from(args)
    except ValueError as exc:
        raise SystemExit(f"gpufleet operator: {exc}") from exc
    if config.kubeconfig is not None:
        os.environ["KUBECONFIG"] = str(config.kubeconfig)  # Kopf's own login reads it
    import kopf

    import gpufleet.controller.handlers  # noqa: F401  (registers the handlers)

    logsetup.configure(level="DEBUG" if args.verbose else args.log_level, fmt=args.log_format)
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    kopf.run(
        clusterwide=not config.namespaces,
        namespaces=config.namespaces,
        liveness_endpoint=None if args.liveness == "none" else args.liveness,
        standalone=True,
        memo=kopf.Memo(gpufleet_config=config),
    )
    return 0
