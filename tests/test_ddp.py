"""Data-parallel training under torchrun (2 ranks, gloo on CPU, tiny budgets): every trainer
finishes on both ranks with identical parameters (the trainers' own all-ranks check), rank 0 alone
writes one run directory and a checkpoint that loads; hdrl_ppo also resumes under torchrun. The
DDP helpers (gradient averaging, broadcast, parameter check, rank means, value-norm statistics)
are unit-tested on 2 spawned gloo processes with different data per rank, so a trainer that
stopped averaging its gradients fails both here and in its own check."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from trainer_files import TINY, TRAINERS, load, scalars, trainer_path

ENV = {k: v for k, v in os.environ.items()
       if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
ENV["OMP_NUM_THREADS"] = "1"




def torchrun(name, cwd, *extra, nproc=2, timeout=300):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", str(trainer_path(name)), *extra]
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=ENV)
    assert res.returncode == 0, f"{' '.join(cmd)}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res




@pytest.mark.parametrize("name", TRAINERS)
@pytest.mark.slow
def test_torchrun_two_ranks(name, tmp_path):
    res = torchrun(name, tmp_path, *TINY, "--save-model", "--seed", "3")
    assert res.stdout.count("ddp: parameters identical on 2 ranks after 2 updates") == 1
    assert res.stdout.count("model saved to") == 1  # rank 0 only
    (run_dir,) = list((tmp_path / "runs").iterdir())  # one run name (rank 0's, broadcast)
    assert run_dir.name.startswith(f"sag__{name}__3__")
    (event,) = list(run_dir.glob("events.out.tfevents.*"))  # rank 0 logs alone
    sc = scalars(event)
    for tag in ("charts/SPS", "losses/approx_kl", "losses/value_loss", "env/spectral_efficiency",
                "env/infeasible_actions", "charts/episodic_return_local"):
        assert tag in sc, f"missing {tag}; logged: {sorted(sc)}"
    assert [s for s, _ in sc["charts/SPS"]] == [80, 160]  # global_step counts both ranks
    assert all(v == 0 for _, v in sc["env/infeasible_actions"])
    ck_path = run_dir / "checkpoint.pt"
    ck = torch.load(ck_path, weights_only=True)
    assert ck["global_step"] == 160 and ck["iteration"] == 2 and ck["args"]["num_envs"] == 4
    mod = load(name)
    core = mod.make_core(mod.Args(**ck["args"]), 2, "cpu")
    act = mod.load_policy(ck_path, core)
    obs, masks = core.reset(seed=0)
    for _ in range(5):
        out = core.step(act(obs, masks))
        assert int((out["voided"] + out["repaired"]).sum()) == 0
        obs, masks = out["obs"], out["masks"]
    if name != "hdrl_ppo":
        return

    # resume under torchrun: every rank loads the checkpoint
    res = torchrun(name, tmp_path, "--resume", str(ck_path), "--total-timesteps", "240",
                   "--save-model", "--no-cuda")
    assert "ddp: parameters identical on 2 ranks after 1 updates" in res.stdout
    (new,) = [p for p in run_dir.glob("events.out.tfevents.*") if p != event]
    assert [s for s, _ in scalars(new)["charts/SPS"]] == [240]
    ck2 = torch.load(ck_path, weights_only=True)
    assert ck2["global_step"] == 240 and ck2["iteration"] == 3


def test_indivisible_num_envs_is_a_clear_error(tmp_path):
    # the check runs before the process group starts: torchrun's environment suffices
    env = {**ENV, "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2"}
    res = subprocess.run([sys.executable, str(trainer_path("hdrl")), *TINY,
                          "--num-envs", "3"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120, env=env)
    assert res.returncode == 1
    assert "error: num_envs = 3 is not divisible by the torchrun world size 2" in res.stderr
    assert not (tmp_path / "runs").exists()


def _worker(rank, init, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    for name in TRAINERS:
        mod = load(name)
        # broadcast: rank 0's initial weights everywhere
        torch.manual_seed(rank)
        net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
        torch.manual_seed(0)
        ref = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
        mod.broadcast_params([net], 2)
        assert all(torch.equal(a, b) for a, b in zip(net.parameters(), ref.parameters()))
        # gradients of different data per rank -> their mean on both ranks
        data = [torch.linspace(-1, 1, 15).view(5, 3) * (r + 1) + r for r in range(2)]
        grads = []
        for x in data:
            ref.zero_grad()
            (ref(x) ** 2).sum().backward()
            grads.append([p.grad.clone() for p in ref.parameters()])
        (net(data[rank]) ** 2).sum().backward()
        mod.allreduce_grads(net.parameters(), 2)
        for p, g0, g1 in zip(net.parameters(), *grads):
            assert not torch.allclose(g0, g1)
            assert torch.allclose(p.grad, (g0 + g1) / 2, atol=1e-6)
        # identical parameters pass the check; one differing entry on one rank fails it everywhere
        c = mod.sync_check([net], 2)
        assert mod.rank_mean([c], 2, "cpu") == [c]
        with torch.no_grad():
            net[2].bias[1] += rank
        try:
            mod.sync_check([net], 2)
            raise AssertionError("sync_check missed a difference")
        except RuntimeError as e:
            assert "differ across ranks in 1 of 26 entries" in str(e)
        assert mod.rank_mean([rank, 2.0], 2, "cpu") == [0.5, 2.0]
        mod.assert_same(7, 2, "cpu", "x")
        try:
            mod.assert_same(rank, 2, "cpu", "x")
            raise AssertionError("assert_same missed a difference")
        except RuntimeError as e:
            assert "x differs across ranks (0 .. 1)" in str(e)
        if name == "mappo":  # value norm: the single-process statistics of both ranks' targets
            vn, single = mod.ValueNorm(), mod.ValueNorm()
            vn.update(data[rank], 2)
            single.update(torch.cat(data))
            assert all(torch.allclose(a, b) for a, b in zip(vn.stats(), single.stats()))
    dist.destroy_process_group()
    Path(out, f"ok{rank}").touch()


@pytest.mark.slow
def test_ddp_helpers_on_two_gloo_processes(tmp_path):
    mp.spawn(_worker, args=(f"file://{tmp_path / 'store'}", str(tmp_path)), nprocs=2)
    assert (tmp_path / "ok0").exists() and (tmp_path / "ok1").exists()
