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

import json

import torch

from tntn_env.benchmarl import evaluate, experiment, main, slim_checkpoint
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
    se = result["metrics"]["spectral_efficiency"]
    assert result["repaired_actions"] == 0 and math.isfinite(se["mean"])
    assert result["policy"] == f"benchmarl_{algorithm}" and result["seeds"] == [10_000, 10_001]


def test_benchmarl_checkpoint_is_evaluated_like_the_other_policies(tmp_path):
    """A trained experiment's slim checkpoint reloads with the trained weights, and ``--restore``
    writes the evaluation in ``tntn_env.evaluate``'s format, on other episodes if asked."""
    (tmp_path / "train").mkdir()
    exp = experiment("mappo", "sag", seed=0, max_n_frames=160, overrides=TINY_OVERRIDES,
                     experiment_overrides={"on_policy_collected_frames_per_batch": 160,
                                           "on_policy_n_envs_per_worker": 4,
                                           "on_policy_n_minibatch_iters": 1,
                                           "on_policy_minibatch_size": 80,
                                           "lr": 1e-2, "evaluation": False,
                                           "checkpoint_at_end": True},
                     save_folder=str(tmp_path / "train"))
    exp.run()
    (big,) = (tmp_path / "train").glob("*/checkpoints/*.pt")
    ckpt = slim_checkpoint(big, tmp_path / "slim")
    state = torch.load(ckpt, weights_only=False)
    assert all(state[k] is None for k in state if k.startswith("buffer_"))
    from benchmarl.experiment import Experiment

    (tmp_path / "re").mkdir()
    again = Experiment.reload_from_file(str(ckpt), {"loggers": [], "create_json": False,
                                                    "save_folder": str(tmp_path / "re")})
    def weights(e):
        return {k: v for k, v in e.policy.state_dict().items() if isinstance(v, torch.Tensor)}

    trained, reloaded, initial = weights(exp), weights(again), weights(experiment(
        "mappo", "sag", seed=0, overrides=TINY_OVERRIDES, save_folder=str(tmp_path / "re")))
    assert trained and trained.keys() == reloaded.keys() == initial.keys()
    assert all(torch.equal(trained[k], reloaded[k]) for k in trained)
    assert not all(torch.equal(trained[k], initial[k]) for k in trained)  # training moved them
    steps = 10
    direct = evaluate(exp, seed=10_000, episodes=2, overrides={"episode_steps": steps})
    out = tmp_path / "eval"
    main(["--restore", str(ckpt), "--eval-episodes", "2", "--eval-set", f"episode_steps={steps}",
          "--eval-out", str(out)])
    saved = json.loads((out / "summary.json").read_text())
    assert saved["episode_steps"] == steps and saved["checkpoint"] == str(ckpt)
    assert saved["metrics"] == direct["metrics"]  # the trained weights, the same episodes
    assert (out / "episodes.csv").read_text().count("\n") == 3
    with pytest.raises(SystemExit, match="overwrite"):  # results are never replaced silently
        main(["--restore", str(ckpt), "--eval-episodes", "2", "--eval-out", str(out)])
    with pytest.raises(SystemExit, match="--experiment lr: given twice"):  # none silently lost
        main(["--experiment", "lr=1e-3", "--experiment", "lr=1e-4", "--frames", "160"])
    with pytest.raises(SystemExit, match="drop --scenario, --set"):  # not silently ignored
        main(["--restore", str(ckpt), "--eval-episodes", "2", "--scenario", "ag",
              "--set", "num_subbands=4"])
