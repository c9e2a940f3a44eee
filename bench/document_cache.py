"""What the prompt cache saves a document job: a PDF of `--pages` pages with the four default
analyses, through a running stack; its input cost as billed (the document a cached prefix:
written by the first analysis of each part, read by the others) against the same tokens
billed without a cache (every input token at the base input price). Figures from the job's
`result.usage` and the price table (service/llm/pricing.py). Prints one JSON object.

    python -m bench.document_cache --url http://127.0.0.1:8000 --key KEY [--pages 20]
"""

from __future__ import annotations

import argparse
import json
import time

import requests

from service.llm.pricing import price_for
from tests.documents import pdf, report_pages

MTOK = 1_000_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--pages", type=int, default=20)
    args = parser.parse_args()
    headers = {"Authorization": f"Bearer {args.key}"}
    files = {"file": ("report.pdf", pdf(report_pages(args.pages)), "application/pdf")}
    response = requests.post(f"{args.url}/v1/documents", files=files, headers=headers, timeout=30)
    response.raise_for_status()
    job_id = response.json()["id"]
    while (job := requests.get(f"{args.url}/v1/jobs/{job_id}", headers=headers, timeout=10).json())["status"] in (
        "queued",
        "running",
    ):
        time.sleep(0.2)
    assert job["status"] == "succeeded", job
    usage, price = job["result"]["usage"], price_for(job["model"])
    assert price is not None and price.cache_write_5m is not None and price.cache_read is not None
    fresh, written = usage["input_tokens"], usage.get("cache_creation_input_tokens", 0)
    read = usage.get("cache_read_input_tokens", 0)
    cached_cost = (fresh * price.input + written * price.cache_write_5m + read * price.cache_read) / MTOK
    uncached_cost = (fresh + written + read) * price.input / MTOK
    print(
        json.dumps(
            {
                "pages": job["document"]["pages"],
                "model": job["model"],
                "calls": sum(step["attempts"] for step in job["steps"]),
                "input_tokens": fresh,
                "cache_creation_input_tokens": written,
                "cache_read_input_tokens": read,
                "input_cost_usd_cached": round(cached_cost, 6),
                "input_cost_usd_without_cache": round(uncached_cost, 6),
                "saved": f"{1 - cached_cost / uncached_cost:.1%}",
                "job_cost_usd": job["result"]["cost_usd"],
            }
        )
    )


if __name__ == "__main__":
    main()
