"""The orbit experiment's command (tntn_env/experiments/orbit.py), greedy part, tiny preset."""

from __future__ import annotations

import csv

from tntn_env.experiments import orbit as exp


def test_orbit_experiment_greedy_part(tmp_path):
    exp.main(["--preset", "tiny", "--no-train", "--out", str(tmp_path)])
    for name in ("steps.csv", "table.csv", "orbit.png", "results.md", "meta.json"):
        assert (tmp_path / name).is_file(), name
    rows = list(csv.DictReader(open(tmp_path / "table.csv")))
    assert [r["policy"] for r in rows] == ["greedy (pass)", "greedy (static)"]
    steps = list(csv.DictReader(open(tmp_path / "steps.csv")))
    # below the minimum elevation nothing is served satellite-direct
    assert all(float(r["sat_share"]) == 0.0 for r in steps if r["visible"] == "0")
    assert any(r["visible"] == "0" for r in steps) and any(r["visible"] == "1" for r in steps)


def test_orbit_experiment_dry_run_lists_both_conditions(capsys):
    exp.main(["--preset", "tiny", "--dry-run"])
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and "orbit_static_step" in out[1] and "orbit_static_step" not in out[0]
