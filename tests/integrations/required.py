"""The import guard of the integration smoke tests: skip (with the install line) where the
library is missing, fail instead where ``TNTN_REQUIRE_<EXTRA>=1`` (``.ci/run``'s venvs)."""

from __future__ import annotations

import os

import pytest


def require(extra: str, package: str, error: ImportError) -> None:
    """Called from a test module's ``except ImportError`` around the library's imports."""
    var = f"TNTN_REQUIRE_{extra.upper()}"
    msg = (f"needs {package} ({error}): pip install -e \".[{extra}]\" in its own virtual "
           f"environment (.ci/run does; {var}=1 makes this a failure)")
    if os.environ.get(var) == "1":
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg, allow_module_level=True)
