"""An evaluation's result files, shared by ``tntn_env.evaluate`` and the integrations
(``tntn_env.benchmarl``): the CSV columns, the per-episode summary statistics, the machine record
and the output folder check (nothing is replaced unless asked)."""

from __future__ import annotations

import math
import os
import platform
import statistics
from pathlib import Path

import torch

from .core import SYSTEM_METRICS

STEP_COLUMNS = ("episode", "step", *SYSTEM_METRICS, "decision_time_s")
EPISODE_COLUMNS = ("episode", "seed", "steps", *SYSTEM_METRICS, "reward_sum",
                   "decision_time_mean_s", "decision_time_max_s")
OUT_FILES = ("steps.csv", "episodes.csv", "summary.json")


def machine_info() -> dict:
    """Platform, versions, cores, torch threads and load average, recorded with a result."""
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {"platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "load_average": load}


def mean_std(xs):
    """Mean and population standard deviation of ``xs`` (per-episode values)."""
    xs = [float(x) for x in xs]
    if not xs:
        return {"mean": math.nan, "std": math.nan}
    return {"mean": statistics.fmean(xs), "std": statistics.pstdev(xs) if len(xs) > 1 else 0.0}


def prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Create the output folder and check, before any evaluation runs, that the results can be
    written there without replacing earlier ones (unless ``overwrite``)."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"cannot create the output folder {out_dir}: {e}") from None
    for f in OUT_FILES:
        if (out_dir / f).is_dir():
            raise ValueError(f"{out_dir / f} is a folder; the results need that name for a file "
                             "(choose another --out)")
    held = [f for f in OUT_FILES if (out_dir / f).exists()]
    if held and not overwrite:
        raise ValueError(f"the output folder {out_dir} already holds results ({', '.join(held)}); "
                         "pass --overwrite to replace them, or choose another --out")
    try:
        with open(out_dir / f".write_check_{os.getpid()}", "w") as f:
            f.write("x")
        os.remove(out_dir / f".write_check_{os.getpid()}")
        for name in held:
            with open(out_dir / name, "a"):
                pass
    except OSError as e:
        raise ValueError(f"the output folder {out_dir} is not writable: {e}") from None
