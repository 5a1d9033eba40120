"""TorchRL (and BenchMARL, which builds on it), two ways: the PettingZoo ParallelEnv in TorchRL's
own ``PettingZooWrapper``, and the batched TorchRL view ``tntn_env.torchrl_env``. Both pass
TorchRL's own ``check_env_specs``, and their rollouts (TorchRL's masked random actions) equal the
same actions replayed in plain PettingZoo envs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torchrl.envs import PettingZooWrapper
from torchrl.envs.utils import check_env_specs
from trainer_files import scalars

from tntn_env import make_config, parallel_env
from tntn_env.config import TINY_OVERRIDES, format_overrides
from tntn_env.torchrl_env import TNTNTorchRLEnv

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.usefixtures("one_torch_thread")]

SMALL = {**TINY_OVERRIDES, "episode_steps": 12}
CONFIGS = {
    "sag": ("sag", SMALL),
    "ag": ("ag", SMALL),
    "uav": ("uav", SMALL),
    # every local position with 5 choices: the local mask is stacked too
    "sag-equal-nvec": ("sag", dict(users_per_region=4, power_levels=(0.2, 0.4, 0.6, 0.8, 1.0),
                                   num_subbands=3, episode_steps=12, satellite_interval=4,
                                   hap_interval=2)),
}


def wrap(name: str, seed: int) -> PettingZooWrapper:
    scenario, overrides = CONFIGS[name]
    env = parallel_env(scenario, action_mask_layout="stacked", **overrides)
    return PettingZooWrapper(env=env, use_mask=True, categorical_actions=True,
                             return_state=True, seed=seed)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_check_env_specs(name):
    """TorchRL's own checker: specs match real data over a rollout of TorchRL's random actions,
    drawn from its masked specs; the env raises on any action its mask forbids (the default),
    so the rollout also shows that TorchRL reads the masks as the env means them."""
    env = wrap(name, seed=0)
    tiers = {"sag": ["satellite", "hap", "local"], "ag": ["hap", "local"], "uav": ["local"]}
    assert list(env.group_map) == tiers[CONFIGS[name][0]]  # one TorchRL group per tier
    check_env_specs(env)


@pytest.mark.parametrize("name", ["sag", "sag-equal-nvec"])
def test_rollout_equals_the_plain_env(name):
    tenv = wrap(name, seed=7)
    steps = CONFIGS[name][1]["episode_steps"]
    td = tenv.rollout(steps)
    assert td.batch_size == (steps,)
    assert bool(td["next", "done"][-1]) and not bool(td["next", "done"][:-1].any())
    # Replay in a plain env (flat masks, invalid actions raise). TorchRL's set_seed resets with
    # the seed and its rollout resets again: find that episode of seed 7's stream.
    scenario, overrides = CONFIGS[name]
    env = parallel_env(scenario, **overrides)
    obs, _ = env.reset(seed=7)
    first = td[0]["local", "observation", "observation"][0].numpy()
    for _ in range(3):
        if np.array_equal(obs["local_0"]["observation"], first):
            break
        obs, _ = env.reset()
    else:
        pytest.fail("no episode of seed 7's stream starts with TorchRL's first observation")
    groups = {g: agents for g, agents in tenv.group_map.items()}
    for t in range(steps):
        step = td[t]
        np.testing.assert_array_equal(step["state"].numpy(), env.state())
        acts = {}
        for g, agents in groups.items():
            for i, a in enumerate(agents):
                np.testing.assert_array_equal(step[g, "observation", "observation"][i].numpy(),
                                              obs[a]["observation"])
                mask = step[g, "action_mask"][i].numpy().reshape(-1)
                np.testing.assert_array_equal(mask, obs[a]["action_mask"].astype(bool))
                acts[a] = step[g, "action"][i].numpy().astype(np.int64)
        obs, rewards, terms, truncs, infos = env.step(acts)
        for g, agents in groups.items():
            for i, a in enumerate(agents):
                assert step["next", g, "reward"][i].item() == pytest.approx(rewards[a],
                                                                            rel=1e-6)
                assert bool(step["next", g, "truncated"][i]) == truncs[a]
                info = step["next", g, "info"]
                assert info["spectral_efficiency"][i].item() == pytest.approx(
                    infos[a]["spectral_efficiency"], rel=1e-6, abs=1e-9)
                assert info["repaired_actions"][i].item() == 0
    assert env.agents == []  # the episode ended where TorchRL's did


# ---------------------------------------------------------------- the batched TorchRL view

@pytest.mark.parametrize("name", ["sag", "ag", "uav", "sag-equal-nvec"])
def test_batched_env_check_env_specs(name):
    scenario, overrides = CONFIGS[name]
    env = TNTNTorchRLEnv(scenario, num_envs=3, **overrides)
    assert list(env.group_map) == list(env.core.tiers)
    env.set_seed(0)
    check_env_specs(env)  # TorchRL's masked random actions: raise mode accepts all of them


@pytest.mark.parametrize("name", ["sag", "uav"])
def test_positions_layout_equals_the_multi_layout(name):
    """action_layout="positions" (one Categorical per agent and position, BenchMARL's layout):
    specs pass TorchRL's checks, its masked random actions are feasible (raise mode), and the
    same actions regrouped to [E, A, P] step the default layout identically."""
    scenario, overrides = CONFIGS[name]
    E, steps = 2, 6
    penv = TNTNTorchRLEnv(scenario, num_envs=E, action_layout="positions", **overrides)
    penv.set_seed(3)
    check_env_specs(penv)
    menv = TNTNTorchRLEnv(scenario, num_envs=E, **overrides)
    penv.set_seed(5)
    menv.set_seed(5)
    ptd = penv.rollout(steps)
    mtd = menv.reset()
    for k in range(steps):
        for t in menv.tiers:
            A, nvec = menv.core.num_agents[t], menv.core.nvec[t]
            P = len(nvec)
            pobs = ptd[:, k][t, "observation"].reshape(E, A, P, -1)
            close(pobs[:, :, 0, :-P].numpy(), mtd[t, "observation"].numpy())
            assert (pobs[:, :, :, -P:] == torch.eye(P)).all()
            pmask = ptd[:, k][t, "action_mask"].reshape(E, A, P, -1)
            offs = np.cumsum(nvec) - nvec
            for p in range(P):
                assert torch.equal(pmask[:, :, p, :nvec[p]],
                                   mtd[t, "action_mask"][:, :, offs[p]:offs[p] + nvec[p]])
                assert not pmask[:, :, p, nvec[p]:].any()
            mtd[t, "action"] = ptd[:, k][t, "action"].reshape(E, A, P)
        mtd = menv.step(mtd)
        for t in menv.tiers:
            A, P = menv.core.num_agents[t], len(menv.core.nvec[t])
            prew = ptd[:, k]["next", t, "reward"].reshape(E, A, P)
            close(prew[:, :, 0].numpy(), mtd["next", t, "reward"][..., 0].numpy())
            assert (prew == prew[:, :, :1]).all()
        close(ptd[:, k]["next", "info", "spectral_efficiency"].numpy(),
              mtd["next", "info", "spectral_efficiency"].numpy())
        mtd = mtd["next"]


def close(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_batched_env_equals_pettingzoo_envs():
    """Env i of the TorchRL batch, seeded with set_seed(s), steps like the PettingZoo env reset
    with seed s + i, under the same actions (TorchRL's masked random actions); floats to the
    batched core's batch-vs-single tolerance (tests/test_batched.py), masks exactly."""
    scenario, overrides = CONFIGS["sag"]
    E, steps = 3, overrides["episode_steps"]
    overrides = {**overrides, "satellite_interval": 4, "hap_interval": 2}
    tenv = TNTNTorchRLEnv(scenario, num_envs=E, **overrides)
    tenv.set_seed(11)
    td = tenv.rollout(steps)
    assert td.batch_size == (E, steps)
    assert bool(td["next", "done"][:, -1].all()) and not bool(td["next", "done"][:, :-1].any())
    sat = td["satellite", "decides"][0, :, 0, 0]  # every 4th step, from the first
    assert sat.tolist() == [t % 4 == 0 for t in range(steps)]
    for i in range(E):
        env = parallel_env(scenario, **overrides)
        obs, infos = env.reset(seed=11 + i)
        for t in range(steps):
            step = td[i, t]
            close(step["state"].numpy(), env.state())
            acts = {}
            for g, agents in tenv.group_map.items():
                for k, a in enumerate(agents):
                    close(step[g, "observation"][k].numpy(), obs[a]["observation"])
                    np.testing.assert_array_equal(step[g, "action_mask"][k].numpy(),
                                                  obs[a]["action_mask"].astype(bool))
                    assert bool(step[g, "decides"][k]) == infos[a]["decides"]
                    acts[a] = step[g, "action"][k].numpy()
            obs, rewards, _, truncs, infos = env.step(acts)
            for g, agents in tenv.group_map.items():
                for k, a in enumerate(agents):
                    close(step["next", g, "reward"][k].item(), rewards[a])
            assert bool(step["next", "truncated"]) == truncs["satellite_0"]
            for key, value in env.last_metrics.items():
                close(step["next", "info", key].item(), value)
            assert step["next", "info", "voided_actions"].item() == sum(
                i["voided_actions"] for i in infos.values())


def test_batched_env_partial_reset_and_collector():
    scenario, overrides = CONFIGS["sag"]
    overrides = {**overrides, "episode_steps": 5}
    env = TNTNTorchRLEnv(scenario, num_envs=3, **overrides)
    env.set_seed(2)
    td = env.reset()
    for _ in range(2):
        td = env.step(env.rand_action(td))["next"]
    flags = torch.tensor([[False], [True], [False]])
    td = env.reset(td.set("_reset", flags))
    assert env.core.state.t.tolist() == [2, 0, 2]
    # env 1 now runs the second episode of seed 3's stream
    single = parallel_env(scenario, **overrides)
    single.reset(seed=3)
    obs, _ = single.reset()
    np.testing.assert_array_equal(td["local", "observation"][1].numpy(),
                                  np.stack([obs[f"local_{j}"]["observation"] for j in range(4)]))
    # TorchRL's collector auto-resets across episode ends. The policy reads the masks from its
    # input (TorchRL's RandomPolicy copies the action spec once, so it misses per-step masks).
    from torchrl.collectors import Collector

    env = TNTNTorchRLEnv(scenario, num_envs=4, **overrides)
    env.set_seed(0)

    def masked_random(td):
        for g in env.group_map:
            spec = env.full_action_spec[g, "action"].clone()
            spec.update_mask(td[g, "action_mask"])
            td[g, "action"] = spec.rand()
        return td

    collector = Collector(env, masked_random, frames_per_batch=4 * 12, total_frames=4 * 24)
    batches = list(collector)
    collector.shutdown()
    assert len(batches) == 2 and all(b.batch_size == (4, 12) for b in batches)
    done = torch.cat([b["next", "done"] for b in batches], 1).squeeze(-1)
    assert done.sum(1).tolist() == [4, 4, 4, 4]  # 24 steps = 4 episodes of 5 (+ 4 steps)
    for b in batches:
        assert bool(torch.isfinite(b["next", "local", "reward"]).all())
        assert float(b["next", "info", "repaired_actions"].sum()) == 0.0


def test_batched_env_bad_input():
    with pytest.raises(ValueError, match="unknown"):
        TNTNTorchRLEnv("sag", num_envs=2, num_subband=4)
    with pytest.raises(ValueError, match="pass either config or overrides"):
        TNTNTorchRLEnv(config=make_config("sag"), num_envs=2, num_subbands=4)
    with pytest.raises(ValueError, match="num_envs = 0 is invalid"):
        TNTNTorchRLEnv("sag", num_envs=0)
    scenario, overrides = CONFIGS["sag"]
    env = TNTNTorchRLEnv(scenario, num_envs=2, **overrides)
    env.set_seed(0)
    torch.manual_seed(0)
    td = env.rand_action(env.reset())
    # a HAP choice forbidden both by its observed mask and by the mask that follows from this
    # step's satellite action (the core accepts either: top-down sampling)
    after = env.core.masks_for({"satellite": td["satellite", "action"]})["hap"]
    mask = td["hap", "action_mask"][1, 0] | after[1, 0]
    nvec = env.core.nvec["hap"]
    forbidden = [p for p in range(len(nvec)) if not bool(mask[p * nvec[0]:(p + 1) * nvec[0]].all())]
    assert forbidden, "the satellite's equal split leaves some HAP choices masked"
    p = forbidden[0]
    bad = int((~mask[p * nvec[0]:(p + 1) * nvec[0]]).nonzero()[0])
    td["hap", "action"][1, 0, p] = bad
    with pytest.raises(ValueError, match=rf"agent 'hap_0' \(env 1\) at position {p} "):
        env.step(td)


def test_clear_error_without_torchrl():
    """tntn_env works without torchrl; its TorchRL module says what to install."""
    code = ("import sys; sys.modules['torchrl'] = None; import tntn_env; "
            "tntn_env.parallel_env('uav').reset(seed=0)\n"
            "try:\n    import tntn_env.torchrl_env\nexcept ImportError as e:\n    print(e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert 'tntn_env.torchrl_env needs torchrl' in out.stdout
    assert 'pip install -e ".[torchrl]"' in out.stdout


@pytest.mark.slow
def test_ippo_example_runs(tmp_path):
    """examples/torchrl_ippo.py (TorchRL's Collector, MultiAgentMLP, ClipPPOLoss + GAE per tier,
    masked MultiDiscrete actions) runs a few iterations; the env (raise mode) accepts every
    sampled action, and it logs to TensorBoard under runs/."""
    script = Path(__file__).resolve().parents[1] / "examples" / "torchrl_ippo.py"
    cmd = [sys.executable, str(script), "--num-envs", "8", "--frames-per-batch", "128",
           "--total-frames", "384", "--minibatch-size", "64", "--epochs", "2",
           "--overrides", format_overrides(SMALL)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("iter ")]
    assert len(lines) == 3, out.stdout
    for ln in lines:
        assert ln.endswith("repaired 0"), ln
        se = float(ln.split("SE ")[1].split()[0])
        assert np.isfinite(se) and se >= 0
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and runs[0].name.startswith("sag__torchrl_ippo__1__")
    tags = scalars(runs[0])
    assert {"charts/SPS", "env/spectral_efficiency", "losses/objective_local"} <= set(tags)
    assert len(tags["env/spectral_efficiency"]) == 3
