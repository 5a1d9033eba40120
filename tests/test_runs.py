"""Trainer runs lose nothing and go wrong loudly: Args are checked before anything starts, a
resumed run keeps saving and logs each TensorBoard step once, non-finite losses stop the run,
checkpoints of another trainer are refused with a clear message (tntn_env/runs.py)."""

import json
import math
import shutil
import subprocess
import sys
import types

import pytest
import torch
from trainer_files import ROOT, SMALL, TINY, TRAINERS, load, scalars, trainer_path

from tntn_env import runs
from tntn_env.evaluate import main as evaluate_main

# 10 env steps per iteration: the default --save-interval 10 is reached in 100 steps
MINI = ["--num-envs", "2", "--num-steps", "5", "--update-epochs", "1", "--no-cuda",
        "--env-overrides", SMALL]


def trainer(name, cwd, *extra, ok=True):
    cmd = [sys.executable, str(trainer_path(name)), *extra]
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)
    if ok:
        assert res.returncode == 0, f"{' '.join(cmd)}\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
    return res


# ---------------------------------------------------------------- Args checks

@pytest.mark.parametrize("name", TRAINERS)
@pytest.mark.parametrize("field,value,allowed", [
    ("gamma", math.nan, "a finite number in [0, 1]"),
    ("gamma", 1.5, "a finite number in [0, 1]"),
    ("learning_rate", math.inf, "a finite number in (0, inf)"),
    ("hidden_size", 0, "an integer >= 1"),
    ("save_interval", 0, "an integer >= 1"),
    ("num_envs", 0, "an integer >= 1"),
    ("num_steps", 0, "an integer >= 1"),
    ("update_epochs", 0, "an integer >= 1"),
    ("seed", -1, "an integer >= 0"),
])
def test_bad_args_are_named_with_the_allowed_range(name, field, value, allowed):
    mod = load(name)
    problems = runs.args_problems(mod.Args(**{field: value}))
    assert len(problems) == 1 and problems[0].startswith(f"{field} = ")
    assert f"--{field.replace('_', '-')}" in problems[0] and allowed in problems[0]


@pytest.mark.parametrize("name", ["hdrl_ppo", "ppo_single"])
def test_minibatch_size_zero_is_refused(name):
    (p,) = runs.args_problems(load(name).Args(minibatch_size=0))
    assert p.startswith("minibatch_size = 0") and "an integer >= 1" in p


def test_batch_and_world_size_checks():
    mod = load("mappo")
    assert runs.args_problems(mod.Args()) == []
    (p,) = runs.args_problems(mod.Args(total_timesteps=100))
    assert "below one iteration" in p and "2048" in p
    (p,) = runs.args_problems(mod.Args(num_minibatches=5000))
    assert p.startswith("num_minibatches = 5000")
    (p,) = runs.args_problems(mod.Args(num_envs=3, num_steps=700), world=2)
    assert "num_envs = 3 is not divisible by the torchrun world size 2" in p


def test_bad_args_exit_before_a_run_folder_exists(tmp_path):
    """Every defect is reported at once, exit status 1, and no runs/<name>/ is left behind; bad
    --env-overrides too (they used to be found after the run folder was made)."""
    res = trainer("hdrl_ppo", tmp_path, "--gamma", "nan", "--hidden-size", "0", "--save-interval",
                  "0", "--num-envs", "0", "--num-steps", "0", "--minibatch-size", "0", ok=False)
    assert res.returncode == 1
    for f in ("gamma", "hidden_size", "save_interval", "num_envs", "num_steps", "minibatch_size"):
        assert f"error: {f} = " in res.stderr
    assert "Traceback" not in res.stderr
    res = trainer("mappo", tmp_path, *TINY[:-2], "--env-overrides", "num_subbands=0", ok=False)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "env_overrides = 'num_subbands=0' is invalid" in res.stderr
    assert "NetworkConfig.num_subbands = 0" in res.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("name", TRAINERS)
@pytest.mark.slow
def test_non_finite_losses_stop_the_run(name, tmp_path):
    res = trainer(name, tmp_path, *TINY, "--learning-rate", "1e30", ok=False)
    assert res.returncode == 1, res.stderr[-2000:]
    assert "error: non-finite losses at iteration" in res.stderr
    assert "Traceback" not in res.stderr


def test_check_finite_allows_nan_explained_variance():
    runs.check_finite({"value_loss": 1.0, "explained_variance_local": math.nan}, 1, 10)
    with pytest.raises(SystemExit, match="value_loss_hap = inf"):
        runs.check_finite({"value_loss_hap": math.inf}, 3, 30)


# ---------------------------------------------------------------- resume

@pytest.mark.slow
def test_kill_and_resume_logs_each_step_once(tmp_path):
    """A run killed between periodic checkpoints (default --save-interval 10) and resumed: the
    resumed run purges the killed run's events after the checkpoint, so TensorBoard holds one
    value per step, the hyperparameters once, and the final checkpoint is at the new budget."""
    trainer("hdrl_ppo", tmp_path, *MINI, "--total-timesteps", "100", "--save-model", "--seed",
            "2")
    (run_dir,) = list((tmp_path / "runs").iterdir())
    ck = run_dir / "checkpoint.pt"
    assert torch.load(ck, weights_only=True)["global_step"] == 100
    shutil.copy(ck, tmp_path / "at_100.pt")
    # the run goes on to step 130, logging 110..130, and is "killed" before its next periodic
    # checkpoint (at 200): restore the checkpoint of step 100, as the kill leaves it
    trainer("hdrl_ppo", tmp_path, "--resume", str(ck), "--total-timesteps", "130", "--no-cuda")
    shutil.copy(tmp_path / "at_100.pt", ck)
    trainer("hdrl_ppo", tmp_path, "--resume", str(ck), "--total-timesteps", "150", "--no-cuda")
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 3
    sc = scalars(run_dir)
    steps = [s for s, _ in sc["env/reward"]]
    assert steps == list(range(10, 151, 10))  # each step once (before: 110..130 twice)
    assert [s for s, _ in sc["charts/SPS"]] == steps
    texts = 0
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    for f in run_dir.glob("events.out.tfevents.*"):
        for ev in EventFileLoader(str(f)).Load():
            texts += sum(v.tag.startswith("hyperparameters") for v in ev.summary.value)
    assert texts == 1
    final = torch.load(ck, weights_only=True)
    assert final["global_step"] == 150 and final["iteration"] == 15


def test_resume_refuses_arguments_it_would_ignore(tmp_path):
    trainer("ppo_single", tmp_path, *TINY, "--save-model")
    (ck,) = list((tmp_path / "runs").glob("*/checkpoint.pt"))
    res = trainer("ppo_single", tmp_path, "--resume", str(ck), "--total-timesteps", "320",
                  "--learning-rate", "0.1", ok=False)
    assert res.returncode == 1 and "--learning-rate cannot change when resuming" in res.stderr
    res = trainer("ppo_single", tmp_path, "--resume", str(ck), "--total-timesteps", "160",
                  ok=False)  # the checkpoint is at 160 already
    assert res.returncode == 1 and "leaves nothing to train" in res.stderr
    res = trainer("mappo", tmp_path, "--resume", str(ck), "--total-timesteps", "320", ok=False)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "written by trainers/ppo_single.py, not trainers/mappo.py" in res.stderr


def test_given_fields_of_a_command_line():
    names = {"save_model", "total_timesteps", "cuda"}
    assert runs._given_fields(["--resume", "x", "--total-timesteps=5", "--no-save-model",
                               "--cuda"], names) == names
    assert runs._given_fields(["--resume", "x"], names) == set()


# ---------------------------------------------------------------- checkpoints of other trainers

def _checkpoint(name, path, trainer_key=True):
    """An untrained checkpoint written with the trainer's own helpers (SMALL, sag)."""
    mod = load(name)
    args = mod.Args(env_overrides=SMALL)
    core = mod.make_core(args, 2, "cpu")
    if name == "ppo_single":
        agent = mod.build(core, args, "cpu")
        mod.save_checkpoint(path, agent, torch.optim.Adam(agent.parameters()), args, 0, 0)
    else:
        agents = mod.build_agents(core, args, "cpu")
        opts = {t: torch.optim.Adam(a.parameters()) for t, a in agents.items()}
        mod.save_checkpoint(path, agents, opts, args, 0, 0)
    if not trainer_key:  # as written before checkpoints recorded their trainer
        ck = torch.load(path, weights_only=True)
        del ck["trainer"]
        torch.save(ck, path)
    return core


@pytest.mark.parametrize("written,loaded", [("hdrl_ppo", "mappo"), ("mappo", "hdrl_ppo"),
                                            ("mappo", "ppo_single"), ("ppo_single", "hdrl_ppo")])
@pytest.mark.parametrize("trainer_key", [True, False])
def test_cross_trainer_checkpoints_are_clear_errors(written, loaded, trainer_key, tmp_path):
    core = _checkpoint(written, tmp_path / "ck.pt", trainer_key)
    with pytest.raises(runs.CheckpointError, match="trainer"):
        load(loaded).load_policy(tmp_path / "ck.pt", core)


def test_evaluation_cli_refuses_another_trainers_checkpoint(tmp_path, capsys):
    _checkpoint("hdrl_ppo", tmp_path / "ck.pt", trainer_key=False)
    rc = evaluate_main(["--policy", "mappo", "--checkpoint", str(tmp_path / "ck.pt"),
                        "--out", str(tmp_path / "ev"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown to it (a checkpoint of another trainer?" in err
    assert not (tmp_path / "ev" / "steps.csv").exists()


def test_trajectory_digest_compare_loads_tensors_only(tmp_path, monkeypatch):
    """--compare passes weights_only=True explicitly (torch < 2.6 defaults to full unpickling)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("digest", ROOT / "benchmarks" /
                                                  "trajectory_digest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod, "CASES", [("uav", 1, 2, {"num_subbands": 2,
                                                       "users_per_region": 2})])
    seen = []
    real = torch.load

    def spy(*a, **k):
        seen.append(k.get("weights_only"))
        return real(*a, **k)

    monkeypatch.setattr(mod.torch, "load", spy)
    ref = tmp_path / "ref.pt"
    monkeypatch.setattr(sys, "argv", ["digest", "--save", str(ref)])
    mod.main()
    monkeypatch.setattr(sys, "argv", ["digest", "--compare", str(ref)])
    with pytest.raises(SystemExit) as e:
        mod.main()
    assert e.value.code == 0 and seen == [True]


def test_eval_only_never_replaces_an_earlier_evaluation(tmp_path, capsys):
    ck = tmp_path / "run" / "checkpoint.pt"
    ck.parent.mkdir()
    calls = []

    def evaluate(path, episodes, seed, device, greedy):
        calls.append(seed)
        return {"checkpoint": str(path), "eval_seed": seed}

    args = types.SimpleNamespace(eval_only=str(ck), eval_episodes=2, eval_greedy=True)
    for seed in (1, 2, 3):
        args.eval_seed = seed
        with pytest.raises(SystemExit) as e:
            runs.eval_only(evaluate, args, "cpu", rank=0)
        assert e.value.code == 0
    written = {p.name: json.loads(p.read_text())["eval_seed"] for p in ck.parent.glob("*.json")}
    assert written == {"eval.json": 1, "eval-1.json": 2, "eval-2.json": 3}
    assert "wrote " + str(ck.parent / "eval-2.json") in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # other ranks exit at once, write nothing
        runs.eval_only(evaluate, args, "cpu", rank=1)
    assert e.value.code == 0 and calls == [1, 2, 3]
