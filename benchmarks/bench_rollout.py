"""Rollout collection speed of hdrl_ppo.py: policy inference + env, no update (a measurement).

    python benchmarks/bench_rollout.py                         # CPU, E = 64 1024 4096
    python benchmarks/bench_rollout.py --sizes 1024 8192 --device cuda --json

Uses the trainer's own code (``trainers/hdrl_ppo.py`` imported by path: ``build_agents``,
``decide``) with freshly initialised networks of the default Args, sampling masked actions top-down
exactly as the training loop does, and steps the batched core with them. Timed: ``--seconds`` of
whole rollout steps after a warm-up that covers a satellite and HAP decision step; env-steps/s =
num_envs * steps / wall time. Under ``torch.no_grad`` as in the trainer's rollout.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from tntn_env.trainer_files import load_module, trainer_path

TRAINER = trainer_path("hdrl")


def bench(num_envs: int, device: str, seconds: float, mod) -> dict:
    args = mod.Args()
    core = mod.make_core(args, num_envs, device)
    agents = mod.build_agents(core, args, core.device)
    obs, masks = core.reset(seed=0)
    cuda = device.startswith("cuda")

    def one():
        nonlocal obs, masks
        with torch.no_grad():
            acts, _ = mod.decide(core, agents, obs, masks, args.mask_in_obs)
        out = core.step(acts, auto_reset=True)
        obs, masks = out["obs"], out["masks"]

    for _ in range(core.cfg.timing.hap_interval + 1):  # warm-up over a HAP decision
        one()
    if cuda:
        torch.cuda.synchronize()
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or steps < 3:
        one()
        steps += 1
    if cuda:
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    return {"num_envs": num_envs, "device": device, "steps": steps,
            "rollout_env_steps_per_s": num_envs * steps / dt}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 1024, 4096])
    p.add_argument("--device", default="cpu")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    mod = load_module(TRAINER)
    torch.manual_seed(0)
    res = {"machine": {"platform": platform.platform(), "torch": torch.__version__,
                       "threads": torch.get_num_threads()},
           "rollout": [bench(e, args.device, args.seconds, mod) for e in args.sizes]}
    if args.json:
        print(json.dumps(res))
        return
    print(f"torch {res['machine']['torch']}, {res['machine']['threads']} threads")
    print("| device | num_envs | rollout env-steps/s (hdrl_ppo policy + core) |")
    print("|---|---:|---:|")
    for r in res["rollout"]:
        print(f"| {r['device']} | {r['num_envs']} | {r['rollout_env_steps_per_s']:,.0f} |")


if __name__ == "__main__":
    main()
