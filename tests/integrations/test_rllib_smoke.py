"""RLlib smoke test: masked PPO (``tntn_env.rllib``) on a tiny ``sag`` in raise mode, a few
hundred env steps; no repaired action, finite losses for every tier's policy.

Runs where ``ray[rllib]`` is installed (``pip install -e ".[rllib]"``; its gymnasium pin differs
from the main test environment's, so ``.ci/run`` runs it in its own virtual environment with
``TNTN_REQUIRE_RLLIB=1``, which turns a missing ray into a failure); skipped elsewhere."""

from __future__ import annotations

import math

import pytest
from required import require

try:
    import ray
    from ray.rllib.algorithms.ppo import PPOConfig
except ImportError as e:
    require("rllib", "ray[rllib]", e)

from tntn_env.config import TINY_OVERRIDES
from tntn_env.rllib import configure

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.filterwarnings("ignore")]


def test_masked_ppo_raise_mode():
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        config = (configure(PPOConfig(), "sag", **TINY_OVERRIDES)  # invalid_action="raise"
                  .env_runners(num_env_runners=0, rollout_fragment_length=40)
                  .training(train_batch_size_per_learner=160, minibatch_size=80, num_epochs=2)
                  .debugging(seed=0))
        algo = config.build_algo()
        try:
            for _ in range(2):  # 2 x 160 env steps (4 episodes of 40 steps each)
                result = algo.train()
        finally:
            algo.stop()
    finally:
        ray.shutdown()
    runners = result["env_runners"]
    assert runners["num_env_steps_sampled_lifetime"] >= 320
    assert runners["tntn/repaired_actions"] == 0
    assert math.isfinite(runners["tntn/spectral_efficiency"])
    learners = result["learners"]
    assert {"satellite", "hap", "local"} <= set(learners)
    for tier in ("satellite", "hap", "local"):
        for key in ("total_loss", "policy_loss", "vf_loss", "entropy"):
            assert math.isfinite(float(learners[tier][key])), (tier, key)
