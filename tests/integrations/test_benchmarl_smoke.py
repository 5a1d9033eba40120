"""BenchMARL smoke test: its MAPPO and IPPO (stock MLP) on a tiny ``sag`` through
``tntn_env.benchmarl`` in raise mode, a few hundred env steps each; no repaired action, finite
losses for every tier, the held-out evaluation runs.

Runs where ``benchmarl`` is installed (``pip install -e ".[benchmarl]"``; it needs torchrl < 0.12,
older than the main test environment's, so ``.ci/run`` runs it in its own virtual environment
with ``TNTN_REQUIRE_BENCHMARL=1``, which turns a missing benchmarl into a failure); skipped
elsewhere."""

from __future__ import annotations

import math

import pytest
from required import require

try:
    from benchmarl.experiment.callback import Callback
except ImportError as e:
    require("benchmarl", "benchmarl", e)

from tntn_env.benchmarl import evaluate, experiment
from tntn_env.config import TINY_OVERRIDES

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.filterwarnings("ignore")]


class Record(Callback):
    def __init__(self):
        super().__init__()
        self.frames, self.repaired, self.losses = 0, 0, {}

    def on_batch_collected(self, batch):
        self.frames += batch.numel()
        self.repaired += int(batch["next", "info", "repaired_actions"].sum())

    def on_train_end(self, training_td, group):
        for k, v in training_td.items():
            if k.startswith("loss_"):
                self.losses.setdefault(group, []).extend(v.flatten().tolist())


@pytest.mark.parametrize("algorithm", ["mappo", "ippo"])
def test_benchmarl_masked_ppo(algorithm, tmp_path):
    rec = Record()
    exp = experiment(algorithm, "sag", seed=0, max_n_frames=320, overrides=TINY_OVERRIDES,
                     experiment_overrides={"on_policy_collected_frames_per_batch": 160,
                                           "on_policy_n_envs_per_worker": 4,
                                           "on_policy_n_minibatch_iters": 2,
                                           "on_policy_minibatch_size": 80,
                                           "evaluation": False},
                     save_folder=str(tmp_path), callbacks=[rec])
    exp.run()  # invalid_action="raise": a masked-out action would stop the run
    assert rec.frames >= 320 and rec.repaired == 0
    assert set(rec.losses) == {"satellite", "hap", "local"}
    for group, values in rec.losses.items():
        assert values and all(math.isfinite(v) for v in values), group
    result = evaluate(exp, seed=10_000, episodes=2)
    assert result["repaired_actions"] == 0 and math.isfinite(result["spectral_efficiency_mean"])
