"""One source of truth for the settings: the variables service/config.py reads (and those
the API's server reads, service/api/serve.py) are exactly the settings table (docs/settings.md) and the variables
docker-compose.yml passes to the processes, and the table's defaults are the code's."""

from __future__ import annotations

import ast
import math
import re

import yaml

from service.api.serve import SERVER_SETTINGS
from service.config import JobLimits, Settings
from service.webhooks.addresses import CallbackPolicy
from tests.support.docs_pages import section
from tests.support.paths import ROOT

SETTINGS_PAGE, SETTINGS_SECTION = "settings.md", "# Settings"
APP_SERVICES = ("api", "worker", "scheduler")  # the compose services that run our processes


def config_reads() -> dict[str, tuple[str, str] | None]:
    """Each `env.<parser>("NAME", ...)` call of load_settings -> (dataclass, field) it fills,
    None for a variable read only to be checked (the SDK's own)."""
    tree = ast.parse((ROOT / "service" / "config.py").read_text())
    (load,) = (node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "load_settings")
    names: dict[str, tuple[str, str] | None] = {}
    for call in ast.walk(load):
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id in {"Settings", "JobLimits"}:
            for keyword in call.keywords:
                for name in env_names(keyword.value, nested=False):
                    names[name] = (call.func.id, keyword.arg)
    for name in env_names(load, nested=True):
        names.setdefault(name, None)
    return names


def env_names(node: ast.AST, *, nested: bool) -> list[str]:
    """The first arguments of the `env.*(...)` calls in `node` (not inside a nested
    Settings/JobLimits call unless `nested`)."""
    found = []
    for call in ast.walk(node):
        if not nested and isinstance(call, ast.Call) and isinstance(call.func, ast.Name):
            continue  # JobLimits(...) inside Settings(limits=...): its fields are its own
        if (
            isinstance(call, ast.Call)
            and isinstance(call.func, ast.Attribute)
            and isinstance(call.func.value, ast.Name)
            and call.func.value.id == "env"
            and call.func.attr != "add_parser"
            and call.args
            and isinstance(call.args[0], ast.Constant)
        ):
            found.append(call.args[0].value)
    return found


def server_reads() -> set[str]:
    return set(SERVER_SETTINGS)


def documented_rows() -> list[tuple[list[str], list[str]]]:
    """The settings table: (variables of a row, its defaults split on `, `)."""
    rows = []
    for line in section(SETTINGS_PAGE, SETTINGS_SECTION).splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.startswith("| `") or len(cells) < 3:
            continue
        rows.append((re.findall(r"`([A-Z0-9_]+)`", cells[0]), re.findall(r"`([^`]*)`", cells[-1]) or [cells[-1]]))
    return rows


def compose_reads() -> set[str]:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    return {name for service in APP_SERVICES for name in services[service].get("environment") or {}}


def test_the_settings_are_read_where_the_test_looks():
    # Guards the parsing above: it must find the settings it is meant to compare.
    reads = config_reads()
    assert reads["REDIS_URL"] == ("Settings", "redis_url")
    assert reads["JOB_TIMEOUT_S"] == ("JobLimits", "max_timeout_s")
    assert reads["ANTHROPIC_API_KEY"] is None
    assert len(reads) > 40 and server_reads() == {"BIND", "WEB_CONCURRENCY", "API_THREADS", "ACCESS_LOG"}


def test_the_settings_table_lists_exactly_the_settings_read():
    listed = [name for names, _ in documented_rows() for name in names]
    assert len(listed) == len(set(listed)), "a variable is listed twice"
    read = set(config_reads()) | server_reads()
    assert sorted(read - set(listed)) == [], "read by the code, missing from the settings table"
    assert sorted(set(listed) - read) == [], "in the settings table, read by nothing"


def test_compose_passes_exactly_the_settings_read():
    passed = compose_reads()
    read = set(config_reads()) | server_reads()
    assert sorted(read - passed) == [], "read by the code, passed by no service of docker-compose.yml"
    assert sorted(passed - read) == [], "passed by docker-compose.yml, read by nothing"


def documented(cell: str, value: object) -> bool:
    """Whether a documented default cell states `value`, the dataclass default."""
    cell = cell.split(" (")[0].strip()
    if isinstance(value, CallbackPolicy):  # the default allows nothing beyond global addresses
        value = None if value == CallbackPolicy() else value
    if value is None or value == {} or value == ():  # unset, or empty
        return cell in {"—", "none", "{}"}
    if isinstance(value, bool):
        return cell == str(value).lower()
    if isinstance(value, tuple):
        return [float(part) for part in cell.split(",")] == [float(part) for part in value]
    if isinstance(value, int | float):
        return math.isclose(float(cell), value)
    return cell == value


def test_the_documented_defaults_are_the_code_defaults():
    defaults = {"Settings": Settings(), "JobLimits": JobLimits()}
    reads = config_reads()
    wrong = []
    for names, cells in documented_rows():
        fields = [reads.get(name) for name in names]
        if None in fields:
            continue  # the SDK's and the server's own variables: not ours to default
        if len(cells) == 1 and len(names) > 1:
            cells = cells * len(names)  # one default stated for the whole row
        assert len(cells) == len(names), f"{names}: one default per variable, or one for all"
        for name, (cls, attr), cell in zip(names, fields, cells, strict=True):
            value = getattr(defaults[cls], attr)
            if not documented(cell, value):
                wrong.append(f"{name}: the settings page says {cell!r}, code says {value!r}")
    assert wrong == []
