"""PettingZoo API conformance of the ParallelEnv view, on every preset and on non-default shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import data_equivalence
from pettingzoo.test import api_test, parallel_api_test, parallel_seed_test, seed_test
from pettingzoo.utils.conversions import parallel_to_aec

from tntn_env import TNTNParallelEnv, make_config, parallel_env
from tntn_env.config import TINY_OVERRIDES
from tntn_env.core import SYSTEM_METRICS
from tntn_env.pettingzoo_env import REGION_INFO_KEYS
from tntn_env.spaces import MaskedMultiDiscrete

# The PettingZoo checkers warn about things that are by design here (dict observations with an
# action mask, MultiDiscrete actions, unbounded rate features).
pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.usefixtures("one_torch_thread")]

SMALL = {**TINY_OVERRIDES, "episode_steps": 30}
CONFIGS = {
    "sag": ("sag", SMALL),
    "ag": ("ag", SMALL),
    "uav": ("uav", SMALL),
    # more beams/HAPs, one region per HAP, one time block, frequent upper-tier decisions
    "sag-wide": ("sag", dict(num_beams=3, haps_per_beam=2, regions_per_hap=1, users_per_region=2,
                             num_subbands=3, time_blocks=1, episode_steps=12,
                             satellite_interval=4, hap_interval=2)),
    # one beam, three regions per HAP, several UAVs, three time blocks
    "sag-deep": ("sag", dict(num_beams=1, regions_per_hap=3, tbs_per_region=1, uavs_per_region=2,
                             users_per_region=4, num_subbands=5, time_blocks=3, episode_steps=12,
                             satellite_interval=3, hap_interval=2)),
    # no UAVs, two HAPs on one beam
    "ag-nouav": ("ag", dict(num_beams=1, haps_per_beam=2, uavs_per_region=0, users_per_region=5,
                            num_subbands=2, episode_steps=12, hap_interval=3)),
    # UAV-only nodes, two power levels
    "uav-multi": ("uav", dict(regions_per_hap=1, tbs_per_region=0, uavs_per_region=2,
                              users_per_region=3, num_subbands=6, power_levels=(0.5, 1.0),
                              episode_steps=12)),
}
# Local positions all with 5 choices (4 users + none, 5 power levels, UAV moves): with
# action_mask_layout="stacked" every tier's mask is [positions, choices].
EQUAL_NVEC = dict(users_per_region=4, power_levels=(0.2, 0.4, 0.6, 0.8, 1.0), num_subbands=3,
                  episode_steps=12, satellite_interval=4, hap_interval=2)


def make(name: str, **extra) -> TNTNParallelEnv:
    scenario, overrides = CONFIGS[name]
    return parallel_env(scenario, **{**overrides, **extra})


def masked_actions(env, obs) -> dict:
    return {a: env.action_space(a).sample(mask=obs[a]["action_mask"]) for a in env.agents}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_parallel_api(name):
    env = make(name)
    parallel_api_test(env, num_cycles=CONFIGS[name][1]["episode_steps"] + 5)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_aec_api(name):
    env = parallel_to_aec(make(name))
    api_test(env, num_cycles=CONFIGS[name][1]["episode_steps"] + 5)


@pytest.mark.parametrize("overrides", [SMALL, EQUAL_NVEC], ids=["small", "equal-nvec"])
def test_parallel_and_aec_api_stacked_masks(overrides):
    """PettingZoo's checks with the stacked mask layout (``sample(mask=...)`` takes it as is)."""
    env = parallel_env("sag", action_mask_layout="stacked", **overrides)
    shapes = {a: env.observation_space(a)["action_mask"].shape for a in env.possible_agents}
    for agent, shape in shapes.items():
        nvec = env.action_space(agent).nvec
        equal = len(set(nvec.tolist())) == 1
        assert shape == ((len(nvec), nvec[0]) if equal else (nvec.sum(),)), agent
    assert (len(shapes["local_0"]) == 2) == (overrides is EQUAL_NVEC)
    parallel_api_test(env, num_cycles=overrides["episode_steps"] + 5)
    api_test(parallel_to_aec(parallel_env("sag", action_mask_layout="stacked", **overrides)),
             num_cycles=overrides["episode_steps"] + 5)


def test_stacked_masks_equal_the_flat_ones():
    flat = make("sag-wide")
    stacked = make("sag-wide", action_mask_layout="stacked")
    o1, _ = flat.reset(seed=4)
    o2, _ = stacked.reset(seed=4)
    for _ in range(6):
        for a in flat.agents:
            np.testing.assert_array_equal(o2[a]["action_mask"].reshape(-1), o1[a]["action_mask"])
            np.testing.assert_array_equal(o2[a]["observation"], o1[a]["observation"])
        acts = masked_actions(flat, o1)
        o1, r1, *_ = flat.step(acts)
        o2, r2, *_ = stacked.step(acts)
        assert r1 == r2
    with pytest.raises(ValueError, match=r"action_mask_layout = 'grid' is invalid; allowed: "
                                         r"\['flat', 'stacked'\]"):
        make("sag", action_mask_layout="grid")


@pytest.mark.parametrize("scenario", ["sag", "ag", "uav"])
def test_parallel_api_default_presets(scenario):
    """The presets at their paper sizes (a few steps; an episode is 500)."""
    parallel_api_test(parallel_env(scenario), num_cycles=4)


@pytest.mark.parametrize("name", ["sag", "sag-deep", "uav-multi"])
def test_seeding(name):
    # parallel_seed_test samples actions WITHOUT the action masks, so some sampled choices are
    # forbidden; invalid_action="repair" is the documented way to accept such actions.
    parallel_seed_test(lambda: make(name, invalid_action="repair"), num_cycles=10)
    # The AEC seed test samples with the masks, so the default "raise" mode works there.
    seed_test(lambda: parallel_to_aec(make(name)), num_cycles=10)


def test_spaces_and_agents():
    env = make("sag")
    assert env.metadata == {"name": "tntn_v0", "render_modes": ["rgb_array"],
                            "is_parallelizable": True}
    assert env.possible_agents == ["satellite_0", "hap_0", "hap_1",
                                   "local_0", "local_1", "local_2", "local_3"]
    assert make("ag").possible_agents == ["hap_0", "hap_1", "local_0", "local_1", "local_2",
                                          "local_3"]
    assert make("uav").possible_agents == ["local_0", "local_1", "local_2", "local_3"]
    core = env.core
    for agent in env.possible_agents:
        tier = agent.rsplit("_", 1)[0]
        osp, asp = env.observation_space(agent), env.action_space(agent)
        assert osp is env.observation_space(agent) and asp is env.action_space(agent)
        assert isinstance(asp, MaskedMultiDiscrete)
        assert asp.nvec.tolist() == core.nvec[tier]
        lo, hi = core.obs_bounds(tier)
        np.testing.assert_array_equal(osp["observation"].low, lo)
        np.testing.assert_array_equal(osp["observation"].high, hi)
        assert osp["observation"].dtype == np.float32
        assert osp["action_mask"].shape == (sum(core.nvec[tier]),)
        assert osp["action_mask"].dtype == np.int8
    with pytest.raises(ValueError, match="unknown agent 'local_9'"):
        env.action_space("local_9")


@pytest.mark.parametrize("name", ["sag", "ag", "uav", "sag-wide", "sag-deep", "ag-nouav",
                                  "uav-multi"])
def test_masked_sampling_always_accepted(name):
    """Masked random actions pass the core's checks in raise mode, through whole episodes with
    frequent upper-tier decisions (voiding by a new upper allocation is not an error)."""
    env = make(name)
    seeds = (0,) if env.config.timing.episode_steps > 20 else (0, 1)
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        for i, a in enumerate(env.agents):
            env.action_space(a).seed(seed * 100 + i)
        steps = 0
        while env.agents:
            acts = masked_actions(env, obs)
            for a, act in acts.items():
                assert env.action_space(a).contains(act)
            obs, rewards, terms, truncs, infos = env.step(acts)
            steps += 1
            assert all(np.isfinite(r) and isinstance(r, float) for r in rewards.values())
            assert not any(terms.values())
            assert all(i["repaired_actions"] == 0 for i in infos.values())
            for a, o in obs.items():
                assert env.observation_space(a).contains(o), a
        assert steps == env.config.timing.episode_steps
        assert all(truncs.values()) and env.agents == []


def test_infos_scope_and_decides():
    env = make("sag", satellite_interval=6, hap_interval=3, episode_steps=8)
    obs, infos = env.reset(seed=3)
    # after reset: the keys of a step's infos (a constant structure), zero metrics and counts
    for agent, info in infos.items():
        assert info.pop("decides") is True and info.pop("decided") is False
        assert info.pop("voided_actions") == 0 and info.pop("repaired_actions") == 0
        keys = SYSTEM_METRICS if agent == "satellite_0" else REGION_INFO_KEYS
        assert info == dict.fromkeys(keys, 0.0), agent
    t = 0
    keys_after_reset = {a: set(i) for a, i in env.reset(seed=3)[1].items()}
    while env.agents:
        obs, rewards, _, _, infos = env.step(masked_actions(env, obs))
        assert {a: set(i) for a, i in infos.items()} == keys_after_reset
        assert tuple(env.last_metrics) == SYSTEM_METRICS  # the core's system_metrics keys
        t += 1
        sat, haps = infos["satellite_0"], [infos[f"hap_{i}"] for i in range(2)]
        locs = [infos[f"local_{j}"] for j in range(4)]
        # decided: the step just taken (t - 1); decides: the coming step t
        assert sat["decided"] == ((t - 1) % 6 == 0) and sat["decides"] == (t % 6 == 0)
        assert haps[0]["decided"] == ((t - 1) % 3 == 0) and haps[0]["decides"] == (t % 3 == 0)
        assert locs[0]["decided"] and locs[0]["decides"]
        assert sat == {**env.last_metrics, **{k: sat[k] for k in
                                              ("decides", "decided", "voided_actions",
                                               "repaired_actions")}}
        for j, loc in enumerate(locs):
            assert loc["reward"] == pytest.approx(rewards[f"local_{j}"])
            assert loc["throughput_bps"] <= loc["sum_rate_bps"] + 1e-3
        for i, hap in enumerate(haps):
            for key in ("throughput_bps", "spectral_efficiency", "fairness", "reward"):
                mean = np.mean([locs[2 * i + r][key] for r in range(2)])
                assert hap[key] == pytest.approx(mean, rel=1e-5, abs=1e-9)
            assert hap["reward"] == pytest.approx(rewards[f"hap_{i}"], rel=1e-5)
        assert sat["reward"] == pytest.approx(rewards["satellite_0"], rel=1e-5)
        total = sum(loc["throughput_bps"] for loc in locs) / env.core.Ut / 1e6
        assert sat["throughput_mbps"] == pytest.approx(total, rel=1e-4)


def test_reset_seed_semantics():
    env = make("sag")
    o1, _ = env.reset(seed=5)
    o2, _ = env.reset(seed=5)
    o3, _ = env.reset()  # next episode of the same stream
    o4, _ = make("sag").reset(seed=5)
    for a in env.possible_agents:
        np.testing.assert_array_equal(o1[a]["observation"], o2[a]["observation"])
        np.testing.assert_array_equal(o1[a]["observation"], o4[a]["observation"])
    assert any(not np.array_equal(o1[a]["observation"], o3[a]["observation"])
               for a in env.possible_agents)


def test_episode_determinism():
    """Same seed and same actions give identical episodes (parallel_seed_test stops after one
    step, so this checks a whole episode)."""
    runs = []
    for _ in range(2):
        env = make("sag-deep")
        obs, _ = env.reset(seed=11)
        for i, a in enumerate(env.possible_agents):
            env.action_space(a).seed(i)
        trace = []
        while env.agents:
            acts = masked_actions(env, obs)
            obs, rew, _, _, infos = env.step(acts)
            trace.append((acts, obs, rew, infos, env.state()))
        runs.append(trace)
    assert len(runs[0]) == 12
    assert data_equivalence(runs[0], runs[1])


def test_state_and_state_space():
    for name in ("sag", "ag", "uav"):
        env = make(name)
        with pytest.raises(RuntimeError, match="reset"):
            env.state()
        obs, _ = env.reset(seed=0)
        for _ in range(2):
            s = env.state()
            assert s.dtype == np.float32 and s.shape == env.state_space.shape
            assert env.state_space.contains(s)
            np.testing.assert_array_equal(
                s, np.concatenate([obs[a]["observation"] for a in env.possible_agents]))
            obs, *_ = env.step(masked_actions(env, obs))


def test_observations_are_copies():
    env = make("sag")
    obs, _ = env.reset(seed=0)
    before = env.state().copy()
    obs["local_0"]["observation"][:] = 123.0
    obs["local_0"]["action_mask"][:] = 0
    np.testing.assert_array_equal(env.state(), before)
    env.step(masked_actions(env, env.reset(seed=0)[0]))


@pytest.mark.parametrize("name", ["sag", "uav-multi", "ag-nouav"])
def test_link_state_contract(name):
    env = make(name)
    core = env.core
    obs, _ = env.reset(seed=2)
    with pytest.raises(RuntimeError):
        env.link_state()
    env.step(masked_actions(env, obs))
    ls = env.link_state()
    X, Ut, N, J, M, B, U = core.X, core.Ut, core.N, core.J, core.M, core.B, core.U
    shapes = {
        "gain": (X, Ut, N), "tx_power_w": (X, N), "serving_tx": (Ut, N), "noise_w": (N,),
        "sinr": (Ut, N), "rate_bps": (Ut,), "demand_bps": (Ut,), "time_share": (Ut, N),
        "tx_kind": (X,), "tx_region": (X,), "user_region": (Ut,), "beam_alloc": (B, N),
        "satellite_direct": (N,), "node_alloc": (J * M, N), "hap_direct": (J, N),
        "holder": (J, N), "user_xy": (Ut, 2), "uav_xy": (J * U, 2), "bandwidth_hz": (),
    }
    assert set(ls) == set(shapes)
    for key, shape in shapes.items():
        assert isinstance(ls[key], np.ndarray) and ls[key].shape == shape, key
    assert np.all(ls["gain"] >= 0) and np.all(ls["sinr"] >= 0)
    assert np.all((ls["serving_tx"] >= -1) & (ls["serving_tx"] < X))
    assert np.all(ls["time_share"] >= 0) and np.all(ls["time_share"].sum(1) <= N + 1e-6)
    assert float(ls["bandwidth_hz"]) == env.config.network.bandwidth_hz


def test_render_rgb_array():
    env = make("sag", render_mode="rgb_array")
    obs, _ = env.reset(seed=0)
    first = env.render()  # before any step: layout and allocation, users not served yet
    obs, *_ = env.step(masked_actions(env, obs))
    frame = env.render()
    for f in (first, frame):
        assert isinstance(f, np.ndarray) and f.dtype == np.uint8
        assert f.ndim == 3 and f.shape[2] == 3 and f.shape[0] > 100 and f.shape[1] > 100
        assert f.std() > 10 and len(np.unique(f.reshape(-1, 3), axis=0)) > 8
    assert first.shape == frame.shape and not np.array_equal(first, frame)
    env.close()
    env.close()  # idempotent
    # no TBS, several UAVs, a fresh figure after close
    env = make("uav-multi", render_mode="rgb_array")
    obs, _ = env.reset(seed=0)
    env.step(masked_actions(env, obs))
    f = env.render()
    assert f.dtype == np.uint8 and f.ndim == 3 and f.std() > 10
    env.close()


def test_render_without_mode_returns_none():
    env = make("uav")
    env.reset(seed=0)
    assert env.render() is None


def test_masked_multidiscrete_flat_and_tuple_masks():
    space = MaskedMultiDiscrete(np.array([3, 2, 4]))
    space.seed(0)
    flat = np.array([0, 0, 1, 1, 0, 0, 1, 1, 0], dtype=np.int8)
    for _ in range(20):
        a = space.sample(mask=flat)
        assert a[0] == 2 and a[1] == 0 and a[2] in (1, 2)
    assert space.sample(mask=flat.astype(bool))[0] == 2
    tup = (np.array([1, 0, 0], np.int8), np.array([0, 1], np.int8), np.array([0, 0, 0, 1], np.int8))
    assert space.sample(mask=tup).tolist() == [0, 1, 3]
    prob = np.array([0, 1, 0, 0.5, 0.5, 0, 0, 0, 1.0])
    assert space.sample(probability=prob).tolist()[::2] == [1, 3]
    with pytest.raises(ValueError, match="shape"):
        space.sample(mask=flat[:-1])
    with pytest.raises(ValueError, match=r"mask has shape \(3, 3\); expected flat \(9,\)"):
        space.sample(mask=np.ones((3, 3), np.int8))  # unequal nvec: no stacked layout
    equal = MaskedMultiDiscrete(np.array([3, 3]))
    equal.seed(0)
    stacked = np.array([[0, 0, 1], [1, 1, 0]], np.int8)
    for _ in range(20):
        a = equal.sample(mask=stacked)
        assert a[0] == 2 and a[1] in (0, 1)
    assert equal.sample(mask=stacked.reshape(-1))[0] == 2
    with pytest.raises(ValueError, match=r"expected flat \(6,\) = sum\(nvec\), or stacked "
                                         r"\(2, 3\)"):
        equal.sample(mask=stacked.T)
    with pytest.raises(ValueError, match="binary"):
        space.sample(mask=flat * 2)
    assert space.contains(space.sample())
    # uniform among the allowed choices; a position with none allowed gives its start
    draws = np.array([space.sample(mask=flat) for _ in range(2000)])
    assert abs(np.mean(draws[:, 2] == 1) - 0.5) < 0.05
    none = flat.copy()
    none[3:5] = 0
    assert space.sample(mask=none)[1] == 0
    shifted = MaskedMultiDiscrete(np.array([3, 2]), start=np.array([5, -1]))
    assert shifted.sample(mask=np.array([0, 0, 1, 0, 1], np.int8)).tolist() == [7, 0]
    # the draws of a seed are pinned (benchmarks and seeded rollouts depend on them; these are
    # the draws of the sampler before its buffer reuse, session 8)
    pinned = MaskedMultiDiscrete(np.array([3, 2, 4]))
    pinned.seed(7)
    mask = np.array([1, 0, 1, 1, 1, 0, 1, 1, 1], np.int8)
    assert [pinned.sample(mask=mask).tolist() for _ in range(6)] == [
        [2, 1, 2], [0, 1, 2], [0, 1, 2], [0, 0, 2], [2, 1, 2], [0, 1, 1]]


def test_config_object_constructor():
    env = TNTNParallelEnv(make_config("ag", **SMALL))
    obs, _ = env.reset(seed=0)
    assert env.possible_agents[0] == "hap_0" and env.core.num_envs == 1
    env.step(masked_actions(env, obs))


def test_core_usable_outside_inference_mode_after_the_view():
    """The view steps its core under torch.inference_mode(); env.core must keep working outside
    it (step, partial reset, what-if evaluation) and its outputs must enter autograd."""
    env = parallel_env("sag", num_subbands=4, users_per_region=3, episode_steps=12)
    obs, _ = env.reset(seed=3)
    env.step({a: env.action_space(a).sample(mask=obs[a]["action_mask"]) for a in env.agents})
    core, gen = env.core, torch.Generator().manual_seed(0)
    masks = core.masks()
    for _ in range(14):  # crosses the episode end: auto-reset
        acts = {}
        for t, m in masks.items():
            score = torch.rand(core.padded_mask(t, m).shape, generator=gen)
            acts[t] = torch.where(core.padded_mask(t, m), score, -1.0).argmax(-1)
        out = core.step(acts, auto_reset=True)
        masks = out["masks"]
    core.reset(env_ids=[0])
    ev = core.evaluate({t: torch.stack([a, a], 1) for t, a in acts.items()})
    assert torch.isfinite(ev["metrics"]["spectral_efficiency"]).all()
    x = out["obs"]["local"]
    assert not x.is_inference()
    lin = torch.nn.Linear(x.shape[-1], 1)
    lin(x).sum().backward()  # would raise for an inference tensor saved for backward
    assert lin.weight.grad is not None and torch.isfinite(lin.weight.grad).all()
    obs, _ = env.reset(seed=4)  # and the view again afterwards
    assert set(obs) == set(env.possible_agents)
