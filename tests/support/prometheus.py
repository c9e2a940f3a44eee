"""Reading /metrics: Prometheus text as samples, and one sample's value."""

from __future__ import annotations

import requests
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples_of(text: str) -> Samples:
    """Prometheus text as {(sample name, sorted labels): value}."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; a series never counted is absent, which reads as 0."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape(api: str) -> Samples:
    response = requests.get(f"{api}/metrics", timeout=10)  # no key
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    return samples_of(response.text)
