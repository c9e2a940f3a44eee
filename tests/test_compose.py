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
