"""Environment speed benchmark (a measurement, not a test).

Prints: PettingZoo parallel steps/s (E=1, every agent acting, uniformly random masked actions),
batched-core env-steps/s at several E on CPU (and CUDA when present), the same through the
TorchRL view (``tntn_env.torchrl_env``, when torchrl is installed), and peak memory.

    python benchmarks/bench_env.py            # markdown table
    python benchmarks/bench_env.py --json     # one JSON object with the same figures
    python benchmarks/bench_env.py --sizes 1 64 1024 4096 --cuda-sizes 4096 65536
    python benchmarks/bench_env.py --compile   # also with compile=True (minutes of compiling)

With ``--compile`` the PettingZoo env and the core at ``--compile-sizes`` are measured again with
``compile=True`` (the step through ``torch.compile``: one graph below E = 1,024 on CPU, compiled
per-link kernels in the eager step from there; the table says which); the compiling happens in an
untimed warm-up that runs past the first large-scale refresh step, so every compiled graph exists
before timing.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time

import torch

import tntn_env
from tntn_env import TNTNCore
from tntn_env.baselines.common import sample_uniform


def random_masked_actions(core: TNTNCore, masks: dict, gen: torch.Generator) -> dict:
    """Uniform over the allowed choices of every position (vectorised over envs and agents).
    The noise is drawn on ``gen``'s device and moved to the core's."""
    return {tier: sample_uniform(core.padded_mask(tier, m), gen) for tier, m in masks.items()}


def bench_core(num_envs: int, device: str, seconds: float, compile: bool = False,
               overrides: dict | None = None) -> dict:
    core = TNTNCore(scenario="sag", num_envs=num_envs, device=device, check_actions=False,
                    compile=compile, **(overrides or {}))
    _, masks = core.reset(seed=0)
    cuda = device.startswith("cuda")
    gen = torch.Generator(device=device).manual_seed(0)
    out = {"masks": masks}
    for _ in range(12 if compile else 3):  # warm-up (compiled: past the first refresh step)
        out = core.step(random_masked_actions(core, out["masks"], gen), auto_reset=True)

    def sync():
        if cuda:
            torch.cuda.synchronize()

    sync()
    steps, t_step, t0 = 0, 0.0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or steps < 3:
        acts = random_masked_actions(core, out["masks"], gen)
        sync()
        t1 = time.perf_counter()
        out = core.step(acts, auto_reset=True)
        sync()
        t_step += time.perf_counter() - t1
        steps += 1
    dt = time.perf_counter() - t0
    return {"num_envs": num_envs, "device": device, "compile": compile,
            "compile_mode": core.compile_mode, "steps": steps,
            "env_steps_per_s": num_envs * steps / dt, "batched_steps_per_s": steps / dt,
            "core_env_steps_per_s": num_envs * steps / t_step}


def bench_torchrl(num_envs: int, seconds: float) -> dict:
    """``TNTNTorchRLEnv.step`` (TorchRL's EnvBase.step around core.step: tensordicts, specs,
    masks) with the same fast masked sampler as bench_core; TorchRL's own ``rand_action`` is
    not timed (its MultiCategorical sampler loops over positions in Python)."""
    from tntn_env.torchrl_env import TNTNTorchRLEnv

    env = TNTNTorchRLEnv("sag", num_envs=num_envs)
    env.set_seed(0)
    td = env.reset()
    gen = torch.Generator().manual_seed(0)

    def act(td):
        masks = {t: td[t, "action_mask"] for t in env.group_map}
        for t, a in random_masked_actions(env.core, masks, gen).items():
            td[t, "action"] = a
        return td

    for _ in range(3):
        td = env.step_mdp(env.step(act(td)))
    steps, t_step, t0 = 0, 0.0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or steps < 3:
        td = act(td)
        t1 = time.perf_counter()
        td = env.step_mdp(env.step(td))
        t_step += time.perf_counter() - t1
        steps += 1
        if bool(td["done"].any()):
            td = env.reset()
    return {"num_envs": num_envs, "device": "cpu", "steps": steps,
            "env_steps_per_s": num_envs * steps / t_step}


def bench_pettingzoo(seconds: float, compile: bool = False, overrides: dict | None = None) -> dict:
    env = tntn_env.parallel_env("sag", compile=compile, **(overrides or {}))
    obs, _ = env.reset(seed=0)
    for a in env.agents:
        env.action_space(a).seed(0)
    for _ in range(12 if compile else 0):  # compiled: warm up past the first refresh step
        acts = {a: env.action_space(a).sample(mask=obs[a]["action_mask"]) for a in env.agents}
        obs, *_ = env.step(acts)
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or steps < 3:
        if not env.agents:
            obs, _ = env.reset()
        acts = {a: env.action_space(a).sample(mask=obs[a]["action_mask"]) for a in env.agents}
        obs, *_ = env.step(acts)
        steps += 1
    dt = time.perf_counter() - t0
    return {"parallel_steps_per_s": steps / dt, "agents": len(env.possible_agents),
            "compile": compile}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 64, 1024, 4096])
    p.add_argument("--cuda-sizes", type=int, nargs="+", default=[4096, 65536])
    p.add_argument("--seconds", type=float, default=5.0, help="timed seconds per measurement")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--torchrl-sizes", type=int, nargs="*", default=[64, 1024],
                   help="E of the TorchRL view's benchmark (needs torchrl; none: skip)")
    p.add_argument("--compile", action="store_true",
                   help="also measure compile=True (PettingZoo env and --compile-sizes)")
    p.add_argument("--compile-sizes", type=int, nargs="*", default=[1, 64, 1024, 4096],
                   help="E of the compiled core's benchmark (with --compile)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (default: torch's choice, the core count)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override of every measured env (repeatable), e.g. "
                   "--set orbit_enabled=true")
    args = p.parse_args()
    ov = tntn_env.parse_overrides(",".join(args.set))
    if args.threads:
        torch.set_num_threads(args.threads)
    res = {"machine": {"platform": platform.platform(), "torch": torch.__version__,
                       "threads": torch.get_num_threads(),
                       "cuda": (torch.cuda.get_device_name(0) if torch.cuda.is_available()
                                else None)},
           "overrides": ov, "pettingzoo": bench_pettingzoo(args.seconds, overrides=ov),
           "core": []}
    if args.compile:
        res["pettingzoo_compiled"] = bench_pettingzoo(args.seconds, compile=True, overrides=ov)
    for e in args.sizes:
        res["core"].append(bench_core(e, "cpu", args.seconds, overrides=ov))
    for e in args.compile_sizes if args.compile else []:
        res["core"].append(bench_core(e, "cpu", args.seconds, compile=True, overrides=ov))
    if torch.cuda.is_available():
        for e in args.cuda_sizes:
            torch.cuda.reset_peak_memory_stats()
            r = bench_core(e, "cuda", args.seconds, overrides=ov)
            r["peak_cuda_mem_mib"] = torch.cuda.max_memory_allocated() / 2 ** 20
            res["core"].append(r)
    res["torchrl"] = []
    if args.torchrl_sizes:
        try:
            import torchrl  # noqa: F401
        except ImportError:
            print("torchrl not installed: the TorchRL view is not measured")
        else:
            res["torchrl"] = [bench_torchrl(e, args.seconds) for e in args.torchrl_sizes]
    res["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.json:
        print(json.dumps(res))
        return
    print(f"torch {res['machine']['torch']}, {res['machine']['threads']} threads, "
          f"{res['machine']['platform']}" + (f"; overrides {ov}" if ov else ""))
    print(f"\nPettingZoo ParallelEnv (E=1, {res['pettingzoo']['agents']} agents, random masked "
          f"actions): {res['pettingzoo']['parallel_steps_per_s']:.0f} parallel steps/s")
    if "pettingzoo_compiled" in res:
        print(f"with compile=True: {res['pettingzoo_compiled']['parallel_steps_per_s']:.0f} "
              "parallel steps/s")
    print("\n| device | E | core.step env-steps/s | with action sampling | batched steps/s |")
    print("|---|---:|---:|---:|---:|")
    for r in res["core"]:
        dev = r["device"] + (f", compiled ({r['compile_mode']})" if r["compile"] else "")
        print(f"| {dev} | {r['num_envs']} | {r['core_env_steps_per_s']:,.0f} | "
              f"{r['env_steps_per_s']:,.0f} | {r['batched_steps_per_s']:.1f} |")
    for r in res["torchrl"]:
        print(f"| TorchRL view (cpu) | {r['num_envs']} | {r['env_steps_per_s']:,.0f} | | |")
    print(f"\npeak RSS: {res['peak_rss_mib']:.0f} MiB"
          + "".join(f"; peak CUDA memory at E={r['num_envs']}: {r['peak_cuda_mem_mib']:.0f} MiB"
                    for r in res["core"] if "peak_cuda_mem_mib" in r))


if __name__ == "__main__":
    main()
