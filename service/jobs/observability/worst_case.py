"""The most a job's run can cost, from its request alone: what a spend budget reserves at
submit (and again for each retry, re-run or recovered run).

The bounds, and why each is an upper bound:

- Input tokens of a call <= the UTF-8 bytes of the request's JSON. Every token the provider
  bills stands for at least one byte of UTF-8 text, and JSON holds every text byte (escapes
  only add bytes). The role markers the provider puts around each message are a few tokens,
  fewer than the ~28 bytes of `{"role":"user","content":""}` around it; what it adds once per
  request (the system prompt of tool use, ~350 tokens) is `REQUEST_OVERHEAD_TOKENS`.
- An image is billed by its pixels, not its bytes (a large, flat PNG is small): each image
  block adds `IMAGE_MAX_TOKENS`, the most the provider bills for one after resizing it.
- A PDF (document block) is billed per page, text and page image, and its text may be
  compressed: nothing in its bytes bounds it, so a call with one is bounded by the largest
  context window, `CONTEXT_MAX_TOKENS`, which also caps every call's input.
- Output tokens <= `max_tokens` (thinking included), at the output price.
- Prices: `_call_usd` below is the one place prices are read. It bills every input token at
  the model's highest input-side price (a 1 h prompt-cache write, 2x the input price for most
  models: a request may mark any prefix `cache_control`) and the output at the output price.
- Server tools billed per use (web search, $10 per 1,000): each web_search tool adds its
  `max_uses` searches; one without `max_uses` has no bound (`Unpriceable`).

A document job: its extracted text is at most `extracted_text_bound` bytes (the worker fails a
budgeted job whose text is larger, before any call). Its text is cut into chunks of
`DOCUMENT_CHUNK_TOKENS` x 4 characters, packed greedily (two neighbours always hold more than
one chunk's worth), so n <= 2 x text / chunk + 1 chunks. Each analysis makes n chunk calls (all
chunks: the whole text once, plus a prompt each), a combining call (n replies read back) when
n > 1, and a JSON analysis one repair call (the last input again, plus a reply). A reply read
back costs at most `REPLY_REREAD_FACTOR` x the tokens it was written in. A PDF the model
reads itself (`extraction: native`) is one call, and a repair, each of up to a context window.
"""

from __future__ import annotations

import json
from typing import Any

from service.llm.pricing import BATCH_DISCOUNT, WEB_SEARCH_USD, Prices, price_for

REQUEST_OVERHEAD_TOKENS = 1_000
IMAGE_MAX_TOKENS = 5_000
CONTEXT_MAX_TOKENS = 1_000_000
REPLY_REREAD_FACTOR = 2
# A document call's own words beside the text: the system prompt and the wrappers of
# `service.documents.analyses` (each well under 1 KB), and twice an analysis' own prompt
# (a repair call repeats it).
DOCUMENT_PROMPT_BYTES = 2_048
CHARS_PER_CHUNK_TOKEN = 4  # service.documents.chunks.CHARS_PER_TOKEN: chunks are cut by characters
# Extracted text per byte uploaded. Plain formats: a byte decoded as Latin-1 or cp1252 is at
# most 3 bytes of UTF-8. PDF and DOCX are compressed; more text than 10 times the file is
# refused for a budgeted client (a zip-bomb-like file), so the reservation holds.
TEXT_PER_UPLOAD_BYTE = {
    "application/pdf": 10,
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": 10,
}
PLAIN_TEXT_PER_UPLOAD_BYTE = 3
_IMAGE_BLOCK, _DOCUMENT_BLOCK = b'"type":"image"', b'"type":"document"'


class Unpriceable(Exception):
    """The job's cost has no bound: the price table has no price for its model, or it asks
    for something billed per use without a limit. The message says which."""

    def __init__(self, model: str, why: str | None = None, field: str = "model"):
        super().__init__(
            why
            or f"model {model!r} has no price (see LLM_PRICES), so its worst-case cost cannot be reserved "
            "against your spend budget"
        )
        self.model, self.field = model, field


def message_job_usd(request: dict[str, Any], *, prices: Prices, batch_tier: bool = False) -> float:
    """One Messages call: the request as the job stores it (model, max_tokens, and the rest);
    a batch-tier job's tokens at the Message Batches API's price."""
    content = {name: value for name, value in request.items() if name not in ("model", "max_tokens")}
    tokens_usd = _call_usd(request["model"], input_tokens_bound(content), request["max_tokens"], prices)
    if batch_tier:
        tokens_usd *= BATCH_DISCOUNT
    return tokens_usd + web_searches_bound(request) * WEB_SEARCH_USD


def web_searches_bound(request: dict[str, Any]) -> int:
    """The most web searches a request can be billed for: each web_search tool's `max_uses`."""
    searches = 0
    for tool in request.get("tools") or ():
        if isinstance(tool, dict) and str(tool.get("type", "")).startswith("web_search"):
            if not isinstance(tool.get("max_uses"), int):
                raise Unpriceable(
                    request["model"],
                    "a web_search tool without max_uses can be billed for any number of searches: give it "
                    "max_uses so that its worst-case cost can be reserved against your spend budget",
                    field="params.tools",
                )
            searches += tool["max_uses"]
    return searches


def input_tokens_bound(content: Any) -> int:
    """The most input tokens a request's content (messages, system, tools, ...) can bill."""
    encoded = json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()
    # Blocks found in the JSON itself (a quote inside a text is escaped, so a text cannot fake
    # one; another object typed "image" only makes the bound larger): no walk of the request.
    if _DOCUMENT_BLOCK in encoded:
        return CONTEXT_MAX_TOKENS
    images = encoded.count(_IMAGE_BLOCK)
    return min(len(encoded) + images * IMAGE_MAX_TOKENS + REQUEST_OVERHEAD_TOKENS, CONTEXT_MAX_TOKENS)


def document_job_usd(
    request: dict[str, Any],
    *,
    media_type: str,
    file_bytes: int,
    chunk_tokens: int,
    prices: Prices,
) -> float:
    """Every call one run of a document job makes: the analyses over all its chunks."""
    model, max_tokens = request["model"], request["max_tokens"]
    total = 0.0
    for analysis in request["analyses"]:
        prompt = DOCUMENT_PROMPT_BYTES + 2 * len(analysis.get("prompt", "").encode()) + REQUEST_OVERHEAD_TOKENS
        repairs = 1 if analysis.get("output", _built_in_output(analysis)) == "json" else 0
        if request["extraction"] == "native" and media_type == "application/pdf":
            calls = 1 + repairs
            total += calls * _call_usd(model, CONTEXT_MAX_TOKENS, max_tokens, prices)
            continue
        text = extracted_text_bound(media_type, file_bytes)
        chunks = (
            1
            if text <= chunk_tokens * CHARS_PER_CHUNK_TOKEN
            else 2 * text // (chunk_tokens * CHARS_PER_CHUNK_TOKEN) + 1
        )
        reply = REPLY_REREAD_FACTOR * max_tokens
        # The chunk calls read the whole text once between them, a prompt each.
        inputs = [min(text + chunks * prompt, chunks * CONTEXT_MAX_TOKENS)]
        last = text + prompt if chunks == 1 else chunks * reply + prompt
        if chunks > 1:
            inputs.append(min(last, CONTEXT_MAX_TOKENS))  # the combining call
        if repairs:
            inputs.append(min(last + reply + prompt, CONTEXT_MAX_TOKENS))
        calls = chunks + (chunks > 1) + repairs
        total += _call_usd(model, sum(inputs), calls * max_tokens, prices)
    return total


def extracted_text_bound(media_type: str, file_bytes: int) -> int:
    """The most UTF-8 bytes of text a document of `file_bytes` is taken to hold."""
    return file_bytes * TEXT_PER_UPLOAD_BYTE.get(media_type, PLAIN_TEXT_PER_UPLOAD_BYTE)


def _built_in_output(analysis: dict[str, Any]) -> str:
    # A built-in analysis is stored by its name alone; every built-in but the summary answers JSON.
    return "text" if analysis["name"] == "summary" else "json"


def _call_usd(model: str, input_tokens: int, output_tokens: int, prices: Prices) -> float:
    """Every input token at the model's highest input-side price (a prompt-cache write costs
    more than plain input: the 1 h write is 2x), every output token at the output price."""
    price = price_for(model, prices)
    if price is None:
        raise Unpriceable(model)
    input_rate = max(rate for rate in (price.input, price.cache_write_5m, price.cache_write_1h) if rate is not None)
    return (input_tokens * input_rate + output_tokens * price.output) / 1_000_000
