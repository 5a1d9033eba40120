"""The evaluation CLI: every non-checkpoint policy runs full episodes and writes its files."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
import torch

from tntn_env.config import TINY_OVERRIDES, format_overrides
from tntn_env.evaluate import EPISODE_COLUMNS, STEP_COLUMNS, main

SMALL = ["--set", "num_subbands=2", "--set", "users_per_region=4", "--set", "num_beams=2",
         "--set", "regions_per_hap=1", "--set", "tbs_per_region=1", "--set", "uavs_per_region=0",
         "--set", "time_blocks=1", "--set", "power_levels=(0.5, 1.0)",
         "--set", "episode_steps=20", "--set", "satellite_interval=10", "--set", "hap_interval=5"]
DOCUMENTED = ["episode", "step", "throughput_mbps", "sum_rate_mbps", "spectral_efficiency",
              "fairness", "qos_violation", "uav_penalty", "spectrum_utilisation", "reward",
              "decision_time_s"]  # docs/experiments.md: the system metrics in SYSTEM_METRICS order


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _read(path):
    with open(path) as f:
        r = csv.DictReader(f)
        return r.fieldnames, list(r)


@pytest.mark.parametrize("policy,extra", [("random", []), ("greedy", []),
                                          ("exhaustive", ["--subspace", "full"])])
def test_cli_writes_documented_files(tmp_path, policy, extra):
    out = tmp_path / policy
    rc = main(["--policy", policy, "--scenario", "sag", "--episodes", "2", "--seed", "3",
               "--num-envs", "2", "--out", str(out), "--no-progress", *SMALL, *extra])
    assert rc == 0
    cols, rows = _read(out / "steps.csv")
    assert cols == DOCUMENTED == list(STEP_COLUMNS)
    assert len(rows) == 2 * 20
    assert {r["episode"] for r in rows} == {"0", "1"}
    assert all(float(r["decision_time_s"]) >= 0 for r in rows)
    cols, eps = _read(out / "episodes.csv")
    assert cols == list(EPISODE_COLUMNS)
    assert [int(e["seed"]) for e in eps] == [3, 4]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["policy"] == policy and summary["seeds"] == [3, 4]
    assert summary["episode_steps"] == 20
    assert set(summary["metrics"]) == set(DOCUMENTED[2:-1])
    if policy == "exhaustive":
        assert summary["label"] == "exhaustive"
        assert summary["exhaustive"]["covered_max"] >= summary["exhaustive"]["evaluated_max"] - 1


def test_same_seeds_same_results_whatever_the_batching(tmp_path):
    """Episode i always uses seed S+i: a deterministic policy gives the same per-step results
    whether the episodes are stepped one by one or together."""
    a, b = tmp_path / "a", tmp_path / "b"
    for out, ne in ((a, "1"), (b, "2")):
        assert main(["--policy", "greedy", "--episodes", "2", "--seed", "0", "--num-envs", ne,
                     "--out", str(out), "--no-progress", *SMALL]) == 0
    ra, rb = _read(a / "steps.csv")[1], _read(b / "steps.csv")[1]
    key = [(r["episode"], r["step"]) for r in ra]
    assert key == [(r["episode"], r["step"]) for r in sorted(rb, key=lambda r: (
        int(r["episode"]), int(r["step"])))]
    rb = {(r["episode"], r["step"]): r for r in rb}
    for x in ra:
        y = rb[(x["episode"], x["step"])]
        assert float(x["reward"]) == pytest.approx(float(y["reward"]), rel=1e-4, abs=1e-5)


def test_cli_module_entry_point_and_layering(tmp_path):
    """One fresh interpreter: importing the env does not import baselines; then the module runs
    as ``python -m tntn_env.evaluate`` would."""
    args = ["--policy", "random", "--episodes", "1", "--out", str(tmp_path / "m"),
            "--no-progress", "--threads", "1", *SMALL]
    code = ("import runpy, sys, tntn_env, tntn_env.evaluate\n"
            "assert not [m for m in sys.modules if m.split('.')[0] == 'baselines'\n"
            "            or m.startswith('tntn_env.baselines')], 'env imports baselines'\n"
            f"sys.argv = ['tntn_env.evaluate', *{args!r}]\n"
            "runpy.run_module('tntn_env.evaluate', run_name='__main__')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "m" / "steps.csv").exists()


def test_cli_errors(tmp_path):
    with pytest.raises(SystemExit):
        main(["--policy", "hdrl", "--out", str(tmp_path), "--no-progress"])  # no checkpoint
    with pytest.raises(SystemExit, match="--sample applies to the trained policies"):
        main(["--policy", "greedy", "--sample", "--out", str(tmp_path), "--no-progress"])
    # the default scenario's full space is refused with its size (exit code 2, no sampling)
    assert main(["--policy", "exhaustive", "--out", str(tmp_path / "x"), "--no-progress",
                 "--set", "episode_steps=2"]) == 2
    assert main(["--policy", "greedy", "--out", str(tmp_path / "y"), "--no-progress",
                 "--set", "no_such_key=1"]) == 2


# ---------------------------------------------------------------- checkpoints and output folders

CK_OVERRIDES = format_overrides({**TINY_OVERRIDES, "episode_steps": 6})


def _checkpoint(path, scenario="sag", overrides=CK_OVERRIDES):
    """An untrained hdrl_ppo.py checkpoint written with the trainer's own helpers."""
    import importlib.util

    from tntn_env.trainer_files import trainer_path

    spec = importlib.util.spec_from_file_location("hdrl_t", trainer_path("hdrl"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    args = mod.Args(scenario=scenario, env_overrides=overrides)
    agents = mod.build_agents(mod.make_core(args, 1, "cpu"), args, "cpu")
    opts = {t: torch.optim.Adam(a.parameters()) for t, a in agents.items()}
    mod.save_checkpoint(path, agents, opts, args, 0, 0)
    return path


def test_checkpoint_is_evaluated_on_its_own_environment(tmp_path, capsys):
    ck = _checkpoint(tmp_path / "ck.pt")
    base = ["--policy", "hdrl", "--checkpoint", str(ck), "--episodes", "1", "--no-progress"]
    assert main([*base, "--out", str(tmp_path / "own")]) == 0  # no --scenario, no --set
    s = json.loads((tmp_path / "own" / "summary.json").read_text())
    assert s["scenario"] == "sag" and s["episode_steps"] == 6
    assert s["overrides"] == {"num_subbands": 4, "users_per_region": 3, "episode_steps": 6}
    assert s["checkpoint_env"] == {"scenario": "sag", "overrides": s["overrides"]}
    # another environment: refused with the differences, before anything is written
    assert main([*base, "--scenario", "ag", "--out", str(tmp_path / "ag")]) == 2
    err = capsys.readouterr().err
    assert "was trained on scenario 'sag'" in err and "scenario: 'sag' -> 'ag'" in err
    assert "--other-env" in err and not (tmp_path / "ag").exists()
    assert main([*base, "--set", "num_subbands=5", "--out", str(tmp_path / "n5")]) == 2
    assert "num_subbands: 4 -> 5" in capsys.readouterr().err
    # --other-env: a fitting environment is evaluated, one whose shapes differ is a clear error
    assert main([*base, "--other-env", "--set", "episode_steps=3", "--out",
                 str(tmp_path / "short")]) == 0
    assert json.loads((tmp_path / "short" / "summary.json").read_text())["episode_steps"] == 3
    assert main([*base, "--other-env", "--scenario", "ag", "--out", str(tmp_path / "ag2")]) == 2
    err = capsys.readouterr().err
    assert "holds models ['hap', 'local', 'satellite'], this run needs ['hap', 'local']" in err
    assert main([*base, "--other-env", "--set", "num_subbands=5", "--out",
                 str(tmp_path / "n5b")]) == 2
    assert "do not fit this environment" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="--other-env applies to checkpoints"):
        main(["--policy", "greedy", "--other-env", "--out", str(tmp_path / "g")])


def test_results_are_never_overwritten_unless_asked(tmp_path, capsys):
    out = tmp_path / "r"
    args = ["--policy", "random", "--episodes", "1", "--out", str(out), "--no-progress", *SMALL]
    assert main(args) == 0
    before = (out / "steps.csv").read_text()
    assert main([*args, "--seed", "5"]) == 2
    assert "already holds results (steps.csv, episodes.csv, summary.json)" in \
        capsys.readouterr().err
    assert (out / "steps.csv").read_text() == before
    assert main([*args, "--seed", "5", "--overwrite"]) == 0
    assert (out / "steps.csv").read_text() != before


def test_unwritable_outputs_are_refused_before_the_evaluation(tmp_path, capsys, monkeypatch):
    import tntn_env.evaluate as ev

    ran = []
    monkeypatch.setattr(ev, "TNTNCore", lambda *a, **k: ran.append(1))  # must not be reached
    (tmp_path / "d" / "steps.csv").mkdir(parents=True)
    assert main(["--policy", "random", "--out", str(tmp_path / "d"), "--no-progress"]) == 2
    assert "steps.csv is a folder" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["--policy", "random", "--out", str(tmp_path / "file" / "sub"),
                 "--no-progress"]) == 2
    assert "cannot create the output folder" in capsys.readouterr().err
    assert ran == []


def test_default_folders_differ_per_checkpoint(tmp_path, monkeypatch):
    """Two runs' checkpoints (same scenario and seed) get two folders (run folder and content
    hash in the name); evaluating the first again is refused, not overwritten."""
    monkeypatch.chdir(tmp_path)
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
    a, b = _checkpoint(tmp_path / "a" / "checkpoint.pt"), _checkpoint(tmp_path / "b" /
                                                                       "checkpoint.pt")
    outs = []
    for ck in (a, b, a):
        argv = ["--policy", "hdrl", "--checkpoint", str(ck), "--episodes", "1", "--no-progress"]
        rc = main(argv)
        outs.append(sorted(p.name for p in (tmp_path / "runs" / "eval").iterdir()))
        if len(outs) < 3:
            assert rc == 0
    assert len(outs[1]) == 2 and all(n.startswith("hdrl__sag__0__") for n in outs[1])
    assert rc == 2  # the first checkpoint again: its folder holds results


def test_duplicate_set_keys_are_refused(tmp_path):
    with pytest.raises(SystemExit, match="num_subbands: given twice"):
        main(["--policy", "random", "--set", "num_subbands=2", "--set", "num_subbands=3",
              "--out", str(tmp_path), "--no-progress"])
