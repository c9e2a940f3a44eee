"""The `params` schemas the API checks requests against are the ones the installed SDK's types
make: after an SDK upgrade this fails until `python -m service.llm.params` is run (and its
files committed), so no request is checked against another SDK's types."""

import subprocess
import sys

import pytest

from service.llm.params import SCHEMA_DIR, SOURCES

# Made in a fresh interpreter, as `python -m service.llm.params` makes it: pydantic names the
# schema's shared definitions by the models it has built before in the process, so in a test
# process (other tests built other SDK models) the same types may come out under other names.
MAKE = (
    "import sys; from service.llm.params import SOURCES, generated_schema, schema_text; "
    "sys.stdout.write(schema_text(generated_schema(SOURCES[sys.argv[1]])))"
)


@pytest.mark.parametrize("name", SOURCES)
def test_the_stored_schema_is_the_one_the_installed_sdk_makes(name):
    made = subprocess.run([sys.executable, "-c", MAKE, name], capture_output=True, text=True, check=True).stdout
    assert (SCHEMA_DIR / name).read_text() == made


def test_the_api_does_not_import_the_sdk():
    import subprocess
    import sys

    code = "import sys, wsgi; print('anthropic' in sys.modules)"
    env = {"API_KEYS": "a=k1234567890123456", "PATH": ""}
    answer = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert answer.stdout.strip() == "False"
