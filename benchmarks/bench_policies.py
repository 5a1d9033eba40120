"""Time per decision of each policy (paper Figure 3a), on the default scenario by default.

    python benchmarks/bench_policies.py                     # markdown table
    python benchmarks/bench_policies.py --json              # JSON
    python benchmarks/bench_policies.py --policies random greedy --steps 12 --num-envs 1
    python benchmarks/bench_policies.py --checkpoint hdrl=runs/hdrl/model.pt

Each policy acts on the same seeded episode for ``--steps`` steps (the core is stepped with its
own actions). Steps are grouped by what decides on them: ``all`` (satellite, HAPs and local
agents: t % satellite_interval == 0), ``hap`` (HAPs and local agents) and ``local``; the table
gives the mean wall time of ``policy.act`` per env for each group and the episode-weighted mean
(the mix of the three kinds of step over a whole episode). Time includes every what-if
evaluation a policy makes. The machine's load average is printed: on a shared machine the
numbers are upper bounds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch

from tntn_env import TNTNCore, make_config
from tntn_env.evaluate import parse_sets


def kind_of(dec: dict) -> str:
    if "satellite" in dec and bool(dec["satellite"][0]):
        return "all"
    if "hap" in dec and bool(dec["hap"][0]):
        return "hap"
    return "local"


def episode_mix(cfg, tiers) -> dict:
    """Fraction of an episode's steps of each kind."""
    t = range(cfg.timing.episode_steps)
    si, hi = cfg.timing.satellite_interval, cfg.timing.hap_interval
    n_all = sum(1 for s in t if "satellite" in tiers and s % si == 0)
    n_hap = sum(1 for s in t if "hap" in tiers and s % hi == 0) - (
        sum(1 for s in t if "satellite" in tiers and s % si == 0 and s % hi == 0))
    n = cfg.timing.episode_steps
    return {"all": n_all / n, "hap": n_hap / n, "local": (n - n_all - n_hap) / n}


def bench(policy, cfg, steps: int, num_envs: int, seed: int) -> dict:
    core = TNTNCore(cfg, num_envs=num_envs, check_actions=False)
    core.reset(seed=seed)
    policy.reset(core)
    times = {"all": [], "hap": [], "local": []}
    for _ in range(steps):
        k = kind_of(core.decides())
        t0 = time.perf_counter()
        a = policy.act(core)
        times[k].append((time.perf_counter() - t0) / num_envs)
        core.step(a)
    mix = episode_mix(cfg, core.tiers)
    means = {k: (statistics.fmean(v) if v else None) for k, v in times.items()}
    known = {k: m for k, m in means.items() if m is not None}
    # episode-weighted mean; a kind not measured borrows the nearest measured one
    fill = dict(means)
    for k in ("hap", "all"):
        if fill[k] is None:
            fill[k] = known.get("all") or known.get("hap") or known.get("local")
    if fill["local"] is None:
        fill["local"] = known.get("hap") or known.get("all")
    weighted = sum(mix[k] * fill[k] for k in mix if fill[k] is not None)
    return {"policy": policy.name, "ms": {k: (None if v is None else v * 1e3)
                                          for k, v in means.items()},
            "episode_mean_ms": weighted * 1e3, "samples": {k: len(v) for k, v in times.items()},
            "info": {k: v for k, v in policy.info.items() if k in ("covered", "evaluated")}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenario", default="sag")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--policies", nargs="+", default=["random", "greedy", "exhaustive"])
    p.add_argument("--subspace", default=None,
                   help="exhaustive sub-space (default: baselines.DEFAULT_SUBSPACE)")
    p.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH",
                   help="also time a trained policy (hdrl, mappo, ppo_single)")
    p.add_argument("--steps", type=int, default=12, help="steps per policy (>= 11 covers a "
                   "satellite, a HAP and local decisions with the default intervals)")
    p.add_argument("--num-envs", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    from tntn_env import baselines

    torch.set_num_threads(args.threads)
    cfg = make_config(args.scenario, **parse_sets(args.set))
    pols = []
    for name in args.policies:
        if name == "exhaustive":
            pols.append(baselines.ExhaustivePolicy(
                subspace=args.subspace or baselines.DEFAULT_SUBSPACE))
        else:
            pols.append(baselines.make_policy(name))
    for item in args.checkpoint:
        name, path = item.split("=", 1)
        pols.append(baselines.CheckpointPolicy(path, name=name))
    rows = [bench(pol, cfg, args.steps, args.num_envs, args.seed) for pol in pols]
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    meta = {"scenario": args.scenario, "overrides": args.set, "steps": args.steps,
            "num_envs": args.num_envs, "threads": args.threads, "load_average": load,
            "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "torch": torch.__version__}
    if args.json:
        print(json.dumps({"meta": meta, "results": rows}, indent=2))
        return 0

    def f(x):
        return "-" if x is None else f"{x:.2f}"

    print(f"scenario {args.scenario} {' '.join(args.set)}; {args.steps} steps, "
          f"{args.num_envs} env(s), {args.threads} thread(s), load average {load}")
    print()
    print("| policy | all-tier step (ms) | HAP step (ms) | local step (ms) | episode mean (ms) |")
    print("|---|---|---|---|---|")
    for r in rows:
        m = r["ms"]
        print(f"| {r['policy']} | {f(m['all'])} | {f(m['hap'])} | {f(m['local'])} | "
              f"{f(r['episode_mean_ms'])} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
