"""CUDA path: the core on a GPU equals the core on the CPU; the trainers run on CUDA.

These tests need a CUDA device and are skipped (reported as skipped, never passed) on machines
without one, such as CI. Run them where a GPU exists: ``python -m pytest -q tests/test_cuda.py``
(docs/benchmarks.md records where and when they last ran).

Equality: the random numbers are counter-based integer hashes, identical on both devices, and every
discrete quantity (masks, schedules, voided counts, LoS states) must match exactly. Float results
differ only by float32 rounding of the transcendental functions (log, cos, sqrt, pow) between the
CPU and CUDA math libraries, bounded here by a relative error of 1e-4 per tensor.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from trainer_files import TRAINERS, scalars, trainer_path

from tntn_env import TNTNCore
from tntn_env.baselines.common import sample_uniform

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
REL = 1e-4


def random_actions(core, masks, gen):
    return {t: sample_uniform(core.padded_mask(t, m.cpu()), gen) for t, m in masks.items()}


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().cpu(), b.double().cpu()
    return float((a - b).norm() / b.norm().clamp(min=1e-30))


def compare(a: dict, b: dict, where: str):
    for k, x in a.items():
        y = b[k]
        if isinstance(x, dict):
            compare(x, y, f"{where}/{k}")
            continue
        assert y.device.type == "cuda", f"{where}/{k} is not on the GPU"
        assert torch.isfinite(y.float()).all(), f"{where}/{k}: non-finite on CUDA"
        if x.dtype in (torch.bool, torch.int64, torch.int32):
            assert torch.equal(x, y.cpu()), f"{where}/{k}: discrete values differ"
        else:
            assert rel_err(y, x) < REL, f"{where}/{k}: relative error {rel_err(y, x):.2e}"


@pytest.mark.parametrize("scenario,overrides", [("sag", {}), ("uav", {}),
                                                ("ag", {"fading_rho": 0.9})])
def test_core_cuda_equals_cpu(scenario, overrides):
    cpu = TNTNCore(scenario=scenario, num_envs=16, device="cpu", **overrides)
    gpu = TNTNCore(scenario=scenario, num_envs=16, device="cuda", **overrides)
    oc, mc = cpu.reset(seed=11)
    og, mg = gpu.reset(seed=11)
    compare(oc, og, "reset obs")
    compare(mc, mg, "reset masks")
    gen = torch.Generator().manual_seed(0)
    keys = ("obs", "masks", "rewards", "metrics", "region", "voided", "truncated")
    steps = cpu.cfg.timing.episode_steps + 7  # through an auto-reset
    for s in range(steps):
        acts = random_actions(cpu, mc, gen)
        outc = cpu.step(acts, auto_reset=True)
        outg = gpu.step({t: a.cuda() for t, a in acts.items()}, auto_reset=True)
        compare({k: outc[k] for k in keys}, {k: outg[k] for k in keys}, f"step {s}")
        mc = outc["masks"]
        assert torch.equal(cpu.state.ls_los, gpu.state.ls_los.cpu()), f"step {s}: LoS states"
    # what-if evaluation of 5 candidates per env, and the link state as numpy
    cand = {t: torch.stack([random_actions(cpu, mc, gen)[t] for _ in range(5)], 1) for t in mc}
    compare(cpu.evaluate(cand), gpu.evaluate({t: a.cuda() for t, a in cand.items()}), "evaluate")
    lc, lg = cpu.link_state(env=3), gpu.link_state(env=3)
    for k, v in lc.items():
        assert isinstance(lg[k], np.ndarray), k
        if v.dtype.kind in "biu":
            np.testing.assert_array_equal(lg[k], v, err_msg=k)
        else:
            np.testing.assert_allclose(lg[k], v, rtol=1e-3, atol=1e-30, err_msg=k)


@pytest.mark.parametrize("trainer", TRAINERS)
@pytest.mark.slow
def test_trainer_runs_on_cuda(tmp_path, trainer):
    """A short run on CUDA: finishes, logs SPS and reports no infeasible action."""
    argv = [sys.executable, str(trainer_path(trainer)), "--seed", "1",
            "--num-envs", "256", "--num-steps", "16", "--total-timesteps", str(256 * 16 * 2),
            "--exp-name", "cuda", "--env-overrides", "episode_steps=20"]
    p = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    (run,) = (tmp_path / "runs").iterdir()
    sc = scalars(run)
    assert len(sc["charts/SPS"]) == 2
    assert all(v == 0 for _, v in sc["env/infeasible_actions"])
