"""The paper's Section 5 ablations of HDRL, one command each, each writing its own figure and table.

    python -m tntn_env.experiments.ablate reward  --preset quick     # ~2-3 min on 2 CPU cores
    python -m tntn_env.experiments.ablate lr      --preset paper --cuda
    python -m tntn_env.experiments.ablate all     --preset quick --out results/ablations
    python -m tntn_env.experiments.ablate clip    --preset quick --dry-run   # list the jobs only

Ablations (``NAME``; ``all`` runs them in turn), HDRL (``trainers/hdrl_ppo.py``) on the sag
scenario:

- ``reward``: reward formulation of the macro-transitions, ``--reward-mode`` cumulative (paper
  default) / aggregative / difference (see the trainer's docstring);
- ``lr``: ``--learning-rate`` 1e-4, 5e-4 (paper), 1e-3, 3e-3;
- ``clip``: PPO ``--clip-coef`` 0.1, 0.2 (paper), 0.3;
- ``entropy``: ``--ent-coef`` 0, 0.01 (paper), 0.05;
- ``latlon``: robustness to the service area's latitude / longitude (below).

Every training run passes all four swept settings explicitly (``--reward-mode``,
``--learning-rate``, ``--clip-coef``, ``--ent-coef``; paper values except the swept one), so the
run at the paper's values is one job shared by all ablations and trained once: jobs live in the
work folder under ``<work>/<preset>/<scenario>/<setting>/seed_<s>/`` and a finished job is reused
(:func:`launch.train`), also when an interrupted command is run again.

**latlon.** The satellite's sub-satellite point stays where the config puts it
(``subsatellite_latitude_deg`` / ``subsatellite_longitude_deg`` = 38.5 N, 121.5 W, altitude
550 km) and the service area (``area_latitude_deg`` / ``area_longitude_deg``) moves along the line
from the sub-satellite point through the default area (37.43 N, 122.17 W, elevation ~75 deg):
from right below the satellite (elevation 90 deg) to ~30 deg. Each location but the default one
is solved for a target elevation by bisection of
:func:`tntn_env.channel.satellite_elevation_deg` (rounded to 0.001 deg of latitude/longitude); the
table records the elevation computed from the resulting config with that same function (area
centre; per region, as the environment uses it, from :func:`tntn_env.topology.build_topology`).
What changes with the elevation, for the satellite links only (the HAP stays above the area and
the terrestrial links do not depend on latitude/longitude): the slant range (TR 38.811 eq. 6.6-3,
:func:`~tntn_env.channel.slant_range_m`) and so the free-space loss; the LoS probability (TR
38.811 Table 6.6.1-1), the shadow-fading sigma (Tables 6.6.2-1..3, Ka-band; constant 4 / 6 dB for
the default "urban" environment) and the clutter loss of NLoS links (same tables), all
interpolated by elevation; gas absorption A_zenith / sin(elevation) (TR 38.811 6.6.4). The
satellite antenna gain, side lobes, Rician K-factor and scintillation do not vary. The geometry
columns of the table are computed with the channel module's functions; "mean satellite path
loss" = FSPL + gas + scintillation + P(NLoS) x clutter loss (without shadowing, zero-mean in dB).
Policies at each location: HDRL trained at the default location (``hdrl_transfer``), HDRL
retrained at that location (``hdrl_retrained``; quick and paper presets; at the default location
it is the same runs as the transfer), the greedy heuristic and the random masked policy
(``baselines``), all on the same held-out episodes.

**Evaluation.** Every policy is evaluated on the same held-out episodes (seeds 10000, 10001, ...;
training uses seeds 1.. + env index) for every swept value. HDRL is evaluated twice through
:mod:`tntn_env.evaluate` (:func:`launch.evaluate`): ``argmax``, the masked argmax, and
``sampled`` (``--sample``), actions sampled from the policy as in training (what PPO
optimises; after the short quick budget the argmax policy is often degenerate, see
``tests/test_learning.py``). ``train_final_reward`` / ``train_final_se`` are the means of the
trainer's logged ``env/reward`` / ``env/spectral_efficiency`` over the last quarter of the
training iterations (sampled policy, training episodes). The random and greedy baselines are
evaluated once on the same episodes (references).

**Outputs** in ``--out`` (default ``runs/ablations/<name>/``; with ``all``, ``<out>/<name>/``):

- ``<name>.png``: the evaluation metrics (spectral efficiency, mean user throughput) vs the swept
  value, mean and 95% CI error bars over training seeds, and the training curves of
  ``env/reward`` (mean over seeds, band = min..max over seeds) per value; latlon: the metrics vs
  the satellite elevation per policy and the satellite link budget vs elevation;
- ``per_seed.csv``: one row per (value, policy, evaluation mode, training seed) with every metric
  of :data:`tntn_env.core.SYSTEM_METRICS` (baselines: one row per evaluation episode);
- ``table.csv`` / ``table.md``: mean and 95% CI (Student t) over training seeds (baselines: over
  evaluation episodes) per value, policy and metric (:func:`seeds.aggregate`,
  :func:`seeds.write_table`); the Markdown file ends with the preset, seeds, budgets, device,
  wall time and load average of the command.

Heavy files (checkpoints, TensorBoard logs, per-step CSVs) stay in ``--work`` (default
``runs/ablations/work``).

Presets: ``tiny`` (tests; a 4-subband, 3-users-per-region, 40-step-episode network, 160 steps,
1 seed, 2 evaluation episodes; seconds), ``quick`` (the same small network, 2 seeds x 65,536 steps
= 32 iterations of the paper's 64 x 32 batch, 8 evaluation episodes, 2 training processes at a
time; a few minutes per ablation on 2 CPU cores, see each table's footer for the measured wall
time and load; at 16,384 steps the argmax policies were still below random),
``paper`` (the paper's network and budgets: 500k steps = 1000 episodes x 500 steps, 3 seeds, CUDA
when available, 5 full evaluation episodes, 5 locations).
"""

import json
import math
import os
import platform
import shlex
import statistics
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Literal

import torch
import tyro

from .. import channel as chn
from ..cli import parse, usage_error
from ..config import TINY_OVERRIDES, make_config
from ..core import SYSTEM_METRICS
from .launch import (
    TINY_TRAINER_FLAGS,
    TrainJob,
    evaluate,
    mean_ci95,
    read_scalars,
    train_all,
    trainer_file,
)
from .seeds import aggregate, parse_seeds, read_csv, write_table

SWEEPS_ORDER = ("reward", "lr", "clip", "entropy")
ABLATIONS = (*SWEEPS_ORDER, "latlon")
NAMES = (*ABLATIONS, "all")
SCENARIO = "sag"
ALGO = "hdrl"
EVAL_SEED = 10_000
PROG = "python -m tntn_env.experiments.ablate"
TABLE_METRICS = ("spectral_efficiency", "throughput_mbps", "reward")  # of SYSTEM_METRICS
assert set(TABLE_METRICS) <= set(SYSTEM_METRICS), TABLE_METRICS
TRAIN_METRICS = ("train_final_reward", "train_final_se")


@dataclass(frozen=True)
class Sweep:
    """One hyperparameter of ``trainers/hdrl_ppo.py`` swept by an ablation."""

    flag: str  # trainer command-line flag
    default: object  # the paper's value (trainer default)
    values: tuple  # swept values, in plot order
    label: str  # axis label


SWEEPS = {
    "reward": Sweep("--reward-mode", "cumulative", ("cumulative", "aggregative", "difference"),
                    "reward formulation (--reward-mode)"),
    "lr": Sweep("--learning-rate", 5e-4, (1e-4, 5e-4, 1e-3, 3e-3),
                "learning rate (--learning-rate)"),
    "clip": Sweep("--clip-coef", 0.2, (0.1, 0.2, 0.3), "PPO clip coefficient (--clip-coef)"),
    "entropy": Sweep("--ent-coef", 0.01, (0.0, 0.01, 0.05),
                     "entropy coefficient (--ent-coef)"),
}


@dataclass(frozen=True)
class Preset:
    """Budgets of one ablation run (see ``PRESETS``)."""

    name: str
    seeds: tuple  # training seeds
    total_timesteps: int  # env steps per training run
    eval_episodes: int  # held-out evaluation episodes (seeds EVAL_SEED, EVAL_SEED + 1, ...)
    overrides: dict = field(default_factory=dict)  # config overrides (training and evaluation)
    trainer_flags: tuple = ()  # further trainer flags of every run
    elevations: tuple = (90.0, None, 30.0)  # latlon targets (deg; None = the default location)
    latlon_retrain: bool = True  # latlon: also retrain HDRL at every location
    cuda: bool = False  # train on CUDA when available
    workers: int = 2  # training subprocesses at a time
    trainer_dir: str | None = None  # folder of the trainer files (None: the repository's)


PRESETS = {
    "tiny": Preset("tiny", seeds=(1,), total_timesteps=160, eval_episodes=2,
                   overrides=TINY_OVERRIDES, trainer_flags=TINY_TRAINER_FLAGS),
    "quick": Preset("quick", seeds=(1, 2), total_timesteps=65_536, eval_episodes=8,
                    overrides=TINY_OVERRIDES, elevations=(90.0, None, 50.0, 30.0)),
    "paper": Preset("paper", seeds=(1, 2, 3), total_timesteps=500_000, eval_episodes=5,
                    elevations=(90.0, None, 60.0, 45.0, 30.0), cuda=True),
}
PRESET_NAMES = tuple(PRESETS)


def _check(name: str, preset: str) -> None:
    if name not in NAMES:
        raise ValueError(f"ablation {name!r} is unknown; allowed values: {', '.join(NAMES)}")
    if preset not in PRESETS:
        raise ValueError(f"preset {preset!r} is unknown; allowed values: {', '.join(PRESETS)}")


def _fmt(v) -> str:
    return v if isinstance(v, str) else f"{v:g}"


# ---------------------------------------------------------------------------------------------
# jobs

def settings_flags(settings: dict) -> list[str]:
    """Trainer flags of a full setting {sweep name: value} (every swept flag, explicitly)."""
    out = []
    for name in SWEEPS_ORDER:
        out += [SWEEPS[name].flag, _fmt(settings[name])]
    return out


def default_settings() -> dict:
    return {name: SWEEPS[name].default for name in SWEEPS_ORDER}


def _slug(settings: dict, location: dict | None = None) -> str:
    s = (f"{settings['reward']}_lr{_fmt(settings['lr'])}_clip{_fmt(settings['clip'])}"
         f"_ent{_fmt(settings['entropy'])}")
    if location and location["overrides"]:
        s += f"_at{location['lat']:.3f}_{location['lon']:.3f}"
    return s


def make_job(preset: Preset, work: Path, seed: int, settings: dict, location: dict | None = None,
             cuda: bool | None = None) -> TrainJob:
    overrides = {**preset.overrides, **(location["overrides"] if location else {})}
    wd = Path(work) / preset.name / SCENARIO / _slug(settings, location) / f"seed_{seed}"
    return TrainJob(ALGO, SCENARIO, seed, preset.total_timesteps, wd, overrides=overrides,
                    extra=[*preset.trainer_flags, *settings_flags(settings)],
                    cuda=preset.cuda if cuda is None else cuda, trainer_dir=preset.trainer_dir)


def sweep_jobs(name: str, preset: Preset, work: Path, seeds, cuda=None) -> list[tuple]:
    """[(value, seed, TrainJob)] of a hyperparameter ablation."""
    sw = SWEEPS[name]
    return [(v, s, make_job(preset, work, s, {**default_settings(), name: v}, cuda=cuda))
            for v in sw.values for s in seeds]


# ---------------------------------------------------------------------------------------------
# latitude / longitude

def _area_elevation(cfg) -> float:
    ch = cfg.channel
    return chn.satellite_elevation_deg(ch.area_latitude_deg, ch.area_longitude_deg,
                                       ch.subsatellite_latitude_deg, ch.subsatellite_longitude_deg,
                                       cfg.network.satellite_altitude_m)


def location_for_elevation(target_deg: float | None, base_overrides: dict | None = None) -> dict:
    """The service area on the line from the sub-satellite point through the default area where
    the satellite is seen at ``target_deg`` (None: the default area, no overrides)."""
    cfg = make_config(SCENARIO, **(base_overrides or {}))
    ch = cfg.channel
    if target_deg is None:
        return {"name": "default", "lat": ch.area_latitude_deg, "lon": ch.area_longitude_deg,
                "overrides": {}}
    s_lat, s_lon = ch.subsatellite_latitude_deg, ch.subsatellite_longitude_deg
    d_lat, d_lon = ch.area_latitude_deg - s_lat, ch.area_longitude_deg - s_lon

    def elev(t):
        return chn.satellite_elevation_deg(s_lat + t * d_lat, s_lon + t * d_lon, s_lat, s_lon,
                                           cfg.network.satellite_altitude_m)

    if target_deg >= 90.0:
        t = 0.0
    else:
        lo, hi = 0.0, 1.0
        while elev(hi) > target_deg:
            hi *= 2.0
            if hi > 1e3:
                raise ValueError(f"elevation {target_deg} deg is not reachable")
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if elev(mid) > target_deg else (lo, mid)
        t = 0.5 * (lo + hi)
    lat, lon = round(s_lat + t * d_lat, 3), round(s_lon + t * d_lon, 3)
    return {"name": f"el{target_deg:g}", "lat": lat, "lon": lon,
            "overrides": {"area_latitude_deg": lat, "area_longitude_deg": lon}}


def latlon_locations(preset: Preset) -> list[dict]:
    """Locations of the latlon ablation, in the order of the preset's target elevations."""
    locs = [location_for_elevation(t, preset.overrides) for t in preset.elevations]
    for loc in locs:
        loc.update(satellite_geometry({**preset.overrides, **loc["overrides"]}))
    return locs


def satellite_geometry(overrides: dict) -> dict:
    """Satellite-link quantities of a config that depend on the location, from the channel
    module's functions (area centre; per-region elevations from the topology)."""
    from ..topology import build_topology

    cfg = make_config(SCENARIO, **overrides)
    ch, env = cfg.channel, cfg.channel.ntn_environment
    el = _area_elevation(cfg)
    topo = build_topology(cfg, torch.device("cpu"))
    slant = chn.slant_range_m(el, cfg.network.satellite_altitude_m)
    el_t = torch.tensor([el], dtype=torch.float32)
    yes, no = torch.tensor([True]), torch.tensor([False])
    fspl = float(chn.fspl_db(torch.tensor([slant], dtype=torch.float64), cfg.network.carrier_hz))
    p_los = float(chn.ntn_los_probability(el_t, env))
    clutter = float(chn.ntn_clutter_loss_db(el_t, no, env))
    gas = float(chn.gas_loss_db(el_t, ch.gas_zenith_db))
    return {
        "elevation_deg": el,
        "elevation_regions_min_deg": float(topo.sat_elevation_deg.min()),
        "elevation_regions_max_deg": float(topo.sat_elevation_deg.max()),
        "slant_range_km": slant / 1e3, "fspl_db": fspl, "los_probability": p_los,
        "shadowing_los_db": float(chn.ntn_shadowing_sigma_db(el_t, yes, env)),
        "shadowing_nlos_db": float(chn.ntn_shadowing_sigma_db(el_t, no, env)),
        "clutter_loss_nlos_db": clutter, "gas_loss_db": gas,
        "mean_path_loss_db": fspl + gas + ch.scintillation_db + (1.0 - p_los) * clutter,
    }


def latlon_jobs(preset: Preset, work: Path, seeds, cuda=None) -> list[tuple]:
    """[(location name, seed, TrainJob)]: the default location (transfer source) and, when the
    preset retrains, every other location."""
    out = []
    for loc in latlon_locations(preset):
        if loc["overrides"] and not preset.latlon_retrain:
            continue
        out += [(loc["name"], s, make_job(preset, work, s, default_settings(), loc, cuda))
                for s in seeds]
    return out


# ---------------------------------------------------------------------------------------------
# evaluation helpers

def _final(curve, frac=0.25) -> float:
    if not curve:
        return math.nan
    n = max(1, round(len(curve) * frac))
    return statistics.fmean(v for _, v in curve[-n:])


def hdrl_rows(res, overrides: dict, eval_dir: Path, preset: Preset, base: dict,
              other_env: bool = False) -> tuple:
    """Per-seed rows of one trained run (sampled and argmax evaluations, final training means)
    and its env/reward training curve. ``other_env``: ``overrides`` differ from the run's own
    on purpose (a policy transferred to another location)."""
    sc = read_scalars(res.run_dir, ["env/reward", "env/spectral_efficiency"])
    train = {"train_final_reward": _final(sc["env/reward"]),
             "train_final_se": _final(sc["env/spectral_efficiency"]),
             "train_wall_s": res.wall_time_s}
    rows = []
    for mode in ("sampled", "argmax"):
        m = evaluate(ALGO, SCENARIO, EVAL_SEED, preset.eval_episodes, eval_dir / mode,
                     checkpoint=res.checkpoint, overrides=overrides, threads=1,
                     sample=mode == "sampled", other_env=other_env,
                     trainer_dir=preset.trainer_dir)["metrics"]
        rows.append({**base, "eval": mode, "unit": "training seed", "seed": res.job.seed,
                     **{k: m[k]["mean"] for k in SYSTEM_METRICS}, **train})
    return rows, sc["env/reward"]


def baseline_rows(policy: str, overrides: dict, preset: Preset, out_dir: Path,
                  base: dict) -> list[dict]:
    """One row per evaluation episode of a baseline (random / greedy) on the held-out seeds."""
    summ = evaluate(policy, SCENARIO, EVAL_SEED, preset.eval_episodes, out_dir,
                    overrides=overrides, threads=1)
    eps = read_csv(Path(out_dir) / "episodes.csv")
    assert len(eps) == summ["episodes"]
    return [{**base, "policy": policy, "eval": "-", "unit": "eval episode", "seed": e["seed"],
             **{k: float(e[k]) for k in SYSTEM_METRICS}} for e in eps]


# ---------------------------------------------------------------------------------------------
# running

def _load() -> list | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _device(cuda: bool) -> str:
    if cuda and torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})"
    return "cpu"


def _title(name: str, preset: Preset, seeds) -> str:
    net = ("small network: 4 subbands, 3 users/region, 40-step episodes"
           if preset.overrides == TINY_OVERRIDES else "paper network")
    return (f"{name} ablation, {preset.name} preset: {len(seeds)} seed"
            f"{'s' if len(seeds) > 1 else ''} x {preset.total_timesteps:,} steps, "
            f"{preset.eval_episodes} eval episodes ({net})")


def _footer(name, preset: Preset, seeds, cuda, t0, load0, results, argv) -> str:
    trained = [r for r in results if not r.reused]
    cfg = make_config(SCENARIO, **preset.overrides)
    lines = [
        "", f"- preset `{preset.name}`: training seeds {list(seeds)}, "
        f"{preset.total_timesteps} env steps per run, "
        f"HDRL ({trainer_file(ALGO, preset.trainer_dir).name}) on "
        f"`{SCENARIO}`, config overrides {json.dumps(preset.overrides)}"
        f" (episode {cfg.timing.episode_steps} steps), extra trainer flags "
        f"`{' '.join(preset.trainer_flags) or '-'}`; paper values of the unswept settings: "
        + ", ".join(f"{SWEEPS[k].flag} {_fmt(SWEEPS[k].default)}" for k in SWEEPS_ORDER),
        f"- evaluation: {preset.eval_episodes} held-out episodes, seeds {EVAL_SEED}.."
        f"{EVAL_SEED + preset.eval_episodes - 1}, identical for every value and policy; HDRL: "
        "`sampled` (actions sampled as in training), `argmax` (masked argmax, tntn_env.evaluate); "
        "`train` rows: `train_final_reward` / `train_final_se` = mean of the last quarter of the "
        "training iterations' env/reward / env/spectral_efficiency (sampled policy, training "
        "episodes)",
        "- mean ± 95% CI: Student t over training seeds (HDRL), over evaluation episodes "
        "(random, greedy: one evaluation)",
        f"- device: {_device(cuda)}; training: {len(results)} runs, {len(trained)} trained by "
        f"this command ({preset.workers} at a time), {len(results) - len(trained)} reused from "
        "an earlier one; wall time of a training process as measured when trained: mean "
        f"{statistics.fmean(r.wall_time_s for r in results):.0f} s, max "
        f"{max(r.wall_time_s for r in results):.0f} s; this command: "
        f"{time.time() - t0:.0f} s wall time; load average (1/5/15 min) at start {load0}, "
        f"at end {_load()}; "
        f"{os.cpu_count()} CPUs, torch {torch.__version__}, python {platform.python_version()}",
        f"- command: `python -m tntn_env.experiments.ablate {shlex.join(argv)}`",
    ]
    return "\n".join(lines) + "\n"


def run_sweep(name: str, preset: Preset, out: Path, work: Path, seeds, cuda: bool,
              workers: int, log=print, argv=()) -> dict:
    t0, load0 = time.time(), _load()
    sw = SWEEPS[name]
    jobs = sweep_jobs(name, preset, work, seeds, cuda)
    log(f"{name}: {len(jobs)} training runs ({len(sw.values)} values x {len(seeds)} seeds), "
        f"{workers} at a time; work folder {work}")
    results = train_all([j for _, _, j in jobs], workers=workers, log=log)
    rows, curves = [], {}
    for (v, s, job), res in zip(jobs, results):
        base = {"ablation": name, "value": _fmt(v), "policy": ALGO}
        r, curve = hdrl_rows(res, job.overrides, job.workdir / "eval", preset, base)
        rows += r
        curves.setdefault(_fmt(v), []).append(curve)
        log(f"  {sw.flag} {_fmt(v)} seed {s}: SE sampled {r[0]['spectral_efficiency']:.3f}, "
            f"argmax {r[1]['spectral_efficiency']:.3f} bit/s/Hz")
    ref_dir = Path(work) / preset.name / SCENARIO / "baselines"
    for pol in ("random", "greedy"):
        rows += baseline_rows(pol, preset.overrides, preset, ref_dir / f"{pol}_default",
                              {"ablation": name, "value": "-"})
    return _write(name, preset, out, seeds, cuda, rows, curves, results, t0, load0, argv,
                  by=("value", "policy", "eval"))


def run_latlon(preset: Preset, out: Path, work: Path, seeds, cuda: bool, workers: int,
               log=print, argv=()) -> dict:
    t0, load0 = time.time(), _load()
    locs = latlon_locations(preset)
    jobs = latlon_jobs(preset, work, seeds, cuda)
    log(f"latlon: {len(locs)} locations (elevation "
        + ", ".join(f"{loc['elevation_deg']:.1f}" for loc in locs)
        + f" deg), {len(jobs)} training runs, {workers} at a time; work folder {work}")
    results = train_all([j for _, _, j in jobs], workers=workers, log=log)
    trained = {(n, s): res for (n, s, _), res in zip(jobs, results)}
    geo_cols = ("lat", "lon", *satellite_geometry(preset.overrides))
    rows = []
    ref_dir = Path(work) / preset.name / SCENARIO / "baselines"
    for loc in locs:
        ov = {**preset.overrides, **loc["overrides"]}
        where = {"ablation": "latlon", "location": loc["name"],
                 **{k: loc[k] for k in geo_cols}}
        for s in seeds:
            src = trained[("default", s)]
            ev = src.job.workdir / "eval" / ("default" if not loc["overrides"] else
                                             f"at{loc['lat']:.3f}_{loc['lon']:.3f}")
            r, _ = hdrl_rows(src, ov, ev, preset, {**where, "policy": "hdrl_transfer"},
                             other_env=True)  # trained at the default location
            rows += r
            if not loc["overrides"]:  # at the default location, retrained = transferred runs
                rows += [{**x, "policy": "hdrl_retrained"} for x in r]
            elif (loc["name"], s) in trained:
                res = trained[(loc["name"], s)]
                r2, _ = hdrl_rows(res, ov, res.job.workdir / "eval" / "local", preset,
                                  {**where, "policy": "hdrl_retrained"})
                rows += r2
            log(f"  {loc['name']} ({loc['elevation_deg']:.1f} deg) seed {s}: transfer SE "
                f"sampled {r[0]['spectral_efficiency']:.3f}")
        for pol in ("random", "greedy"):
            rows += baseline_rows(pol, ov, preset, ref_dir / f"{pol}_{loc['name']}"
                                  f"_{loc['lat']:.3f}_{loc['lon']:.3f}", where)
    res = _write("latlon", preset, out, seeds, cuda, rows, {}, results, t0, load0, argv,
                 by=("location", "elevation_deg", "slant_range_km", "policy", "eval"),
                 metrics=("spectral_efficiency", "throughput_mbps"), locations=locs)
    return res


def _write(name, preset, out, seeds, cuda, rows, curves, results, t0, load0, argv, by,
           metrics=TABLE_METRICS, locations=None) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dev = _device(cuda)
    for r in rows:
        r.update({"preset": preset.name, "total_timesteps": preset.total_timesteps,
                  "device": dev})
    write_table(rows, out / "per_seed.csv", None, "")
    table = table_rows(rows, by, metrics)
    title = _title(name, preset, seeds)
    write_table(table, out / "table.csv", out / "table.md", title)
    footer = _footer(name, preset, seeds, cuda, t0, load0, results, argv)
    if locations:
        footer += _geometry_md(locations)
    with open(out / "table.md", "a") as f:
        f.write(footer)
    png = out / f"{name}.png"
    if name == "latlon":
        plot_latlon(rows, locations, png, title)
    else:
        plot_sweep(name, rows, curves, png, title)
    return {"out": out, "rows": rows, "table": table, "png": png}


def table_rows(rows, by, metrics=TABLE_METRICS) -> list[dict]:
    """The table of per-seed ``rows``: HDRL evaluation metrics per evaluation mode, HDRL final
    training metrics (once per run, ``eval`` = ``train``), then the baselines."""
    hd = [r for r in rows if r["unit"] == "training seed"]
    # training metrics once per run (latlon: under hdrl_retrained, which includes the runs at
    # the default location that hdrl_transfer evaluates elsewhere)
    tr = [{**r, "eval": "train"} for r in hd
          if r["eval"] == "sampled" and r["policy"] != "hdrl_transfer"]
    bl = [r for r in rows if r["unit"] != "training seed"]
    out = (aggregate(hd, metrics, by=by) + aggregate(tr, TRAIN_METRICS, by=by)
           + aggregate(bl, metrics, by=by))
    group = [k for k in by if k not in ("eval", "policy")]
    first: dict = {}
    for r in rows:
        first.setdefault(tuple(str(r.get(k)) for k in group), len(first))
    pol = {p: i for i, p in enumerate(("hdrl", "hdrl_transfer", "hdrl_retrained", "greedy",
                                       "random"))}
    mode = {"sampled": 0, "argmax": 1, "train": 2}
    return sorted(out, key=lambda r: (first.get(tuple(str(r.get(k)) for k in group), 0),
                                      pol.get(r.get("policy"), 9), mode.get(r.get("eval"), 3)))


def _geometry_md(locations) -> str:
    cols = (("location", "name", "{}"), ("lat (deg)", "lat", "{:.3f}"),
            ("lon (deg)", "lon", "{:.3f}"), ("elevation (deg)", "elevation_deg", "{:.1f}"),
            ("regions (deg)", None, None), ("slant range (km)", "slant_range_km", "{:.0f}"),
            ("FSPL (dB)", "fspl_db", "{:.1f}"), ("P(LoS)", "los_probability", "{:.3f}"),
            ("sigma SF LoS/NLoS (dB)", None, None),
            ("clutter NLoS (dB)", "clutter_loss_nlos_db", "{:.1f}"),
            ("gas (dB)", "gas_loss_db", "{:.2f}"),
            ("mean sat. path loss (dB)", "mean_path_loss_db", "{:.1f}"))
    lines = ["", "Satellite link by location (channel module, TR 38.811; HAP and terrestrial "
             "links do not change):", "", "| " + " | ".join(c[0] for c in cols) + " |",
             "|" + "|".join("---" for _ in cols) + "|"]
    for loc in locations:
        cells = []
        for head, key, fmt in cols:
            if head.startswith("regions"):
                cells.append(f"{loc['elevation_regions_min_deg']:.1f}-"
                             f"{loc['elevation_regions_max_deg']:.1f}")
            elif head.startswith("sigma"):
                cells.append(f"{loc['shadowing_los_db']:.1f} / {loc['shadowing_nlos_db']:.1f}")
            else:
                cells.append(fmt.format(loc[key]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# figures

def _stats(rows, key, **match):
    xs = [r[key] for r in rows if all(r.get(k) == v for k, v in match.items())]
    return mean_ci95(xs)


def _err(ci):
    return 0.0 if not math.isfinite(ci) else ci


METRIC_LABELS = {"spectral_efficiency": "spectral efficiency (bit/s/Hz)",
                 "throughput_mbps": "mean user throughput (Mbit/s)"}


def plot_sweep(name, rows, curves, png, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sw = SWEEPS[name]
    vals = [_fmt(v) for v in sw.values]
    x = list(range(len(vals)))
    ticks = [f"{v}\n(paper)" if v == _fmt(sw.default) else v for v in vals]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.1))
    for ax, metric in zip(axes[:2], ("spectral_efficiency", "throughput_mbps")):
        top = 1e-9  # top of the HDRL error bars
        for mode, style, col, dx in (("sampled", "o-", "tab:blue", -0.04),
                                     ("argmax", "s--", "tab:cyan", 0.04)):
            st = [_stats(rows, metric, value=v, policy=ALGO, eval=mode) for v in vals]
            top = max(top, *(m + _err(c) for m, c in st if math.isfinite(m)))
            ax.errorbar([xi + dx for xi in x], [m for m, _ in st], yerr=[_err(c) for _, c in st],
                        fmt=style, color=col, capsize=4, label=f"HDRL ({mode})")
        off = []
        for pol, col in (("random", "gray"), ("greedy", "tab:purple")):
            m, _ = _stats(rows, metric, policy=pol)
            ax.axhline(m, color=col, ls=":", label=f"{pol} (mean over eval episodes)")
            if m > 1.5 * top:  # keep the HDRL differences readable: say it, off the axis
                off.append(f"{pol}: {m:.3g}, above the axis")
        if off:
            ax.set_ylim(top=1.05 * top)
        ax.set_xticks(x, ticks)
        ax.set_xlabel(sw.label)
        ax.set_ylabel(METRIC_LABELS[metric])
        ax.set_title(f"held-out evaluation: {METRIC_LABELS[metric].split(' (')[0]}"
                     + (f"\n({'; '.join(off)})" if off else ""), fontsize=10)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9,
               bbox_to_anchor=(0.36, 0.0))
    ax = axes[2]
    for i, v in enumerate(vals):
        runs = curves.get(v, [])
        steps = sorted({s for c in runs for s, _ in c})
        if not steps:
            continue
        per = [[dict(c).get(s) for c in runs] for s in steps]
        per = [[y for y in ys if y is not None] for ys in per]
        mean = [statistics.fmean(ys) for ys in per]
        col = f"C{i}"
        ax.plot(steps, mean, color=col, label=ticks[i].replace("\n", " "))
        if len(runs) > 1:
            ax.fill_between(steps, [min(ys) for ys in per], [max(ys) for ys in per], color=col,
                            alpha=0.15)
    ax.set_xlabel("env steps")
    ax.set_ylabel("training reward per step (env/reward)")
    ax.set_title("training curves (mean; band: min..max over seeds)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.suptitle(f"{title}\nerror bars: 95% CI over training seeds", fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(png, dpi=100)
    plt.close(fig)


def plot_latlon(rows, locations, png, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    locs = sorted(locations, key=lambda loc: loc["elevation_deg"])
    els = [loc["elevation_deg"] for loc in locs]
    series = (("hdrl_transfer", "sampled", "o-", "tab:blue", "HDRL trained at default location"),
              ("hdrl_retrained", "sampled", "^-", "tab:green", "HDRL retrained per location"),
              ("greedy", "-", "s-", "tab:purple", "greedy heuristic"),
              ("random", "-", "x:", "gray", "random"))
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.1))
    for ax, metric in zip(axes[:2], ("spectral_efficiency", "throughput_mbps")):
        lo, hi = math.inf, 0.0
        for i, (pol, mode, style, col, label) in enumerate(series):
            st = [_stats(rows, metric, location=loc["name"], policy=pol, eval=mode)
                  for loc in locs]
            if all(math.isnan(m) for m, _ in st):
                continue
            dx = 0.8 * (i - 1.5)  # dodge the error bars of the policies a little (deg)
            ax.errorbar([e + dx for e in els], [m for m, _ in st], yerr=[_err(c) for _, c in st],
                        fmt=style, color=col, capsize=4, label=label)
            lo, hi = min(lo, *(m for m, _ in st)), max(hi, *(m for m, _ in st))
        if lo > 0 and hi / lo > 8:  # greedy far above the learned policies: log axis, limits
            ax.set_yscale("log")  # from the means (a CI reaching below 0 runs off the axis)
            ax.set_ylim(lo / 2.0, hi * 2.0)
            ax.yaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
            ax.yaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_xlabel("satellite elevation angle (deg)")
        ax.set_ylabel(METRIC_LABELS[metric] + (" (log)" if ax.get_yscale() == "log" else ""))
        ax.set_title(f"held-out evaluation: {METRIC_LABELS[metric].split(' (')[0]}", fontsize=10)
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=8)
    ax = axes[2]
    ax.plot(els, [loc["mean_path_loss_db"] for loc in locs], "o-", color="tab:red",
            label="mean path loss")
    ax.plot(els, [loc["fspl_db"] for loc in locs], "o--", color="tab:orange", label="FSPL")
    ax.set_xlabel("satellite elevation angle (deg)")
    ax.set_ylabel("satellite path loss (dB)")
    ax2 = ax.twinx()
    ax2.plot(els, [100 * loc["los_probability"] for loc in locs], "d:", color="tab:gray",
             label="P(LoS)")
    ax2.set_ylabel("LoS probability (%)")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="center right")
    ax.set_title("satellite link vs elevation (TR 38.811)", fontsize=10)
    ax.grid(alpha=0.3)
    fig.suptitle(f"{title}\nHDRL: sampled policy; error bars: 95% CI over training seeds "
                 "(baselines: over eval episodes)", fontsize=10)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# command line

def planned_jobs(name: str, preset: str | Preset = "quick", work="runs/ablations/work",
                 seeds=None, cuda=None, trainer_dir=None) -> list[tuple]:
    """The training jobs an ablation would run: [(value or location, seed, TrainJob)]."""
    if isinstance(preset, str):
        _check(name, preset)
        preset = PRESETS[preset]
    elif name not in NAMES:
        _check(name, "quick")
    if trainer_dir is not None:
        preset = replace(preset, trainer_dir=trainer_dir)
    seeds = tuple(seeds or preset.seeds)
    if name == "all":
        return [j for n in ABLATIONS for j in planned_jobs(n, preset, work, seeds, cuda)]
    if name == "latlon":
        return latlon_jobs(preset, Path(work), seeds, cuda)
    return sweep_jobs(name, preset, Path(work), seeds, cuda)


def run(name: str, preset: str = "quick", out=None, work="runs/ablations/work", seeds=None,
        workers=None, cuda=None, log=print, argv=(), trainer_dir=None) -> dict:
    """Run one ablation (or ``all``); returns {name: {"out", "rows", "table", "png"}}."""
    _check(name, preset)
    p = replace(PRESETS[preset], trainer_dir=trainer_dir)
    if cuda is not None:
        p = replace(p, cuda=cuda)
    if workers is not None:
        if workers < 1:
            raise ValueError("--workers must be >= 1")
        p = replace(p, workers=workers)
    seeds = tuple(seeds or p.seeds)
    if not argv:  # called from Python: the equivalent command line, for the table's footer
        argv = [name, "--preset", preset, "--work", str(work), "--seeds",
                ",".join(map(str, seeds))] + (["--out", str(out)] if out else [])
    names = ABLATIONS if name == "all" else (name,)
    res = {}
    for n in names:
        if name == "all":
            o = Path(out or "runs/ablations") / n
        else:
            o = Path(out or Path("runs/ablations") / n)
        if n == "latlon":
            res[n] = run_latlon(p, o, Path(work), seeds, p.cuda, p.workers, log, argv)
        else:
            res[n] = run_sweep(n, p, o, Path(work), seeds, p.cuda, p.workers, log, argv)
        log(f"wrote {res[n]['png']}, {o / 'per_seed.csv'}, {o / 'table.csv'}, {o / 'table.md'}")
    return res


@dataclass
class Args:
    """HDRL ablations of the paper's Section 5: one figure and one table per ablation."""

    name: Annotated[Literal[NAMES], tyro.conf.Positional]
    """ablation: reward, lr, clip, entropy, latlon, or all of them in turn"""
    preset: Literal[PRESET_NAMES] = "quick"
    """budgets: tiny (tests), quick (~2-3 min each on 2 CPUs), paper"""
    out: str | None = None
    """deliverables folder (None: runs/ablations/<name>; with 'all': <out>/<name>)"""
    work: str = "runs/ablations/work"
    """training runs and evaluation files (shared by the ablations)"""
    workers: int | None = None
    """training subprocesses at a time (None: the preset's, 2)"""
    seeds: str | None = None
    """training seeds, e.g. 1,2,3 or 1-5 (None: the preset's)"""
    cuda: bool = False
    """train on CUDA when available (default without --cuda / --no-cuda: paper preset only)"""
    no_cuda: bool = False
    """train on the CPU (also the paper preset)"""
    dry_run: bool = False
    """print the training commands without running anything"""
    trainer_dir: str | None = None
    """folder of the trainer files (None: the repository's trainers/)"""


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(Args, argv, PROG, Args.__doc__)
    if args.cuda and args.no_cuda:
        usage_error(PROG, "--cuda and --no-cuda: give one of them")
    cuda = True if args.cuda else False if args.no_cuda else None
    try:
        seeds = parse_seeds(args.seeds) if args.seeds else None
        if args.dry_run:
            jobs = planned_jobs(args.name, args.preset, args.work, seeds, cuda, args.trainer_dir)
            seen = set()
            for v, s, job in jobs:
                if job.workdir in seen:  # 'all': the run at the paper's values is shared
                    print(f"[{_fmt(v)} seed {s}] same run as above: {job.workdir}")
                    continue
                seen.add(job.workdir)
                print(f"[{_fmt(v)} seed {s}] cd {job.workdir} && {shlex.join(job.command())}")
            return 0
        trainer_file(ALGO, args.trainer_dir)  # early and clear when there is no trainer file
        run(args.name, args.preset, args.out, args.work, seeds, args.workers, cuda,
            argv=argv, trainer_dir=args.trainer_dir)
    except (ValueError, RuntimeError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2 if isinstance(e, ValueError) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
