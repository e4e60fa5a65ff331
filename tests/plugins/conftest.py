"""Fixtures for third-party piece tests; the example package's own tests are run by its own pytest.

`acme-pieces/` is a separate distribution with its own `pyproject.toml` and tests, which import
`acme_pieces` as installed. This suite installs it first and runs those tests in a subprocess
(`test_third_party_pieces.py`), so they are not collected here.
"""

from tests.interpreter.conftest import engine  # noqa: F401  (the session's Prefect server)

collect_ignore = ["acme-pieces"]
