"""The warm start (``TimingConfig.warm_start``): the first observation reports the feedback of
one step of the initial allocation with max-SNR scheduling at full power, as if the network had
been running before the episode."""

from __future__ import annotations

import pytest
import torch

from tntn_env import TNTNCore, make_config
from tntn_env.baselines import GreedyPolicy
from tntn_env.config import TINY_OVERRIDES
from tntn_env.policy import obs_slices

FEEDBACK = ("last_rate", "last_served", "last_se", "last_fair", "last_inr_db")
SMALL = {**TINY_OVERRIDES, "users_per_region": 5, "episode_steps": 20}


def max_snr_actions(core, obs, masks):
    """The warm start's step written out through the public step interface: the upper tiers
    keep their initial (equal split) choices, each held subband's T time blocks go to the T
    users of highest holder SNR (read from the local observation), top power, UAVs stay."""
    st, E, J, K, N, T = core.state, core.num_envs, core.J, core.K, core.N, core.T
    hs = obs["local"][..., obs_slices(core, "local")["holder_snr"]].view(E, J, K, N)
    held = masks["local"][..., :N * T * (K + 1)].view(E, J, N, T, K + 1)[..., 0, 1:].any(-1)
    users = torch.zeros(E, J, N, T, dtype=torch.long)
    users[..., :min(T, K)] = hs.topk(min(T, K), dim=2).indices.transpose(2, 3) + 1
    users[~held] = 0
    local = torch.cat([users.view(E, J, N * T), torch.full((E, J, N), core.L - 1),
                       torch.zeros(E, J, core.U, dtype=torch.long)], -1)
    acts = {"local": local}
    if "satellite" in core.tiers:
        acts["satellite"] = st.sat_choice.view(E, 1, N)
    if "hap" in core.tiers:
        acts["hap"] = st.hap_choice.view(E, core.I, -1)
    return acts


@pytest.mark.parametrize("scenario", ["sag", "ag", "uav"])
def test_first_feedback_is_one_max_snr_step_of_the_initial_allocation(scenario):
    warm = TNTNCore(make_config(scenario, **SMALL), num_envs=3)
    cold = TNTNCore(make_config(scenario, warm_start=False, **SMALL), num_envs=3)
    warm.reset(seed=7)
    obs, masks = cold.reset(seed=7)
    for f in FEEDBACK:
        assert float(getattr(cold.state, f).abs().sum()) == 0.0
    cold.step(max_snr_actions(cold, obs, masks))
    assert float(warm.state.last_served.min()) > 0.0  # every region served something
    for f in FEEDBACK:
        torch.testing.assert_close(getattr(warm.state, f), getattr(cold.state, f),
                                   msg=lambda m, f=f: f"{f}: {m}")
    # nothing else moved: time, positions, demand are the cold core's before its step
    cold.reset(seed=7)
    for f in ("t", "user_xy", "uav_xy", "demand_bps", "sat_choice", "hap_choice", "ls_gain"):
        assert torch.equal(getattr(warm.state, f), getattr(cold.state, f)), f


def test_warm_start_changes_only_the_first_observation():
    warm = TNTNCore(make_config("sag", **SMALL), num_envs=2)
    cold = TNTNCore(make_config("sag", warm_start=False, **SMALL), num_envs=2)
    ow, _ = warm.reset(seed=3)
    oc, _ = cold.reset(seed=3)
    assert not torch.equal(ow["satellite"], oc["satellite"])
    greedy = GreedyPolicy()  # reads the state, not the observation: the same actions for both
    for _ in range(12):  # the same trajectory after the first observation
        acts = greedy.act(warm)
        assert all(torch.equal(acts[t], v) for t, v in greedy.act(cold).items())
        a, b = warm.step(acts), cold.step(acts)
        for t in warm.tiers:
            assert torch.equal(a["obs"][t], b["obs"][t])
            assert torch.equal(a["rewards"][t], b["rewards"][t])


def test_warm_start_must_be_a_bool():
    with pytest.raises(ValueError, match="warm_start.*True or False"):
        make_config("sag", warm_start="yes")
