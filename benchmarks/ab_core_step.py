"""A/B of core.step between two checkouts of this repository (a measurement, not a test):
rounds of alternating subprocesses, each timing ``--steps`` batched steps at ``--envs``
(scenario ``sag``, uniform random masked actions, ``check_actions=False``, after warm-up
steps), so that a noisy machine's slow minutes fall on both sides alike.

    git worktree add /tmp/tntn-old <commit>
    python benchmarks/ab_core_step.py /tmp/tntn-old . --rounds 5 --steps 30
    python benchmarks/ab_core_step.py /tmp/tntn-old . --compile --envs 1 --steps 200

With ``--compile`` the cores use ``compile=True`` and warm up for 12 steps (past the first
large-scale refresh, so both graphs exist); the first round of each side compiles (minutes),
later rounds load torch's compile cache. Each run also reports its warm-up time. ``--modes``
sets each side's mode instead (eager, true, graph, kernels), e.g. eager against compiled
kernels on one checkout:

    python benchmarks/ab_core_step.py . . --modes eager kernels --envs 4096 --rounds 4

Prints each run's mean, median and minimum ms per step, then per side the mean of those
figures over the rounds. Each subprocess imports ``tntn_env`` from its own checkout (it raises if
the import resolves elsewhere, e.g. to an editable install's path shadowing it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import json, sys, time, torch
root, envs, steps, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
compile = {"0": False, "1": True}.get(sys.argv[5], sys.argv[5])
sys.path[:0] = [root, root + "/benchmarks"]
import tntn_env
assert tntn_env.__file__.startswith(root), f"tntn_env imported from {tntn_env.__file__}"
from bench_env import random_masked_actions
torch.set_num_threads(threads)
core = tntn_env.TNTNCore(scenario="sag", num_envs=envs, check_actions=False, compile=compile)
_, masks = core.reset(seed=0)
out, gen = {"masks": masks}, torch.Generator().manual_seed(0)
t0 = time.perf_counter()
for _ in range(12 if compile else 3):
    out = core.step(random_masked_actions(core, out["masks"], gen), auto_reset=True)
warm = time.perf_counter() - t0
ts = []
for _ in range(steps):
    a = random_masked_actions(core, out["masks"], gen)
    t = time.perf_counter()
    out = core.step(a, auto_reset=True)
    ts.append(time.perf_counter() - t)
print(json.dumps({"steps": ts, "warm": warm}))
"""


def run(root: str, envs: int, steps: int, threads: int, compile) -> dict:
    """One subprocess; ``compile`` as TNTNCore takes it (False, True, "graph", "kernels")."""
    arg = compile if isinstance(compile, str) else str(int(compile))
    res = subprocess.run([sys.executable, "-c", CHILD, root, str(envs), str(steps), str(threads),
                          arg], capture_output=True, text=True, check=True)
    got = json.loads(res.stdout.strip().splitlines()[-1])
    ts = [t * 1e3 for t in got["steps"]]
    return {"mean": statistics.fmean(ts), "median": statistics.median(ts), "min": min(ts),
            "warm": got["warm"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("a", help="checkout A (the baseline)")
    p.add_argument("b", help="checkout B")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=30, help="timed steps per run")
    p.add_argument("--envs", type=int, default=4096)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--compile", action="store_true", help="cores with compile=True")
    p.add_argument("--modes", nargs=2, metavar=("MODE_A", "MODE_B"),
                   choices=("eager", "true", "graph", "kernels"),
                   help="per side instead: eager, true (compile=True), graph or kernels")
    args = p.parse_args()
    roots = {"A": os.path.abspath(args.a), "B": os.path.abspath(args.b)}
    as_arg = {"eager": False, "true": True, "graph": "graph", "kernels": "kernels"}
    modes = ({"A": as_arg[args.modes[0]], "B": as_arg[args.modes[1]]} if args.modes
             else {"A": args.compile, "B": args.compile})
    runs = {"A": [], "B": []}
    for r in range(args.rounds):
        for side, root in roots.items():
            m = run(root, args.envs, args.steps, args.threads, modes[side])
            runs[side].append(m)
            print(f"round {r + 1} {side}: mean {m['mean']:.3f}  median {m['median']:.3f}  "
                  f"min {m['min']:.3f} ms per step; warm-up {m['warm']:.1f} s", flush=True)
    for side, root in roots.items():
        avg = {k: statistics.fmean(m[k] for m in runs[side]) for k in ("mean", "median", "min")}
        print(f"{side} ({root}): over {args.rounds} rounds, mean {avg['mean']:.3f}  median "
              f"{avg['median']:.3f}  min {avg['min']:.3f} ms per step at E = {args.envs} "
              f"({1000 * args.envs / avg['mean']:,.0f} env-steps/s from the mean)")


if __name__ == "__main__":
    main()
