"""The fake's Message Batches API, driven through the real anthropic SDK (`messages.batches`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
import requests
from anthropic.types.messages import MessageBatch, MessageBatchIndividualResponse

from tests.support.fake_server import fake_in_thread
from tests.support.waiting import wait_for

MODEL = "claude-haiku-4-5"


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with fake_in_thread(chunk_delay_s=0, batch_delay_s=0.3) as url:
        yield url


@pytest.fixture
def client(base_url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key="test-key", base_url=base_url, max_retries=0)


def params(text: str) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": text}]}


def ended(client: anthropic.Anthropic, batch_id: str) -> MessageBatch:
    batch: MessageBatch | None = None

    def done() -> bool:
        nonlocal batch
        batch = client.messages.batches.retrieve(batch_id)
        return batch.processing_status == "ended"

    wait_for(done, timeout=30, what="the batch's end")
    assert batch is not None
    return batch


def stats(base_url: str) -> dict[str, Any]:
    return requests.get(f"{base_url}/_stats", timeout=5).json()


def test_a_batch_answers_each_request_by_its_directives_in_another_order(client, base_url):
    before = stats(base_url)
    requests_ = [
        {"custom_id": "ok-1", "params": params("hello [[fake: tokens=5]]")},
        {"custom_id": "ok-2", "params": params("again")},
        {"custom_id": "bad", "params": params("no [[fake: error=400]]")},
        {"custom_id": "busy", "params": params("busy [[fake: error=529]]")},
        {"custom_id": "late", "params": params("late [[fake: batch_expire=1]]")},
        {"custom_id": "unknown-model", "params": {**params("x"), "model": "claude-nope"}},
    ]
    created = client.messages.batches.create(requests=requests_)
    assert created.processing_status == "in_progress"
    assert created.request_counts.processing == len(requests_)
    assert created.results_url is None
    batch = ended(client, created.id)
    assert batch.request_counts.succeeded == 2
    assert batch.request_counts.errored == 3
    assert batch.request_counts.expired == 1
    assert batch.ended_at is not None and batch.results_url

    results: list[MessageBatchIndividualResponse] = list(client.messages.batches.results(created.id))
    assert [r.custom_id for r in results] != [r["custom_id"] for r in requests_]  # any order
    by_id = {r.custom_id: r.result for r in results}
    assert set(by_id) == {r["custom_id"] for r in requests_}
    ok = by_id["ok-1"]
    assert ok.type == "succeeded"
    assert ok.message.usage.output_tokens == 5
    assert ok.message.usage.service_tier == "batch"
    assert ok.message.content[0].type == "text"
    assert by_id["bad"].type == "errored" and by_id["bad"].error.error.type == "invalid_request_error"
    assert by_id["busy"].type == "errored" and by_id["busy"].error.error.type == "overloaded_error"
    assert by_id["unknown-model"].type == "errored" and by_id["unknown-model"].error.error.type == "not_found_error"
    assert by_id["late"].type == "expired"

    after = stats(base_url)
    assert after["batch_creates"] == before["batch_creates"] + 1
    assert after["batch_requests"] == before["batch_requests"] + len(requests_)
    assert after["messages_calls"] == before["messages_calls"]


def test_results_before_the_end_are_refused_and_a_batch_delay_directive_holds_it(client):
    created = client.messages.batches.create(
        requests=[{"custom_id": "slow", "params": params("wait [[fake: batch_delay_ms=1500]]")}]
    )
    with pytest.raises(anthropic.AnthropicError):
        list(client.messages.batches.results(created.id))
    time.sleep(0.5)  # past the server's 0.3 s: the directive's 1.5 s holds it
    assert client.messages.batches.retrieve(created.id).processing_status == "in_progress"
    assert ended(client, created.id).request_counts.succeeded == 1


def test_cancel_ends_the_batch_with_its_requests_canceled(client, base_url):
    before = stats(base_url)
    created = client.messages.batches.create(
        requests=[{"custom_id": "c", "params": params("x [[fake: batch_delay_ms=60000]]")}]
    )
    canceling = client.messages.batches.cancel(created.id)
    assert canceling.processing_status == "canceling" and canceling.cancel_initiated_at is not None
    assert ended(client, created.id).request_counts.canceled == 1
    assert [r.result.type for r in client.messages.batches.results(created.id)] == ["canceled"]
    assert stats(base_url)["batch_cancels"] == before["batch_cancels"] + 1


def test_list_retrieve_delete_and_bad_creates(client, base_url):
    first = client.messages.batches.create(requests=[{"custom_id": "a", "params": params("a")}])
    second = client.messages.batches.create(requests=[{"custom_id": "b", "params": params("b")}])
    listed = [b.id for b in client.messages.batches.list(limit=2).data]
    assert listed == [second.id, first.id]  # newest first
    with pytest.raises(anthropic.BadRequestError):
        client.messages.batches.delete(first.id)  # still in progress
    ended(client, first.id)
    assert client.messages.batches.delete(first.id).id == first.id
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve(first.id)
    with pytest.raises(anthropic.BadRequestError):
        client.messages.batches.create(requests=[])
    with pytest.raises(anthropic.BadRequestError, match="not unique"):
        client.messages.batches.create(
            requests=[{"custom_id": "d", "params": params("a")}, {"custom_id": "d", "params": params("b")}]
        )
    answer = requests.post(f"{base_url}/v1/messages/batches", json={"requests": []}, timeout=5)
    assert answer.status_code == 401 and answer.json()["error"]["type"] == "authentication_error"


def reports(base_url: str) -> dict[str, dict[str, Any]]:
    return {report["id"]: report for report in requests.get(f"{base_url}/_fake/batches", timeout=5).json()}


def test_the_fake_reports_each_batch_read_to_its_end_and_can_stamp_it_with_a_clock_behind(client, base_url):
    early = client.messages.batches.create(
        requests=[{"custom_id": "e", "params": params("x [[fake: clock_behind_ms=120000]]")}]
    )
    assert (time.time() - early.created_at.timestamp()) >= 119  # stamped two minutes early
    assert client.messages.batches.list(limit=1).data[0].id == early.id  # still listed as the newest
    report = reports(base_url)[early.id]
    assert report["requests"] == 1 and report["results_read"] == 0
    ended(client, early.id)
    assert [r.custom_id for r in client.messages.batches.results(early.id)] == ["e"]
    assert reports(base_url)[early.id]["results_read"] == 1
    list(client.messages.batches.results(early.id))
    assert reports(base_url)[early.id]["results_read"] == 2
