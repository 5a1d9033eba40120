"""TorchRL (and BenchMARL, which builds on it) through the PettingZoo API: the ParallelEnv in
TorchRL's own ``PettingZooWrapper``, checked by TorchRL's own ``check_env_specs``, and a TorchRL
rollout with its masked random actions that equals the same actions replayed in the plain env."""

from __future__ import annotations

import numpy as np
import pytest
from torchrl.envs import PettingZooWrapper
from torchrl.envs.utils import check_env_specs

from tntn_env import parallel_env

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.usefixtures("one_torch_thread")]

SMALL = dict(num_subbands=4, users_per_region=3, episode_steps=12)
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
