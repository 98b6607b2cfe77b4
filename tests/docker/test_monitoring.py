"""Prometheus and Grafana of the production overlay, checked without a Docker engine: the
compose services and their files, the scrape configuration, and every query of the alert
rules and the dashboard names a metric that `/metrics` really exposes. With promtool (Debian:
apt-get install prometheus), the configuration and rules are checked and the alerts' unit
tests (alerts_test.yml) run."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from django.test import Client

from tests.conftest import require
from tests.docker.test_compose import DOCKER, load
from tests.monitoring.helpers import names, scrape
from tests.monitoring.test_metrics import activity  # noqa: F401 - a fixture

PROMETHEUS = DOCKER / "prometheus"
GRAFANA = DOCKER / "grafana"
PROMTOOL = shutil.which("promtool")
# Series Prometheus itself makes, not the app.
PROMETHEUS_SERIES = {"up"}

# PromQL words that are not metric names: functions, aggregations, keywords.
PROMQL_WORDS = {
    "sum", "max", "min", "avg", "count", "rate", "increase", "irate", "histogram_quantile",
    "time", "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
    "unless", "offset", "bool", "clamp_min", "clamp_max", "abs", "absent", "vector", "scalar",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (a regex reading, enough for ours)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1", expr)
    words = re.findall(r"(?<![\w.$])([a-zA-Z_:][\w:]*)\b(?!\s*\()", expr)
    return {w for w in words if w not in PROMQL_WORDS}


def test_metric_names_are_read_out_of_promql():
    expr = (
        'histogram_quantile(0.95, sum by (le, stage) (rate(tagger_x_bucket{a="b c"}[5m])))'
        " / on() max(tagger_y) and time() - tagger_z > 600"
    )
    assert metric_names(expr) == {"tagger_x_bucket", "tagger_y", "tagger_z"}


@pytest.fixture
def exposed(activity, api, redis_client) -> set[str]:  # noqa: F811
    """Every sample name `/metrics` answers after some activity (histograms' _bucket,
    _sum and _count, counters' _total)."""
    from monitoring.workers import worker_presence_record, worker_presence_remove

    api.get("/api/v1/tree-items/")
    worker_presence_record("exposed@test-host")
    try:
        scraped = names(scrape(Client()))
    finally:
        worker_presence_remove("exposed@test-host")
    assert {"tagger_workers_online", "tagger_queue_length", "tagger_http_requests_total"} <= scraped
    return scraped


def _alert_rules() -> list[dict]:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return [rule for group in rules["groups"] for rule in group["rules"]]


def _dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads((GRAFANA / "dashboards" / "tagger.json").read_text())
    return [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p["targets"]]


def test_every_alert_reads_metrics_the_app_exposes(exposed):
    for rule in _alert_rules():
        used = metric_names(rule["expr"])
        assert used, rule["alert"]
        assert used <= exposed | PROMETHEUS_SERIES, (rule["alert"], used - exposed)


def test_every_dashboard_query_reads_metrics_the_app_exposes(exposed):
    for title, expr in _dashboard_queries():
        used = metric_names(expr)
        assert used, title
        assert used <= exposed, (title, used - exposed)


def test_the_alerts_the_operators_asked_for():
    rules = {rule["alert"]: rule for rule in _alert_rules()}
    assert set(rules) == {
        "TaggerNoWorker", "TaggerConversionFailureRatio", "TaggerConversionQueuedTooLong",
        "TaggerBeatSilent", "TaggerMetricsDown",
    }  # fmt: skip
    assert rules["TaggerNoWorker"]["for"] == "5m"
    assert "[15m]" in rules["TaggerConversionFailureRatio"]["expr"]
    assert "> 0.2" in rules["TaggerConversionFailureRatio"]["expr"]
    assert "> 1800" in rules["TaggerConversionQueuedTooLong"]["expr"]
    for rule in rules.values():
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_the_dashboard_shows_what_the_operators_asked_for():
    dashboard = json.loads((GRAFANA / "dashboards" / "tagger.json").read_text())
    queries = " ".join(expr for _, expr in _dashboard_queries())
    for wanted in ("tagger_conversions_total", 'state="FAILURE"', "histogram_quantile(0.5,",
                   "histogram_quantile(0.95, sum by (le) (rate(tagger_conversion_duration",
                   "tagger_queue_length", "tagger_conversion_queue_wait_seconds_bucket",
                   "tagger_workers_online"):  # fmt: skip
        assert wanted in queries, wanted
    datasource = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == uid, panel["title"]
        assert all(t["datasource"]["uid"] == uid for t in panel["targets"]), panel["title"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_prometheus_scrapes_the_backend_with_the_bearer_token():
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["static_configs"] == [{"targets": ["backend:8000"]}]
    assert job["metrics_path"] == "/metrics"
    assert job["authorization"] == {
        "type": "Bearer", "credentials_file": "/run/secrets/metrics_token",
    }  # fmt: skip
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]


def test_the_prod_overlay_runs_prometheus_and_grafana():
    prod = load("docker-compose.prod.yml")
    services = prod["services"]
    prometheus, grafana = services["prometheus"], services["grafana"]
    # Each mounted file is in the repository.
    for service in (prometheus, grafana):
        for volume in service["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DOCKER / source).exists(), volume
        assert service["restart"] == "unless-stopped"
        assert "ports" not in service  # reached through the proxy (Grafana) or not at all
        assert service["healthcheck"]["test"]
    assert "./prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in prometheus["volumes"]
    assert prometheus["secrets"] == ["metrics_token"]
    assert prod["secrets"]["metrics_token"] == {"environment": "TAGGER_METRICS_TOKEN"}
    assert prometheus["depends_on"]["backend"]["condition"] == "service_healthy"
    assert {"prometheus-data", "grafana-data"} <= set(prod["volumes"])
    # Required secrets: the overlay refuses to start without them.
    backend = services["backend"]["environment"]
    assert backend["TAGGER_METRICS_TOKEN"].startswith("${TAGGER_METRICS_TOKEN:?")
    assert backend["DJANGO_ALLOWED_HOSTS"].endswith(",backend")
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"].startswith(
        "${GRAFANA_ADMIN_PASSWORD:?"
    )
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert services["proxy"]["depends_on"]["grafana"]["condition"] == "service_healthy"
    nginx = (DOCKER / "nginx.conf").read_text()
    assert re.search(r"location /grafana/ \{\s+[^}]*proxy_pass http://tagger_grafana;", nginx)
    assert "server grafana:3000;" in nginx


def test_every_compose_service_gets_the_token_production_settings_require():
    base = load("docker-compose.yml")
    assert "TAGGER_METRICS_TOKEN" in base["x-app"]["environment"]
    assert "TAGGER_METRICS_TOKEN=collectstatic-only" in (DOCKER / "Dockerfile").read_text()


def _promtool(*args, cwd: Path) -> subprocess.CompletedProcess:
    require(PROMTOOL is not None, "promtool is not installed (Debian: apt-get install prometheus)")
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_promtool_accepts_the_configuration_and_rules(tmp_path):
    # The container's paths, made this machine's.
    token = tmp_path / "metrics_token"
    token.write_text("token\n")
    shutil.copy(PROMETHEUS / "alerts.yml", tmp_path / "alerts.yml")
    config = (PROMETHEUS / "prometheus.yml").read_text()
    config = config.replace("/etc/prometheus/alerts.yml", str(tmp_path / "alerts.yml"))
    config = config.replace("/run/secrets/metrics_token", str(token))
    (tmp_path / "prometheus.yml").write_text(config)
    checked = _promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 5 rules found" in checked.stdout


def test_the_alerts_fire_when_and_only_when_they_should():
    tested = _promtool("test", "rules", "alerts_test.yml", cwd=Path(__file__).parent)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout
