"""The RLlib and BenchMARL modules are imported on demand: ``tntn_env`` works without ray and
benchmarl, and each module says what to install where its library is missing."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module, lib, extra", [("rllib", "ray", "rllib"),
                                                ("benchmarl", "benchmarl", "benchmarl")])
def test_clear_error_without_the_library(module, lib, extra):
    code = (f"import sys; sys.modules[{lib!r}] = None; import tntn_env; "
            "tntn_env.parallel_env('uav').reset(seed=0)\n"
            f"try:\n    import tntn_env.{module}\nexcept ImportError as e:\n    print(e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"tntn_env.{module} needs" in out.stdout
    assert f'pip install -e ".[{extra}]"' in out.stdout
