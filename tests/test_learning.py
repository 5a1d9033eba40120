"""Learning tests against the right yardstick: each trainer, trained for about a minute of CPU on a
small scenario with its default hyperparameters, must reach a stated fraction of the greedy
heuristic's mean spectral efficiency (``tntn_env.baselines.GreedyPolicy``) on the same held-out
episodes, with its argmax (deterministic) policy; beating the uniformly random masked policy is
checked too, but only as a smoke test.

The fractions leave headroom below what the current defaults reach at these small budgets
(measured values beside ``CASES``; docs/learning.md has the measurements at the paper's budget).
"""

import subprocess
import sys
import time

import pytest
import torch
from trainer_files import SMALL, load, trainer_path

from tntn_env.baselines.common import sample_uniform
from tntn_env.baselines.greedy import GreedyPolicy

EVAL_SEED, EVAL_ENVS = 50_000, 16  # held out: training uses env seeds 1..num_envs (seed 1)
# extra CLI args (budget), asserted fraction of greedy's SE (argmax policy). Measured with the
# current defaults on the 2-core CI machine: HDRL 37 %, MAPPO 24 %, SADRL 23 % of greedy (at the
# paper's budget on the default scenario HDRL reaches ~1.07x greedy: docs/learning.md).
CASES = {
    "hdrl_ppo": (["--total-timesteps", "40960"], 0.30),
    "mappo": (["--total-timesteps", "30000"], 0.15),
    "ppo_single": (["--total-timesteps", "30000"], 0.10),
}


def random_act(core, gen):
    """Uniform over the allowed choices of every position, sampled top-down (never voided)."""
    def act(obs, masks):
        acts, upper, dec = {}, {}, core.decides()
        for t in core.tiers:
            m = core.masks_for(upper)[t] if upper else masks[t]
            acts[t] = sample_uniform(core.padded_mask(t, m), gen)
            if bool(dec[t].any()):
                upper[t] = acts[t]
        return acts
    return act


def mean_se(core, act):
    obs, masks = core.reset(seed=EVAL_SEED)
    se, steps = 0.0, core.cfg.timing.episode_steps
    for _ in range(steps):
        out = core.step(act(obs, masks))
        assert int((out["voided"] + out["repaired"]).sum()) == 0
        se += out["metrics"]["spectral_efficiency"].mean().item() / steps
        obs, masks = out["obs"], out["masks"]
    return se


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.slow
def test_reaches_a_fraction_of_greedy(name, tmp_path):
    extra, frac = CASES[name]
    cmd = [sys.executable, str(trainer_path(name)), "--seed", "1", "--no-cuda",
           "--env-overrides", SMALL, "--save-model", *extra]
    t0 = time.time()
    res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    train_s = time.time() - t0
    (ck,) = list((tmp_path / "runs").glob("*/checkpoint.pt"))
    mod = load(name)
    torch.manual_seed(0)
    core = mod.make_core(mod.Args(env_overrides=SMALL), EVAL_ENVS, "cpu")
    heur = GreedyPolicy()
    se_heur = mean_se(core, lambda obs, masks: heur.act(core))
    se_rand = mean_se(core, random_act(core, torch.Generator().manual_seed(0)))
    se_arg = mean_se(core, mod.load_policy(ck, core, greedy=True))
    se_samp = mean_se(core, mod.load_policy(ck, core, greedy=False))
    print(f"\n{name}: trained {train_s:.0f} s; SE greedy heuristic {se_heur:.3f}, random "
          f"{se_rand:.3f}, policy argmax {se_arg:.3f} ({se_arg / se_heur:.0%} of greedy), "
          f"sampled {se_samp:.3f} ({se_samp / se_heur:.0%})")
    assert se_arg > se_rand and se_samp > se_rand
    assert se_arg >= frac * se_heur, (
        f"{name}: argmax SE {se_arg:.3f} < {frac:.0%} of the greedy heuristic's {se_heur:.3f}")
