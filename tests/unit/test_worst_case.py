"""The worst case a budget reserves (service/jobs/observability/worst_case.py): every bound is
at least what the provider could bill, whatever the request's text, images or documents."""

from __future__ import annotations

import pytest

from service.jobs.observability.worst_case import (
    CONTEXT_MAX_TOKENS,
    IMAGE_MAX_TOKENS,
    REQUEST_OVERHEAD_TOKENS,
    Unpriceable,
    document_job_usd,
    extracted_text_bound,
    input_tokens_bound,
    message_job_usd,
)
from service.llm.pricing import ModelPrice, cost_usd, price_for

MODEL = "claude-sonnet-5-5"  # 2 USD in, 10 USD out per million tokens


def at_the_priciest_input(input_tokens: int, output_tokens: int) -> float:
    """A call of MODEL with every input token written to the 1 h cache, its dearest input price."""
    price = price_for(MODEL)
    assert price is not None and price.cache_write_1h is not None
    return (input_tokens * price.cache_write_1h + output_tokens * price.output) / 1_000_000


def request(content: object, max_tokens: int = 100) -> dict:
    return {"model": MODEL, "max_tokens": max_tokens, "messages": [{"role": "user", "content": content}]}


@pytest.mark.parametrize("text", ["hi", "é" * 1000, "日本語のテキスト" * 300, "🙂" * 500, 'a\nb\t"c"' * 200])
def test_text_input_is_bounded_by_its_utf8_bytes(text):
    bound = input_tokens_bound({"messages": [{"role": "user", "content": text}]})
    assert bound >= len(text.encode()) + REQUEST_OVERHEAD_TOKENS  # a token is at least one byte of UTF-8


def test_max_tokens_is_priced_at_the_output_price():
    small, large = message_job_usd(request("hi", 10), prices={}), message_job_usd(request("hi", 1010), prices={})
    assert large - small == pytest.approx(1000 * 10 / 1_000_000)


def test_the_worst_case_is_at_least_the_cost_of_any_reply_within_max_tokens():
    body = request("summarise this " * 50, max_tokens=500)
    text_bytes = len(("summarise this " * 50).encode())
    assert message_job_usd(body, prices={}) >= cost_usd(MODEL, {"input_tokens": text_bytes, "output_tokens": 500})


def test_images_are_bounded_by_pixels_not_bytes_and_pdfs_by_the_context_window():
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    assert input_tokens_bound([image, image]) >= 2 * IMAGE_MAX_TOKENS
    pdf = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}}
    assert input_tokens_bound([{"role": "user", "content": [pdf]}]) == CONTEXT_MAX_TOKENS
    assert input_tokens_bound("x" * (2 * CONTEXT_MAX_TOKENS)) == CONTEXT_MAX_TOKENS  # no call reads more


def test_a_model_without_a_price_cannot_be_bounded():
    with pytest.raises(Unpriceable, match="no price"):
        message_job_usd({**request("hi"), "model": "someone-elses-model"}, prices={})
    assert message_job_usd({**request("hi"), "model": "mine"}, prices={"mine": ModelPrice(1.0, 1.0)}) > 0


def document(analyses: list[dict], extraction: str = "text", max_tokens: int = 100) -> dict:
    return {"model": MODEL, "max_tokens": max_tokens, "analyses": analyses, "extraction": extraction}


def test_a_long_document_reserves_every_chunk_and_the_combining_call():
    one = [{"name": "summary"}]
    short = document_job_usd(document(one), media_type="text/plain", file_bytes=1000, chunk_tokens=1000, prices={})
    long = document_job_usd(document(one), media_type="text/plain", file_bytes=100_000, chunk_tokens=1000, prices={})
    text = extracted_text_bound("text/plain", 100_000)
    chunks = 2 * text // 4000 + 1
    # Every byte of text once, and max_tokens out for each chunk and the combining call.
    assert long >= at_the_priciest_input(text, (chunks + 1) * 100)
    assert short < long


def test_json_analyses_reserve_their_repair_and_each_analysis_adds_up():
    text_only = document([{"name": "summary"}])
    json_too = document([{"name": "summary"}, {"name": "topics"}])
    args = {"media_type": "text/markdown", "file_bytes": 5000, "chunk_tokens": 50_000, "prices": {}}
    one, two = document_job_usd(text_only, **args), document_job_usd(json_too, **args)
    assert two - one > one  # topics: a call and its repair, which reads the first call's input again


def test_a_pdf_the_model_reads_reserves_a_context_window_per_call():
    native = document([{"name": "summary"}], extraction="native")
    usd = document_job_usd(native, media_type="application/pdf", file_bytes=10_000, chunk_tokens=50_000, prices={})
    assert usd == pytest.approx(at_the_priciest_input(CONTEXT_MAX_TOKENS, 100))


def test_compressed_formats_are_taken_to_hold_ten_times_their_bytes_of_text():
    assert extracted_text_bound("application/pdf", 1000) == 10_000
    assert extracted_text_bound("text/html", 1000) == 3000  # a cp1252 byte is at most 3 bytes of UTF-8


def test_input_is_reserved_at_the_highest_input_side_price_and_searches_at_their_price():
    tokens = input_tokens_bound({"messages": [{"role": "user", "content": "hi"}]})
    assert message_job_usd(request("hi", 0), prices={}) == pytest.approx(tokens * 4.0 / 1_000_000)  # 1 h write
    searching = {**request("hi", 0), "tools": [{"type": "web_search_20260209", "name": "web_search", "max_uses": 5}]}
    tools_tokens = input_tokens_bound({k: v for k, v in searching.items() if k not in ("model", "max_tokens")})
    assert message_job_usd(searching, prices={}) == pytest.approx(tools_tokens * 4.0 / 1_000_000 + 5 * 0.01)
    unbounded = {**searching, "tools": [{"type": "web_search_20260209", "name": "web_search"}]}
    with pytest.raises(Unpriceable, match="max_uses"):
        message_job_usd(unbounded, prices={})


def test_a_batch_tier_job_reserves_its_tokens_at_the_batch_price_and_searches_at_theirs():
    body = request("summarise this " * 50, max_tokens=500)
    assert message_job_usd(body, prices={}, batch_tier=True) == pytest.approx(message_job_usd(body, prices={}) / 2)
    batch_reply = {"input_tokens": 100, "output_tokens": 500, "service_tier": "batch"}
    assert message_job_usd(body, prices={}, batch_tier=True) >= cost_usd(MODEL, batch_reply)
    searching = {**request("hi", 0), "tools": [{"type": "web_search_20260209", "name": "web_search", "max_uses": 5}]}
    tokens_usd = message_job_usd(searching, prices={}) - 5 * 0.01
    assert message_job_usd(searching, prices={}, batch_tier=True) == pytest.approx(tokens_usd / 2 + 5 * 0.01)
