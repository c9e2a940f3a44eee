"""Job ids: uuid4 hex, minted here and recognised here."""

from __future__ import annotations

import re
from uuid import uuid4

JOB_ID_PATTERN = "[0-9a-f]{32}"
_JOB_ID = re.compile(JOB_ID_PATTERN)


def new_job_id() -> str:
    return uuid4().hex


def is_job_id(value: str) -> bool:
    return _JOB_ID.fullmatch(value) is not None
