"""``gpufleet sim``: serve one simulated vLLM replica, or ``gpufleet sim fleet`` many;
``gpufleet sim calibrate`` prints the performance model against published measurements.

Start-up follows vLLM: the API port is claimed at once but listens only after the model
load (``--load-seconds``, by default the replica's ``load_seconds``; wall time = simulated
/ ``--speed``), so connects are refused meanwhile; the DCGM metrics port serves at once.
With ``--gpu-uuids-file`` it lists its GPUs' UUIDs there at start, as ``gpufleet worker``
does for the GPU health agent on a real node (the twin's pod runner passes it).
Exit codes: 0 after a clean stop (SIGINT/SIGTERM, also during the load), 2 for settings
the planner rejects or bad flags, 1 when a port cannot be bound.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import sys
from pathlib import Path

import pydantic
from aiohttp import web

from gpufleet import cliargs, podgpus
from gpufleet.hardware import catalog
from gpufleet.planning import models
from gpufleet.sim import calibration, faults, fleet, replica, server
from gpufleet.sim.state import STATE, SimSettings

DEFAULT_HOST = "127.0.0.1"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = (
        "%(prog)s --gpu GPU --model MODEL [options]\n"
        "       %(prog)s fleet --fleet FILE [--out FILE]\n"
        "       %(prog)s calibrate"
    )
    sub = parser.add_subparsers(dest="sim_command", metavar="{fleet,calibrate}")
    fleet_parser = sub.add_parser(
        "fleet",
        help="start several simulators from a fleet file",
        description="Start one simulator per replica of a fleet file and write the "
        "router's static backend list.",
    )
    fleet.add_arguments(fleet_parser)
    sub.add_parser(
        "calibrate",
        help="the model against published vLLM measurements",
        description="Print the performance model's figures next to published vLLM "
        "measurements and the error of each.",
    )
    add_replica_arguments(parser)
    add_fault_arguments(parser)


def add_replica_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--gpu", help="GPU generation, e.g. H100-80GB (required without fleet or calibrate)"
    )
    parser.add_argument(
        "--model",
        help="catalog model name or Hugging Face id (required without fleet or calibrate)",
    )
    parser.add_argument(
        "--served-model-name", help="model name the API answers to (default: --model)"
    )
    parser.add_argument(
        "--tp",
        "--tensor-parallel-size",
        dest="tp",
        type=cliargs.positive_int,
        help="tensor-parallel size (default: the planner's choice)",
    )
    parser.add_argument("--dtype", default="bf16", help="weight format")
    parser.add_argument("--kv-cache-dtype", default="auto", help="KV-cache precision")
    parser.add_argument(
        "--max-model-len",
        type=cliargs.positive_int,
        help="longest sequence (default: the model's context)",
    )
    parser.add_argument(
        "--gpu-memory-utilization",
        type=cliargs.fraction,
        default=0.9,
        help="share of GPU memory for weights and KV cache",
    )
    parser.add_argument(
        "--max-num-seqs", type=cliargs.positive_int, default=256, help="sequences per batch at most"
    )
    parser.add_argument(
        "--max-num-batched-tokens",
        type=cliargs.positive_int,
        help="tokens per engine step at most (default: vLLM's for the GPU)",
    )
    parser.add_argument("--no-prefix-caching", action="store_true", help="turn prefix caching off")
    parser.add_argument("--host", default=DEFAULT_HOST, help="listen address")
    parser.add_argument("--port", type=cliargs.port, default=8000, help="OpenAI API port")
    parser.add_argument(
        "--metrics-port", type=cliargs.port, help="DCGM-exporter port (default: none)"
    )
    parser.add_argument(
        "--gpu-uuids-file", type=Path, help="list the GPUs' UUIDs here at start, as the worker does"
    )
    parser.add_argument(
        "--speed", type=cliargs.positive_float, default=1.0, help="simulated time / wall time"
    )
    parser.add_argument(
        "--load-seconds",
        type=cliargs.non_negative_float,
        help="simulated model-load seconds before the API listens; 0 = at once "
        "(default: engine start-up + weights per GPU / the generation's load rate)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (output lengths, faults)")
    parser.add_argument(
        "--eos-median",
        type=cliargs.non_negative_int,
        default=0,
        help="median drawn output length; 0 = max_tokens",
    )
    parser.add_argument(
        "--legacy-metric-names",
        action="store_true",
        help="also export the older vLLM metric names (vllm:gpu_cache_usage_perc, …)",
    )


def add_fault_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("faults (also settable at POST /admin/faults)")
    group.add_argument(
        "--error-rate", type=cliargs.share, default=0.0, help="share of requests answered 500"
    )
    group.add_argument(
        "--oom-rate",
        type=cliargs.share,
        default=0.0,
        help="share answered 500 as a CUDA out of memory",
    )
    group.add_argument(
        "--hang", type=cliargs.between(0, 3600), default=0.0, help="seconds before headers"
    )
    group.add_argument(
        "--die-after-chunks",
        type=cliargs.non_negative_int,
        help="cut every stream after this many chunks",
    )
    group.add_argument(
        "--slowdown",
        type=cliargs.between(1, 1000),
        default=1.0,
        help="step time multiplier (1 to 1000)",
    )
    group.add_argument(
        "--refuse-connections", action="store_true", help="stop listening on the API port"
    )
    group.add_argument("--unhealthy", action="store_true", help="answer /health with 503")
    group.add_argument(
        "--gpu-fault-index",
        type=cliargs.non_negative_int,
        default=0,
        help="GPU the GPU faults hit",
    )
    group.add_argument(
        "--gpu-temperature", type=cliargs.between(0, 150), help="°C the GPU reads (overheat)"
    )
    group.add_argument(
        "--gpu-ecc-uncorrected",
        type=cliargs.non_negative_int,
        default=0,
        help="volatile uncorrectable ECC errors the GPU reports",
    )
    group.add_argument(
        "--gpu-ecc-corrected",
        type=cliargs.non_negative_int,
        default=0,
        help="volatile correctable ECC errors the GPU reports",
    )
    group.add_argument("--gpu-xid", type=int, help="report one XID error at start")


def run(args: argparse.Namespace) -> int:
    if args.sim_command == "fleet":
        return fleet.run(args)
    if args.sim_command == "calibrate":
        print(format_calibration(calibration.table()))
        return 0
    try:
        settings = settings_from(args)
    except (
        replica.ReplicaError,
        pydantic.ValidationError,
        ValueError,
        catalog.UnknownGpu,
        models.UnknownModel,
    ) as exc:
        print(f"gpufleet sim: {exc}", file=sys.stderr)
        return 2
    if args.gpu_uuids_file is not None:
        list_gpus(args.gpu_uuids_file, settings)
    try:
        import uvloop

        uvloop.run(serve(settings, host=args.host, port=args.port, metrics_port=args.metrics_port))
    except OSError as exc:
        print(f"gpufleet sim: {exc}", file=sys.stderr)
        return 1
    return 0


def list_gpus(path: Path, settings: SimSettings) -> None:
    try:
        podgpus.write(path, settings.gpu_uuids(), writer="gpufleet sim")
    except OSError as exc:  # as the worker: the health agent then judges nothing
        print(f"gpufleet sim: cannot list the GPUs in {path}: {exc}", file=sys.stderr)


def settings_from(args: argparse.Namespace) -> SimSettings:
    """Validated settings from parsed flags; raises ``ReplicaError``, ``ValueError``,
    ``catalog.UnknownGpu`` or ``models.UnknownModel``."""
    if not args.gpu or not args.model:
        raise ValueError("--gpu and --model are required")
    spec = replica.ReplicaSpec(
        model=models.resolve(args.model).name,
        gpu=catalog.resolve(args.gpu).name,
        tensor_parallel_size=args.tp,
        dtype=args.dtype,
        kv_cache_dtype=args.kv_cache_dtype,
        max_model_len=args.max_model_len,
        gpu_memory_utilization=args.gpu_memory_utilization,
        max_num_seqs=args.max_num_seqs,
        max_num_batched_tokens=args.max_num_batched_tokens,
        enable_prefix_caching=not args.no_prefix_caching,
    )
    fault_config = faults.FaultConfig(
        error_rate=args.error_rate,
        oom_rate=args.oom_rate,
        hang_s=args.hang,
        die_after_chunks=args.die_after_chunks,
        slowdown=args.slowdown,
        refuse_connections=args.refuse_connections,
        unhealthy=args.unhealthy,
        gpu_fault_index=args.gpu_fault_index,
        gpu_temperature_c=args.gpu_temperature,
        gpu_ecc_uncorrected=args.gpu_ecc_uncorrected,
        gpu_ecc_corrected=args.gpu_ecc_corrected,
        gpu_xid=args.gpu_xid,
    )
    built = replica.build(spec)
    return SimSettings(
        replica=built,
        served_model_name=args.served_model_name or args.model,
        speed=args.speed,
        load_seconds=built.load_seconds if args.load_seconds is None else args.load_seconds,
        seed=args.seed,
        eos_median_tokens=args.eos_median,
        legacy_metric_names=args.legacy_metric_names,
        faults=fault_config,
        # Distinct per simulator on one host, stable across its restarts (a pod keeps its IP).
        gpu_uuid_seed=f"{socket.gethostname()}/{args.host}:{args.port}",
    )


class _Listener:
    """The API listener: its port claimed from the start, listening once the model has
    loaded (``open``) and while the refuse-connections fault is off.

    vLLM binds its API socket before building the engine and listens only when the engine
    is up (vllm/entrypoints/openai/api_server.py, ``setup_server``), so a port clash fails
    at once and connects are refused during the load; the first listen uses that socket.
    """

    def __init__(self, runner: web.AppRunner, sock: socket.socket, *, refuse: bool) -> None:
        self._runner = runner
        self._sock: socket.socket | None = sock
        self._host, self._port = sock.getsockname()[:2]
        self._loaded = False
        self._refuse = refuse
        self._site: web.BaseSite | None = None
        self._lock = asyncio.Lock()

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    async def open(self) -> None:
        self._loaded = True
        await self._sync()

    async def apply(self, refuse: bool) -> None:
        self._refuse = refuse
        await self._sync()

    def close(self) -> None:
        """Release the claimed socket if it never listened (the runner stops the sites)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def _sync(self) -> None:
        async with self._lock:
            listen = self._loaded and not self._refuse
            if not listen and self._site is not None:
                await self._site.stop()
                self._site = None
            elif listen and self._site is None:
                self._site = self._new_site()
                await self._site.start()

    def _new_site(self) -> web.BaseSite:
        if self._sock is None:
            return web.TCPSite(self._runner, self._host, self._port)
        sock, self._sock = self._sock, None
        return web.SockSite(self._runner, sock)


def claim(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` and not listening: connects to it are refused."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


async def _load(settings: SimSettings, stop: asyncio.Event) -> bool:
    """Wait out the model load in wall time; False when stopped first."""
    if settings.load_seconds > 0:
        wall = settings.load_seconds / settings.speed
        print(
            f"gpufleet sim: loading {settings.served_model_name} for "
            f"{settings.load_seconds:.1f} s ({wall:.2f} s wall at speed {settings.speed:g})",
            flush=True,
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), wall)
    return not stop.is_set()


async def serve(settings: SimSettings, *, host: str, port: int, metrics_port: int | None) -> None:
    """Load the model, then serve until SIGINT or SIGTERM (which also end the load)."""
    app = server.create_app(settings)
    api = web.AppRunner(app, handle_signals=False, access_log=None)
    await api.setup()
    try:
        listener = _Listener(api, claim(host, port), refuse=settings.faults.refuse_connections)
    except OSError:
        await api.cleanup()
        raise
    state = app[STATE]
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[None]] = set()

    def on_faults(config: faults.FaultConfig) -> None:
        task = loop.create_task(listener.apply(config.refuse_connections))
        pending.add(task)
        task.add_done_callback(pending.discard)

    state.fault_listeners.append(on_faults)
    dcgm: web.AppRunner | None = None
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        if metrics_port is not None:
            dcgm = web.AppRunner(server.create_dcgm_app(app), handle_signals=False, access_log=None)
            await dcgm.setup()
            await web.TCPSite(dcgm, host, metrics_port).start()
        if await _load(settings, stop):
            await listener.open()
            print(
                f"gpufleet sim: serving {settings.served_model_name} on {listener.url}", flush=True
            )
            await stop.wait()
    finally:
        listener.close()
        with contextlib.suppress(Exception):
            if dcgm is not None:
                await dcgm.cleanup()
        await api.cleanup()


def format_calibration(rows: list[calibration.Row]) -> str:
    """The calibration table: point, published, simulated, error (and its tolerance)."""
    header = f"{'point':26s} {'published':>10s} {'simulated':>10s} {'error':>7s} {'tol':>5s}"
    lines = [header + "  source"]
    for row in rows:
        flag = "" if abs(row.error) <= row.tolerance else "  OUT OF TOLERANCE"
        lines.append(
            f"{row.point:26s} {row.published:10.4g} {row.simulated:10.4g} "
            f"{row.error:+7.1%} {row.tolerance:5.0%}  {row.source}{flag}"
        )
    return "\n".join(lines)
