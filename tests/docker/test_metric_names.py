"""The dashboard and the alert rules query only metric names a live `serve` exports on /metrics.

The service is the real one: a tiny checkpoint trained in seconds on the demo camera's own test
pattern (docker/demo-camera.sh), then `serve --stream` of that clip, played in a loop."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from deploy import DOCKER, tool

DASHBOARD = DOCKER / "grafana" / "dashboards" / "mnad.json"
ALERTS = DOCKER / "alerts.yml"
PROMETHEUS_OWN = {"up"}  # recorded by Prometheus itself for each target
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset"}
BIN = Path(sys.executable).parent


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (strings, matchers, ranges, grouping labels, functions
    and Grafana variables removed); Grafana's label_values(metric, label) counts its metric."""
    expr = re.sub(r"label_values\(\s*([A-Za-z_:][\w:]*)\s*,[^)]*\)", r"\1", expr)
    expr = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', "", expr)
    expr = re.sub(r"\$\{[^}]*\}|\$\w+", "", expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for m in re.finditer(r"(?<![\w.])[A-Za-z_:][\w:]*", expr):
        if m.group() not in KEYWORDS and not expr[m.end() :].lstrip().startswith("("):
            names.add(m.group())
    return names


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    for var in dashboard["templating"]["list"]:
        query = var.get("query")
        exprs.append(query["query"] if isinstance(query, dict) else query)
    return exprs


def rule_names() -> set[str]:
    rules = [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]
    names = set().union(*(metric_names(r["expr"]) for r in rules))
    for r in rules:  # annotations may query too ({{ query "..." }})
        names |= set(re.findall(r"\bmnad_\w+", json.dumps(r.get("annotations", {}))))
    return names


def exported_names(text: str) -> set[str]:
    """Every series name /metrics can carry: sample names, and from each `# TYPE` line the names of
    its type (histogram: _bucket, _count, _sum), so labelled metrics without samples yet count too."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            suffixes = {"histogram": ("_bucket", "_count", "_sum"), "summary": ("", "_count", "_sum")}
            names |= {name + s for s in suffixes.get(kind, ("",))}
        elif line and not line.startswith("#"):
            names.add(re.match(r"[A-Za-z_:][\w:]*", line).group())
    return names


def test_name_extraction() -> None:
    assert metric_names('histogram_quantile(0.95, sum by (le) (rate(a_bucket{x="y"}[$__rate_interval])))') == {
        "a_bucket"
    }
    assert metric_names("sum by (s) (rate(a_total[2m])) > 0.05 * sum without (s) (b_total offset 5m)") == {
        "a_total", "b_total"
    }  # fmt: skip
    assert metric_names('up{job="mnad"} == 0') == {"up"}
    assert metric_names("label_values(mnad_stream_up, stream)") == {"mnad_stream_up"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def live_metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """/metrics of a `serve` that has scored frames of a looping stream."""
    tmp = tmp_path_factory.mktemp("live")
    ffmpeg = tool("ffmpeg", "apt-get install ffmpeg")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    clip = tmp / "demo.mkv"
    subprocess.run(["sh", str(DOCKER / "demo-camera.sh"), str(clip)], check=True, timeout=120,
                   env={**env, "PATH": f"{Path(ffmpeg).parent}:{env['PATH']}", "DEMO_FRAMES": "40"})  # fmt: skip
    models = tmp / "models"
    subprocess.run(
        [str(BIN / "train"), str(clip), "--out", str(models / "demo.safetensors"), "--epochs", "1",
         "--base-width", "4", "--height", "32", "--width", "48", "--holdout", "0.5", "--device", "cpu"],
        check=True, env=env, capture_output=True, timeout=600,
    )  # fmt: skip
    port = free_port()
    log = tmp / "serve.log"
    cmd = [str(BIN / "serve"), "--port", str(port), "--models-dir", str(models), "--data-dir", str(tmp / "data"),
           "--threads", "1", "--device", "cpu", "--stream", str(clip)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, cwd=tmp)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, f"serve exited: {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"no scored frame in 120 s: {log.read_text()[-2000:]}"
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
                if re.search(r"^mnad_anomaly_score\{", text, re.MULTILINE):
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        yield text
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_dashboard_queries_only_exported_metrics(live_metrics: str) -> None:
    used = set().union(*(metric_names(e) for e in dashboard_exprs()))
    exported = exported_names(live_metrics) | PROMETHEUS_OWN
    assert {"mnad_anomaly_score", "mnad_frames_read_total", "mnad_inference_seconds_bucket"} <= used
    assert used <= exported, f"the dashboard queries metrics the service does not export: {used - exported}"


def test_alert_rules_query_only_exported_metrics(live_metrics: str) -> None:
    used = rule_names()
    exported = exported_names(live_metrics) | PROMETHEUS_OWN
    assert {"mnad_stream_up", "mnad_frames_dropped_total", "mnad_alert_open"} <= used
    assert used <= exported, f"the alert rules query metrics the service does not export: {used - exported}"


def test_live_stream_has_per_stream_series(live_metrics: str) -> None:
    for name in ("mnad_stream_up", "mnad_frames_read_total", "mnad_frames_scored_total", "mnad_anomaly_score",
                 "mnad_alert_open", "mnad_model_info"):  # fmt: skip
        assert re.search(rf"^{name}\{{", live_metrics, re.MULTILINE), f"{name} has no sample"
