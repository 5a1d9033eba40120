"""Every documented bad input of the PettingZoo env raises ValueError with a clear message."""

from __future__ import annotations

import re

import numpy as np
import pytest

from tntn_env import TNTNParallelEnv, make_config, parallel_env
from tntn_env.config import TINY_OVERRIDES

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = {**TINY_OVERRIDES, "episode_steps": 30}


@pytest.fixture
def env():
    e = parallel_env("sag", **SMALL)
    e.reset(seed=0)
    return e


def valid_actions(env, seed=0) -> dict:
    """Masked random actions for the current step (masks as in the last observation)."""
    acts = {}
    masks = _masks(env)
    for i, a in enumerate(env.agents):
        sp = env.action_space(a)
        sp.seed(seed + i)
        acts[a] = sp.sample(mask=masks[a])
    return acts


def _masks(env) -> dict:
    """The flat int8 masks of the last observation, per live agent."""
    m = {t: env.core.masks()[t][0].numpy().astype(np.int8) for t in env.tiers}
    return {a: m[a.rsplit("_", 1)[0]][int(a.rsplit("_", 1)[1])] for a in env.agents}


def forbidden_choice(env, agent):
    """(position, value) of a choice that the agent's current mask forbids, or None."""
    nvec = env.action_space(agent).nvec
    mask = _masks(env)[agent]
    offs = np.cumsum(nvec) - nvec
    for p, (o, n) in enumerate(zip(offs, nvec)):
        bad = np.nonzero(mask[o:o + n] == 0)[0]
        if len(bad):
            return p, int(bad[0])
    return None


def check_state_unchanged(env, t_before):
    """A rejected step leaves the env where it was; a valid step still works."""
    assert int(env.core.state.t[0]) == t_before
    env.step(valid_actions(env))
    assert int(env.core.state.t[0]) == t_before + 1


# ---------------------------------------------------------------- actions
def test_wrong_shape(env):
    acts = valid_actions(env)
    acts["local_2"] = acts["local_2"][:-1]
    d = len(env.action_space("local_2").nvec)
    with pytest.raises(ValueError, match=re.escape(f"'local_2' has shape ({d - 1},); expected "
                                                   f"({d},)")):
        env.step(acts)
    acts["local_2"] = np.zeros((1, d), dtype=np.int64)
    with pytest.raises(ValueError, match=re.escape(f"'local_2' has shape (1, {d})")):
        env.step(acts)
    acts["local_2"] = 0
    with pytest.raises(ValueError, match=re.escape("'local_2' has shape ()")):
        env.step(acts)
    acts["local_2"] = [[0, 1], [2]]
    with pytest.raises(ValueError, match="'local_2' is not an array"):
        env.step(acts)
    check_state_unchanged(env, 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, bool])
def test_non_integer_dtype(env, dtype):
    acts = valid_actions(env)
    acts["hap_1"] = acts["hap_1"].astype(dtype)
    with pytest.raises(ValueError, match=r"'hap_1' has dtype (float32|float64|bool); expected "
                                         r"integers"):
        env.step(acts)
    acts = valid_actions(env)
    acts["satellite_0"] = [float(v) for v in acts["satellite_0"]]  # python floats too
    with pytest.raises(ValueError, match="'satellite_0' has dtype float64"):
        env.step(acts)
    acts["satellite_0"] = ["1"] * len(acts["satellite_0"])
    with pytest.raises(ValueError, match="'satellite_0' has dtype <U1"):
        env.step(acts)
    check_state_unchanged(env, 0)


def test_other_integer_dtypes_and_lists_are_accepted(env):
    acts = valid_actions(env)
    acts["local_0"] = acts["local_0"].astype(np.uint8)
    acts["local_1"] = acts["local_1"].astype(np.int32)
    acts["local_2"] = acts["local_2"].tolist()
    env.step(acts)


@pytest.mark.parametrize("agent,pos_kind", [("satellite_0", 0), ("hap_0", 0), ("local_1", 0),
                                            ("local_1", "power"), ("local_1", "uav")])
def test_out_of_range(env, agent, pos_kind):
    core = env.core
    nvec = env.action_space(agent).nvec
    pos = {0: 0, "power": core.N * core.T + 1, "uav": len(nvec) - 1}[pos_kind]
    for value in (int(nvec[pos]), -1):
        acts = valid_actions(env)
        acts[agent] = acts[agent].copy()
        acts[agent][pos] = value
        with pytest.raises(ValueError, match=rf"agent '{agent}' .*at position {pos} "
                                             rf"\(.*\) = {value} is out of range; allowed: \["):
            env.step(acts)
    check_state_unchanged(env, 0)


def test_masked_value(env):
    # Step once so that the satellite's allocation (and with it the masks) is a random one.
    env.step(valid_actions(env, seed=7))
    found = 0
    for agent in ("hap_0", "hap_1", "local_0", "local_1", "local_2", "local_3"):
        bad = forbidden_choice(env, agent)
        if bad is None:
            continue
        pos, value = bad
        acts = valid_actions(env)
        acts[agent] = acts[agent].copy()
        acts[agent][pos] = value
        with pytest.raises(ValueError, match=rf"agent '{agent}' .*at position {pos} \(.*\) = "
                                             rf"{value} is forbidden by the action mask"):
            env.step(acts)
        found += 1
    assert found >= 2  # some HAP and local choices are masked after a random allocation
    check_state_unchanged(env, 1)


def test_unknown_agent(env):
    acts = valid_actions(env)
    acts["local_99"] = acts["local_0"]
    with pytest.raises(ValueError, match=r"unknown agents \['local_99'\]; agents of this "
                                         r"scenario: \['satellite_0'"):
        env.step(acts)
    uav = parallel_env("uav", **SMALL)
    uav.reset(seed=0)
    acts = valid_actions(uav)
    acts["satellite_0"] = np.zeros(4, dtype=np.int64)
    with pytest.raises(ValueError, match=r"unknown agents \['satellite_0'\]"):
        uav.step(acts)


def test_missing_agent(env):
    acts = valid_actions(env)
    del acts["hap_1"], acts["local_3"]
    with pytest.raises(ValueError, match=r"missing actions for agents \['hap_1', 'local_3'\]"):
        env.step(acts)
    with pytest.raises(ValueError, match="actions must be a dict"):
        env.step(list(acts.values()))
    check_state_unchanged(env, 0)


def test_step_outside_an_episode():
    env = parallel_env("uav", **{**SMALL, "episode_steps": 2})
    with pytest.raises(RuntimeError, match="reset"):
        env.step({})
    env.reset(seed=0)
    env.step(valid_actions(env))
    acts = valid_actions(env)
    *_, truncs, _ = env.step(acts)
    assert all(truncs.values()) and env.agents == []
    with pytest.raises(RuntimeError, match="reset"):
        env.step(acts)


def test_bad_seed(env):
    with pytest.raises(ValueError, match="seed = -1 is invalid"):
        env.reset(seed=-1)


# ---------------------------------------------------------------- repair mode
def test_repair_mode_counts_and_matches_raise_mode():
    rep = parallel_env("sag", invalid_action="repair", **SMALL)
    ref = parallel_env("sag", **SMALL)
    rep.reset(seed=4)
    ref.reset(seed=4)
    acts = valid_actions(rep, seed=1)
    rep.step(acts)
    ref.step(acts)
    acts = valid_actions(rep, seed=2)
    fixed = {a: v.copy() for a, v in acts.items()}
    bad = dict(acts)
    n_bad, bad_by_agent = 0, dict.fromkeys(acts, 0)
    for agent in ("hap_0", "local_2"):
        choice = forbidden_choice(rep, agent)
        if choice is not None:  # masked value -> first allowed choice of the position
            pos, value = choice
            bad[agent] = bad[agent].copy()
            bad[agent][pos] = value
            nv = rep.action_space(agent).nvec
            off = int(nv[:pos].sum())
            fixed[agent][pos] = int(np.argmax(_masks(rep)[agent][off:off + nv[pos]]))
            n_bad += 1
            bad_by_agent[agent] += 1
    nvec = rep.action_space("local_1").nvec
    bad["local_1"] = bad["local_1"].copy()
    bad["local_1"][-1] = nvec[-1] + 3  # out of range UAV move -> 0 (stay, always allowed)
    fixed["local_1"][-1] = 0
    n_bad += 1
    bad_by_agent["local_1"] += 1
    assert n_bad >= 2
    with pytest.raises(ValueError):
        ref.step(bad)
    o1, r1, _, _, i1 = rep.step(bad)
    o2, r2, _, _, i2 = ref.step(fixed)
    assert {a: i["repaired_actions"] for a, i in i1.items()} == bad_by_agent  # per agent
    assert sum(i["repaired_actions"] for i in i1.values()) == n_bad
    assert all(i["repaired_actions"] == 0 for i in i2.values())
    assert r1 == r2
    for a in o1:
        np.testing.assert_array_equal(o1[a]["observation"], o2[a]["observation"])


def test_repair_mode_still_rejects_malformed_input():
    env = parallel_env("ag", invalid_action="repair", **SMALL)
    env.reset(seed=0)
    acts = valid_actions(env)
    acts["local_0"] = acts["local_0"].astype(np.float64)
    with pytest.raises(ValueError, match="'local_0' has dtype float64"):
        env.step(acts)
    acts = valid_actions(env)
    del acts["local_0"]
    with pytest.raises(ValueError, match=r"missing actions for agents \['local_0'\]"):
        env.step(acts)


# ---------------------------------------------------------------- configuration
@pytest.mark.parametrize("kwargs,pattern", [
    (dict(num_beams=-1), r"NetworkConfig\.num_beams = -1 is invalid; allowed: an integer >= 1"),
    (dict(users_per_region=-3), r"users_per_region = -3 is invalid; allowed: an integer >= 1"),
    (dict(tbs_per_region=-1), r"tbs_per_region = -1 is invalid; allowed: an integer >= 0"),
    (dict(num_subbands=0), r"num_subbands = 0 is invalid; allowed: an integer >= 1"),
    (dict(satellite_power_dbm=(45.0, 33.0)),
     r"satellite_power_dbm = \(45\.0, 33\.0\) is invalid; allowed: .*min <= max"),
    (dict(hap_power_dbm=(30.0, 20.0)), r"hap_power_dbm = .*min <= max"),
    (dict(episode_steps=0), r"episode_steps = 0 is invalid; allowed: an integer >= 1"),
    (dict(invalid_action="ignore"),
     r"invalid_action = 'ignore' is invalid; allowed: \('raise', 'repair'\)"),
    (dict(num_subbands=2.5), r"num_subbands = 2\.5 is invalid; allowed: an integer >= 1"),
    (dict(bogus_key=1), r"unknown config key 'bogus_key'; allowed keys: .*num_beams"),
])
def test_bad_config(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        parallel_env("sag", **kwargs)


def test_unknown_scenario():
    with pytest.raises(ValueError, match=r"scenario = 'leo' is unknown; allowed: "
                                         r"\('sag', 'ag', 'uav'\)"):
        parallel_env("leo")


def test_bad_render_mode():
    with pytest.raises(ValueError, match=r"render_mode = 'human' is invalid; allowed: "
                                         r"\[None, 'rgb_array'\]"):
        parallel_env("uav", render_mode="human", **SMALL)


def test_bad_config_object():
    with pytest.raises(ValueError, match="config = 'sag' is invalid; allowed: an EnvConfig"):
        TNTNParallelEnv("sag")
    TNTNParallelEnv(make_config("uav", **SMALL))


# ---------------------------------------------------------------- sizes, seeds, ids, episode end
@pytest.mark.parametrize("kwargs,term", [(dict(num_subbands=10 ** 6), "agents"),
                                         (dict(num_hotspots=10 ** 9), "demand"),
                                         (dict(episode_steps=10 ** 10), "tables")])
def test_absurd_sizes_are_refused_at_validation_with_the_estimate(kwargs, term):
    import time

    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=rf"needs about [\d,.]+ GiB for one environment "
                                         rf"\(estimate: {term} [\d,.]+ GiB.*memory_limit_gib = 4"):
        parallel_env("sag", **kwargs)
    assert time.perf_counter() - t0 < 1.0  # refused before anything is allocated


def test_memory_limit_is_a_config_field():
    from tntn_env.config import memory_estimate_bytes

    with pytest.raises(ValueError, match="memory_limit_gib = 4"):
        make_config("sag", episode_steps=10 ** 9)
    cfg = make_config("sag", episode_steps=10 ** 9, memory_limit_gib=64)  # raised: accepted
    assert 4 * 2 ** 30 < memory_estimate_bytes(cfg) < 64 * 2 ** 30
    assert memory_estimate_bytes(make_config("sag")) < 2 ** 20  # the default needs ~0.2 MiB
    with pytest.raises(ValueError, match="memory_limit_gib = 0 is invalid"):
        make_config("sag", memory_limit_gib=0)


def test_too_many_envs_for_the_free_memory_are_refused(monkeypatch):
    import torch

    from tntn_env import TNTNCore, checking
    from tntn_env.config import memory_estimate_bytes

    free = checking.available_memory_bytes(torch.device("cpu"))
    assert free is None or free > 2 ** 20  # read from the machine (Linux: /proc/meminfo)
    cfg = make_config("sag")
    per_env = memory_estimate_bytes(cfg, 2) - memory_estimate_bytes(cfg, 1)
    fixed = memory_estimate_bytes(cfg, 1) - per_env  # tables shared by the envs
    monkeypatch.setattr(checking, "available_memory_bytes",
                        lambda device: fixed + 100 * per_env)
    with pytest.raises(ValueError, match=r"num_envs = 1000 is too many for cpu: 1000 "
                                         r"environments .* need about .* allowed: at most about "
                                         r"100 environments"):
        TNTNCore(scenario="sag", num_envs=1000)
    assert TNTNCore(scenario="sag", num_envs=64).num_envs == 64  # within the free memory


@pytest.mark.parametrize("kwargs,pattern", [
    (dict(tbs_power_dbm=(True, 20)), r"tbs_power_dbm = \(True, 20\) is invalid"),
    (dict(uav_power_dbm=(5, False)), r"uav_power_dbm = \(5, False\) is invalid"),
    (dict(power_levels=(True,)), r"power_levels = \(True,\) is invalid"),
])
def test_bools_are_not_numbers_in_tuples(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        make_config("sag", **kwargs)


@pytest.mark.parametrize("text", ["num_subbands=4,num_subbands=5",
                                  '{"num_subbands": 4, "num_subbands": 5}'])
def test_duplicate_override_keys_are_refused(text):
    from tntn_env import parse_overrides

    with pytest.raises(ValueError, match="'num_subbands' is given twice"):
        parse_overrides(text)


@pytest.fixture
def core():
    from tntn_env import TNTNCore

    c = TNTNCore(scenario="sag", num_envs=3, **{**SMALL, "episode_steps": 2})
    c.reset(seed=0)
    return c


@pytest.mark.parametrize("kwargs,pattern", [
    (dict(seed=100, env_ids=[-1]), r"env_ids holds -1; allowed: env indices in \[0, 2\]"),
    (dict(seed=0, env_ids=[3]), r"env_ids holds 3"),
    (dict(seed=0, env_ids=[1, 1]), "env_ids holds an index twice"),
    (dict(seed=0, env_ids=[0.0]), "env_ids holds 0.0; allowed: integers"),
    (dict(seed=1.5), r"seed = 1\.5 is invalid; allowed: None, an integer >= 0"),
    (dict(seed="7"), r"seed = '7' is invalid"),
    (dict(seed=True), r"seed = True is invalid"),
    (dict(seed=[1, 2.0, 3]), "seed holds 2.0; allowed: integers"),
    (dict(seed=np.array([1.0, 2.0, 3.0])), "seed has dtype float64"),
    (dict(seed=[1, 2]), "seed has 2 entries; allowed: 3 integers >= 0"),
    (dict(seed=2 ** 63), r"seed = 9223372036854775808 is invalid"),
])
def test_bad_reset_arguments_are_refused(core, kwargs, pattern):
    before = core.state.key.clone()
    with pytest.raises(ValueError, match=pattern):
        core.reset(**kwargs)
    assert core.state.key.equal(before)  # nothing reset


def test_valid_reset_arguments(core):
    import torch

    core.reset(seed=[4, 5, 6])
    k = core.state.key.clone()
    core.reset(seed=np.arange(4, 7))
    assert core.state.key.equal(k)
    core.reset(seed=torch.tensor([0, 0, 0]))
    core.reset(seed=3, env_ids=[1, 2])  # env i gets seed + i: 4 and 5
    core.reset(seed=np.int64(4), env_ids=np.array([0]))  # 4
    assert core.state.key.equal(k[[0, 0, 1]])


def test_core_refuses_to_step_a_finished_episode(core):
    import torch

    from tntn_env.baselines.common import sample_uniform

    gen = torch.Generator().manual_seed(0)

    def act():
        return {t: sample_uniform(core.padded_mask(t, m), gen) for t, m in core.masks().items()}

    core.step(act())
    assert bool(core.step(act())["truncated"].all())
    with pytest.raises(RuntimeError, match=r"env\(s\) \[0, 1, 2\] reached episode_steps = 2"):
        core.step(act())
    core.reset(env_ids=[1])  # the others are still over; t is no longer known on the host
    with pytest.raises(RuntimeError, match=r"env\(s\) \[0, 2\] reached episode_steps = 2"):
        core.step(act(), auto_reset=True)
    core.reset()
    for _ in range(5):  # with auto_reset, episodes end and restart
        out = core.step(act(), auto_reset=True)
        assert bool((core.state.t < 2).all()) and out["obs"]["local"].isfinite().all()
