"""Names the docstring examples in the rooms use (run as doctests by `make test`), and an
environment free of prometheus_client's multiprocess switch."""

from __future__ import annotations

import os
from typing import Any

import pytest

from config import Settings
from tokens.counter import TokenCounter
from tokens.encoding import load_encoding

# The tests keep metrics in process, one registry per app, and give gunicorn a directory of its
# own. A PROMETHEUS_MULTIPROC_DIR left in the shell (from running gunicorn by hand, say) would
# make prometheus_client, imported after this file by tests/conftest.py, write every test's
# figures to files there and sum them over all apps.
for _name in ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir"):
    os.environ.pop(_name, None)


@pytest.fixture(autouse=True, scope="session")
def _doctest_names(doctest_namespace: dict[str, Any]) -> None:
    doctest_namespace.update(
        Settings=Settings,
        TokenCounter=TokenCounter,
        load_encoding=load_encoding,
        counter=TokenCounter(load_encoding()),
    )
