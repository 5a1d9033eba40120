"""Reproduce the paper's Figure 3 (a)-(f) and test its headline claims, with one command.

    python -m tntn_env.experiments.reproduce --preset quick      # ~15 min on 2 CPU cores
    python -m tntn_env.experiments.reproduce --preset paper      # paper budgets; CUDA if present

Steps (each reused when its output already exists, so an interrupted run resumes):

1. **Train** HDRL (``trainers/hdrl_ppo.py``), MADRL (``mappo.py``) and SADRL (``ppo_single.py``)
   on each scenario (sag / ag / uav) and seed, ``--workers`` subprocesses at a time; plus HDRL on
   the sag scenario at each user density of (f) (the number of users per region sets the
   observation and action shapes, so each density has its own policy).
2. **Decision time (a)**: every algorithm on one sag environment (E = 1, one torch thread, nothing
   else of this command running), over ``timing_steps`` steps from step 0 (50 steps hold one
   satellite, five HAP and fifty local decisions, the proportions of a whole episode); the mean
   wall time of ``policy.act`` per step.
3. **Evaluation** on held-out seeds (10000, 10001, ...; training uses seeds 1.. + env index),
   identical for every algorithm, ``--workers`` processes at a time:
   (b) spectral efficiency per scenario and algorithm on episodes of ``exhaustive_steps`` steps,
   the horizon where the exhaustive search (``tntn_env.baselines.DEFAULT_SUBSPACE``: the
   step-optimal joint action over HAP block splits x scheduling rules, the rest exact) is
   affordable; every
   algorithm sees the same episodes. (c) throughput over full 500-step episodes on sag (no
   exhaustive search). (e) sum rate on sag with the TBS and UAV powers shifted together by
   ``power_offsets_db`` (x axis: the local average power = mean of a region's node powers, in
   dBm). (f) HDRL's spectrum utilisation over (users per region / default) x the same powers.
4. **Outputs** in ``--out`` (default ``runs/reproduce/<preset>``): ``fig3{a..f}_*.png``, one CSV
   per figure (the figure's data), ``claims.csv`` and ``results.md`` (each claim: the paper's
   value, the value measured here, whether it holds), ``meta.json`` (preset, seeds, versions,
   device, wall times, load). Heavy files (checkpoints, TensorBoard logs, per-step CSVs) go to
   ``--work`` (default ``<out>/work``).

Error bars: 95 % Student-t intervals over training seeds for the learned policies, over
evaluation episodes for the baselines. Claims are computed from the CSVs only
(:func:`compute_claims`), so the table can be recomputed from the data.
"""

import csv
import json
import math
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Literal

import torch

from ..cli import parse, usage_error
from ..config import TINY_OVERRIDES, make_config
from ..trainer_files import trainer_path
from .launch import (
    ALGOS,
    TINY_TRAINER_FLAGS,
    TrainJob,
    evaluate,
    mean_ci95,
    read_scalars,
    train_all,
)
from .seeds import read_csv

PROG = "python -m tntn_env.experiments.reproduce"

SCENARIOS = ("sag", "ag", "uav")
BASELINES = ("exhaustive", "random", "greedy")
LABELS = {"hdrl": "HDRL", "mappo": "MADRL", "ppo_single": "SADRL", "exhaustive": "Exhaustive",
          "random": "Random", "greedy": "Greedy"}
COLORS = {"hdrl": "tab:blue", "mappo": "tab:orange", "ppo_single": "tab:green",
          "exhaustive": "tab:red", "random": "tab:gray", "greedy": "tab:purple"}
EVAL_SEED = 10_000


@dataclass(frozen=True)
class Preset:
    """Budgets of one reproduction (see ``PRESETS``)."""

    name: str
    seeds: tuple  # training seeds of every learned policy
    total_timesteps: int  # env steps per training run
    eval_episodes: int  # full-length evaluation episodes per learned policy (c)
    baseline_episodes: int  # full-length evaluation episodes of random / greedy (c)
    exhaustive_episodes: int  # episodes of (b), every algorithm
    exhaustive_steps: int  # their length (the exhaustive search's horizon)
    timing_steps: int  # steps of the decision-time measurement (a)
    power_offsets_db: tuple  # TBS and UAV power shifts of (e) and (f)
    power_steps: int  # episode length of (e) and (f)
    densities: tuple  # users per region of (f)
    overrides: dict = field(default_factory=dict)  # config overrides of every run
    trainer_flags: tuple = ()  # extra trainer flags of every run
    cuda: bool = False  # train on CUDA when available
    workers: int = 2  # parallel training / evaluation processes
    eval_in_process: bool = False  # evaluations in this process (tiny: cheaper than spawning)
    trainer_dir: str | None = None  # folder of the trainer files (None: the repository's)


PRESETS = {
    "tiny": Preset("tiny", seeds=(1,), total_timesteps=160, eval_episodes=1, baseline_episodes=1,
                   exhaustive_episodes=1, exhaustive_steps=3, timing_steps=3,
                   power_offsets_db=(-6.0, 0.0), power_steps=3, densities=(2, 3),
                   overrides=TINY_OVERRIDES, trainer_flags=TINY_TRAINER_FLAGS, workers=2,
                   eval_in_process=True),
    "quick": Preset("quick", seeds=(1, 2), total_timesteps=20_000, eval_episodes=8,
                    baseline_episodes=8, exhaustive_episodes=8, exhaustive_steps=50,
                    timing_steps=50, power_offsets_db=(-8.0, -4.0, 0.0, 4.0, 8.0),
                    power_steps=30, densities=(4, 7, 10), workers=2),
    "paper": Preset("paper", seeds=(1, 2, 3), total_timesteps=500_000, eval_episodes=5,
                    baseline_episodes=10, exhaustive_episodes=2, exhaustive_steps=500,
                    timing_steps=500, power_offsets_db=(-8.0, -4.0, 0.0, 4.0, 8.0),
                    power_steps=100, densities=(2, 4, 6, 8, 10), cuda=True, workers=2),
}
PRESET_NAMES = tuple(sorted(PRESETS))

# Headline claims (paper Section 4.2 / Fig. 3 text): (id, text, paper value, unit, threshold).
CLAIMS = (
    ("se_vs_exhaustive", "HDRL spectral efficiency >= 95% of exhaustive search (sag)", 0.97,
     "ratio", 0.95),
    ("speed_vs_exhaustive", "HDRL decisions >= 50x faster than exhaustive search", 50.0,
     "x", 50.0),
    ("speed_vs_madrl", "HDRL decisions >= 3.75x faster than MADRL", 3.75, "x", 3.75),
    ("thr_vs_madrl", "HDRL average throughput +5% over MADRL (sag)", 0.05, "gain", 0.05),
    ("thr_vs_sadrl", "HDRL average throughput +11% over SADRL (sag)", 0.11, "gain", 0.11),
    ("thr_vs_random", "HDRL average throughput +25% over random (sag)", 0.25, "gain", 0.25),
    ("reward_order", "training reward SAG > AG > UAV-aided", None, "order", None),
    ("se_vs_madrl", "HDRL spectral efficiency +2% over MADRL (sag; Fig. 3b text)", 0.02,
     "gain", 0.02),
    ("se_vs_sadrl", "HDRL spectral efficiency +15% over SADRL (sag; Fig. 3b text)", 0.15,
     "gain", 0.15),
    ("se_vs_random", "HDRL spectral efficiency +18% over random (sag; Fig. 3b text)", 0.18,
     "gain", 0.18),
)


# ------------------------------------------------------------------------------------ helpers
def write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def local_average_power_dbm(cfg) -> float:
    """Mean transmit power of one region's local nodes (TBS and UAVs at their maximum), dBm."""
    n = cfg.network
    mw = ([10 ** (n.tbs_power_dbm[1] / 10)] * n.tbs_per_region
          + [10 ** (n.uav_power_dbm[1] / 10)] * n.uavs_per_region)
    return 10 * math.log10(sum(mw) / len(mw))


def power_overrides(cfg, offset_db: float) -> dict:
    n = cfg.network
    return {"tbs_power_dbm": tuple(p + offset_db for p in n.tbs_power_dbm),
            "uav_power_dbm": tuple(p + offset_db for p in n.uav_power_dbm)}


def _eval_task(kw: dict) -> dict:
    """One evaluation in a worker process (one torch thread)."""
    torch.set_num_threads(1)
    s = evaluate(**{"other_env": True, **kw})  # shorter episodes, other powers and densities
    return {"metrics": {k: v["mean"] for k, v in s["metrics"].items()},
            "decision_time_s": s["decision_time_s"]["mean"], "out_dir": s["out_dir"]}


def run_evals(tasks: dict, workers: int) -> dict:
    """{key: evaluate kwargs} -> {key: result}, ``workers`` processes at a time."""
    if workers <= 1:
        return {k: _eval_task(kw) for k, kw in tasks.items()}
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futs = {k: pool.submit(_eval_task, kw) for k, kw in tasks.items()}
        return {k: f.result() for k, f in futs.items()}


def _gain(a: float, b: float) -> float:
    return a / b - 1.0 if b else math.nan


# ------------------------------------------------------------------------------------- claims
def compute_claims(out: Path) -> list[dict]:
    """Each claim's measured value and verdict, from the CSVs in ``out`` only."""
    se = read_csv(out / "fig3b_spectral_efficiency.csv")
    dt = {r["algorithm"]: float(r["decision_time_ms"]) for r in
          read_csv(out / "fig3a_decision_time.csv")}
    thr = read_csv(out / "fig3c_throughput_episodes.csv")
    curves = read_csv(out / "fig3d_training_reward.csv")

    def mean_of(rows, algo, key, scenario=None):
        xs = [float(r[key]) for r in rows if r["algorithm"] == algo
              and (scenario is None or r["scenario"] == scenario)]
        return statistics.fmean(xs) if xs else math.nan

    se_sag = {a: mean_of(se, a, "spectral_efficiency", "sag") for a in (*ALGOS, *BASELINES)}
    thr_sag = {a: mean_of(thr, a, "throughput_mbps") for a in (*ALGOS, "random", "greedy")}
    final = {}
    for scen in SCENARIOS:  # mean of the last 20% of each seed's curve, then over seeds
        per_seed = []
        for seed in sorted({r["seed"] for r in curves if r["scenario"] == scen}):
            ys = [float(r["reward"]) for r in curves if r["scenario"] == scen
                  and r["seed"] == seed]
            if ys:
                per_seed.append(statistics.fmean(ys[-max(1, len(ys) // 5):]))
        final[scen] = statistics.fmean(per_seed) if per_seed else math.nan
    measured = {
        "se_vs_exhaustive": se_sag["hdrl"] / se_sag["exhaustive"],
        "speed_vs_exhaustive": dt["exhaustive"] / dt["hdrl"],
        "speed_vs_madrl": dt["mappo"] / dt["hdrl"],
        "thr_vs_madrl": _gain(thr_sag["hdrl"], thr_sag["mappo"]),
        "thr_vs_sadrl": _gain(thr_sag["hdrl"], thr_sag["ppo_single"]),
        "thr_vs_random": _gain(thr_sag["hdrl"], thr_sag["random"]),
        "se_vs_madrl": _gain(se_sag["hdrl"], se_sag["mappo"]),
        "se_vs_sadrl": _gain(se_sag["hdrl"], se_sag["ppo_single"]),
        "se_vs_random": _gain(se_sag["hdrl"], se_sag["random"]),
    }
    rows = []
    for cid, text, paper, unit, thresh in CLAIMS:
        if cid == "reward_order":
            v = final["sag"] > final["ag"] > final["uav"]
            shown = " > ".join(f"{s.upper()} {final[s]:.4g}" for s in
                               sorted(SCENARIOS, key=lambda s: -final[s]))
            rows.append({"claim": cid, "text": text, "paper": "SAG > AG > UAV",
                         "measured": shown, "value": "", "holds": "yes" if v else "no",
                         "same_direction": "yes" if v else "no"})
            continue
        m = measured[cid]
        ok = not math.isnan(m) and m >= thresh
        direction = not math.isnan(m) and (m > 1.0 if unit in ("x",) else
                                            m > 0.0 if unit == "gain" else m > 0.9)
        shown = (f"{100 * m:+.1f}%" if unit == "gain" else f"{m:.1f}x" if unit == "x"
                 else f"{100 * m:.1f}%")
        paper_s = (f"{100 * paper:+.0f}%" if unit == "gain" else f"{paper:g}x" if unit == "x"
                   else f"{100 * paper:.0f}%")
        rows.append({"claim": cid, "text": text, "paper": paper_s, "measured": shown,
                     "value": f"{m:.6g}", "holds": "yes" if ok else "no",
                     "same_direction": "yes" if direction else "no"})
    return rows


# -------------------------------------------------------------------------------------- figures
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_all(out: Path, p: Preset) -> None:
    plt = _plt()
    tag = (f"{p.name} preset: {len(p.seeds)} seed(s) x {p.total_timesteps:,} training steps"
           + (" (tiny config)" if p.name == "tiny" else ""))

    # (a) decision time
    rows = read_csv(out / "fig3a_decision_time.csv")
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    names = [r["algorithm"] for r in rows]
    vals = [float(r["decision_time_ms"]) for r in rows]
    ax.bar([LABELS[n] for n in names], vals, color=[COLORS[n] for n in names])
    ax.set_yscale("log")
    ax.set_ylabel("decision time per step (ms, log)")
    ax.set_title(f"(a) decision time, sag, E=1, CPU\n{tag}", fontsize=9)
    for i, v in enumerate(vals):
        ax.text(i, v, f"{v:.3g}", ha="center", va="bottom", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "fig3a_decision_time.png")
    plt.close(fig)

    # (b) spectral efficiency per scenario
    rows = read_csv(out / "fig3b_spectral_efficiency.csv")
    algos = [a for a in (*ALGOS, *BASELINES) if any(r["algorithm"] == a for r in rows)]
    fig, ax = plt.subplots(figsize=(7, 3.8), dpi=100)
    w = 0.8 / len(algos)
    for j, a in enumerate(algos):
        ms, es = [], []
        for s in SCENARIOS:
            m, h = mean_ci95([r["spectral_efficiency"] for r in rows
                              if r["algorithm"] == a and r["scenario"] == s])
            ms.append(m)
            es.append(0.0 if math.isnan(h) else h)
        xs = [i + (j - (len(algos) - 1) / 2) * w for i in range(len(SCENARIOS))]
        ax.bar(xs, ms, w, yerr=es, capsize=2, label=LABELS[a], color=COLORS[a])
    ax.set_xticks(range(len(SCENARIOS)), [s.upper() for s in SCENARIOS])
    ax.set_ylabel("spectral efficiency (bit/s/Hz, log)")
    ax.set_yscale("log")  # learned policies ~0.3, exhaustive / greedy ~3: both readable
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo, hi * 8)  # room for the legend
    ax.set_title(f"(b) spectral efficiency, {p.exhaustive_episodes} episode(s) x "
                 f"{p.exhaustive_steps} steps; error bars: 95% CI (Student t; few seeds: wide)"
                 f"\n{tag}", fontsize=9)
    ax.legend(fontsize=7, ncol=6, loc="upper center")
    fig.tight_layout()
    fig.savefig(out / "fig3b_spectral_efficiency.png")
    plt.close(fig)

    # (c) throughput over one evaluation episode
    rows = read_csv(out / "fig3c_throughput.csv")
    ep = read_csv(out / "fig3c_throughput_episodes.csv")
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=100)
    for a in (*ALGOS, "random", "greedy"):
        ys = [float(r["throughput_mbps"]) for r in rows if r["algorithm"] == a]
        if not ys:
            continue
        m = statistics.fmean(float(r["throughput_mbps"]) for r in ep if r["algorithm"] == a)
        ax.plot(range(len(ys)), ys, lw=0.8, color=COLORS[a], label=f"{LABELS[a]} (mean {m:.2f})")
    ax.set_xlabel("step of the evaluation episode")
    ax.set_ylabel("mean user throughput (Mbit/s)")
    ax.set_title(f"(c) throughput, sag, episode seed {EVAL_SEED} (legend: mean over all "
                 f"evaluation episodes)\n{tag}", fontsize=9)
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(out / "fig3c_throughput.png")
    plt.close(fig)

    # (d) normalised training reward per scenario
    rows = read_csv(out / "fig3d_training_reward.csv")
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    for s, c in zip(SCENARIOS, ("tab:blue", "tab:orange", "tab:green")):
        steps = sorted({int(r["step"]) for r in rows if r["scenario"] == s})
        if not steps:
            continue
        by = {st: [float(r["normalised"]) for r in rows if r["scenario"] == s
                   and int(r["step"]) == st] for st in steps}
        ms = [statistics.fmean(by[st]) for st in steps]
        lo = [min(by[st]) for st in steps]
        hi = [max(by[st]) for st in steps]
        ep_len = float(rows[0]["episode_steps"])
        xs = [st / ep_len for st in steps]
        ax.plot(xs, ms, color=c, label=s.upper())
        ax.fill_between(xs, lo, hi, color=c, alpha=0.2)
    ax.set_xlabel("training episodes (all parallel envs)")
    ax.set_ylabel("normalised average cumulative reward")
    ax.set_title(f"(d) HDRL training reward (min-max over all curves; band: seeds)\n{tag}",
                 fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "fig3d_training_reward.png")
    plt.close(fig)

    # (e) sum rate vs local average power
    rows = read_csv(out / "fig3e_sum_rate_vs_power.csv")
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    for a in (*ALGOS, *BASELINES):
        pts = sorted((float(r["local_avg_power_dbm"]), float(r["sum_rate_mbps"]))
                     for r in rows if r["algorithm"] == a)
        if pts:
            ax.plot(*zip(*pts), marker="o", ms=3, color=COLORS[a], label=LABELS[a])
    ax.set_xlabel("local average power (dBm)")
    ax.set_ylabel("sum rate (Mbit/s)")
    ax.set_title(f"(e) sum rate vs local power, sag, {p.power_steps}-step episodes\n{tag}",
                 fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "fig3e_sum_rate_vs_power.png")
    plt.close(fig)

    # (f) spectrum utilisation surface
    rows = read_csv(out / "fig3f_utilisation.csv")
    dens = sorted({float(r["user_density_norm"]) for r in rows})
    pows = sorted({float(r["local_avg_power_dbm"]) for r in rows})
    val = {(float(r["user_density_norm"]), float(r["local_avg_power_dbm"])):
           float(r["utilisation_norm"]) for r in rows}
    fig = plt.figure(figsize=(6, 4.4), dpi=100)
    ax = fig.add_subplot(projection="3d")
    X = [[d for _ in pows] for d in dens]
    Y = [[q for q in pows] for _ in dens]
    Z = [[val[(d, q)] for q in pows] for d in dens]
    import numpy as np

    surf = ax.plot_surface(np.array(X), np.array(Y), np.array(Z), cmap="viridis",
                           edgecolor="k", linewidth=0.3)
    fig.colorbar(surf, ax=ax, shrink=0.6, pad=0.12, label="normalised utilisation")
    ax.set_xlabel("normalised user density")
    ax.set_ylabel("local avg power (dBm)")
    ax.set_zlabel("utilisation (norm.)")
    ax.set_title(f"(f) HDRL spectrum utilisation (max = 1)\n{tag}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "fig3f_utilisation_surface.png")
    plt.close(fig)


# ------------------------------------------------------------------------------------ results.md
def write_results(out: Path, p: Preset, claims: list[dict], meta: dict) -> None:
    se = read_csv(out / "fig3b_spectral_efficiency.csv")
    dt = read_csv(out / "fig3a_decision_time.csv")
    thr = read_csv(out / "fig3c_throughput_episodes.csv")
    lines = [f"# Reproduction of Figure 3 — `{p.name}` preset", "",
             f"Command: `python -m tntn_env.experiments.reproduce --preset {p.name}`. "
             f"{len(p.seeds)} training seed(s) {list(p.seeds)} x {p.total_timesteps:,} env steps "
             f"per run (paper: 1000 episodes x 500 steps = 500,000). Evaluation seeds from "
             f"{EVAL_SEED}. Device {meta['device']}, torch {meta['torch']}, "
             f"{meta['cpu_count']} CPU cores, wall time {meta['wall_time_s'] / 60:.1f} min, "
             f"load average at the decision-time measurement {meta['load_at_timing']}.", "",
             "## Claims", "",
             "| claim | paper | measured here | holds | same direction |", "|---|---|---|---|---|"]
    for c in claims:
        lines.append(f"| {c['text']} | {c['paper']} | {c['measured']} | {c['holds']} | "
                     f"{c['same_direction']} |")
    lines += ["", "'holds': the measured value reaches the paper's figure; 'same direction': "
              "HDRL is at least better / faster (ratio > 0.9 for the exhaustive-search ratio). "
              "Both compare means; with few seeds the 95% intervals below are wide, so a gain "
              "that 'holds' need not be significant.",
              "", "## Spectral efficiency (b), bit/s/Hz, mean ± 95% CI", "",
              "| algorithm | " + " | ".join(s.upper() for s in SCENARIOS) + " |",
              "|---|" + "---|" * len(SCENARIOS)]
    for a in (*ALGOS, *BASELINES):
        cells = []
        for s in SCENARIOS:
            m, h = mean_ci95([r["spectral_efficiency"] for r in se
                              if r["algorithm"] == a and r["scenario"] == s])
            cells.append(f"{m:.3f}" + ("" if math.isnan(h) else f" ± {h:.3f}"))
        lines.append(f"| {LABELS[a]} | " + " | ".join(cells) + " |")
    lines += ["", "## Decision time (a) and throughput (c)", "",
              "| algorithm | decision time (ms/step) | throughput sag (Mbit/s) |", "|---|---|---|"]
    for r in dt:
        a = r["algorithm"]
        xs = [r2["throughput_mbps"] for r2 in thr if r2["algorithm"] == a]
        m, h = mean_ci95(xs)
        t = "—" if not xs else f"{m:.3f}" + ("" if math.isnan(h) else f" ± {h:.3f}")
        lines.append(f"| {LABELS[a]} | {float(r['decision_time_ms']):.3g} | {t} |")
    lines += ["", "Figures: " + ", ".join(f"`{f.name}`" for f in sorted(out.glob("fig3*.png"))),
              ""]
    (out / "results.md").write_text("\n".join(lines))


# ---------------------------------------------------------------------------------------- main
def reproduce(p: Preset, out: Path, work: Path, log=print) -> dict:
    t_start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    base_cfg = make_config("sag", **p.overrides)
    ep_len = base_cfg.timing.episode_steps
    k_default = base_cfg.network.users_per_region
    use_cuda = p.cuda and torch.cuda.is_available()

    # 1. Training
    def job(algo, scen, seed, extra_ov=None, tag=""):
        return TrainJob(algo, scen, seed, p.total_timesteps,
                        work / "train" / f"{algo}__{scen}{tag}__{seed}",
                        {**p.overrides, **(extra_ov or {})}, list(p.trainer_flags), use_cuda,
                        trainer_dir=p.trainer_dir)

    jobs = {(a, s, seed): job(a, s, seed) for s in SCENARIOS for a in ALGOS for seed in p.seeds}
    dens_jobs = {k: job("hdrl", "sag", p.seeds[0], {"users_per_region": k}, f"_K{k}")
                 for k in p.densities if k != k_default}
    log(f"training {len(jobs) + len(dens_jobs)} runs, {p.workers} at a time")
    res = train_all([*jobs.values(), *dens_jobs.values()], p.workers, log)
    ck = {key: r.checkpoint for key, r in zip([*jobs, *dens_jobs], res)}
    runs = {key: r.run_dir for key, r in zip(jobs, res)}
    train_wall = time.perf_counter() - t_start

    # 2. Decision time (a): sequential, one thread, E = 1
    log("measuring decision times")
    torch.set_num_threads(1)
    load_at_timing = [round(x, 2) for x in os.getloadavg()]
    rows = []
    for a in ("exhaustive", *ALGOS, "random", "greedy"):
        s = evaluate(a, "sag", EVAL_SEED, 1, work / "eval" / "timing" / a,
                     ck.get((a, "sag", p.seeds[0])),
                     {**p.overrides, "episode_steps": p.timing_steps}, num_envs=1, threads=1,
                     other_env=True, trainer_dir=p.trainer_dir)
        rows.append({"algorithm": a, "decision_time_ms": 1e3 * s["decision_time_s"]["mean"],
                     "decision_time_median_ms": 1e3 * s["decision_time_s"]["median"],
                     "steps": p.timing_steps, "device": "cpu", "torch_threads": 1})
    write_csv(out / "fig3a_decision_time.csv", rows)

    # 3. Evaluations
    tasks = {}
    short = {**p.overrides, "episode_steps": p.exhaustive_steps}
    for s in SCENARIOS:  # (b)
        for a in ALGOS:
            for seed in p.seeds:
                tasks[("b", s, a, seed)] = dict(
                    policy=a, scenario=s, seed=EVAL_SEED, episodes=p.exhaustive_episodes,
                    out_dir=work / "eval" / "b" / f"{a}__{s}__{seed}",
                    checkpoint=ck[(a, s, seed)], overrides=short)
        for a in BASELINES:
            tasks[("b", s, a, 0)] = dict(
                policy=a, scenario=s, seed=EVAL_SEED, episodes=p.exhaustive_episodes,
                out_dir=work / "eval" / "b" / f"{a}__{s}", overrides=short)
    for a in ALGOS:  # (c)
        for seed in p.seeds:
            tasks[("c", a, seed)] = dict(
                policy=a, scenario="sag", seed=EVAL_SEED, episodes=p.eval_episodes,
                out_dir=work / "eval" / "c" / f"{a}__{seed}", checkpoint=ck[(a, "sag", seed)],
                overrides=p.overrides)
    for a in ("random", "greedy"):
        tasks[("c", a, 0)] = dict(
            policy=a, scenario="sag", seed=EVAL_SEED, episodes=p.baseline_episodes,
            out_dir=work / "eval" / "c" / a, overrides=p.overrides)
    for off in p.power_offsets_db:  # (e) and (f)
        pw = {**p.overrides, **power_overrides(base_cfg, off), "episode_steps": p.power_steps}
        for a in (*ALGOS, *BASELINES):
            tasks[("e", a, off)] = dict(
                policy=a, scenario="sag", seed=EVAL_SEED, episodes=1,
                out_dir=work / "eval" / "e" / f"{a}__{off:+g}dB",
                checkpoint=ck.get((a, "sag", p.seeds[0])), overrides=pw)
        for k in p.densities:
            c = ck[("hdrl", "sag", p.seeds[0])] if k == k_default else ck[k]
            tasks[("f", k, off)] = dict(
                policy="hdrl", scenario="sag", seed=EVAL_SEED, episodes=p.exhaustive_episodes,
                out_dir=work / "eval" / "f" / f"K{k}__{off:+g}dB", checkpoint=c,
                overrides={**pw, "users_per_region": k})
    tasks = {k: {**kw, "trainer_dir": p.trainer_dir} for k, kw in tasks.items()}
    log(f"running {len(tasks)} evaluations, {p.workers} at a time")
    ev = run_evals(tasks, 1 if p.eval_in_process else p.workers)

    # 4. Data files
    rows = []
    for key, r in ev.items():
        if key[0] != "b":
            continue
        _, s, a, seed = key
        ep = read_csv(Path(r["out_dir"]) / "episodes.csv")
        groups = [ep] if a in ALGOS else [[e] for e in ep]  # RL: per seed; baselines: episodes
        for g in groups:
            rows.append({"scenario": s, "algorithm": a,
                         "seed": seed if a in ALGOS else int(g[0]["seed"]),
                         "unit": "training seed" if a in ALGOS else "evaluation episode",
                         "episodes": len(g), "steps": p.exhaustive_steps,
                         **{m: statistics.fmean(float(e[m]) for e in g) for m in
                            ("spectral_efficiency", "throughput_mbps", "sum_rate_mbps",
                             "fairness", "qos_violation", "reward")}})
    write_csv(out / "fig3b_spectral_efficiency.csv", rows)

    rows, trace = [], []
    for key, r in ev.items():
        if key[0] != "c":
            continue
        _, a, seed = key
        ep = read_csv(Path(r["out_dir"]) / "episodes.csv")
        groups = [ep] if a in ALGOS else [[e] for e in ep]
        for g in groups:
            rows.append({"algorithm": a, "seed": seed if a in ALGOS else int(g[0]["seed"]),
                         "unit": "training seed" if a in ALGOS else "evaluation episode",
                         "episodes": len(g), "steps": ep_len,
                         "throughput_mbps": statistics.fmean(float(e["throughput_mbps"])
                                                             for e in g),
                         "spectral_efficiency": statistics.fmean(float(e["spectral_efficiency"])
                                                                 for e in g)})
        if seed in (0, p.seeds[0]):  # the step trace of episode 0 (eval seed EVAL_SEED)
            for st in read_csv(Path(r["out_dir"]) / "steps.csv"):
                if st["episode"] == "0":
                    trace.append({"algorithm": a, "step": int(st["step"]),
                                  "throughput_mbps": float(st["throughput_mbps"])})
    write_csv(out / "fig3c_throughput_episodes.csv", rows)
    write_csv(out / "fig3c_throughput.csv", trace)

    rows, raw = [], []
    for s in SCENARIOS:
        for seed in p.seeds:
            for step, v in read_scalars(runs[("hdrl", s, seed)], ["env/reward"])["env/reward"]:
                raw.append((s, seed, step, v * ep_len))
    lo, hi = min(x[3] for x in raw), max(x[3] for x in raw)
    for s, seed, step, v in raw:
        rows.append({"scenario": s, "seed": seed, "step": step, "episode_steps": ep_len,
                     "reward": v / ep_len, "cumulative_reward": v,
                     "normalised": (v - lo) / (hi - lo) if hi > lo else 0.0})
    write_csv(out / "fig3d_training_reward.csv", rows)

    rows = []
    for key, r in ev.items():
        if key[0] == "e":
            _, a, off = key
            cfg = make_config("sag", **{**p.overrides, **power_overrides(base_cfg, off)})
            rows.append({"algorithm": a, "power_offset_db": off,
                         "local_avg_power_dbm": round(local_average_power_dbm(cfg), 3),
                         "sum_rate_mbps": r["metrics"]["sum_rate_mbps"],
                         "spectral_efficiency": r["metrics"]["spectral_efficiency"],
                         "steps": p.power_steps})
    write_csv(out / "fig3e_sum_rate_vs_power.csv", rows)

    rows = []
    umax = max(r["metrics"]["spectrum_utilisation"] for k, r in ev.items() if k[0] == "f")
    for key, r in ev.items():
        if key[0] == "f":
            _, k, off = key
            cfg = make_config("sag", **{**p.overrides, **power_overrides(base_cfg, off)})
            u = r["metrics"]["spectrum_utilisation"]
            rows.append({"users_per_region": k, "user_density_norm": k / max(p.densities),
                         "power_offset_db": off,
                         "local_avg_power_dbm": round(local_average_power_dbm(cfg), 3),
                         "utilisation": u, "utilisation_norm": u / umax if umax > 0 else 0.0,
                         "steps": p.exhaustive_steps})
    write_csv(out / "fig3f_utilisation.csv", rows)

    # 5. Claims, figures, results.md, meta.json
    claims = compute_claims(out)
    write_csv(out / "claims.csv", claims)
    plot_all(out, p)
    meta = {"preset": asdict(p), "seeds": list(p.seeds), "eval_seed": EVAL_SEED,
            "device": "cuda" if use_cuda else "cpu", "torch": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "load_at_timing": load_at_timing,
            "train_wall_time_s": round(train_wall, 1),
            "wall_time_s": round(time.perf_counter() - t_start, 1),
            "command": " ".join(["python -m tntn_env.experiments.reproduce", *sys.argv[1:]])}
    write_results(out, p, claims, meta)
    (out / "meta.json").write_text(json.dumps(meta, indent=2, default=str))
    log(f"done in {meta['wall_time_s'] / 60:.1f} min -> {out}")
    return {"claims": claims, "meta": meta}


@dataclass
class Args:
    """Reproduce the paper's Figure 3 (a)-(f) and test its headline claims, with one command."""

    preset: Literal[PRESET_NAMES] = "quick"
    """budgets: tiny (tests, seconds), quick (~15 min on 2 CPU cores), paper"""
    out: str | None = None
    """figures, CSVs, results.md (None: runs/reproduce/<preset>)"""
    work: str | None = None
    """checkpoints, logs, raw evaluations (None: <out>/work)"""
    workers: int | None = None
    """parallel processes (None: the preset's)"""
    seeds: str | None = None
    """comma-separated training seeds (None: the preset's)"""
    trainer_dir: str | None = None
    """folder of the trainer files (None: the repository's trainers/)"""


def main(argv=None) -> int:
    args = parse(Args, argv, PROG, Args.__doc__)
    p = replace(PRESETS[args.preset], trainer_dir=args.trainer_dir)
    if args.workers is not None:
        if args.workers < 1:
            usage_error(PROG, f"--workers {args.workers}: allowed values are >= 1")
        p = replace(p, workers=args.workers)
    if args.seeds:
        try:
            seeds = tuple(int(x) for x in args.seeds.split(","))
        except ValueError:
            usage_error(PROG, f"--seeds {args.seeds!r}: allowed values are comma-separated "
                              "integers")
        if not seeds or min(seeds) < 0:
            usage_error(PROG, f"--seeds {args.seeds!r}: allowed values are non-negative integers")
        p = replace(p, seeds=seeds)
    out = Path(args.out or Path("runs") / "reproduce" / p.name)
    try:
        for algo in ALGOS:  # early and clear: e.g. an installed package has no trainers/
            trainer_path(algo, p.trainer_dir)
        reproduce(p, out, Path(args.work) if args.work else out / "work")
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for c in read_csv(out / "claims.csv"):
        print(f"{'HOLDS' if c['holds'] == 'yes' else 'FAILS':5}  {c['text']}: measured "
              f"{c['measured']} (paper {c['paper']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
