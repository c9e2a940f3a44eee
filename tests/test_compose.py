"""docker-compose.yml read as Compose would merge it: each secret goes only to the services that use it."""

from __future__ import annotations

import yaml

from tests.conftest import ROOT


def test_the_webhook_worker_gets_no_llm_key():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    llm_workers = ("worker-high", "worker-default", "worker-low")
    assert all("${ANTHROPIC_API_KEY" in services[name]["environment"]["ANTHROPIC_API_KEY"] for name in llm_workers)
    webhooks = services["worker-webhooks"]["environment"]
    assert "${ANTHROPIC_API_KEY" not in str(webhooks.get("ANTHROPIC_API_KEY"))
    assert "ANTHROPIC_BASE_URL" not in webhooks
    assert webhooks["REDIS_URL"] and "WEBHOOK_SECRET" in webhooks  # it still gets what it needs
