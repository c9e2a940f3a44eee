"""The locks are made from pyproject.toml (`make lock`): each top-level pin is in them at
its version, every line of them carries hashes, pre-commit's ruff is the dev pin and its
mypy the venv's."""

from __future__ import annotations

import re
import tomllib

import yaml

from tests.support.paths import ROOT


def pins(requirements: list[str]) -> dict[str, str]:
    """`name[extras]==version` requirements -> {normalized name: version}."""
    found = {}
    for requirement in requirements:
        name, _, version = requirement.partition("==")
        assert version, f"not pinned with ==: {requirement}"
        name = name.partition("[")[0]  # an extra's packages are pinned on their own
        found[re.sub(r"[-_.]+", "-", name).lower()] = version
    return found


def locked(path: str) -> dict[str, str]:
    text = (ROOT / path).read_text()
    entries = re.split(r"\n(?=\S)", re.sub(r"^#.*\n", "", text, flags=re.M).strip())
    for entry in entries:
        assert "--hash=sha256:" in entry, f"{path}: no hash for {entry.splitlines()[0]}"
    return pins([entry.split()[0] for entry in entries])


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_the_locks_hold_every_top_level_pin_at_its_version():
    runtime, dev = pins(project()["dependencies"]), pins(project()["optional-dependencies"]["dev"])
    runtime_lock, dev_lock = locked("requirements.txt"), locked("requirements-dev.txt")
    stale = {
        name: (version, runtime_lock.get(name))
        for name, version in runtime.items()
        if runtime_lock.get(name) != version
    }
    assert stale == {}, "pyproject.toml changed without `make lock` (pinned, locked)"
    stale = {
        name: (version, dev_lock.get(name))
        for name, version in (runtime | dev).items()
        if dev_lock.get(name) != version
    }
    assert stale == {}, "pyproject.toml changed without `make lock` (pinned, locked)"
    # The dev lock installs the runtime lock's versions, so the tests run what the image runs.
    assert {name: dev_lock.get(name) for name in runtime_lock} == runtime_lock


def test_pre_commit_runs_the_pinned_ruff():
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    (ruff,) = (repo for repo in config["repos"] if repo["repo"].endswith("/ruff-pre-commit"))
    assert ruff["rev"] == "v" + pins(project()["optional-dependencies"]["dev"])["ruff"]
    assert {hook["id"] for hook in ruff["hooks"]} == {"ruff-check", "ruff-format"}


def test_pre_commit_runs_the_venvs_mypy_and_pyright():
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    hooks = [hook for repo in config["repos"] if repo["repo"] == "local" for hook in repo["hooks"]]
    expected = [("mypy", ".venv/bin/mypy"), ("pyright", ".venv/bin/pyright --project pyproject.toml")]
    assert [(hook["id"], hook["entry"]) for hook in hooks] == expected
    assert {"mypy", "pyright"} <= pins(project()["optional-dependencies"]["dev"]).keys()
