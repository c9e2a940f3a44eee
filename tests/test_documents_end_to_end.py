"""Document jobs through the whole service as real processes: gunicorn, worker.py (which
extracts in child processes), Redis, and the fake Anthropic server, steered per step by
directives in the analyses' prompts."""

from __future__ import annotations

import io
import json
import uuid

import requests

from service.jobs.storage.keys import document_text_key as text_key
from service.jobs.storage.keys import upload_key
from tests import documents
from tests.support.jobs import get, wait_until_finished
from tests.support.keys import ALICE
from tests.support.waiting import wait_for

DEFAULTS = ["summary", "key_points", "sentiment", "topics"]


def upload(api: str, data: bytes, filename: str, **options: object) -> dict:
    response = requests.post(
        f"{api}/v1/documents",
        files={"file": (filename, io.BytesIO(data)), "options": (None, json.dumps(options))},
        headers=ALICE,
        timeout=30,
    )
    assert response.status_code == 202, response.text
    return response.json()


def fake_prompts(fake_anthropic: str) -> list[str]:
    """The last user text of every request the fake got (a document block shows as [document])."""
    prompts = []
    for entry in requests.get(f"{fake_anthropic}/_fake/requests", timeout=5).json():
        content = entry["body"]["messages"][-1]["content"]
        blocks = [content] if isinstance(content, str) else content
        prompts.append(" ".join(b if isinstance(b, str) else b.get("text", f"[{b['type']}]") for b in blocks))
    return prompts


def once(key: str) -> str:
    """A fail_times key of this test run alone."""
    return f"{key}-{uuid.uuid4().hex}"


def test_a_long_pdf_is_analysed_in_chunks_with_progress_usage_and_events(
    start_api, start_worker, fake_anthropic, redis_conn
):
    api = start_api()
    start_worker(DOCUMENT_CHUNK_TOKENS="1500")
    requests.delete(f"{fake_anthropic}/_fake/requests", timeout=5)
    data = documents.pdf(documents.report_pages(12))
    job = upload(api, data, "report.pdf")
    done = wait_until_finished(api, job["id"], timeout=60)
    assert done["status"] == "succeeded", done
    assert done["kind"] == "document" and done["progress"]["percent"] == 100
    document = done["document"]
    assert document["pages"] == 12 and document["media_type"] == "application/pdf"
    assert document["characters"] > 12 * 40 * 60

    # Every analysis ran per chunk, then once more to combine: nothing was cut off.
    prompts = fake_prompts(fake_anthropic)
    chunks = sum("This is part 1 of" in p and "Summarise" in p for p in prompts)
    assert chunks == 1
    parts = max(int(p.split("This is part 1 of ")[1].split()[0]) for p in prompts if "This is part 1 of" in p)
    assert parts >= 3
    assert "Page 12 line 40" in " ".join(prompts)  # the last line of the last page reached the model
    steps = {step["name"]: step for step in done["steps"]}
    assert list(steps) == ["extract", *DEFAULTS]
    assert all(step["status"] == "succeeded" and step["error"] is None for step in steps.values())
    assert all(steps[name]["attempts"] == parts + 1 for name in DEFAULTS)

    analyses = done["result"]["analyses"]
    assert isinstance(analyses["summary"]["output"], str) and analyses["summary"]["output"]
    assert all(isinstance(point, str) for point in analyses["key_points"]["output"])
    assert analyses["sentiment"]["output"]["label"] in ("positive", "negative", "neutral", "mixed")
    assert analyses["topics"]["output"] and all(isinstance(topic, str) for topic in analyses["topics"]["output"])
    # asked for as structured outputs: a list comes as {"items": [...]}
    assert json.loads(analyses["topics"]["text"]) == {"items": analyses["topics"]["output"]}
    # Totals are the steps' sums, and /v1/usage counts the same tokens, and the job once.
    total_in = sum(step["usage"]["input_tokens"] for step in steps.values())
    total_out = sum(step["usage"]["output_tokens"] for step in steps.values())
    assert {name: done["result"]["usage"][name] for name in ("input_tokens", "output_tokens")} == {
        "input_tokens": total_in, "output_tokens": total_out,
    }  # fmt: skip
    # each part of the document was written to the prompt cache by its first analysis, read by the others
    assert done["result"]["usage"]["cache_read_input_tokens"] > done["result"]["usage"]["cache_creation_input_tokens"]
    assert done["result"]["cost_usd"] > 0
    assert analyses["summary"]["usage"] == steps["summary"]["usage"]
    usage = requests.get(f"{api}/v1/usage", headers=ALICE, params={"group_by": "model"}, timeout=10).json()
    assert usage["total"]["input_tokens"] == total_in and usage["total"]["output_tokens"] == total_out
    assert usage["total"]["jobs"] == 1

    # The upload went once its text was extracted; the text stays with the job.
    assert redis_conn.get(upload_key(job["id"])) is None
    assert redis_conn.get(text_key(job["id"])).decode().startswith("Page 1 line 1")

    # The event stream named each step as it moved, with the percentage rising.
    events = requests.get(f"{api}/v1/jobs/{job['id']}/events", headers=ALICE, timeout=30).text
    progress = [json.loads(line[6:]) for line in events.splitlines() if line.startswith('data: {"step"')]
    assert {event["step"] for event in progress} >= {"extract", *DEFAULTS}
    percents = [event["percent"] for event in progress]
    assert percents == sorted(percents) and percents[-1] == 100
    assert any(event.get("chunk") == 1 and event["step"] == "summary" for event in progress)
    assert "event: succeeded" in events


def test_steps_fail_alone_and_a_bad_json_reply_is_asked_for_again(start_api, start_worker, fake_anthropic):
    api = start_api()
    start_worker()
    analyses = [
        "summary",
        {"name": "flaky", "prompt": f"List the risks. [[fake: broken_json=1 fail_times=1 key={once('j')}]]",
         "output": "json"},
        {"name": "broken", "prompt": "List the names. [[fake: broken_json=1]]", "output": "json"},
        {"name": "refused", "prompt": "Say no. [[fake: error=400]]"},
    ]  # fmt: skip
    job = upload(api, documents.docx(["The board met.", "It approved the plan."]), "minutes.docx", analyses=analyses)
    done = wait_until_finished(api, job["id"], timeout=60)
    assert done["status"] == "succeeded", done  # at least one analysis succeeded
    steps = {step["name"]: step for step in done["steps"]}
    assert steps["summary"]["status"] == "succeeded" and steps["summary"]["attempts"] == 1
    # Broken once: asked again with the parse error, then fine.
    assert steps["flaky"]["status"] == "succeeded" and steps["flaky"]["attempts"] == 2
    assert len(done["result"]["analyses"]["flaky"]["output"]) == 3
    # Broken twice: the step fails, alone.
    assert steps["broken"]["status"] == "failed" and steps["broken"]["attempts"] == 2
    assert steps["broken"]["error"]["type"] == "invalid_output"
    assert steps["refused"]["status"] == "failed" and steps["refused"]["error"]["type"] == "invalid_request_error"
    assert set(done["result"]["analyses"]) == {"summary", "flaky"}
    assert done["document"]["pages"] == 1 and done["document"]["characters"] == len(
        "The board met.\nIt approved the plan."
    )


def test_bad_documents_fail_with_a_reason_a_person_understands(start_api, start_worker):
    api = start_api(MAX_DOCUMENT_BYTES="1000000")
    start_worker(MAX_DOCUMENT_BYTES="1000000")
    cases = {
        "encrypted": (documents.encrypted_pdf(), "locked.pdf", "encrypted"),
        "scan": (documents.image_only_pdf(), "scan.pdf", "try `extraction: native`"),
        "bomb": (documents.docx_bomb(12_000_000), "bomb.docx", "zip bomb"),
        "corrupt": (b"%PDF-1.7\n" + bytes(range(256)) * 8, "broken.pdf", "corrupt"),
    }
    jobs = {name: upload(api, data, filename) for name, (data, filename, _) in cases.items()}
    for name, job in jobs.items():
        done = wait_until_finished(api, job["id"], timeout=60)
        assert done["status"] == "failed", done
        assert done["error"]["type"] == "document_error"
        assert cases[name][2] in done["error"]["message"], done["error"]
        assert done["steps"][0]["status"] == "failed" and done["steps"][1]["status"] == "pending"
    # The worker survived all of them: a good document still goes through.
    job = upload(api, documents.HTML_PAGE.encode(), "page.html", analyses=["summary"])
    assert wait_until_finished(api, job["id"], timeout=60)["status"] == "succeeded"


def test_extraction_past_its_time_limit_is_a_document_error(start_api, start_worker):
    api = start_api()
    start_worker(DOCUMENT_EXTRACT_TIMEOUT_S="0.001")
    job = upload(api, documents.pdf(documents.report_pages(30)), "long.pdf", analyses=["summary"])
    done = wait_until_finished(api, job["id"], timeout=60)
    assert done["status"] == "failed" and done["error"]["type"] == "document_error", done
    assert "DOCUMENT_EXTRACT_TIMEOUT_S" in done["error"]["message"]


def test_native_extraction_gives_the_pdf_to_the_model(start_api, start_worker, fake_anthropic):
    api = start_api()
    start_worker()
    requests.delete(f"{fake_anthropic}/_fake/requests", timeout=5)
    job = upload(api, documents.image_only_pdf(), "scan.pdf", analyses=["topics"], extraction="native")
    done = wait_until_finished(api, job["id"], timeout=60)
    assert done["status"] == "succeeded", done
    assert done["document"]["pages"] == 1 and done["document"]["characters"] is None
    assert len(done["result"]["analyses"]["topics"]["output"]) == 3
    assert any(p.startswith("[document] List the main topics") for p in fake_prompts(fake_anthropic))


def test_cancel_stops_the_running_step_and_retry_reruns_only_what_did_not_succeed(
    start_api, start_worker, fake_anthropic, redis_conn
):
    api = start_api()
    start_worker()
    requests.delete(f"{fake_anthropic}/_fake/requests", timeout=5)
    analyses = ["summary", {"name": "slow", "prompt": f"Say it. [[fake: hang=1 fail_times=1 key={once('h')}]]"}]
    job = upload(api, b"Plain text about the harvest, which was good.", "notes.txt", analyses=analyses)
    wait_for(lambda: get(api, job["id"])["steps"][2]["status"] == "running", timeout=30, what="the slow step")
    canceled = requests.post(f"{api}/v1/jobs/{job['id']}/cancel", headers=ALICE, timeout=10)
    assert canceled.status_code == 202, canceled.text
    # The call hangs; the cancel closes it from outside.
    done = wait_until_finished(api, job["id"], timeout=30)
    assert done["status"] == "canceled", done
    steps = {step["name"]: step for step in done["steps"]}
    assert steps["summary"]["status"] == "succeeded" and steps["slow"]["status"] == "canceled"
    assert redis_conn.get(upload_key(job["id"])) is None  # extracted: only the text is kept

    calls_before = len(fake_prompts(fake_anthropic))
    retried = requests.post(f"{api}/v1/jobs/{job['id']}/retry", headers=ALICE, timeout=10)
    assert retried.status_code == 202, retried.text
    done = wait_until_finished(api, job["id"], timeout=30)
    assert done["status"] == "succeeded", done
    steps = {step["name"]: step for step in done["steps"]}
    assert steps["summary"]["attempts"] == 1 and steps["slow"]["attempts"] == 2
    assert set(done["result"]["analyses"]) == {"summary", "slow"}
    # The retry made one call, the slow step's, from the kept text.
    later = fake_prompts(fake_anthropic)[calls_before:]
    assert len(later) == 1 and "Say it." in later[0] and "harvest" in later[0]


def test_retry_of_a_succeeded_job_reruns_only_its_failed_steps_and_counts_it_once(
    start_api, start_worker, fake_anthropic, redis_conn
):
    api = start_api()
    start_worker()
    requests.delete(f"{fake_anthropic}/_fake/requests", timeout=5)
    # Refused once (a final 400: the step fails at once), answered the second time; a slow
    # step first, so that the job ends seconds after its text was extracted.
    analyses = [
        {"name": "slow", "prompt": "Sum it up. [[fake: latency_ms=2500]]"},
        {"name": "once_refused", "prompt": f"Say it. [[fake: error=400 fail_times=1 key={once('r')}]]"},
    ]
    job = upload(api, b"Plain text about the harvest, which was good.", "notes.txt", analyses=analyses)
    done = wait_until_finished(api, job["id"], timeout=60)
    assert done["status"] == "succeeded", done
    steps = {step["name"]: step for step in done["steps"]}
    assert steps["once_refused"]["status"] == "failed" and set(done["result"]["analyses"]) == {"slow"}
    # The extracted text lives as long as the ended job (7 days), not 7 days from extraction.
    assert redis_conn.ttl(text_key(job["id"])) >= 7 * 24 * 3600 - 1

    def usage() -> dict:
        return requests.get(f"{api}/v1/usage", headers=ALICE, timeout=10).json()["total"]

    counted = usage()
    assert counted["jobs"] == 1
    calls_before = len(fake_prompts(fake_anthropic))

    retried = requests.post(f"{api}/v1/jobs/{job['id']}/retry", headers=ALICE, timeout=10)
    assert retried.status_code == 202, retried.text
    # The job as it is once the retry is done: a worker may have started it already.
    assert retried.json()["status"] in ("queued", "running") and retried.json()["result"] is None
    again = wait_until_finished(api, job["id"], timeout=60)
    assert again["status"] == "succeeded", again
    steps = {step["name"]: step for step in again["steps"]}
    assert steps["slow"]["attempts"] == 1 and steps["once_refused"]["attempts"] == 2
    assert {step["status"] for step in again["steps"]} == {"succeeded"}
    assert set(again["result"]["analyses"]) == {"slow", "once_refused"}
    # Only the failed step's call was made again; the job is still one job in the usage, with
    # the new call's tokens.
    later = fake_prompts(fake_anthropic)[calls_before:]
    assert len(later) == 1 and "Say it." in later[0]
    recounted = usage()
    assert recounted["jobs"] == 1 and recounted["output_tokens"] > counted["output_tokens"]
    # Nothing failed is left: a retry now is a 409.
    refused = requests.post(f"{api}/v1/jobs/{job['id']}/retry", headers=ALICE, timeout=10)
    assert refused.status_code == 409 and "document job with failed steps" in refused.json()["message"]


def test_json_analyses_ask_for_structured_outputs_and_again_in_words_when_the_model_refuses(
    start_api, start_worker, fake_anthropic
):
    api = start_api()
    start_worker()
    marker = uuid.uuid4().hex
    text = f"{marker}\n" + "The quarterly report shows steady growth. " * 20
    requests.delete(f"{fake_anthropic}/_fake/requests", timeout=5)
    structured = wait_until_finished(api, upload(api, text.encode(), "plain.txt")["id"], timeout=60)
    refusing = wait_until_finished(
        api, upload(api, (text + "[[fake: no_structured=1]]").encode(), "refusing.txt")["id"], timeout=60
    )

    for job in (structured, refusing):
        assert job["status"] == "succeeded", job
        analyses = job["result"]["analyses"]
        assert all(isinstance(point, str) for point in analyses["key_points"]["output"])
        assert set(analyses["sentiment"]["output"]) == {"label", "score", "rationale"}
    sent = [e["body"] for e in requests.get(f"{fake_anthropic}/_fake/requests", timeout=5).json()]
    ours = [body for body in sent if marker in json.dumps(body["messages"])]
    plain = [body for body in ours if "no_structured" not in json.dumps(body["messages"])]
    refused = [body for body in ours if "no_structured" in json.dumps(body["messages"])]
    schemas = [body["output_config"]["format"]["schema"] for body in plain if "output_config" in body]
    assert len(schemas) == 3  # key_points, sentiment, topics; the summary is text
    # the document is a cached prefix, first in the message
    assert all(body["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral"} for body in plain)
    # refused once, then every JSON analysis asked in words
    assert sum("output_config" in body for body in refused) == 1
    assert refusing["steps"][2]["attempts"] == 2  # key_points: the refused call, then the one in words
