"""The reproduction command end to end on the tiny preset: every figure, every CSV, every claim
row, and the claim table recomputed here from the CSVs it wrote."""

import csv
import math
import shutil
import statistics
import subprocess
import sys

import pytest

from tntn_env.experiments import reproduce as rp

FIGURES = ("fig3a_decision_time.png", "fig3b_spectral_efficiency.png", "fig3c_throughput.png",
           "fig3d_training_reward.png", "fig3e_sum_rate_vs_power.png",
           "fig3f_utilisation_surface.png")
DATA = ("fig3a_decision_time.csv", "fig3b_spectral_efficiency.csv", "fig3c_throughput.csv",
        "fig3c_throughput_episodes.csv", "fig3d_training_reward.csv",
        "fig3e_sum_rate_vs_power.csv", "fig3f_utilisation.csv", "claims.csv")


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce") / "tiny"
    cmd = [sys.executable, "-m", "tntn_env.experiments.reproduce", "--preset", "tiny",
           "--out", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return out, res.stdout


@pytest.mark.slow
def test_every_figure_and_table(tiny):
    out, stdout = tiny
    for name in FIGURES:
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, name
    for name in DATA:
        assert rows(out / name), f"{name} is empty"
    claims = rows(out / "claims.csv")
    assert [c["claim"] for c in claims] == [c[0] for c in rp.CLAIMS]
    assert all(c["holds"] in ("yes", "no") for c in claims)
    md = (out / "results.md").read_text()
    for c in claims:
        assert c["text"] in md and c["measured"] in md
        assert (("HOLDS" if c["holds"] == "yes" else "FAILS") + f"  {c['text']}") in stdout
    meta = (out / "meta.json").read_text()
    assert '"torch"' in meta and '"wall_time_s"' in meta and '"seeds"' in meta
    # every algorithm in (a), every scenario x algorithm in (b), both axes of (f)
    assert {r["algorithm"] for r in rows(out / "fig3a_decision_time.csv")} == {
        "exhaustive", "hdrl", "mappo", "ppo_single", "random", "greedy"}
    b = rows(out / "fig3b_spectral_efficiency.csv")
    assert {(r["scenario"], r["algorithm"]) for r in b} == {
        (s, a) for s in rp.SCENARIOS for a in (*rp.ALGOS, *rp.BASELINES)}
    f = rows(out / "fig3f_utilisation.csv")
    assert len({r["user_density_norm"] for r in f}) == len(rp.PRESETS["tiny"].densities)
    assert len({r["local_avg_power_dbm"] for r in f}) == len(rp.PRESETS["tiny"].power_offsets_db)
    assert max(float(r["utilisation_norm"]) for r in f) == pytest.approx(1.0)
    # (d) normalised to [0, 1] over all curves, all three scenarios present
    d = rows(out / "fig3d_training_reward.csv")
    assert {r["scenario"] for r in d} == set(rp.SCENARIOS)
    norm = [float(r["normalised"]) for r in d]
    assert min(norm) == pytest.approx(0.0) and max(norm) == pytest.approx(1.0)


def _mean(rs, algo, key, scenario=None):
    return statistics.fmean(float(r[key]) for r in rs if r["algorithm"] == algo
                            and (scenario is None or r["scenario"] == scenario))


@pytest.mark.slow
def test_claims_recomputed_from_csvs(tiny):
    out, _ = tiny
    b = rows(out / "fig3b_spectral_efficiency.csv")
    a = {r["algorithm"]: float(r["decision_time_ms"])
         for r in rows(out / "fig3a_decision_time.csv")}
    c = rows(out / "fig3c_throughput_episodes.csv")
    want = {
        "se_vs_exhaustive": _mean(b, "hdrl", "spectral_efficiency", "sag")
        / _mean(b, "exhaustive", "spectral_efficiency", "sag"),
        "speed_vs_exhaustive": a["exhaustive"] / a["hdrl"],
        "speed_vs_madrl": a["mappo"] / a["hdrl"],
        "thr_vs_madrl": _mean(c, "hdrl", "throughput_mbps") / _mean(c, "mappo", "throughput_mbps")
        - 1,
        "thr_vs_sadrl": _mean(c, "hdrl", "throughput_mbps")
        / _mean(c, "ppo_single", "throughput_mbps") - 1,
        "thr_vs_random": _mean(c, "hdrl", "throughput_mbps")
        / _mean(c, "random", "throughput_mbps") - 1,
        "se_vs_madrl": _mean(b, "hdrl", "spectral_efficiency", "sag")
        / _mean(b, "mappo", "spectral_efficiency", "sag") - 1,
        "se_vs_sadrl": _mean(b, "hdrl", "spectral_efficiency", "sag")
        / _mean(b, "ppo_single", "spectral_efficiency", "sag") - 1,
        "se_vs_random": _mean(b, "hdrl", "spectral_efficiency", "sag")
        / _mean(b, "random", "spectral_efficiency", "sag") - 1,
    }
    thresholds = {cid: t for cid, _, _, _, t in rp.CLAIMS}
    got = {r["claim"]: r for r in rows(out / "claims.csv")}
    for cid, v in want.items():
        assert float(got[cid]["value"]) == pytest.approx(v, rel=1e-5), cid
        assert got[cid]["holds"] == ("yes" if v >= thresholds[cid] else "no"), cid
    # training-reward order: mean of the last 20% of each seed's curve, then over seeds
    d = rows(out / "fig3d_training_reward.csv")
    final = {}
    for s in rp.SCENARIOS:
        per_seed = []
        for seed in {r["seed"] for r in d if r["scenario"] == s}:
            ys = [float(r["reward"]) for r in d if r["scenario"] == s and r["seed"] == seed]
            per_seed.append(statistics.fmean(ys[-max(1, len(ys) // 5):]))
        final[s] = statistics.fmean(per_seed)
    holds = final["sag"] > final["ag"] > final["uav"]
    assert got["reward_order"]["holds"] == ("yes" if holds else "no")


@pytest.mark.slow
def test_claims_follow_the_data(tiny, tmp_path):
    """Edit the data: the verdicts change with it (the table is computed, not written)."""
    out, _ = tiny
    for name in DATA:
        shutil.copy(out / name, tmp_path / name)
    b = rows(tmp_path / "fig3b_spectral_efficiency.csv")
    ex = _mean(b, "exhaustive", "spectral_efficiency", "sag")
    for r in b:
        if r["scenario"] == "sag" and r["algorithm"] == "hdrl":
            r["spectral_efficiency"] = str(0.96 * ex)
    rp.write_csv(tmp_path / "fig3b_spectral_efficiency.csv", b)
    dt = rows(tmp_path / "fig3a_decision_time.csv")
    for r in dt:
        r["decision_time_ms"] = {"exhaustive": "100", "hdrl": "1", "mappo": "3"}.get(
            r["algorithm"], r["decision_time_ms"])
    rp.write_csv(tmp_path / "fig3a_decision_time.csv", dt)
    claims = {c["claim"]: c for c in rp.compute_claims(tmp_path)}
    assert claims["se_vs_exhaustive"]["holds"] == "yes"
    assert float(claims["se_vs_exhaustive"]["value"]) == pytest.approx(0.96)
    assert claims["speed_vs_exhaustive"]["holds"] == "yes"  # 100x
    assert claims["speed_vs_madrl"]["holds"] == "no"  # 3x < 3.75x
    assert claims["speed_vs_madrl"]["same_direction"] == "yes"
    assert math.isclose(float(claims["speed_vs_madrl"]["value"]), 3.0)


def test_bad_arguments(capsys):
    for argv, word in ((["--preset", "huge"], "invalid choice"), (["--workers", "0"], ">= 1"),
                       (["--seeds", "a,b"], "comma-separated")):
        with pytest.raises(SystemExit) as e:
            rp.main(argv)
        assert e.value.code == 2 and word in capsys.readouterr().err, argv
