"""The metrics the code registers, the ones the alert rules and the dashboard use, and the
ones docs/metrics.md lists, are the same metrics (deploy/monitoring, shared/metrics)."""
import importlib
import json
import re
from pathlib import Path

import pytest
import yaml

from deploy import monitoring
from shared.catalog import SERVICES
from shared.metrics import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"
DOCS = ROOT / "docs" / "metrics.md"
# Series Prometheus makes itself, not the services.
PROMETHEUS_OWN = {"up"}
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"),
            "gauge": ("",), "info": ("_info",), "summary": ("_count", "_sum", "")}


def registered_families():
    """``{family name: type}`` of everything a service process registers."""
    for service in SERVICES:
        importlib.import_module(service.entry.split(":")[0])
    return {family.name: family.type for family in REGISTRY.collect()}


def exposed_names():
    """Every sample name a scrape can show (a counter's ``_total``, a histogram's three)."""
    return {name + suffix for name, kind in registered_families().items()
            for suffix in SUFFIXES[kind]}


def metric_names(expr):
    """The metric names a PromQL expression reads (identifiers followed by ``{``, ``[``,
    an operator or its end, that look like ours or the client library's)."""
    return {name for name in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr)
            if name.startswith(("paysys_", "process_", "python_")) or name in PROMETHEUS_OWN}


def rule_expressions():
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    return {rule["alert"]: rule["expr"] for group in rules["groups"] for rule in group["rules"]}


def dashboard_expressions():
    board = json.loads((MONITORING / "dashboard.json").read_text())
    return {"{} / {}".format(panel["title"], target["refId"]): target["expr"]
            for panel in board["panels"] for target in panel.get("targets", ())}


@pytest.mark.parametrize("source", ["alerts.yml", "dashboard.json"])
def test_every_metric_the_rules_and_the_dashboard_read_is_one_the_code_registers(source):
    expressions = rule_expressions() if source == "alerts.yml" else dashboard_expressions()
    assert expressions
    known = exposed_names() | PROMETHEUS_OWN
    unknown = {where: sorted(metric_names(expr) - known)
               for where, expr in expressions.items() if metric_names(expr) - known}
    assert unknown == {}
    assert all(metric_names(expr) for expr in expressions.values())


def test_the_alerts_cover_what_operators_must_hear_of():
    alerts = set(rule_expressions())
    assert {"PaysysNoQuorum", "PaysysOutboxLag", "PaysysWebhookBacklog", "PaysysRpcErrorRate",
            "PaysysRpcLatencyP99", "PaysysCircuitBreakerOpen"} <= alerts


def test_docs_list_every_registered_metric_and_every_alert():
    docs = DOCS.read_text()
    listed = set(re.findall(r"`([a-z_:][a-z0-9_:]*)`", docs))
    missing = []
    for name, kind in registered_families().items():
        exposed = name + "_total" if kind == "counter" else name
        if exposed not in listed:
            missing.append(exposed)
    assert missing == [], "registered but not in docs/metrics.md"
    assert sorted(set(rule_expressions()) - set(re.findall(r"`(Paysys\w+)`", docs))) == []


def test_no_counter_breaks_the_naming_conventions():
    for name, kind in registered_families().items():
        if not name.startswith("paysys_"):
            continue
        assert not name.endswith("_total"), name  # the client adds it to counters
        assert not re.search(r"_(ms|milliseconds|minutes|kb|mb)(_|$)", name), (
            "{}: base units (seconds, bytes)".format(name))
        if kind == "histogram":
            assert name.endswith("_seconds"), name


# --- The dashboard, checked for what Grafana needs to load it --------------------------
# Grafana publishes no JSON schema of its dashboards in a package this project can install
# (the @grafana/schema npm package holds TypeScript types only, and Grafana itself is not
# packaged by Debian), so these check the structure Grafana reads.


@pytest.fixture(scope="module")
def board():
    return json.loads((MONITORING / "dashboard.json").read_text())


def test_the_dashboard_is_the_generated_one(board):
    assert board == monitoring.dashboard()


def test_the_dashboard_has_what_grafana_requires_at_its_top(board):
    assert isinstance(board["title"], str) and board["title"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{8,40}", board["uid"])
    assert isinstance(board["schemaVersion"], int) and board["schemaVersion"] >= 36
    assert board["time"] == {"from": "now-1h", "to": "now"}
    [variable] = board["templating"]["list"]
    assert variable["type"] == "datasource" and variable["query"] == "prometheus"


def test_every_panel_has_a_unique_id_a_place_and_queries_on_the_prometheus_variable(board):
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) and i > 0 for i in ids)
    places = set()
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert set(grid) == {"h", "w", "x", "y"}
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24 and grid["h"] > 0
        cells = {(grid["x"] + dx, grid["y"] + dy)
                 for dx in range(grid["w"]) for dy in range(grid["h"])}
        assert not cells & places, "{} overlaps another panel".format(panel["title"])
        places |= cells
        if panel["type"] == "row":
            assert panel["panels"] == [] and "targets" not in panel
            continue
        assert panel["type"] in {"timeseries", "stat"}
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs))
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
            assert target["expr"].strip() and target["legendFormat"]


def test_the_scrape_config_names_each_process_on_its_metrics_port():
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    [job] = config["scrape_configs"]
    targets = {group["labels"]["process"]: group["targets"] for group in job["static_configs"]}
    assert targets["auth"] == ["127.0.0.1:9400"]
    assert targets["gateway"] == ["127.0.0.1:9408"]
    assert len(targets) == 9
    assert config["rule_files"] == ["alerts.yml"]
