"""``compile``: the core's step through ``torch.compile`` agrees with the eager core.

Compiling takes a minute or more per graph on 2 cores; these tests compile two (the step at E = 1
with and without a large-scale refresh) and reuse them (torch's compile cache) for the
PettingZoo env of the same config, and the per-link kernels of ``compile="kernels"`` at E = 4."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_batched import CFG, assert_out_close, assert_state_close, pick, scores_for

import tntn_env
from tntn_env import TNTNCore, make_config

# Fused kernels round differently from eager ops: relative 1e-4, and absolute 1e-5 for the
# observations' SNR features (dB / 20), which pass through zero. Measured over 30 steps: at most
# a relative 8e-6 beyond the absolute part (sum rates), 2e-5 absolute on the SNR features.
RTOL, ATOL = 1e-4, 1e-5
# Refresh every 3 steps: the steps cross both compiled variants, an episode end (7 steps)
# and an auto-reset.
SMALL = {**CFG, "large_scale_refresh_steps": 3, "episode_steps": 7}


def _cores(invalid_action):
    """An eager and a compiled core at E = 1 in inference mode: the graphs of the PettingZoo
    env of the same config (``invalid_action`` is not part of them), compiled once."""
    cfg = make_config("sag", **SMALL, invalid_action=invalid_action)
    return TNTNCore(cfg, num_envs=1), TNTNCore(cfg, num_envs=1, compile=True)


def _assert_link_states_close(la: dict, lb: dict) -> None:
    for k in la:
        if np.issubdtype(la[k].dtype, np.floating):
            np.testing.assert_allclose(la[k], lb[k], rtol=RTOL, atol=1e-30, err_msg=k)
        else:
            np.testing.assert_array_equal(la[k], lb[k], err_msg=k)


@torch.inference_mode()
@pytest.mark.slow
def test_compiled_core_matches_eager_and_repairs_alike():
    eager, comp = _cores("repair")
    oe, me = eager.reset(seed=4)
    oc, mc = comp.reset(seed=4)
    for t in eager.tiers:
        assert torch.equal(me[t], mc[t])
    gen = torch.Generator().manual_seed(1)
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    for step in range(10):
        acts = pick(eager, me, scores_for(eager, gen))
        if step == 4:  # a forbidden choice: both repair it, the compiled core after its check
            acts["local"][0, 0, 0] = eager.K + 5
        a = eager.step({k: v.clone() for k, v in acts.items()}, auto_reset=True)
        b = comp.step({k: v.clone() for k, v in acts.items()}, auto_reset=True)
        # float rounding differs between the fused kernels and eager ops; discrete outputs
        # (masks, voided/repaired counts, truncation, decisions) are equal
        assert_out_close(a, b, rtol=RTOL, atol=ATOL)
        assert_state_close(eager.state, comp.state, rtol=RTOL, atol=ATOL)
        if step == 4:
            assert int(a["repaired"].sum()) == int(b["repaired"].sum()) == 1
        if step % 3 == 0:
            _assert_link_states_close(eager.link_state(0), comp.link_state(0))
        me = a["masks"]
    assert comp.state.episode.tolist() == [1]  # crossed the episode end
    # two graphs at most (with and without a large-scale refresh; fewer if another test compiled
    # them): the states after an auto-reset have the memory layout of the others, no recompile
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] - graphs <= 2


@pytest.mark.slow
def test_compiled_pettingzoo_env_matches_eager_and_raises_alike():
    envs = [tntn_env.parallel_env("sag", compile=c, **SMALL) for c in (False, True)]
    obs = [e.reset(seed=3)[0] for e in envs]
    space = envs[0].action_space
    for a in envs[0].agents:
        space(a).seed(5)
    for _ in range(2):
        acts = {a: space(a).sample(mask=obs[0][a]["action_mask"]) for a in envs[0].agents}
        res = [e.step(acts) for e in envs]
        obs = [r[0] for r in res]
        for a in envs[0].agents:
            np.testing.assert_array_equal(obs[0][a]["action_mask"], obs[1][a]["action_mask"])
            np.testing.assert_allclose(obs[0][a]["observation"], obs[1][a]["observation"],
                                       rtol=RTOL, atol=ATOL)
            assert res[0][1][a] == pytest.approx(res[1][1][a], rel=RTOL, abs=ATOL)
            ia, ib = res[0][4][a], res[1][4][a]
            assert ia.keys() == ib.keys()
            for k in ia:
                assert ia[k] == pytest.approx(ib[k], rel=RTOL, abs=ATOL), (a, k)
    # an out-of-range choice: the compiled step hands it to the eager check, which raises the
    # same message and leaves the state alone
    acts = {a: space(a).sample(mask=obs[0][a]["action_mask"]) for a in envs[0].agents}
    acts["hap_1"] = acts["hap_1"].copy()
    acts["hap_1"][0] = envs[0].core.M + 7
    msgs = []
    for env in envs:
        with pytest.raises(ValueError, match="out of range") as e:
            env.step(acts)
        msgs.append(str(e.value))
    assert msgs[0] == msgs[1]
    assert int(envs[1].core.state.t[0]) == 2


@torch.inference_mode()
@pytest.mark.slow
def test_kernels_core_matches_eager():
    """``compile="kernels"`` (``compile=True``'s choice on CPU from E = 1,024 on): the eager step
    around compiled per-link kernels, here at E = 4 (the same code, small shapes)."""
    cfg = make_config("sag", **SMALL)
    eager, kern = TNTNCore(cfg, num_envs=4), TNTNCore(cfg, num_envs=4, compile="kernels")
    assert kern.compile_mode == "kernels" and kern._transition_compiled is None
    calls = dict.fromkeys(kern._kernels, 0)

    def counted(name, fn):
        def call(*args):
            calls[name] += 1
            return fn(*args)
        return call

    kern._kernels = {name: counted(name, fn) for name, fn in kern._kernels.items()}
    _, me = eager.reset(seed=4)
    _, mk = kern.reset(seed=4)
    for t in eager.tiers:
        assert torch.equal(me[t], mk[t])
    gen = torch.Generator().manual_seed(2)
    for step in range(10):
        acts = pick(eager, me, scores_for(eager, gen))
        a = eager.step({k: v.clone() for k, v in acts.items()}, auto_reset=True)
        b = kern.step({k: v.clone() for k, v in acts.items()}, auto_reset=True)
        assert_out_close(a, b, rtol=RTOL, atol=ATOL)
        assert_state_close(eager.state, kern.state, rtol=RTOL, atol=ATOL)
        if step % 3 == 1:
            _assert_link_states_close(eager.link_state(2), kern.link_state(2))
        if step == 5:  # what-if: C = 1 keeps the core's batch shape (kernels), C = 3 does not
            for c in (1, 3):
                cand = {t: torch.stack([pick(eager, a["masks"], scores_for(eager, gen))[t]
                                        for _ in range(c)], 1) for t in eager.tiers}
                ea, eb = eager.evaluate(cand), kern.evaluate(cand)
                for k in ea["metrics"]:
                    torch.testing.assert_close(ea["metrics"][k], eb["metrics"][k], rtol=RTOL,
                                               atol=ATOL, msg=k)
        me = a["masks"]
    assert kern.state.episode.tolist() == [1] * 4  # crossed the episode end
    assert all(calls.values()), calls  # every kernel ran (not the eager fallback)
    # correlated fading: the draws stay eager (they gather the state's fading field), the other
    # kernels run
    cfg = make_config("sag", **SMALL, fading_rho=0.6)
    eager, kern = TNTNCore(cfg, num_envs=4), TNTNCore(cfg, num_envs=4, compile="kernels")
    _, me = eager.reset(seed=5)
    kern.reset(seed=5)
    for _ in range(4):
        acts = pick(eager, me, scores_for(eager, gen))
        a = eager.step({k: v.clone() for k, v in acts.items()}, auto_reset=True)
        b = kern.step({k: v.clone() for k, v in acts.items()}, auto_reset=True)
        assert_out_close(a, b, rtol=RTOL, atol=ATOL)
        me = a["masks"]


def test_compile_modes():
    assert TNTNCore(scenario="sag", num_envs=1024, compile=True).compile_mode == "kernels"
    assert TNTNCore(scenario="sag", num_envs=1023, compile=True).compile_mode == "graph"
    assert TNTNCore(scenario="sag", num_envs=2, compile="kernels").compile_mode == "kernels"
    assert TNTNCore(scenario="sag", num_envs=2048).compile_mode is None


def test_compile_flag_is_validated():
    with pytest.raises(ValueError, match="compile = 'yes' is invalid; allowed: True, False, "
                                         "'graph', 'kernels'"):
        tntn_env.parallel_env("sag", compile="yes")


@torch.inference_mode()
@pytest.mark.slow
@pytest.mark.parametrize("mode,num_envs", [("kernels", 4), ("graph", 1)])
def test_compiled_core_matches_eager_with_the_orbit(mode, num_envs):
    """The orbit option (SGP4 geometry each step, elevation masks) through both compiled modes:
    a step of 30 s, so the 10 steps move the satellite and cross an episode end."""
    cfg = make_config("sag", **{**SMALL, "step_duration_s": 30.0, "satellite_interval": 4,
                                "hap_interval": 2, "orbit_enabled": True})
    eager, comp = TNTNCore(cfg, num_envs=num_envs), TNTNCore(cfg, num_envs=num_envs,
                                                             compile=mode)
    assert comp.compile_mode == mode
    _, me = eager.reset(seed=4)
    comp.reset(seed=4)
    gen = torch.Generator().manual_seed(3)
    for _ in range(10):
        acts = pick(eager, me, scores_for(eager, gen))
        a = eager.step({k: v.clone() for k, v in acts.items()}, auto_reset=True)
        b = comp.step({k: v.clone() for k, v in acts.items()}, auto_reset=True)
        assert_out_close(a, b, rtol=RTOL, atol=ATOL)
        assert_state_close(eager.state, comp.state, rtol=RTOL, atol=ATOL)
        me = a["masks"]
    assert comp.state.episode.tolist() == [1] * num_envs
