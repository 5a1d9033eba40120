"""Learned policies against greedy and exhaustive search: the table of docs/learning.md.

Reads the ``summary.json`` files that ``python -m tntn_env.evaluate`` (or, for BenchMARL's
policies, ``python -m tntn_env.benchmarl --eval-out``) wrote under ``DIR``, one
folder per evaluation named ``<policy>__<scenario>__<steps>[__s<seed>]`` (the learned policies
with their training seed; the baselines without), and prints a markdown table per (scenario,
episode length): each policy's mean over its training seeds of the per-run mean over episodes,
the 95 % Student-t interval over seeds (over episodes for the baselines and for a policy with a
single training run: the normal interval of the episode mean), and the ratio of each
learned policy's seed mean to greedy's and to exhaustive search's mean on the same episodes
(with the interval of the ratio over seeds).

    python benchmarks/learning_table.py results/learning/eval > results/learning/table.md
    python benchmarks/learning_table.py results/learning/eval --summary   # the README's table

``--summary`` prints one compact table instead: a row per policy, per scenario its SE on the
long episodes with the ratio to greedy and on the short ones with the ratio to exhaustive search
(means over training seeds, 95 % Student-t intervals of the ratios over seeds).
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from pathlib import Path

from tntn_env.core import SYSTEM_METRICS
from tntn_env.experiments.launch import mean_ci95

METRICS = ("spectral_efficiency", "throughput_mbps", "reward", "uav_penalty")  # of SYSTEM_METRICS
assert set(METRICS) <= set(SYSTEM_METRICS), METRICS
ORDER = ("hdrl", "mappo", "ppo_single", "benchmarl_mappo", "benchmarl_ippo", "greedy",
         "exhaustive", "random")
LABEL = {"hdrl": "HDRL", "mappo": "MADRL (MAPPO)", "ppo_single": "SADRL (PPO)",
         "benchmarl_mappo": "BenchMARL MAPPO (stock MLP)",
         "benchmarl_ippo": "BenchMARL IPPO (stock MLP)", "greedy": "greedy",
         "exhaustive": "exhaustive search", "random": "random"}


def load(root: Path) -> dict:
    """{(scenario, steps): {policy: [summary per seed]}}."""
    out: dict = defaultdict(lambda: defaultdict(list))
    for f in sorted(root.glob("*/summary.json")):
        parts = f.parent.name.split("__")
        policy, scenario, steps = parts[0], parts[1], int(parts[2])
        out[(scenario, steps)][policy].append(json.loads(f.read_text()))
    return out


def fmt(m: float, h: float) -> str:
    return f"{m:.3f}" if math.isnan(h) else f"{m:.3f} ± {h:.3f}"


def table(groups: dict) -> str:
    lines = []
    for (scenario, steps), pol in sorted(groups.items()):
        eps = {len(s["seeds"]) for runs in pol.values() for s in runs}
        lines += [f"### {scenario}, {steps}-step episodes ({'/'.join(map(str, sorted(eps)))} "
                  f"held-out episodes, seeds from "
                  f"{min(s['seed'] for r in pol.values() for s in r)})", "",
                  "| policy | runs | SE (bit/s/Hz) | SE / greedy | SE / exhaustive | throughput "
                  "(Mbit/s) | reward | UAV penalty | decision (ms) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        base = {b: pol[b][0]["metrics"]["spectral_efficiency"]["mean"]
                for b in ("greedy", "exhaustive") if b in pol}
        for p in sorted(pol, key=lambda p: ORDER.index(p) if p in ORDER else 99):
            runs = pol[p]
            cells = []
            for k in METRICS:
                if len(runs) > 1:
                    cells.append(fmt(*mean_ci95([r["metrics"][k]["mean"] for r in runs])))
                else:  # a baseline: interval over its episodes
                    m, sd = runs[0]["metrics"][k]["mean"], runs[0]["metrics"][k]["std"]
                    n = len(runs[0]["seeds"])
                    cells.append(fmt(m, 1.96 * sd / math.sqrt(n) if n > 1 else math.nan))
            ratios = []
            for b in ("greedy", "exhaustive"):
                if b not in base or p == b:
                    ratios.append("—")
                    continue
                m, h = mean_ci95([r["metrics"]["spectral_efficiency"]["mean"] / base[b]
                                  for r in runs])
                ratios.append(f"{m:.2f}" if math.isnan(h) else f"{m:.2f} ± {h:.2f}")
            dt = sum(r["decision_time_s"]["mean"] for r in runs) / len(runs) * 1e3
            lines.append(f"| {p} | {len(runs)} | {cells[0]} | {ratios[0]} | {ratios[1]} | "
                         f"{cells[1]} | {cells[2]} | {cells[3]} | {dt:.2f} |")
        lines.append("")
    return "\n".join(lines)


def _ratio(runs: list, base: float) -> str:
    m, h = mean_ci95([r["metrics"]["spectral_efficiency"]["mean"] / base for r in runs])
    return f"{m:.2f}" if math.isnan(h) else f"{m:.2f} ± {h:.2f}"


def summary(groups: dict) -> str:
    """One row per policy; per scenario, SE on its longest episodes (x greedy) and on its
    shortest (x exhaustive search)."""
    scen = sorted({sc for sc, _ in groups}, key=lambda sc: (sc != "sag", sc))
    cols, head = [], ["policy"]
    for sc in scen:
        lens = sorted(st for s2, st in groups if s2 == sc)
        cols += [(sc, lens[-1], "greedy"), (sc, lens[0], "exhaustive")]
        head += [f"{sc}, {lens[-1]} steps: SE (x greedy)",
                 f"{sc}, {lens[0]} steps: SE (x exhaustive)"]
    pols = sorted({p for g in groups.values() for p in g},
                  key=lambda p: ORDER.index(p) if p in ORDER else 99)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in pols:
        row = [LABEL.get(p, p)]
        for sc, st, b in cols:
            pol = groups.get((sc, st), {})
            if p not in pol:
                row.append("—")
                continue
            se = sum(r["metrics"]["spectral_efficiency"]["mean"] for r in pol[p]) / len(pol[p])
            if p == b or b not in pol:
                row.append(f"{se:.2f}")
            else:
                base = pol[b][0]["metrics"]["spectral_efficiency"]["mean"]
                row.append(f"{se:.2f} ({_ratio(pol[p], base)})")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dir", type=Path)
    p.add_argument("--summary", action="store_true", help="one compact table (the README's)")
    a = p.parse_args()
    print(summary(load(a.dir)) if a.summary else table(load(a.dir)))


if __name__ == "__main__":
    main()
