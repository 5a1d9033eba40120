"""Learning tests that can fail: each trainer, trained for about a minute of CPU on a small
scenario with its default hyperparameters, must beat the uniformly random masked policy on mean
spectral efficiency over held-out evaluation episodes (same seeds, same timing for both).

Asserted on the sampled policy (what PPO optimises): HDRL >= +10%, MAPPO and SADRL >= +5%
(measured with the current defaults: +172%, +44%, +17%). The greedy (argmax) policies are
printed but not asserted: after this little training the satellite head puts most mass on
satellite-direct for every subband, so its argmax is all-direct, which starves the HAPs and
terrestrial nodes and lands near random SE (see the trainers' --no-eval-greedy)."""

import subprocess
import sys
import time

import pytest
import torch
from trainer_files import ROOT, SMALL, load

EVAL_SEED, EVAL_ENVS = 50_000, 16  # held out: training uses env seeds 1..16 (seed 1)
CASES = {  # extra CLI args (budget), asserted margin of the sampled policy
    "hdrl_ppo": (["--total-timesteps", "20000"], 0.10),
    "mappo": (["--total-timesteps", "20000"], 0.05),
    "ppo_single": (["--total-timesteps", "20000"], 0.05),
}




def random_act(core, gen):
    """Uniform over the allowed choices of every position, sampled top-down (never voided)."""
    def act(obs, masks):
        acts, upper, dec = {}, {}, core.decides()
        for t in core.tiers:
            m = core.masks_for(upper)[t] if upper else masks[t]
            cols, o = [], 0
            for n in core.nvec[t]:
                w = m[..., o:o + n].float()
                a = torch.multinomial(w.reshape(-1, n), 1, generator=gen)
                cols.append(a.view(w.shape[:-1]))
                o += n
            acts[t] = torch.stack(cols, -1)
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
def test_beats_random_policy(name, tmp_path):
    extra, margin = CASES[name]
    cmd = [sys.executable, str(ROOT / "trainers" / f"{name}.py"), "--seed", "1", "--no-cuda",
           "--env-overrides", SMALL, "--save-model", *extra]
    t0 = time.time()
    res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    train_s = time.time() - t0
    (ck,) = list((tmp_path / "runs").glob("*/checkpoint.pt"))
    mod = load(name)
    torch.manual_seed(0)
    core = mod.make_core(mod.Args(env_overrides=SMALL), EVAL_ENVS, "cpu")
    se_rand = mean_se(core, random_act(core, torch.Generator().manual_seed(0)))
    se_samp = mean_se(core, mod.load_policy(ck, core, greedy=False))
    se_greedy = mean_se(core, mod.load_policy(ck, core, greedy=True))
    rel, rel_g = se_samp / se_rand - 1, se_greedy / se_rand - 1
    print(f"\n{name}: trained {train_s:.0f} s; SE random {se_rand:.4f}, sampled {se_samp:.4f} "
          f"({rel:+.1%}), greedy {se_greedy:.4f} ({rel_g:+.1%})")
    assert rel >= margin, f"{name} sampled policy SE {se_samp:.4f} vs random {se_rand:.4f}"
