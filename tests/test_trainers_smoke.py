"""Smoke tests of the three trainers (CleanRL pattern: run each file as a subprocess on CPU with a
tiny budget), plus unit tests of the pieces they share (imported from the files by path)."""

import json
import subprocess
import sys

import pytest
import torch
from trainer_files import SMALL, TINY, TRAINERS, load, scalars, trainer_path

from tntn_env import TNTNCore, make_config
from tntn_env.evaluate import main as evaluate_main

REQUIRED = ["charts/SPS", "losses/value_loss", "losses/policy_loss", "losses/entropy",
            "losses/approx_kl", "losses/clipfrac", "losses/explained_variance",
            "env/throughput_mbps", "env/spectral_efficiency", "env/fairness", "env/qos_violation",
            "env/uav_penalty", "env/infeasible_actions"]
TIERS = {"sag": ("satellite", "hap", "local"), "ag": ("hap", "local"), "uav": ("local",)}




def run(name, cwd, *extra, timeout=180):
    cmd = [sys.executable, str(trainer_path(name)), *extra]
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{' '.join(cmd)}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res




def check_scalars(sc, scenario):
    missing = [t for t in REQUIRED + [f"charts/episodic_return_{x}" for x in TIERS[scenario]]
               if t not in sc]
    assert not missing, f"missing scalars {missing}; logged: {sorted(sc)}"
    assert all(v == 0 for _, v in sc["env/infeasible_actions"])


@pytest.mark.parametrize("name", TRAINERS)
@pytest.mark.slow
def test_train_resume_eval(name, tmp_path):
    # train 2 iterations with checkpoints
    run(name, tmp_path, *TINY, "--save-model", "--save-interval", "1", "--seed", "3")
    (run_dir,) = list((tmp_path / "runs").iterdir())
    assert run_dir.name.startswith(f"sag__{name}__3__")
    (event,) = list(run_dir.glob("events.out.tfevents.*"))
    sc = scalars(event)
    check_scalars(sc, "sag")
    ck_path = run_dir / "checkpoint.pt"
    ck = torch.load(ck_path, weights_only=True)
    assert {"models", "optimizers", "args", "global_step", "iteration"} <= set(ck)
    assert ck["global_step"] == 160 and ck["iteration"] == 2
    assert ck["args"]["seed"] == 3 and ck["args"]["env_overrides"] == SMALL

    # resume to 320 steps (the README's form, no --save-model: the run keeps saving as it did):
    # same run dir, a new event file continuing after the checkpoint's step
    run(name, tmp_path, "--resume", str(ck_path), "--total-timesteps", "320", "--no-cuda")
    new = [p for p in run_dir.glob("events.out.tfevents.*") if p != event]
    assert len(new) == 1
    sc2 = scalars(new[0])
    first = min(s for tag, ev in sc2.items() for s, _ in ev)
    assert first > ck["global_step"]
    assert max(s for s, _ in sc2["charts/SPS"]) == 320
    assert all(v == 0 for _, v in sc2["env/infeasible_actions"])
    ck2 = torch.load(ck_path, weights_only=True)
    assert ck2["global_step"] == 320 and ck2["iteration"] == 4

    # greedy evaluation writes eval.json next to the checkpoint
    res = run(name, tmp_path, "--eval-only", str(ck_path), "--eval-episodes", "2", "--no-cuda")
    ev = json.loads((run_dir / "eval.json").read_text())
    assert ev == json.loads(res.stdout[res.stdout.index("{"):])
    for k in ("throughput_mbps", "spectral_efficiency", "fairness", "qos_violation",
              "uav_penalty", "policy_ms_per_step"):
        assert isinstance(ev[k], float)
    assert ev["infeasible_actions"] == 0 and ev["global_step"] == 320

    # sampled evaluation through the evaluation CLI (the core checks every action): the same
    # --seed gives the same episodes and actions
    policy = {"hdrl_ppo": "hdrl"}.get(name, name)
    metrics = []
    for i in range(2):
        out = tmp_path / f"sampled{i}"
        assert evaluate_main(["--policy", policy, "--checkpoint", str(ck_path), "--sample",
                              "--episodes", "2", "--num-envs", "2", "--seed", "7", "--out",
                              str(out), "--no-progress", *[f"--set={kv}" for kv in
                                                           SMALL.split(",")]]) == 0
        assert json.loads((out / "summary.json").read_text())["sampled"] is True
        metrics.append(json.loads((out / "summary.json").read_text())["metrics"])
    assert metrics[0] == metrics[1]


@pytest.mark.parametrize("name,scenario,extra", [
    ("hdrl_ppo", "ag", ["--reward-mode", "difference"]),
    ("hdrl_ppo", "uav", ["--reward-mode", "aggregative"]),
    ("hdrl_ppo", "sag", ["--reward-mode", "difference", "--env-overrides",
                         SMALL + ",satellite_interval=4,hap_interval=2"]),
    ("mappo", "ag", []),
    ("ppo_single", "uav", []),
])
@pytest.mark.slow
def test_scenarios_and_reward_modes(name, scenario, extra, tmp_path):
    run(name, tmp_path, *TINY, "--scenario", scenario, *extra)
    (run_dir,) = list((tmp_path / "runs").iterdir())
    check_scalars(scalars(run_dir), scenario)


@pytest.mark.parametrize("name", TRAINERS)
def test_import_is_side_effect_free_and_load_policy(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mod = load(name)
    assert not (tmp_path / "runs").exists()
    # a checkpoint of untrained weights, written with the trainer's own helpers
    args = mod.Args(env_overrides=SMALL, scenario="sag")
    core = mod.make_core(args, 3, "cpu")
    if name == "ppo_single":
        agent = mod.build(core, args, "cpu")
        models = {"agent": agent.state_dict()}
    else:
        agents = mod.build_agents(core, args, "cpu")
        models = {t: a.state_dict() for t, a in agents.items()}
    torch.save({"models": models, "args": vars(args), "global_step": 0, "iteration": 0},
               tmp_path / "ck.pt")
    for greedy in (True, False):
        act = mod.load_policy(tmp_path / "ck.pt", core, greedy=greedy)
        obs, masks = core.reset(seed=0)
        for _ in range(12):
            out = core.step(act(obs, masks))
            assert int((out["voided"] + out["repaired"]).sum()) == 0
            obs, masks = out["obs"], out["masks"]


def test_macro_gae_matches_hand_computation():
    mod = load("hdrl_ppo")
    g, lam = 0.9, 0.5
    # two macro-transitions of 3 and 2 steps with rewards 1 per step, then a terminal one
    rows = [{"r": torch.tensor([[1 + g + g * g]]), "disc": torch.tensor([[g ** 3]]),
             "done": torch.zeros(1, 1)},
            {"r": torch.tensor([[1 + g]]), "disc": torch.tensor([[g ** 2]]),
             "done": torch.ones(1, 1)}]
    values = torch.tensor([[[0.5]], [[0.25]]])
    adv, ret = mod.macro_gae(rows, values, torch.tensor([[100.0]]), lam)
    d1 = (1 + g) - 0.25  # terminal: no bootstrap
    d0 = (1 + g + g * g) + g ** 3 * 0.25 - 0.5
    assert torch.allclose(adv[1], torch.tensor([[d1]]))
    assert torch.allclose(adv[0], torch.tensor([[d0 + g ** 3 * lam * d1]]))
    assert torch.allclose(ret, adv + values)


def test_difference_baseline_is_consistent_with_step():
    """With every agent's action equal to the default, the what-if rewards equal the step's."""
    mod = load("hdrl_ppo")
    core = TNTNCore(make_config("sag", num_subbands=4, users_per_region=3), num_envs=3,
                    check_actions=False)
    core.reset(seed=2)
    E = core.num_envs
    acts = {"satellite": core.default_actions("satellite"), "local": core.default_actions("local")}
    acts["hap"] = core.fixed_hap_choice(acts["satellite"].view(E, -1)).view(E, core.I, -1)
    acts["local"][..., 0] = 1  # user 0 on subband 0, block 0 (kept in the default-less check)
    taken = dict.fromkeys(core.tiers)
    base = mod.difference_baseline(core, acts, taken)
    out = core.step(acts)
    for t in ("satellite", "hap"):  # replacing by the default changes nothing
        assert torch.allclose(base[t], out["rewards"][t], atol=1e-6)


def test_parse_overrides():
    mod = load("mappo")
    assert mod.parse_overrides("") == {}
    assert mod.parse_overrides('{"num_subbands": 4}') == {"num_subbands": 4}
    assert mod.parse_overrides("num_subbands=4, power_levels=[0.5, 1.0],invalid_action=repair") \
        == {"num_subbands": 4, "power_levels": [0.5, 1.0], "invalid_action": "repair"}
    with pytest.raises(ValueError):
        mod.parse_overrides("num_subbands")
