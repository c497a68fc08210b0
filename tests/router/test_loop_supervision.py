"""The router's background loops never end unseen: a loop that fails is logged, started
again after a pause that doubles, and the cluster watches' failure is the configuration
error /readyz reports; the client libraries those loops use in worker threads are
imported before any loop runs (two threads importing requests for the first time at once
left one with a half-initialised module, and a router whose watches had ended for good
stayed unready with no error and nothing in its log)."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import aiohttp
import pytest
from aiohttp import web

from gpufleet.router import app, appkeys, config
from tests.router.peers import MODEL, router_config, serve_router

# Nothing listens there: these tests need a router, not answers.
NOWHERE = [{"url": "http://127.0.0.1:9", "model": MODEL, "gpu": "H100-80GB"}]


@pytest.mark.parametrize(
    ("failures", "delay"), [(1, 1.0), (2, 2.0), (3, 4.0), (5, 16.0), (6, 30.0), (40, 30.0)]
)
def test_a_failing_loop_waits_longer_each_time_up_to_the_bound(failures: int, delay: float) -> None:
    assert app.restart_delay(failures) == delay


async def test_a_loop_that_fails_is_started_again_and_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs: list[int] = []
    told: list[str] = []

    async def flaky(application: web.Application) -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            raise ImportError("cannot import name 'x' from partially initialized module 'y'")
        await asyncio.Event().wait()

    def failed(application: web.Application, exc: BaseException) -> None:
        told.append(str(exc))

    async with serve_router(router_config(NOWHERE)) as (_, application):
        context = app._loop(flaky, on_failure=failed)(application)
        await anext(context)
        for _ in range(40):
            if len(runs) == 2:
                break
            await asyncio.sleep(0.1)
        with pytest.raises(StopAsyncIteration):
            await anext(context)
    assert runs == [0, 1]
    assert told == ["cannot import name 'x' from partially initialized module 'y'"]
    assert "flaky failed; starting it again in 1s" in caplog.text


async def test_the_watches_failure_is_the_configuration_error_readyz_shows() -> None:
    async with serve_router(router_config(NOWHERE)) as (url, application):
        app._watches_failed(application, ImportError("half-initialised requests.utils"))
        async with aiohttp.ClientSession() as session, session.get(url + "/readyz") as r:
            body = await r.json()
    error = application[appkeys.ROUTER].config_state.error
    assert error == body["config_error"]
    assert error.startswith("watching the cluster failed (ImportError: half-initialised")


def test_creating_the_app_imports_what_the_loops_import_in_threads() -> None:
    raw = {"kubernetes": {"namespace": "n", "source": "pods", "pools": ["p"]},
           "policy": {"pools": ["p"]}}  # fmt: skip
    code = (
        "import sys\n"
        "from gpufleet.router import app, config\n"
        f"app.create_app(config.parse({raw!r}))\n"
        "print(sorted(m for m in ('requests', 'kubernetes.client', 'kubernetes.watch', "
        "'prometheus_api_client') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)  # fmt: skip
    assert done.stdout.split("\n")[0] == str(
        ["kubernetes.client", "kubernetes.watch", "prometheus_api_client", "requests"]
    )
    assert config.parse(raw).kubernetes is not None
