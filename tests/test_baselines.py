"""Random and greedy baselines: feasibility (property test), reproducibility, greedy >> random,
and the checkpoint adapter against a stand-in trainer file."""

from __future__ import annotations

import textwrap

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tntn_env import TNTNCore, make_config
from tntn_env.baselines import CheckpointPolicy, GreedyPolicy, RandomPolicy, feasible
from tntn_env.baselines.common import holders
from tntn_env.config import TINY_OVERRIDES


@pytest.fixture(autouse=True)
def _one_thread():
    """Small tensors: one intra-op thread is faster, above all on a shared machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@st.composite
def small_configs(draw):
    uavs = draw(st.integers(0, 1))
    tbs = draw(st.integers(1 - uavs, 2))
    users = draw(st.integers(1, 5))
    levels = draw(st.sampled_from([(1.0,), (0.5, 1.0), (0.25, 0.5, 1.0)]))
    cfg = dict(num_beams=draw(st.integers(1, 2)), haps_per_beam=1,
               regions_per_hap=draw(st.integers(1, 2)), tbs_per_region=tbs,
               uavs_per_region=uavs, users_per_region=users,
               num_subbands=draw(st.integers(1, 4)), time_blocks=draw(st.integers(1, 2)),
               power_levels=levels, episode_steps=6, satellite_interval=4, hap_interval=2,
               region_size_m=draw(st.sampled_from([200.0, 2000.0])))
    return draw(st.sampled_from(["sag", "ag", "uav"])), cfg, draw(st.integers(0, 2**20))


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(small_configs())
def test_actions_are_feasible_and_never_voided(case):
    scenario, overrides, seed = case
    for pol in (RandomPolicy(seed=seed), GreedyPolicy()):
        core = TNTNCore(make_config(scenario, **overrides), num_envs=2)  # core checks too
        core.reset(seed=seed)
        for _ in range(6):  # covers satellite (t=0, 4) and HAP (t=0, 2, 4) decisions
            a = pol.act(core)
            for tier in core.tiers:
                assert a[tier].dtype == torch.long
                assert tuple(a[tier].shape) == (2, core.num_agents[tier], len(core.nvec[tier]))
            ok = feasible(core, a)
            assert all(bool(v.all()) for v in ok.values()), pol.name
            # top-down: lower tiers fit the masks that follow from this step's upper actions
            upper = {t: a[t] for t in ("satellite", "hap") if t in core.tiers}
            td = core.masks_for(upper)["local"]
            nv = torch.tensor(core.nvec["local"])
            offs = torch.cumsum(nv, 0) - nv
            assert bool(torch.gather(td, 2, offs + a["local"]).all()), pol.name
            out = core.step(a)
            assert int(out["voided"].sum()) == 0, pol.name
            assert all(bool(torch.isfinite(v).all()) for v in out["metrics"].values())


def test_random_is_reproducible_and_uniform_over_masked_choices():
    cfg = make_config("sag", **{**TINY_OVERRIDES, "episode_steps": 10})
    acts = []
    for _ in range(2):
        core = TNTNCore(cfg, num_envs=3)
        core.reset(seed=5)
        acts.append(RandomPolicy(seed=9).act(core))
    for t in acts[0]:
        assert torch.equal(acts[0][t], acts[1][t])
    # the satellite (unmasked) uses every choice over many draws
    core = TNTNCore(cfg, num_envs=64, check_actions=False)
    core.reset(seed=0)
    s = RandomPolicy(seed=1).act(core)["satellite"]
    assert set(s.flatten().tolist()) == set(range(core.B + 2))


def test_holders_match_core_allocation():
    core = TNTNCore(make_config("sag", num_subbands=6, users_per_region=4), num_envs=4)
    core.reset(seed=3)
    r = RandomPolicy(seed=2)
    a = r.act(core)
    sat = a["satellite"].view(4, -1)
    hap = a["hap"].view(4, core.J, -1)
    beam_has = sat[:, None, :] == core.topo.region_beam[None, :, None] + 1
    hap = torch.where(beam_has, hap, 0)
    mine, _ = holders(core, sat, hap)
    ref = core._allocation(sat, hap)[0]  # private: guards against drift of the documented rule
    assert torch.equal(mine, ref)


def test_greedy_beats_random_clearly():
    cfg = make_config("sag", episode_steps=20)
    means = {}
    for pol in (RandomPolicy(seed=0), GreedyPolicy()):
        core = TNTNCore(cfg, num_envs=3)
        core.reset(seed=100)
        rs = []
        for _ in range(20):
            out = core.step(pol.act(core))
            rs.append(out["metrics"]["reward"])
        means[pol.name] = torch.stack(rs).mean(0)  # per seed
    # on every seed, and by a wide margin on average
    assert bool((means["greedy"] > means["random"] + 0.3).all()), means
    assert float(means["greedy"].mean()) > float(means["random"].mean()) + 1.0, means


def stand_in_trainer(tmp_path, name, source):
    """A trainer file with ``source``, a checkpoint holding "1.0" and a small reset core."""
    trainer = tmp_path / name
    trainer.write_text(textwrap.dedent(source))
    ckpt = tmp_path / "model.pt"
    ckpt.write_text("1.0")
    core = TNTNCore(make_config("sag", num_subbands=4, users_per_region=3), num_envs=2)
    core.reset(seed=0)
    return trainer, ckpt, core


def test_checkpoint_adapter_with_stand_in_trainer(tmp_path):
    """The real trainers are written elsewhere; a stand-in file checks the adapter's contract."""
    trainer, ckpt, core = stand_in_trainer(tmp_path, "fake_trainer.py", '''
        def load_policy(path, core):
            scale = float(open(path).read())
            def act(obs, masks):
                out = {t: core.default_actions(t) for t in core.tiers}
                assert obs["local"].shape[0] == core.num_envs and scale == 1.0
                return out
            return act
    ''')
    pol = CheckpointPolicy(ckpt, trainer, name="fake")
    a = pol.act(core)
    assert pol.name == "fake"
    assert set(a) == set(core.tiers)
    core.step(a)
    with pytest.raises(FileNotFoundError):
        CheckpointPolicy(tmp_path / "missing.pt", trainer)
    bad = tmp_path / "bad_trainer.py"
    bad.write_text("x = 1\n")
    with pytest.raises(AttributeError, match="load_policy"):
        CheckpointPolicy(ckpt, bad)


def test_checkpoint_adapter_samples_when_asked(tmp_path):
    """sample=True asks the trainer for its sampling policy and seeds torch's generator at every
    reset, so two sampled evaluations with the same seed act identically."""
    trainer, ckpt, core = stand_in_trainer(tmp_path, "sampling_trainer.py", '''
        import torch

        def load_policy(path, core, greedy=True):
            def act(obs, masks):
                assert not greedy
                out = {t: core.default_actions(t) for t in core.tiers}
                out["local"] = out["local"] + int(torch.randint(0, 10**6, ()))  # a random draw
                return out
            return act
    ''')
    draws = []
    for seed in (5, 5, 6):
        pol = CheckpointPolicy(ckpt, trainer, sample=True, seed=seed)
        pol.reset(core)
        draws.append([int(pol.act(core)["local"].max()) for _ in range(3)])
    assert draws[0] == draws[1] and draws[0] != draws[2]
