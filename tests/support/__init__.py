"""What the tests share, one module per concept; fixtures and pytest hooks stay in
tests/conftest.py, and test modules import from here, never from conftest or each other.

- `paths`, `keys`: the checkout's paths and the API keys the tests' services accept.
- `waiting`, `network`, `concurrency`: `wait_for`, free ports, calls released at once.
- `redis_server`, `redis_calls`: a redis-server of the test's own, counting round trips.
- `processes`, `stack`: real processes (the API, worker, scheduler, fake) and their logs.
- `jobs`, `jobs_in_redis`: jobs over the API (`submit`) or straight on Redis.
- `fake_server`: prompts that script the fake Anthropic server, its app in a thread.
- `webhooks`, `event_stream`, `prometheus`, `dashboard`, `cli`, `error_shape`: one
  surface of the service each.
- `docs_pages`: the docs site's pages, for the tests that check one against the code.
- `markers`: which fixtures earn a test the `stack` marker.
"""

import pkgutil

import pytest

# Asserts in these modules explain themselves on failure as a test's do: pytest rewrites only
# test modules and conftest.py unless told, and must be told before the module is imported.
pytest.register_assert_rewrite(*(f"{__name__}.{module.name}" for module in pkgutil.iter_modules(__path__)))
