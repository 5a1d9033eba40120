"""One prepared GPU session: CUDA correctness of the core, core throughput, trainer SPS on CUDA.

    python benchmarks/device_check.py --out results/device        # on a CUDA machine

Writes ``device.json`` (every figure, updated after each part so an interrupted run keeps what it
measured) and ``device.md`` (tables) to ``--out``. Parts:

1. correctness: the same seeds and the same random masked actions on a CPU core and a CUDA core
   (E = 64, ``--check-steps`` steps): mismatches of discrete tensors (masks, LoS states, voided
   counts) and the largest relative error ||cuda - cpu|| / ||cpu|| of each float tensor
   (observations, rewards, metrics, what-if evaluation). tests/test_cuda.py asserts the same.
2. core env-steps/s on CUDA at ``--core-sizes`` (core.step alone and with on-device action
   sampling), peak CUDA memory.
3. trainers on CUDA: each of ``--trainers`` at each of ``--trainer-envs`` for ``--iterations``
   iterations of 32 steps; minibatches scaled with num_envs (512 * E / 64 samples, so an
   iteration takes as many gradient steps as the CPU default). End-to-end SPS = charts/SPS of
   the last iteration (env steps / wall time since the start of training), and the wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_env import bench_core, random_masked_actions  # noqa: E402

from tntn_env import TNTNCore  # noqa: E402
from tntn_env.experiments.launch import read_scalars  # noqa: E402
from tntn_env.trainer_files import trainer_path  # noqa: E402


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}/"))
        elif torch.is_tensor(v):
            out[prefix + k] = v
    return out


def correctness(steps: int, device: str, num_envs: int = 64) -> dict:
    """Relative error ||gpu - cpu|| / ||cpu|| per float tensor; discrete tensors must be equal."""
    cpu = TNTNCore(scenario="sag", num_envs=num_envs, device="cpu", check_actions=True)
    gpu = TNTNCore(scenario="sag", num_envs=num_envs, device=device, check_actions=True)
    oc, mc = cpu.reset(seed=7)
    og, mg = gpu.reset(seed=7)
    gen = torch.Generator().manual_seed(0)
    rel, discrete_mismatch = {}, {}

    def compare(a: dict, b: dict):
        fa, fb = _flat(a), _flat(b)
        for k, x in fa.items():
            y = fb[k].cpu()
            if x.dtype == torch.bool or not x.is_floating_point():
                discrete_mismatch[k] = discrete_mismatch.get(k, 0) + int((x != y).sum())
            else:
                e = float((x.double() - y.double()).norm() / x.double().norm().clamp(min=1e-30))
                rel[k] = max(rel.get(k, 0.0), e)

    compare(oc, og)
    compare(mc, mg)
    for _ in range(steps):
        acts = random_masked_actions(cpu, mc, gen)
        outc = cpu.step(acts, auto_reset=True)
        outg = gpu.step({t: a.to(device) for t, a in acts.items()}, auto_reset=True)
        keys = ("obs", "masks", "rewards", "metrics", "region", "voided")
        compare({k: outc[k] for k in keys}, {k: outg[k] for k in keys})
        compare({"ls_los": cpu.state.ls_los}, {"ls_los": gpu.state.ls_los})
        mc = outc["masks"]
    cand = {t: torch.stack([random_masked_actions(cpu, mc, gen)[t] for _ in range(4)], 1)
            for t in mc}
    compare({"evaluate": cpu.evaluate(cand)},
            {"evaluate": gpu.evaluate({t: a.to(device) for t, a in cand.items()})})
    finite = all(bool(torch.isfinite(v).all()) for v in _flat(outg).values()
                 if v.is_floating_point())
    top = sorted(rel.items(), key=lambda kv: -kv[1])[:6]
    return {"num_envs": num_envs, "steps": steps, "gpu_outputs_finite": finite,
            "discrete_mismatches": sum(discrete_mismatch.values()),
            "max_relative_error": max(rel.values()), "largest_relative_errors": top,
            "compared_tensors": len(rel) + len(discrete_mismatch)}


def core_speed(sizes, seconds: float, device: str) -> list[dict]:
    res = []
    cuda = device.startswith("cuda")
    for e in sizes:
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        r = bench_core(e, device, seconds)
        r["peak_cuda_mem_mib"] = torch.cuda.max_memory_allocated() / 2 ** 20 if cuda else 0.0
        res.append(r)
        print(json.dumps(r), flush=True)
    return res


def trainer_speed(trainer: str, num_envs: int, iterations: int, timeout: float, work: Path,
                  device: str):
    mb = 512 * num_envs // 64
    steps = 32
    argv = [sys.executable, str(trainer_path(trainer)), "--seed", "1",
            "--num-envs", str(num_envs), "--num-steps", str(steps),
            "--total-timesteps", str(num_envs * steps * iterations),
            "--exp-name", f"{trainer}_gpu{num_envs}", "--threads", "4"]
    if device == "cpu":
        argv.append("--no-cuda")
    argv += (["--num-minibatches", str(max(1, num_envs * steps * 4 // mb))]
             if trainer == "mappo" else ["--minibatch-size", str(mb)])
    t0 = time.perf_counter()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    try:
        p = subprocess.run(argv, cwd=work, capture_output=True, text=True, timeout=timeout,
                           env=env)
        rc, tail = p.returncode, (p.stdout + p.stderr)[-1500:]
    except subprocess.TimeoutExpired as e:
        rc, tail = "timeout", str(e)[-500:]
    wall = time.perf_counter() - t0
    runs = sorted((work / "runs").glob(f"*__{trainer}_gpu{num_envs}__*"), key=os.path.getmtime)
    sps = []
    if runs:
        sps = read_scalars(runs[-1], ["charts/SPS"])["charts/SPS"]
    r = {"trainer": trainer, "num_envs": num_envs, "num_steps": steps, "iterations": iterations,
         "minibatch": mb, "rc": rc, "wall_s": wall, "sps_per_iteration": [v for _, v in sps],
         "tail": tail if rc != 0 else ""}
    print(json.dumps({k: v for k, v in r.items() if k != "tail"}), flush=True)
    if rc != 0:
        print(tail, flush=True)
    return r


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", default="results/device")
    p.add_argument("--check-steps", type=int, default=60)
    p.add_argument("--core-sizes", type=int, nargs="+", default=[1024, 4096, 16384, 65536])
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--trainers", nargs="+", default=["hdrl_ppo", "mappo", "ppo_single"])
    p.add_argument("--trainer-envs", type=int, nargs="+", default=[1024, 8192])
    p.add_argument("--iterations", type=int, default=3)
    p.add_argument("--trainer-timeout", type=float, default=100.0)
    p.add_argument("--skip", nargs="*", default=[], choices=["correctness", "core", "trainers"])
    p.add_argument("--device", default="cuda", help="cpu only to try the script out")
    p.add_argument("--work", default=None, help="trainers' working folder (default: OUT/work)")
    args = p.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("device_check: CUDA is not available on this machine")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gpu = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "none (cpu)"
    res = {"machine": {"gpu": gpu, "torch": torch.__version__,
                       "python": platform.python_version(), "cpus": os.cpu_count()}}

    def save():
        (out / "device.json").write_text(json.dumps(res, indent=1, default=str))

    save()
    t0 = time.perf_counter()
    if "correctness" not in args.skip:
        res["correctness"] = correctness(args.check_steps, args.device)
        print(json.dumps(res["correctness"], default=str), flush=True)
        save()
    if "core" not in args.skip:
        res["core"] = core_speed(args.core_sizes, args.seconds, args.device)
        save()
    if "trainers" not in args.skip:
        work = Path(args.work) if args.work else out / "work"
        work.mkdir(parents=True, exist_ok=True)
        res["trainers"] = []
        for e in args.trainer_envs:
            for t in args.trainers:
                res["trainers"].append(trainer_speed(t, e, args.iterations,
                                                     args.trainer_timeout, work, args.device))
                save()
    res["wall_s"] = time.perf_counter() - t0
    save()
    lines = [f"GPU: {res['machine']['gpu']}, torch {res['machine']['torch']}", ""]
    if "correctness" in res:
        c = res["correctness"]
        lines += [f"correctness (E={c['num_envs']}, {c['steps']} steps, CPU vs CUDA): discrete "
                  f"mismatches {c['discrete_mismatches']}, finite {c['gpu_outputs_finite']}, max "
                  f"relative error {c['max_relative_error']:.2e}",
                  f"largest: {c['largest_relative_errors'][:4]}", ""]
    if "core" in res:
        lines += ["| E | core.step env-steps/s | with action sampling | peak CUDA MiB |",
                  "|---:|---:|---:|---:|"]
        lines += [f"| {r['num_envs']} | {r['core_env_steps_per_s']:,.0f} | "
                  f"{r['env_steps_per_s']:,.0f} | {r['peak_cuda_mem_mib']:,.0f} |"
                  for r in res["core"]]
        lines.append("")
    if "trainers" in res:
        lines += ["| trainer | num_envs | minibatch | iterations | SPS (last) | wall s | rc |",
                  "|---|---:|---:|---:|---:|---:|---|"]
        lines += [f"| {r['trainer']} | {r['num_envs']} | {r['minibatch']} | {r['iterations']} | "
                  f"{(r['sps_per_iteration'] or [float('nan')])[-1]:,.0f} | {r['wall_s']:.0f} | "
                  f"{r['rc']} |" for r in res["trainers"]]
    (out / "device.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
