"""The `params` schemas the API checks requests against are the ones the installed SDK's types
make: after an SDK upgrade this fails until `python -m service.llm.params` is run (and its
files committed), so no request is checked against another SDK's types."""

import pytest

from service.llm.params import SCHEMA_DIR, SOURCES, generated_schema, schema_text


@pytest.mark.parametrize(("name", "module"), SOURCES.items())
def test_the_stored_schema_is_the_one_the_installed_sdk_makes(name, module):
    assert (SCHEMA_DIR / name).read_text() == schema_text(generated_schema(module))


def test_the_api_does_not_import_the_sdk():
    import subprocess
    import sys

    code = "import sys, wsgi; print('anthropic' in sys.modules)"
    env = {"API_KEYS": "a=k1234567890123456", "PATH": ""}
    answer = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert answer.stdout.strip() == "False"
