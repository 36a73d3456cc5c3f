"""Read Prometheus text from a running process: one sample, or its sum over processes."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

Samples = list[tuple[str, dict[str, str], float]]


async def scrape(http: httpx.AsyncClient, base_url: str) -> Samples:
    response = await http.get(f"{base_url}/metrics")
    response.raise_for_status()
    assert response.headers["content-type"].startswith("text/plain")
    return [
        (sample.name, dict(sample.labels), float(sample.value))
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    ]


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples called `name` whose labels include `labels`."""
    return sum(
        value
        for sample_name, sample_labels, value in samples
        if sample_name == name and labels.items() <= sample_labels.items()
    )


def series(samples: Samples, name: str) -> list[dict[str, str]]:
    return [labels for sample_name, labels, _ in samples if sample_name == name]
