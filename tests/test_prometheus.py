"""What deploy/ ships for operators: the alert rules pass promtool (syntax and unit tests),
and every metric the Grafana dashboard or a rule names is one a real Prometheus scraped
from the running service. Prometheus and promtool are Debian's `prometheus` package, which
`make install` installs."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
import yaml

from tests.support.fake_server import FAST_RETRIES, fails_first
from tests.support.jobs import submit, wait_until_finished
from tests.support.network import free_port
from tests.support.paths import ROOT
from tests.support.prometheus import samples_of
from tests.support.waiting import wait_for
from tests.support.webhooks import WEBHOOKS_ON

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "llmjobs.json"


def binary(name: str) -> str:
    path = shutil.which(name)
    if not path:
        pytest.fail(f"{name} is not installed: `make install` installs it (Debian package `prometheus`)")
    return path


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([binary("promtool"), *args], cwd=PROMETHEUS_DIR, capture_output=True, text=True, timeout=60)


# --- PromQL: which metric names an expression reads ---------------------------------------

# Words that stand where a metric name could, but are operators or modifiers.
PROMQL_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression (or a Grafana query, with its $variables) selects.
    Strings, label matchers, ranges and grouping label lists are taken out first; what is
    left is names, functions (followed by `(`), keywords and numbers."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for word in re.finditer(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*", expr):
        if word.group() not in PROMQL_KEYWORDS and not expr[word.end() :].lstrip().startswith("("):
            names.add(word.group())
    return names


def test_metric_names_are_read_from_promql():
    expr = (
        'histogram_quantile(0.95, sum by (le, queue) (rate(llmjobs_a_bucket{queue=~"x|y", q="a{b}"}[$__interval])))'
        " / on(queue) group_left(model) llmjobs_b offset 5m > 1e-6 and sum(increase(llmjobs_c[1d])) by (model)"
        " unless max_over_time(deriv(llmjobs_d[5m])[10m:1m]) > bool 0 or up == 0"
    )
    assert metric_names(expr) == {"llmjobs_a_bucket", "llmjobs_b", "llmjobs_c", "llmjobs_d", "up"}


def dashboard_exprs() -> list[str]:
    def walk(panels: list[dict]) -> list[str]:
        found = []
        for panel in panels:
            found += [target["expr"] for target in panel.get("targets", [])]
            found += walk(panel.get("panels", []))  # panels inside a collapsed row
        return found

    return walk(json.loads(DASHBOARD.read_text())["panels"])


def rule_exprs() -> list[str]:
    groups = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


# --- the rules and the config, with promtool ------------------------------------------------


def test_rules_and_config_pass_promtool():
    for args in (("check", "rules", "alerts.yml"), ("check", "config", "prometheus.yml")):
        checked = promtool(*args)
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_alert_rules_pass_their_unit_tests():
    tested = promtool("test", "rules", "alerts_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout
    alerts = {rule["alert"] for group in yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())["groups"]
              for rule in group["rules"]}  # fmt: skip
    cases = yaml.safe_load((PROMETHEUS_DIR / "alerts_test.yml").read_text())["tests"]
    tested_alerts = {case["alertname"] for test in cases for case in test.get("alert_rule_test", [])}
    assert tested_alerts == alerts, "every alert has a unit test"


# --- a real Prometheus scraping the running service ------------------------------------------


def prometheus_config(api: str, directory: Path) -> Path:
    """deploy/prometheus/prometheus.yml, pointed at the test's API and scraping every second."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(PROMETHEUS_DIR / name) for name in config["rule_files"]]
    (scrape,) = config["scrape_configs"]
    (targets,) = scrape["static_configs"]
    targets["targets"] = [api.removeprefix("http://")]
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def names_in_prometheus(prometheus: str) -> set[str]:
    answer = requests.get(f"{prometheus}/api/v1/label/__name__/values", timeout=10).json()
    return set(answer["data"])


def test_every_metric_the_dashboard_and_rules_name_is_scraped(start_api, start_worker, processes, receiver, tmp_path):
    env = {**FAST_RETRIES, **WEBHOOKS_ON, "CLIENT_BUDGETS": "alice=100/day"}  # a budget's gauges too
    api = start_api(**env)
    start_worker(**env)

    # Jobs that make every kind of series exist: tokens and cost, an error and its retry, a
    # 429 that closes the provider gate (calls held back), a webhook delivery.
    jobs = [
        submit(api, {"prompt": "plain [[fake: tokens=5]]", "priority": "high"}),
        submit(api, {"prompt": "hooked [[fake: tokens=5]]", "callback_url": receiver.url}),
        submit(api, {"prompt": fails_first(1, error=500)}),
        submit(api, {"prompt": fails_first(1, error=429, retry_after=1), "priority": "low"}),
        submit(api, {"prompt": "refused [[fake: error=400]]"}),
    ]
    for job in jobs:
        wait_until_finished(api, job["id"])
    wait_for(lambda: receiver.deliveries, what="the webhook")

    port = free_port()
    prometheus = f"http://127.0.0.1:{port}"
    config = prometheus_config(api, tmp_path)
    process = processes.start(
        "prometheus",
        [binary("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        {"PATH": "/usr/bin:/bin"},
    )  # fmt: skip

    # What the service exposes now (every job ended, so it no longer changes by name);
    # Prometheus has scraped it once it knows all these names.
    exposed = {sample[0] for sample in samples_of(requests.get(f"{api}/metrics", timeout=10).text)}

    def scraped() -> set[str] | None:
        assert process.poll() is None, processes.log_of(process)
        try:
            names = names_in_prometheus(prometheus)
        except requests.RequestException:
            return None  # not listening yet
        return names if exposed <= names else None

    names = wait_for(scraped, timeout=60, interval=0.5, what="Prometheus to scrape the service")
    rules = requests.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    assert {rule["name"] for group in rules for rule in group["rules"]} >= {"LLMJobsQueueWithoutWorker"}

    used = {name for expr in dashboard_exprs() + rule_exprs() for name in metric_names(expr)}
    assert "llmjobs_job_duration_seconds_bucket" in used and "llmjobs_llm_calls_held_total" in used
    assert used - names == set(), f"named by the dashboard or a rule, but never scraped: {sorted(used - names)}"
