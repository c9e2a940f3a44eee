"""Issue 21, the second security review of uploads: each hole it found, reproduced against
the real API (gunicorn) and worker, with another client's work checked alongside.

Each test fails on the code before its fix: the HTML sniff backtracked exponentially, the
chunking was quadratic on the event loop, DOCX text was repeated per enclosing paragraph
with no output bound, failed uploads stayed, two malformed uploads were 500s, a listing read
every prompt it passed over, a ZIP was parsed before the limit, operator logins were
unlimited and a multipart file name unbounded.
"""

from __future__ import annotations

import io
import json
import secrets
import threading

import requests

from service.jobs.storage.keys import upload_key
from tests import documents
from tests.support.dashboard import AUTH, OPERATOR
from tests.support.error_shape import assert_error_shape
from tests.support.jobs import submit, wait_until_finished
from tests.support.keys import ALICE, BOB
from tests.support.waiting import wait_for


def post_upload(api: str, data: bytes, filename: str = "file", headers: dict = ALICE, **options: object):
    return requests.post(
        f"{api}/v1/documents",
        files={"file": (filename, io.BytesIO(data)), "options": (None, json.dumps(options))},
        headers=headers,
        timeout=60,
    )


def uploaded(api: str, data: bytes, filename: str = "file", headers: dict = ALICE, **options: object) -> dict:
    response = post_upload(api, data, filename, headers, **options)
    assert response.status_code == 202, response.text
    return response.json()


def test_comments_before_text_do_not_stop_an_api_process(start_api):
    """1: 4 KB of `<!---->` froze a gunicorn process (the regex held the GIL) for a minute;
    with one process, /healthz timed out meanwhile."""
    api = start_api(WEB_CONCURRENCY="1")
    answers: dict[str, requests.Response] = {}

    def upload() -> None:
        answers["upload"] = post_upload(api, documents.html_behind_comments(40), "page.txt")

    sender = threading.Thread(target=upload)
    sender.start()
    for _ in range(5):  # the same process answers its health check meanwhile
        assert requests.get(f"{api}/healthz", timeout=10).status_code == 200
    sender.join(timeout=30)
    assert not sender.is_alive(), "the upload did not answer"
    assert answers["upload"].status_code == 202, answers["upload"].text


def test_a_huge_text_neither_stalls_other_clients_nor_escapes_its_bounds(start_api, start_worker, redis_conn):
    """2: 20 MB of `a a a …` was chunked quadratically on the worker's event loop: another
    client's job took 32 s instead of 0.2 s. Now it is cut in the extraction child, linearly."""
    api = start_api()
    start_worker(MAX_DOCUMENT_CHARACTERS="20000000", MAX_DOCUMENT_CHUNKS="200")
    big = uploaded(api, b"a " * 10_000_000, "words.txt", BOB, analyses=["summary"])
    wait_for(lambda: _step(api, big["id"], BOB, "extract") == "succeeded", timeout=60, what="the extraction")
    job = submit(api, {"prompt": "an ordinary job"})  # sent while the big one runs its 101 calls
    assert wait_until_finished(api, job["id"], timeout=30)["status"] == "succeeded"
    done = _finished(api, big["id"], BOB)
    assert done["status"] == "succeeded", done
    assert done["document"]["characters"] == 20_000_000
    assert done["steps"][1]["attempts"] == 101  # 100 chunks of 200,000 characters, then the combination


def test_the_text_bound_holds_in_the_extraction_child(start_api, start_worker):
    """3: text nested in paragraphs was emitted once per enclosing one (a 5 KB DOCX gave
    300 million characters) and nothing bounded the output."""
    api = start_api()
    start_worker(MAX_DOCUMENT_CHARACTERS="1000000")
    nested = uploaded(api, documents.nested_paragraphs_docx(250, "y" * 1000), "nested.docx", analyses=["summary"])
    long = uploaded(api, documents.docx(["z" * 1000] * 1200), "long.docx", analyses=["summary"])

    done = wait_until_finished(api, nested["id"], timeout=60)
    assert done["status"] == "succeeded", done
    assert done["document"]["characters"] == 250 * 1000 + 249  # each run once, a line per paragraph
    failed = wait_until_finished(api, long["id"], timeout=60)
    assert failed["status"] == "failed"
    assert failed["error"]["type"] == "document_error"
    assert "longer than 1000000 characters (MAX_DOCUMENT_CHARACTERS)" in failed["error"]["message"]


def test_deep_nesting_is_refused_at_once_and_holds_no_extraction_slot(start_api, start_worker):
    """4: a DOCX of 20,000 nested paragraphs cost O(depth²) and held an extraction slot
    until the time limit; a few of them blocked extraction for every client."""
    api = start_api()
    start_worker(DOCUMENT_EXTRACT_TIMEOUT_S="20")
    deep = documents.docx_with_body("<w:p>" * 20_000 + "<w:r><w:t>x</w:t></w:r>" + "</w:p>" * 20_000)
    attacks = [uploaded(api, deep, "deep.docx", BOB, analyses=["summary"]) for _ in range(4)]
    mine = uploaded(api, documents.docx(["An ordinary report."]), "report.docx", analyses=["summary"])

    assert wait_until_finished(api, mine["id"], timeout=30)["status"] == "succeeded"
    for attack in attacks:
        done = _finished(api, attack["id"], BOB)
        assert done["status"] == "failed" and done["error"]["type"] == "document_error"
        assert "deeper than 256 levels" in done["error"]["message"], done["error"]


def test_a_failed_upload_is_deleted_and_uploads_are_limited_by_size(start_api, start_worker, redis_conn):
    """5: a corrupt upload stayed in Redis for RESULT_TTL_S (7 days), and one client could
    write ~12 GiB a minute at the default submit limit."""
    api = start_api(UPLOAD_RATE_LIMIT="5/hour")
    start_worker()
    corrupt = uploaded(api, b"%PDF-1.7\n" + b"\x00garbage" * 250_000, "broken.pdf")  # 2 MB: 2 of 5 MiB
    done = wait_until_finished(api, corrupt["id"], timeout=30)
    assert done["status"] == "failed" and done["error"]["type"] == "document_error"
    assert redis_conn.exists(upload_key(corrupt["id"])) == 0

    assert post_upload(api, b"x" * 1_500_000, "a.txt").status_code == 202  # 4 of 5 MiB
    refused = post_upload(api, b"x" * 1_500_000, "b.txt")  # 2 more
    error = assert_error_shape(refused, 429)
    assert "UPLOAD_RATE_LIMIT" in error["message"] and int(refused.headers["Retry-After"]) > 0
    assert post_upload(api, b"another client's file", "c.txt", BOB).status_code == 202  # a limit per client


def test_malformed_uploads_are_4xx_not_500(start_api):
    """6: a DOCX member name flagged UTF-8 but not UTF-8, and the form integer `²`."""
    api = start_api()
    bad_name = post_upload(api, documents.docx_with_bad_utf8_name(), "bad.docx")
    assert "cannot be read" in assert_error_shape(bad_name, 415)["message"]
    superscript = requests.post(
        f"{api}/v1/documents",
        files={"file": ("a.txt", b"text")},
        data={"max_tokens": "\u00b2"},
        headers=ALICE,
        timeout=10,
    )
    assert "max_tokens" in json.dumps(assert_error_shape(superscript, 422)["errors"])


def test_listing_reads_only_what_it_returns(start_api, redis_conn):
    """7: `GET /v1/jobs?status=<rare>` read up to 1,000 whole jobs, prompts included: six
    concurrent GETs took an API process from 154 to 1,255 MiB. Listing is limited too."""
    api = start_api(LIST_RATE_LIMIT="4/minute")
    # Random, so that RQ's zlib compression of a job's call leaves it ~450 KB in Redis.
    jobs = [submit(api, {"prompt": secrets.token_hex(450_000)}) for _ in range(12)]  # no worker: they stay queued
    assert requests.post(f"{api}/v1/jobs/{jobs[0]['id']}/cancel", headers=ALICE, timeout=10).status_code == 200

    before = _bytes_sent_by(redis_conn)
    page = requests.get(f"{api}/v1/jobs", params={"status": "canceled"}, headers=ALICE, timeout=10)
    read = _bytes_sent_by(redis_conn) - before
    assert [job["id"] for job in page.json()["data"]] == [jobs[0]["id"]]
    assert read < 500_000, f"Redis sent {read} bytes for one canceled job among 12 with 450 KB requests"

    newest = requests.get(f"{api}/v1/jobs", params={"limit": 3}, headers=ALICE, timeout=10).json()
    assert [job["id"] for job in newest["data"]] == [job["id"] for job in jobs[-1:-4:-1]]
    assert requests.get(f"{api}/v1/jobs", headers=ALICE, timeout=10).status_code == 200
    assert requests.get(f"{api}/v1/jobs", headers=ALICE, timeout=10).status_code == 200
    refused = requests.get(f"{api}/v1/jobs", headers=ALICE, timeout=10)
    assert "LIST_RATE_LIMIT" in assert_error_shape(refused, 429)["message"]
    assert requests.get(f"{api}/v1/jobs/{jobs[1]['id']}", headers=ALICE, timeout=10).status_code == 200


def test_a_client_over_its_limit_gets_429_before_its_upload_is_parsed(start_api):
    """8: an 18 MB ZIP of 400,000 entries cost 2.4 s of API CPU in the sniffer, before the
    rate limit was looked at."""
    api = start_api(RATE_LIMIT="1/minute")
    archive = documents.zip_with_entries(200_000)
    assert len(archive) > 15_000_000
    submit(api, {"prompt": "spends the allowance"})
    over = post_upload(api, archive, "archive.docx")
    assert "RATE_LIMIT" in assert_error_shape(over, 429)["message"]  # was a 415: sniffed first
    # Within its limit, the archive is told apart by the size its directory declares.
    refused = post_upload(api, archive, "archive.docx", BOB)
    assert "not a Word document" in assert_error_shape(refused, 415)["message"]


def test_wrong_operator_passwords_are_limited(start_api):
    """9: the dashboard was exempt from every limit: 200 wrong passwords, 200 x 401."""
    api = start_api(**OPERATOR, OPERATOR_LOGIN_RATE_LIMIT="5/minute")
    for _ in range(5):
        response = requests.get(f"{api}/dashboard/", auth=("ops", "guess"), timeout=10)
        assert_error_shape(response, 401)
    refused = requests.get(f"{api}/dashboard/", auth=AUTH, timeout=10)  # even the right one, from there
    assert "OPERATOR_LOGIN_RATE_LIMIT" in assert_error_shape(refused, 429)["message"]
    assert int(refused.headers["Retry-After"]) > 0


def test_a_multipart_file_name_is_bounded(start_api):
    """10: a 200,004-character name was stored and served; the JSON route caps it at 255."""
    api = start_api()
    response = post_upload(api, b"some text", "n" * 200_000 + ".txt")
    assert "255" in assert_error_shape(response, 422)["message"]
    assert post_upload(api, b"some text", "n" * 251 + ".txt").status_code == 202


def _step(api: str, job_id: str, headers: dict, name: str) -> str:
    job = requests.get(f"{api}/v1/jobs/{job_id}", headers=headers, timeout=10).json()
    return next(step["status"] for step in job["steps"] if step["name"] == name)


def _finished(api: str, job_id: str, headers: dict, timeout: float = 120) -> dict:
    def ended() -> dict | None:
        job = requests.get(f"{api}/v1/jobs/{job_id}", headers=headers, timeout=10).json()
        return job if job["status"] in ("succeeded", "failed", "canceled") else None

    return wait_for(ended, timeout=timeout, interval=0.2, what=f"job {job_id} to end")


def _bytes_sent_by(redis_conn) -> int:
    return int(redis_conn.info("stats")["total_net_output_bytes"])
