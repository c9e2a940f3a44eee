"""docker-compose.yml read as Compose would merge it: each secret goes only to the services that use it."""

from __future__ import annotations

import yaml

from tests.conftest import ROOT


def test_the_llm_key_goes_only_to_the_worker():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    given = {name for name, service in services.items() if "ANTHROPIC_API_KEY" in (service.get("environment") or {})}
    assert given == {"worker"}  # not the API, the scheduler or Redis
    assert "${ANTHROPIC_API_KEY" in services["worker"]["environment"]["ANTHROPIC_API_KEY"]
    assert services["worker"]["command"] == ["python", "worker.py"]  # every queue, webhook deliveries included


def test_the_monitoring_profile_adds_prometheus_and_grafana_and_changes_nothing_else():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    by_default = {name for name, service in services.items() if not service.get("profiles")}
    assert by_default == {"redis", "api", "worker", "scheduler"}
    assert services["prometheus"]["profiles"] == services["grafana"]["profiles"] == ["monitoring"]

    # Every file they mount is in the repo, where the mount expects it.
    mounts = {
        volume.split(":")[1]: ROOT / volume.split(":")[0]
        for name in ("prometheus", "grafana")
        for volume in services[name]["volumes"]
        if volume.startswith("./")
    }
    assert (mounts["/etc/prometheus"] / "prometheus.yml").is_file()
    assert (mounts["/etc/prometheus"] / "alerts.yml").is_file()
    assert (mounts["/etc/grafana/provisioning"] / "datasources" / "prometheus.yml").is_file()
    assert (mounts["/var/lib/grafana/dashboards"] / "llmjobs.json").is_file()

    # Prometheus scrapes the `api` service on the port it binds; Grafana reads `prometheus`.
    prometheus = yaml.safe_load((mounts["/etc/prometheus"] / "prometheus.yml").read_text())
    (scrape,) = prometheus["scrape_configs"]
    assert scrape["static_configs"][0]["targets"] == ["api:" + services["api"]["environment"]["BIND"].split(":")[1]]
    datasources = yaml.safe_load((mounts["/etc/grafana/provisioning"] / "datasources" / "prometheus.yml").read_text())
    assert datasources["datasources"][0]["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((mounts["/etc/grafana/provisioning"] / "dashboards" / "llmjobs.yml").read_text())
    assert providers["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_the_tracing_profile_adds_a_collector_the_processes_can_export_to():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert services["jaeger"]["profiles"] == ["tracing"]
    for name in ("api", "worker", "scheduler"):
        assert {"SENTRY_DSN", "OTEL_EXPORTER_OTLP_ENDPOINT"} <= set(services[name]["environment"]), name
    # The endpoint the README gives names that service on the OTLP/HTTP port, which it does not publish
    assert "OTEL_EXPORTER_OTLP_ENDPOINT=http://jaeger:4318" in (ROOT / "README.md").read_text()
    assert all(not port.endswith(":4318") for port in services["jaeger"]["ports"])
