"""Seed aggregation (``python -m tntn_env.experiments.seeds``): a tiny 2-seed run writes the
per-seed and summary tables, whose mean and 95% CI are recomputed here; aggregate() and the
table writer on hand numbers."""

import csv
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from tntn_env.config import TINY_OVERRIDES
from tntn_env.core import SYSTEM_METRICS
from tntn_env.experiments import seeds
from tntn_env.experiments.launch import TINY_TRAINER_FLAGS
from tntn_env.experiments.seeds import (
    aggregate,
    check_passthrough,
    format_mean_ci,
    parse_seeds,
    write_table,
)

ROOT = Path(__file__).resolve().parents[1]


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_aggregate_on_hand_numbers():
    rows = [{"x": 1, "y": "2.0"}, {"x": 2, "y": ""}, {"x": 3, "y": "nan"}]
    (x, y) = aggregate(rows, ["x", "y"])
    assert x["metric"] == "x" and x["n"] == 3 and x["mean"] == 2.0
    assert math.isclose(x["ci95"], 4.303 * 1.0 / math.sqrt(3))  # stdev([1,2,3]) = 1, t(2)
    assert y["n"] == 1 and y["mean"] == 2.0 and math.isnan(y["ci95"])  # empty / NaN skipped
    (z,) = aggregate([{"z": 5.0}, {"z": 7.0}], ["z"])
    assert z["mean"] == 6.0 and math.isclose(z["ci95"], 12.706 * math.sqrt(2) / math.sqrt(2))
    (none,) = aggregate([{"a": 1}], ["missing"])
    assert none["n"] == 0 and math.isnan(none["mean"])
    grouped = aggregate([{"p": "a", "v": 1}, {"p": "b", "v": 5}, {"p": "a", "v": 3}], ["v"],
                        by=("p",))
    assert [(g["p"], g["mean"], g["n"]) for g in grouped] == [("a", 2.0, 2), ("b", 5.0, 1)]


def test_write_table_and_formatting(tmp_path):
    assert format_mean_ci(0.45812, 0.01234) == "0.458 ± 0.012"
    assert format_mean_ci(25.8, 3.2) == "25.8 ± 3.2"
    assert format_mean_ci(1234.4, 150.0) == "1234 ± 150"
    assert format_mean_ci(2.0, float("nan")) == "2 ± n/a"
    rows = aggregate([{"se": 0.4}, {"se": 0.5}], ["se"])
    write_table(rows, tmp_path / "t.csv", tmp_path / "t.md", "Title", notes="a note")
    back = read(tmp_path / "t.csv")
    assert back[0]["metric"] == "se" and math.isclose(float(back[0]["mean"]), 0.45)
    md = (tmp_path / "t.md").read_text().splitlines()
    assert md[0] == "# Title" and "a note" in md
    assert "| metric | mean ± 95% CI | n |" in md
    assert any(line.startswith("| se | 0.45 ± 0.64 | 2 |") for line in md)


def test_parse_seeds_and_passthrough():
    assert parse_seeds("1,2,3") == [1, 2, 3]
    assert parse_seeds("1-5") == [1, 2, 3, 4, 5]
    assert parse_seeds("3, 1-2,3") == [1, 2, 3]
    for bad in ("", "a", "5-1", "1-"):
        with pytest.raises(ValueError, match="--seeds"):
            parse_seeds(bad)
    check_passthrough(["--learning-rate", "3e-4", "--no-anneal-lr"])
    with pytest.raises(ValueError, match="--set"):
        check_passthrough(["--env-overrides", "num_subbands=4"])


@pytest.mark.slow
def test_two_seed_run_writes_tables(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "tntn_env.experiments.seeds", "--algo", "hdrl", "--seeds", "1-2",
           "--total-timesteps", "160",
           *[x for k, v in TINY_OVERRIDES.items() for x in ("--set", f"{k}={v}")],
           "--eval-episodes", "2", "--eval-seed", "500", "--out", str(out),
           "--", *TINY_TRAINER_FLAGS]
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH"))
                                         if p)}
    res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    per_seed = read(out / "per_seed.csv")
    assert [int(r["seed"]) for r in per_seed] == [1, 2]
    assert list(per_seed[0]) == ["seed", *SYSTEM_METRICS, "decision_time_s", "train_wall_s"]
    for s in (1, 2):  # the same held-out episodes for both seeds
        ev = json.loads((out / f"seed_{s}" / "eval" / "summary.json").read_text())
        assert ev["seeds"] == [500, 501] and ev["checkpoint"].endswith("checkpoint.pt")
    summary = {r["metric"]: r for r in read(out / "summary.csv")}
    assert set(summary) == {*SYSTEM_METRICS, "decision_time_s", "train_wall_s"}
    for m, r in summary.items():
        xs = [float(p[m]) for p in per_seed]
        mean = statistics.fmean(xs)
        half = 12.706 * statistics.stdev(xs) / math.sqrt(2)  # t(0.975, df=1)
        assert int(r["n"]) == 2
        assert math.isclose(float(r["mean"]), mean, rel_tol=1e-9, abs_tol=1e-12)
        assert math.isclose(float(r["ci95"]), half, rel_tol=1e-9, abs_tol=1e-12)
    md = (out / "summary.md").read_text()
    assert "| metric | mean ± 95% CI | n |" in md and "spectral_efficiency" in md

    # a re-run (in-process: no second interpreter) reuses both trained seeds
    monkeypatch.chdir(tmp_path)
    assert seeds.main(cmd[3:]) == 0
    assert "seed 1 (reused)" in capsys.readouterr().out
    assert read(out / "per_seed.csv") == per_seed
