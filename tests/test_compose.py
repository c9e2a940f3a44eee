"""docker-compose.yml read as Compose would merge it: each secret goes only to the services that use it."""

from __future__ import annotations

import yaml

from tests.support.docs_pages import page
from tests.support.paths import ROOT


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


def test_the_ha_profile_adds_a_replica_and_three_sentinels_watching_the_primary():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    ha = {name for name, service in services.items() if service.get("profiles") == ["ha"]}
    assert ha == {"redis-replica", "sentinel-1", "sentinel-2", "sentinel-3"}

    replica = services["redis-replica"]["command"]
    assert replica[: len(services["redis"]["command"]) - 2] == services["redis"]["command"][:-2]  # run alike (AOF)
    assert replica[replica.index("--replicaof") + 1 :][:2] == ["redis", "6379"]
    assert services["redis-replica"]["volumes"][0].split(":")[0] in compose["volumes"]

    # Each Sentinel monitors `redis` under the name the processes ask for, with a quorum of 2 of 3.
    master = "${REDIS_SENTINEL_MASTER:-llmjobs}"
    for name in ("sentinel-1", "sentinel-2", "sentinel-3"):
        script = services[name]["command"][-1]
        assert f"'sentinel monitor {master} redis 6379 2'" in script
        assert "'port 26379'" in script and "--sentinel" in script
    # Every process of ours is given the Sentinel settings (from .env).
    for name in ("api", "worker", "scheduler"):
        environment = services[name]["environment"]
        assert {"REDIS_SENTINELS", "REDIS_SENTINEL_MASTER", "REDIS_MIN_REPLICAS_ACK"} <= environment.keys()


def test_the_tracing_profile_adds_a_collector_the_processes_can_export_to():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert services["jaeger"]["profiles"] == ["tracing"]
    for name in ("api", "worker", "scheduler"):
        assert {"SENTRY_DSN", "OTEL_EXPORTER_OTLP_ENDPOINT"} <= set(services[name]["environment"]), name
    # The endpoint the traces page gives names that service on the OTLP/HTTP port, which it does not publish
    assert "OTEL_EXPORTER_OTLP_ENDPOINT=http://jaeger:4318" in page("operations/traces.md")
    assert all(not port.endswith(":4318") for port in services["jaeger"]["ports"])
