"""The documentation site (docs/, mkdocs.yml): every page is in the site's `nav` and linked from
the README, the README stays a front page, and no section of the README the pages were made
from (issue 27) was lost. `make lint` builds the site with `mkdocs build --strict`, which fails
on a broken link or anchor."""

from __future__ import annotations

import re

from tests.support.docs_pages import DOCS, ROOT, headings, nav_pages, page

# The top- and second-level headings of README.md before it became the front page (its text
# moved to the pages), and the sub-topics that were bold paragraphs there, now headings.
OLD_README_HEADINGS = [
    "LLM job service",
    "Two commands",
    "API (v1)",
    "Every Messages request: the `params` form",
    "Following a job",
    "Settings",
    "Document jobs",
    "Spend budgets",
    "When things go wrong",
    "Operating with RQ's own tools",
    "Redis keys without a TTL",
    "Metrics",
    "Traces and bug reports in your own tools",
    "Security",
    "Webhooks",
    "Operator dashboard and exposure",
    "Input limits",
    "How it is built",
    "The fake Anthropic server",
    "Dependencies",
    "Tests and benchmarks",
    "Containers",
    "Running it in production",
    "Monitoring: Prometheus, Grafana and the alerts (`deploy/`)",
    "Sizing",
    "Redis: persistence and `maxmemory`",
    "Redis failover with Sentinel",
    "Scaling out",
    "Upgrades without losing jobs",
    "Runbook",
]
FORMER_BOLD_PARAGRAPHS = ["Server-Sent Events", "Python client and CLI", "Where a callback may go", "Signing secrets"]
README_MAX_LINES = 150


def test_every_page_is_in_the_nav_and_every_nav_entry_is_a_page():
    on_disk = sorted(str(path.relative_to(DOCS)) for path in DOCS.rglob("*.md"))
    assert sorted(nav_pages()) == on_disk


def test_no_section_of_the_old_readme_is_lost():
    on_pages = {heading for name in nav_pages() for heading in headings(page(name))}
    missing = [heading for heading in OLD_README_HEADINGS + FORMER_BOLD_PARAGRAPHS if heading not in on_pages]
    assert missing == []


def test_the_readme_is_a_front_page_that_links_every_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= README_MAX_LINES
    linked = set(re.findall(r"\]\(docs/([^)#]+\.md)(?:#[^)]*)?\)", readme))
    assert sorted(set(nav_pages()) - linked - {"index.md"}) == []
    assert "make run" in readme and "make test" in readme


def test_every_alert_names_its_runbook_section():
    runbook = headings(page("operations/runbook.md"))
    alerts = (ROOT / "deploy" / "prometheus" / "alerts.yml").read_text()
    named = re.findall(r'runbook: "docs/operations/runbook\.md#(\w+)"', alerts)
    assert named and len(named) == alerts.count("- alert:")
    assert sorted(named) == sorted(heading.lower() for heading in runbook if heading.startswith("LLMJobs"))
