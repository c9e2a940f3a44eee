"""The floor of issue 11's submit bar: a Flask app that does the least a submit must.

It checks the bench's bearer key, parses the JSON body, writes one Redis pipeline (the job
as a hash, its id on a list) and answers 202 with the id: no validation, no limits, no RQ,
no logs. It is `stack.py` with no layers (FLOOR_LAYERS unset). Run as the product under the
bench's own command (this folder has the project's requirements.txt, so the bench's venv is
the product's):

    PRODUCT_DIR=bench/floor ../shared/bench/compare.sh a
"""

from stack import app

__all__ = ["app"]
