"""The import rules of docs/development/architecture.md §1, read from every module's source (nothing imported).

A rule broken here is a dependency running the wrong way: the HTTP layer reached from the
job domain, Flask from task code, RQ from the LLM client, or one room of `service/jobs`
leaning on a room it must not know.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVICE = Path(__file__).resolve().parents[2] / "service"


def _module_name(path: Path) -> str:
    parts = path.relative_to(SERVICE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, absolute, at any depth (inside functions too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


MODULES = {_module_name(path): _imports(path) for path in sorted(SERVICE.rglob("*.py"))}


def _under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _offences(importer_package: str, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{module} imports {imported}"
        for module, imports in MODULES.items()
        if _under(module, importer_package)
        for imported in imports
        if any(_under(imported, package) for package in forbidden)
    )


def test_the_rules_read_every_module():
    assert {"service.api.jobs", "service.jobs.storage.submit", "service.llm.client"} <= MODULES.keys()
    assert "service.jobs.storage.queues" in MODULES["service.jobs.storage.submit"]


@pytest.mark.parametrize(
    ("importer", "forbidden"),
    [
        ("service.jobs", ("flask", "flask_smorest", "service.api", "service.tasks", "service.worker")),
        ("service.tasks", ("flask", "flask_smorest", "service.api", "service.worker")),
        ("service.worker", ("flask", "flask_smorest", "service.api")),
        ("service.llm", ("rq", "redis", "flask", "service.jobs", "service.api", "service.tasks", "service.worker")),
        ("service.documents", ("flask", "service.api", "service.worker")),
        ("service.webhooks", ("flask", "service.api", "service.tasks", "service.worker")),
        # Rooms of the job domain.
        (
            "service.jobs.storage",
            ("service.jobs.running", "service.jobs.push", "service.jobs.operations"),
        ),
        (
            "service.jobs.observability",
            ("service.jobs.running", "service.jobs.push", "service.jobs.operations"),
        ),
        ("service.jobs.push", ("service.jobs.running", "service.jobs.operations")),
        ("service.jobs.running", ("service.jobs.operations",)),
    ],
)
def test_dependencies_run_one_way(importer: str, forbidden: tuple[str, ...]):
    assert _offences(importer, forbidden) == []
