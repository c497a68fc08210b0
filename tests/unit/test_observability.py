"""deploy/observability: every metric the dashboard and the rules read is exported by a
real router, simulator (vLLM's names) or GPU health agent (DCGM's names); the rules and
every dashboard query pass the real Prometheus's ``promtool check rules``, and the rules'
arithmetic passes ``promtool test rules`` (deploy/observability/gpufleet-rules.test.yaml).

Metric names are read from PromQL by a small tokenizer (strings, label matchers, ranges,
grouping clauses, numbers and function calls removed; what is left are series names);
names that are recording rules are resolved to what their expressions read.
"""

from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from gpufleet.devcluster import build
from gpufleet.ports import free_port
from tests.router.peers import Sim, chat, get_status, router_config, serve_router, start_sim

ROOT = pathlib.Path(__file__).parents[2]
PACK = ROOT / "deploy" / "observability"
RULES = PACK / "gpufleet-rules.yaml"
RULES_TEST = PACK / "gpufleet-rules.test.yaml"
DASHBOARD = PACK / "gpufleet-dashboard.json"
# Grafana's interval variables, set by Grafana before the query reaches Prometheus.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}

_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NUMBER = re.compile(r"(?<![\w:])\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?![\w:])")
_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
             "group_left", "group_right", "inf", "nan", "Inf", "NaN"}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression reads."""
    text = _STRING.sub(" ", expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"(?:\boffset\s+-?|@\s*)[\w.()]+", " ", text)
    text = _GROUPING.sub(" ", text)
    text = re.sub(r"\$\w+", " ", text)
    text = _NUMBER.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        called = re.match(r"\s*\(", text[match.end() :]) is not None
        if not called and match.group() not in _KEYWORDS:
            names.add(match.group())
    return names


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        ('sum by (gpu, le) (rate(a_bucket{code="200",x=~"by|on"}[5m]))', {"a_bucket"}),
        ("vllm:kv_cache_usage_perc > 0.95", {"vllm:kv_cache_usage_perc"}),
        ("a / 3600 * 1e6 / (b:c:rate5m > 0)", {"a", "b:c:rate5m"}),
        ("max by (x) (a * on (x, y) group_left (z) b) or vector(0)", {"a", "b"}),
        ("histogram_quantile(0.95, sum(rate(h_bucket[$__rate_interval])) by (le))", {"h_bucket"}),
        ("count(a != 0 and changes(b[10m]) > 0) without (gpu)", {"a", "b"}),
        ('label_replace(a, "dst", "$1", "src", "(.*)") unless bool b offset 5m', {"a", "b"}),
        ("sum (rate (x_total [5m]))", {"x_total"}),
        ("a @ start() + b @ 1700000000", {"a", "b"}),
    ],
)
def test_metric_names_reads_series_only(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def _rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def _panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_queries() -> dict[str, str]:
    """ "<panel title> / <refId>" -> its PromQL, Grafana's variables as Grafana sets them."""
    queries = {}
    for panel in _panels(_dashboard()):
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            queries[f"{panel['title']} / {target['refId']}"] = expr
    return queries


def base_names(exprs: Mapping[str, str], recorded: Mapping[str, str]) -> dict[str, set[str]]:
    """Series name -> where it is read, recording rules resolved to what they read."""
    used: dict[str, set[str]] = {}
    pending = [(where, expr) for where, expr in exprs.items()]
    seen: set[str] = set()
    while pending:
        where, expr = pending.pop()
        for name in metric_names(expr):
            if name in recorded:
                if name not in seen:
                    seen.add(name)
                    pending.append((f"{where} -> {name}", recorded[name]))
            else:
                used.setdefault(name, set()).add(where)
    return used


def _exported(exposition: str) -> set[str]:
    """Sample names an exposition offers: its samples', and those its declared families
    give (a histogram with no observation yet still declares _bucket/_sum/_count)."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
                "summary": ("_sum", "_count", "")}  # fmt: skip
    names = set()
    for family in text_string_to_metric_families(exposition):
        names |= {s.name for s in family.samples}
        names |= {family.name + s for s in suffixes.get(family.type, ("",))}
    return names


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


@pytest.fixture(scope="module")
def sim() -> Iterator[Sim]:
    peer = start_sim("H100-80GB", tp=2)
    try:
        yield peer
    finally:
        peer.stop()


@pytest.fixture(scope="module")
def agent_exposition(sim: Sim) -> Iterator[str]:
    """The /metrics of a real ``gpufleet gpu-agent`` reading the simulator's GPUs, once
    it has judged them."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpufleet.cli", "gpu-agent", "--source", "twin",
         "--twin-url", sim.metrics_url, "--host", "127.0.0.1", "--port", str(port),
         "--interval", "0.2", "--hostname", "node-a"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"gpu-agent exited with {proc.returncode}"
            try:
                if get_status(f"http://127.0.0.1:{port}/healthz") == 200:
                    text = _get(f"http://127.0.0.1:{port}/metrics")
                    if "gpufleet_gpu_healthy" in text:
                        yield text
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError("the gpu-agent never judged the simulator's GPUs")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def _router_exposition(sim: Sim) -> str:
    """A real router over the simulator, after a priced, classed request of each kind."""
    raw = router_config([sim.backend() | {"costPerGpuHour": 2.0}])
    async with serve_router(raw) as (url, _), aiohttp.ClientSession() as session:
        for body in (chat(), chat(stream=True)):
            headers = {"x-gpufleet-class": "interactive"}
            async with session.post(url + "/v1/chat/completions", json=body,
                                    headers=headers) as response:  # fmt: skip
                assert response.status == 200
                await response.read()
        async with session.get(url + "/metrics") as response:
            return await response.text()


async def test_every_metric_the_pack_reads_is_exported(sim: Sim, agent_exposition: str) -> None:
    recorded = {rule["record"]: rule["expr"] for rule in _rules() if "record" in rule}
    exprs = {f"rule {r.get('record') or r['alert']}": r["expr"] for r in _rules()}
    exprs |= {f"panel {where}": expr for where, expr in dashboard_queries().items()}
    used = base_names(exprs, recorded)
    sources = {
        "router": _exported(await _router_exposition(sim)),
        "simulator (vLLM)": _exported(_get(sim.url + "/metrics")),
        "gpu-agent (DCGM)": _exported(agent_exposition),
    }
    missing = {name: sorted(where) for name, where in used.items()
               if not any(name in names for names in sources.values())}  # fmt: skip
    assert not missing, f"read but exported by none of {sorted(sources)}: {missing}"
    # Each source is needed: the pack reads the router, vLLM and the agent.
    for source, names in sources.items():
        assert used.keys() & names, f"nothing read from the {source}"
    # The tokenizer found the pack's reads (it cannot pass by finding nothing).
    assert {"gpufleet_router_completion_tokens_total", "vllm:kv_cache_usage_perc",
            "DCGM_FI_DEV_GPU_TEMP", "gpufleet_gpu_healthy"} <= used.keys()  # fmt: skip


def test_every_recording_rule_is_read() -> None:
    recorded = {rule["record"] for rule in _rules() if "record" in rule}
    exprs = [rule["expr"] for rule in _rules()] + list(dashboard_queries().values())
    read = set().union(*(metric_names(e) for e in exprs))
    assert recorded - read == set()


def test_rules_have_the_structure_prometheus_loads() -> None:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    assert set(document) == {"groups"}
    names = [group["name"] for group in document["groups"]]
    assert len(names) == len(set(names))
    for rule in _rules():
        assert ("record" in rule) != ("alert" in rule), rule
        assert isinstance(rule["expr"], str) and rule["expr"].strip()
        if "record" in rule:
            assert re.fullmatch(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", rule["record"]), rule
        else:
            assert rule["labels"]["severity"] in {"info", "warning", "critical"}
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_the_dashboard_is_a_grafana_10_dashboard_of_the_asked_panels() -> None:
    dashboard = _dashboard()
    assert dashboard["schemaVersion"] >= 38  # Grafana 10.0
    assert dashboard["uid"] and dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    panels = list(_panels(dashboard))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        box = panel["gridPos"]
        assert box["x"] + box["w"] <= 24, panel["title"]
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
    titles = " | ".join(p["title"] for p in panels).lower()
    for topic in ("goodput", "ttft", "tpot", "queue wait", "kv-cache", "$ per million",
                  "gpu health", "temperature"):  # fmt: skip
        assert topic in titles, topic


def _promtool() -> pathlib.Path:
    path = build.binary_path("promtool")
    if not path.is_file():
        pytest.skip("promtool is not built (`gpufleet dev-cluster build`)")
    return path


def _promtool_run(*args: str, cwd: pathlib.Path) -> str:
    done = subprocess.run([str(_promtool()), *args], capture_output=True, text=True,
                          timeout=60, check=False, cwd=cwd)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_promtool_checks_the_rules_and_every_dashboard_query(tmp_path: pathlib.Path) -> None:
    out = _promtool_run("check", "rules", str(RULES), cwd=tmp_path)
    assert f"SUCCESS: {len(_rules())} rules found" in out
    # Each dashboard query as a recording rule: Prometheus's own parser reads them.
    queries = dashboard_queries()
    rules = [{"record": f"dashboard:query_{i}:check", "expr": expr}
             for i, expr in enumerate(queries.values())]  # fmt: skip
    as_rules = tmp_path / "dashboard-queries.yaml"
    as_rules.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    assert f"SUCCESS: {len(rules)} rules found" in _promtool_run(
        "check", "rules", str(as_rules), cwd=tmp_path
    )


def test_promtool_a_bad_query_fails(tmp_path: pathlib.Path) -> None:
    bad = tmp_path / "bad.yaml"
    rule = {"record": "x:y:z", "expr": "sum by (gpu (rate(a[5m]))"}
    bad.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [rule]}]}))
    done = subprocess.run([str(_promtool()), "check", "rules", str(bad)],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode != 0


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    out = _promtool_run("test", "rules", RULES_TEST.name, cwd=PACK)
    assert "SUCCESS" in out
