"""The ablation command (tntn_env.experiments.ablate): reward and latlon end to end on the tiny
preset (figure, per-seed CSV, table recomputed from the per-seed CSV), the other ablations through
the jobs they would run (each swept value reaches the trainer command line), bad names."""

import csv
import math

import pytest

from tntn_env import channel as chn
from tntn_env import make_config
from tntn_env.config import TINY_OVERRIDES
from tntn_env.experiments import ablate
from tntn_env.experiments.launch import mean_ci95


def quiet(*_):
    pass


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """One work folder for the module: latlon reuses reward's run at the paper's settings."""
    return tmp_path_factory.mktemp("ablate_work")


def check_table(out, by):
    """Every number of table.csv recomputed from per_seed.csv (mean, 95% CI, n)."""
    per, table = read(out / "per_seed.csv"), read(out / "table.csv")
    assert table
    for t in table:
        mode = "sampled" if t["eval"] == "train" else t["eval"]
        xs = [float(r[t["metric"]]) for r in per
              if all(r[k] == t[k] for k in by if k != "eval") and r["eval"] == mode]
        assert len(xs) == int(t["n"]), t
        m, ci = mean_ci95(xs)
        assert float(t["mean"]) == pytest.approx(m, rel=1e-9, abs=1e-12), t
        if math.isfinite(ci):
            assert float(t["ci95"]) == pytest.approx(ci, rel=1e-9), t
        else:
            assert t["ci95"] in ("nan", "")
    md = (out / "table.md").read_text()
    assert "mean ± 95% CI" in md and "tiny preset" in md
    for word in ("training seeds", "device: cpu", "wall time", "load average", "eval"):
        assert word in md, word
    return per, table


@pytest.mark.slow
def test_reward_tiny_end_to_end(work, tmp_path):
    out = tmp_path / "reward"
    ablate.run("reward", "tiny", out=out, work=work, log=quiet)
    png = out / "reward.png"
    assert png.stat().st_size < 400_000 and png.read_bytes()[:4] == b"\x89PNG"
    per, table = check_table(out, ("value", "policy", "eval"))
    hd = [r for r in per if r["policy"] == "hdrl"]
    values = [r["value"] for r in hd if r["eval"] == "sampled"]
    assert values == list(ablate.SWEEPS["reward"].values)
    assert {r["eval"] for r in hd} == {"sampled", "argmax"}
    assert {r["policy"] for r in per} == {"hdrl", "random", "greedy"}
    assert all(float(r["spectral_efficiency"]) >= 0 for r in per)
    # the same held-out evaluation seeds for every baseline (and every run, by construction)
    assert [r["seed"] for r in per if r["policy"] == "random"] == ["10000", "10001"]
    assert {r["metric"] for r in table} >= {"spectral_efficiency", "throughput_mbps",
                                            "train_final_reward"}


@pytest.mark.slow
def test_latlon_tiny_end_to_end(work, tmp_path):
    out = tmp_path / "latlon"
    res = ablate.run("latlon", "tiny", out=out, work=work, log=quiet)["latlon"]
    assert res["png"].exists() and res["png"].stat().st_size < 400_000
    per, _ = check_table(out, ("location", "elevation_deg", "slant_range_km", "policy", "eval"))
    names = ["el90", "default", "el30"]  # the tiny preset's targets 90, default (~75), 30 deg
    el = {n: float(next(r for r in per if r["location"] == n)["elevation_deg"]) for n in names}
    assert el["el90"] > el["default"] > el["el30"]  # monotone as designed
    assert el["el90"] > 89.0 and el["el30"] == pytest.approx(30.0, abs=0.5)
    for n in names:  # the table's elevation is the channel function's, from the config
        r = next(r for r in per if r["location"] == n)
        cfg = make_config("sag", **{**TINY_OVERRIDES, "area_latitude_deg": float(r["lat"]),
                                    "area_longitude_deg": float(r["lon"])})
        ch = cfg.channel
        assert el[n] == pytest.approx(chn.satellite_elevation_deg(
            ch.area_latitude_deg, ch.area_longitude_deg, ch.subsatellite_latitude_deg,
            ch.subsatellite_longitude_deg, cfg.network.satellite_altitude_m), abs=1e-9)
        pols = {x["policy"] for x in per if x["location"] == n}
        assert pols == {"hdrl_transfer", "hdrl_retrained", "greedy", "random"}
    d = make_config("sag").channel
    r = next(r for r in per if r["location"] == "default")
    assert (float(r["lat"]), float(r["lon"])) == (d.area_latitude_deg, d.area_longitude_deg)
    slant = [float(next(r for r in per if r["location"] == n)["slant_range_km"]) for n in names]
    assert slant[0] < slant[1] < slant[2]
    assert "Satellite link by location" in (out / "table.md").read_text()


@pytest.mark.parametrize("name", ["reward", "lr", "clip", "entropy"])
def test_sweep_jobs_pass_the_value(name, tmp_path):
    sw, preset = ablate.SWEEPS[name], ablate.PRESETS["quick"]
    jobs = ablate.planned_jobs(name, "quick", work=tmp_path)
    assert len(jobs) == len(sw.values) * len(preset.seeds)
    assert [v for v, s, _ in jobs if s == preset.seeds[0]] == list(sw.values)
    for v, s, job in jobs:
        cmd = job.command()
        assert cmd[cmd.index("--seed") + 1] == str(s)
        assert cmd[cmd.index("--total-timesteps") + 1] == str(preset.total_timesteps)
        got = cmd[cmd.index(sw.flag) + 1]
        assert got == v if isinstance(v, str) else float(got) == v
        for other in set(ablate.SWEEPS) - {name}:  # the unswept settings at the paper's values
            o = ablate.SWEEPS[other]
            val = cmd[cmd.index(o.flag) + 1]
            assert val == o.default if isinstance(o.default, str) else float(val) == o.default
    # the run at the paper's values is one shared job (same folder and command in every sweep)
    (default,) = [j for v, s, j in jobs if v == sw.default and s == 1]
    (other,) = [j for v, s, j in ablate.planned_jobs("clip", "quick", work=tmp_path)
                if v == 0.2 and s == 1]
    assert default.workdir == other.workdir and default.command() == other.command()


def test_dry_run_cli_and_presets(tmp_path, capsys):
    assert ablate.main(["entropy", "--preset", "paper", "--dry-run", "--work",
                        str(tmp_path), "--seeds", "1-3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 9 and not list(tmp_path.iterdir())  # nothing trained
    assert all("--total-timesteps 500000" in ln and " --cuda" in ln for ln in lines)
    assert sum("--ent-coef 0.05" in ln for ln in lines) == 3
    tiny = ablate.planned_jobs("lr", "tiny", work=tmp_path)[0][2].command()
    assert "--num-envs" in tiny and tiny[tiny.index("--total-timesteps") + 1] == "160"
    # latlon: transfer source at the default location, retrained at every other one
    jobs = ablate.planned_jobs("latlon", "quick", work=tmp_path)
    locs = ablate.latlon_locations(ablate.PRESETS["quick"])
    assert [x["name"] for x in locs] == ["el90", "default", "el50", "el30"]
    els = [x["elevation_deg"] for x in locs]
    assert els == sorted(els, reverse=True)
    for name, _, job in jobs:
        loc = next(x for x in locs if x["name"] == name)
        assert {k: job.overrides[k] for k in loc["overrides"]} == loc["overrides"]
        assert ("area_latitude_deg" in job.overrides) == (name != "default")
    assert len(jobs) == 2 * len(locs)


def test_bad_name_and_preset(capsys):
    with pytest.raises(ValueError, match="allowed values: reward, lr, clip, entropy, latlon, all"):
        ablate.run("bogus", "tiny")
    with pytest.raises(ValueError, match="allowed values: tiny, quick, paper"):
        ablate.planned_jobs("lr", "huge")
    for argv in (["bogus"], ["lr", "--preset", "huge"]):
        with pytest.raises(SystemExit) as e:
            ablate.main(argv)
        assert e.value.code == 2
    err = " ".join(capsys.readouterr().err.replace("\u2502", " ").split())  # tyro's boxed text
    assert "invalid choice 'bogus'" in err and "invalid choice 'huge'" in err
    assert "('reward', 'lr', 'clip', 'entropy', 'latlon', 'all')" in err
    assert "('tiny', 'quick', 'paper')" in err
