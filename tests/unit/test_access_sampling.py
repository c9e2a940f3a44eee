"""The API server's access lines (service/logs.SampledAccessLines): every error's, a share
of the others, each sampled line saying its share."""

from __future__ import annotations

import logging

from service.logs import SampledAccessLines


def access_record(status: int) -> logging.LogRecord:
    """A line as granian's access logger makes it: its fields are the record's args."""
    return logging.LogRecord("granian.access", logging.INFO, "", 0, "%(status)d", ({"status": status},), None)


def test_every_error_line_is_kept_and_a_share_of_the_others():
    sampled = SampledAccessLines(0.25)
    assert all(sampled.filter(access_record(status)) for status in (400, 404, 422, 429, 500, 503) * 100)
    kept = [record for record in (access_record(202) for _ in range(8000)) if sampled.filter(record)]
    # 2000 expected; the bounds are eight standard deviations (~39) away
    assert 1690 < len(kept) < 2310
    assert {record.sampled for record in kept} == {0.25}


def test_a_share_of_one_keeps_every_line_unmarked():
    record = access_record(200)
    assert SampledAccessLines(1.0).filter(record) and not hasattr(record, "sampled")
