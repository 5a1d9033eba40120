"""The orbit option (docs/model.md, Orbit): geometry by hand, SGP4 against a two-body orbit and
skyfield, link budgets against TR 38.811 by hand, the core with the option on and off, masks,
PettingZoo's checks and bad input."""

from __future__ import annotations

import datetime as dt
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from handcalc import sample_masked
from sgp4.api import SatrecArray

from tntn_env import TNTNCore, make_config, parallel_env
from tntn_env import orbit as orb
from tntn_env.links import ntn_gain_db

R_M, H_M = 6_371_000.0, 550e3
EPOCH = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
# a small network and a short episode whose steps span one pass (culmination at step 10)
SMALL = dict(users_per_region=3, num_subbands=4, power_levels=(0.5, 1.0), episode_steps=20,
             step_duration_s=30.0, satellite_interval=4, hap_interval=2, orbit_enabled=True)


# ------------------------------------------------------------------------- geometry by hand
def _circular_overhead(psi_rad):
    """Satellite at central angle psi from a ground point at (lat 0, lon 0) of the sphere, on
    a great circle through its zenith: ECEF (m)."""
    r = R_M + H_M
    return np.stack([r * np.cos(psi_rad), r * np.sin(psi_rad), np.zeros_like(psi_rad)], -1)


def test_overhead_pass_geometry_by_hand():
    g, up = orb.ground_ecef(np.array(0.0), np.array(0.0), ellipsoid=False)
    el, rng = orb.look_angles(_circular_overhead(np.array(0.0)), g, up)
    assert el == pytest.approx(90.0, abs=1e-9)
    assert rng == pytest.approx(H_M, abs=1e-6)  # closest approach: the altitude
    # two other instants, spherical-Earth formula written out:
    # psi = 5 deg: el = atan2(cos psi - R/(R+h), sin psi) = atan2(0.99619 - 0.92053, 0.08716)
    #            = 40.96 deg; range = sqrt(R^2 + (R+h)^2 - 2 R (R+h) cos psi) = 798.8 km
    # psi = 12 deg: el = atan2(0.97815 - 0.92053, 0.20791) = 15.49 deg; range = 1,493.2 km
    for psi_deg, el_hand, rng_hand in ((5.0, 40.96, 798.8e3), (12.0, 15.49, 1493.2e3)):
        el, rng = orb.look_angles(_circular_overhead(np.radians(psi_deg)), g, up)
        assert el == pytest.approx(el_hand, abs=0.01)
        assert rng == pytest.approx(rng_hand, abs=0.1e3)


def _two_body_teme(inc, raan, ma0, n, t):
    """Circular two-body position (m) at t seconds from epoch (argument of perigee 0)."""
    u = ma0 + n * t
    a = (orb.MU_WGS72_KM3_S2 * 1e9 / n ** 2) ** (1 / 3)
    return a * np.stack([np.cos(u) * np.cos(raan) - np.sin(u) * np.cos(inc) * np.sin(raan),
                         np.cos(u) * np.sin(raan) + np.sin(u) * np.cos(inc) * np.cos(raan),
                         np.sin(u) * np.sin(inc)], -1)


def test_sgp4_track_agrees_with_two_body_circular_orbit():
    """SGP4 adds J2 (and the mean-element conversion) to the two-body orbit: over a 10-minute
    pass the positions agree to 25 km and the elevations seen from the aimed area to 1.5 deg
    (stated tolerance, docs/model.md, Orbit)."""
    raan, ma = orb.aimed_elements(37.43, -122.17, H_M, 53.0, EPOCH, 300.0)
    l1, l2 = orb.synthetic_tle(H_M, 53.0, raan, ma, EPOCH)
    sat = orb.parse_tle(*orb.read_tle((l1, l2)))
    t = np.arange(0.0, 601.0, 30.0)
    jd = orb._jd(EPOCH) + t / 86400.0
    whole = np.floor(jd - 0.5) + 0.5
    err, r_km, _ = SatrecArray([sat]).sgp4(whole, jd - whole)
    assert not err.any()
    n = math.sqrt(orb.MU_WGS72_KM3_S2 * 1e9 / (R_M + H_M) ** 3)
    ref = _two_body_teme(math.radians(53.0), math.radians(raan), math.radians(ma), n, t)
    assert np.linalg.norm(r_km[0] * 1e3 - ref, axis=-1).max() < 25e3
    g, up = orb.ground_ecef(np.array(37.43), np.array(-122.17))
    gm = orb.gmst_rad(jd)
    el_sgp4, _ = orb.look_angles(orb.teme_to_ecef(r_km[0] * 1e3, gm), g, up)
    el_2b, _ = orb.look_angles(orb.teme_to_ecef(ref, gm), g, up)
    assert np.abs(el_sgp4 - el_2b).max() < 1.5
    assert el_2b.max() > 85.0  # aimed: the two-body pass culminates near the zenith


def test_elevation_matches_skyfield():
    """The frame approximation (TEME -> Earth-fixed by GMST, UT1 = UTC, no polar motion)
    against skyfield's full reduction: within 0.1 deg over a pass."""
    sf = pytest.importorskip("skyfield.api")
    raan, ma = orb.aimed_elements(37.43, -122.17, H_M, 53.0, EPOCH, 300.0)
    l1, l2 = orb.synthetic_tle(H_M, 53.0, raan, ma, EPOCH)
    sat = orb.parse_tle(l1, l2)
    ts = sf.load.timescale(builtin=True)
    es = sf.EarthSatellite(l1, l2, ts=ts)
    here = sf.wgs84.latlon(37.43, -122.17, elevation_m=1.5)
    t = np.arange(0.0, 601.0, 60.0)
    tt = ts.utc(2025, 1, 1, 0, 0, t)
    alt, _, dist = (es - here).at(tt).altaz()
    jd = orb._jd(EPOCH) + t / 86400.0
    g, up = orb.ground_ecef(np.array(37.43), np.array(-122.17), 1.5)
    el, rng = orb.look_angles(orb.propagate([sat], jd)[0], g, up)
    np.testing.assert_allclose(el, alt.degrees, atol=0.1)
    np.testing.assert_allclose(rng, dist.m, rtol=2e-4)


# ------------------------------------------------------------------------- link budgets
@pytest.mark.parametrize("el_deg,d_m,los_db,nlos_db", [
    # TR 38.811 by hand, Ka band 28 GHz, urban, satellite 38.5 dBi, UE 0 dBi, h = 550 km:
    # d = sqrt(R^2 sin^2 el + h^2 + 2 h R) - R sin el (eq. 6.6-3, R = 6,371 km)
    # FSPL = 32.45 + 20 log10(28) + 20 log10(d / m) (eq. 6.6-2); gas 0.32 / sin(el) (6.6.4);
    # scintillation 0.3 dB; LoS gain = 38.5 - FSPL - gas - 0.3; NLoS adds the clutter loss of
    # Table 6.6.2-1 urban: 44.3 / 37.5 / 33.8 / 32.9 dB at 10 / 30 / 60 / 90 deg.
    (10.0, 1_815_079.0, 38.5 - (186.57 + 1.843 + 0.3), 38.5 - (186.57 + 1.843 + 0.3 + 44.3)),
    (30.0, 992_778.0, 38.5 - (181.33 + 0.640 + 0.3), 38.5 - (181.33 + 0.640 + 0.3 + 37.5)),
    (60.0, 626_885.0, 38.5 - (177.34 + 0.370 + 0.3), 38.5 - (177.34 + 0.370 + 0.3 + 33.8)),
    (90.0, 550_000.0, 38.5 - (176.20 + 0.320 + 0.3), 38.5 - (176.20 + 0.320 + 0.3 + 32.9)),
])
def test_satellite_link_budget_vs_tr38811(el_deg, d_m, los_db, nlos_db):
    core = TNTNCore(make_config("sag", **SMALL))
    s = math.sin(math.radians(el_deg))
    assert math.sqrt(R_M ** 2 * s * s + H_M ** 2 + 2 * H_M * R_M) - R_M * s == pytest.approx(
        d_m, abs=1.0)
    el = torch.tensor([el_deg])
    d3 = torch.tensor([d_m])
    zero = torch.zeros(1)
    g_los, los = ntn_gain_db(core, d3, el, zero, zero, 38.5, "urban")  # u = 0 < P_LoS: LoS
    g_nlos, nlos = ntn_gain_db(core, d3, el, zero, torch.ones(1), 38.5, "urban")
    assert bool(los) and not bool(nlos)
    assert float(g_los) == pytest.approx(los_db, abs=0.05)
    assert float(g_nlos) == pytest.approx(nlos_db, abs=0.05)


def test_core_satellite_rows_follow_the_pass():
    """Same seed, the satellite frozen at two points of the pass: for users in LoS in both,
    the satellite row differs by the hand difference of FSPL and gas absorption (urban LoS
    shadowing sigma is 4 dB at every elevation, so the shared shadowing field cancels)."""
    gains = []
    for step in (10, 6):
        core = TNTNCore(make_config("sag", **{**SMALL, "users_per_region": 10},
                                    orbit_static_step=step), num_envs=4)
        core.reset(seed=3)
        el = float(core.orbit.elevation_deg[0, 0])
        d = float(core.orbit.slant_range_m[0, 0])
        row = core.Xt + core.J  # beam 0; regions 0, 1 are its own
        g = 10 * np.log10(core.state.ls_gain[:, row, :core.K].double().numpy())
        gains.append((el, d, g, core.state.ls_los[:, row, :core.K].numpy(),
                      float(core.orbit.beam_gain_db[0, 0])))
    (el1, d1, g1, l1, b1), (el2, d2, g2, l2, b2) = gains
    assert el1 > 80.0 and el2 < 60.0
    both = l1 & l2
    assert both.any()
    hand = (-20 * math.log10(d1 / d2) - 0.32 * (1 / math.sin(math.radians(el1))
                                                  - 1 / math.sin(math.radians(el2))) + b1 - b2)
    np.testing.assert_allclose((g1 - g2)[both], hand, atol=0.05)


# ------------------------------------------------------------------------- option off
def test_option_off_keeps_layout_and_trajectory():
    """With the orbit off nothing changes: the orbit's fields are ignored and the observation
    layout is the one without the orbit (benchmarks/trajectory_digest.py pins every bit)."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
    from trajectory_digest import run_case

    small = dict(users_per_region=3, num_subbands=4)
    a = run_case("sag", 2, 12, small)
    b = run_case("sag", 2, 12, {**small, "step_duration_s": 7.0, "orbit_min_elevation_deg": 45.0,
                                "orbit_plane_satellites": 3})
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    core = TNTNCore(make_config("sag", **small))
    N, B, J, R, M, K, U = core.N, core.B, core.J, core.R, core.M, core.K, core.U
    assert core.orbit is None
    assert core.obs_size("satellite") == N * (B + 2) + 5 * J + 2
    assert core.obs_size("hap") == 2 * N + R * N * (M + 2) + 4 * R + 2 * R * (M + 1) + 3
    assert core.obs_size("local") == 6 * N + K * N + 4 * K + 2 * U + 3
    on = TNTNCore(make_config("sag", **small, orbit_enabled=True))
    assert on.obs_size("satellite") == core.obs_size("satellite") + J + 3
    assert on.obs_size("hap") == core.obs_size("hap") + R + 3
    assert on.obs_size("local") == core.obs_size("local")


@pytest.mark.skipif(os.environ.get("TNTN_DIGEST") != "1",
                    reason="minutes of CPU; set TNTN_DIGEST=1 (the digest depends on the machine)")
def test_trajectory_digest_unchanged():
    out = subprocess.run([sys.executable, "benchmarks/trajectory_digest.py"], capture_output=True,
                         text=True, check=True,
                         cwd=os.path.join(os.path.dirname(__file__), ".."))
    assert out.stdout.strip() == ("13470 tensors, sha256 5bfdc8e2d0961dcf572b94ebb24e99c3e1d8"
                                  "b16cbaf892dc391d2ab4ff4edc04")


# ------------------------------------------------------------------------- masks
@pytest.mark.parametrize("outage", ["all", "direct"])
def test_masks_below_minimum_elevation(outage):
    core = TNTNCore(make_config("sag", **SMALL, orbit_min_elevation_deg=30.0,
                                orbit_outage_choices=outage), num_envs=2)
    vis = core.orbit.visible_host
    assert not vis[0] and vis[10] and not vis[20]  # rises and sets within the episode
    obs, masks = core.reset(seed=1)
    gen = torch.Generator().manual_seed(0)
    B = core.B
    served_direct_out = 0.0
    for t in range(core.cfg.timing.episode_steps):
        m = core.padded_mask("satellite", masks["satellite"])[:, 0]  # [E, N, B + 2]
        sat = core.state.sat_choice
        if vis[t]:
            assert bool(m.all())
        else:
            assert bool(m[..., 0].all())
            if outage == "all":
                assert not bool(m[..., 1:].any())  # nothing but off
                assert bool((sat == 0).all())
            else:
                assert not bool(m[..., B + 1].any()) and bool(m[..., 1:B + 1].all())
                assert not bool((sat == B + 1).any())
        acts = sample_masked(core, masks, gen)
        out = core.step(acts)
        masks = out["masks"]
        if not vis[t]:
            served_direct_out += float((core.last.holder >= core.Xt + core.J).sum())
        assert bool(obs["satellite"].isfinite().all())
        obs = out["obs"]
    assert served_direct_out == 0.0  # no satellite beam holds a subband out of view


def test_handover_is_observed():
    core = TNTNCore(make_config("sag", **SMALL, orbit_plane_satellites=40,
                                orbit_min_elevation_deg=20.0))
    o = core.orbit
    ho = np.nonzero(o.handover[:21])[0]
    assert ho.size >= 1 and all(o.visible_host[:21])
    t = int(ho[0])
    f = o.features.numpy()
    S = core.cfg.timing.episode_steps
    assert f[t - 1, 2] == 1.0 and f[t - 1, 0] == pytest.approx(1 / S)  # one step to handover
    assert o.serving[t] != o.serving[t - 1]
    obs, _ = core.reset(seed=0)
    sl = core.obs_size("satellite")
    assert obs["satellite"].shape[-1] == sl
    np.testing.assert_allclose(obs["satellite"][0, 0, -3:].numpy(), f[0])
    el = obs["satellite"][0, 0, -3 - core.J:-3].numpy() * 90
    np.testing.assert_allclose(el, o.elevation_deg[0].numpy(), atol=1e-4)


def test_orbit_determinism():
    def run():
        core = TNTNCore(make_config("sag", **SMALL), num_envs=2)
        obs, masks = core.reset(seed=4)
        gen = torch.Generator().manual_seed(2)
        rew = []
        for _ in range(8):
            out = core.step(sample_masked(core, masks, gen))
            masks = out["masks"]
            rew.append(out["rewards"]["satellite"].clone())
        return torch.stack(rew), out["obs"]["hap"]

    a, b = run(), run()
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_pettingzoo_api_with_orbit():
    from pettingzoo.test import parallel_api_test

    env = parallel_env("sag", **{**SMALL, "orbit_min_elevation_deg": 30.0})
    parallel_api_test(env, num_cycles=SMALL["episode_steps"] + 5)


# ------------------------------------------------------------------------- bad input
def test_bad_tle_and_fields():
    l1, l2 = orb.synthetic_tle(H_M, 53.0, 10.0, 20.0, EPOCH)
    bad_sum = l1[:68] + str((int(l1[68]) + 1) % 10)
    with pytest.raises(ValueError, match="orbit_tle: checksum of TLE line 1"):
        TNTNCore(make_config("sag", **SMALL, orbit_tle=f"{bad_sum}\n{l2}"))
    with pytest.raises(ValueError, match="orbit_tle: expected two TLE lines"):
        TNTNCore(make_config("sag", **SMALL, orbit_tle="not a tle\nat all"))
    with pytest.raises(ValueError, match="orbit_tle.*path to an existing TLE file"):
        TNTNCore(make_config("sag", **SMALL, orbit_tle="/nonexistent/file.tle"))
    garbled = l2[:8] + "5x.0000" + l2[15:68]
    garbled += str(orb.tle_checksum(garbled))
    with pytest.raises(ValueError, match=r"orbit_tle: TLE line 2 columns 9-16 \(inclination\)"):
        TNTNCore(make_config("sag", **SMALL, orbit_tle=(l1, garbled)))
    with pytest.raises(ValueError, match="orbit_start_utc.*orbit_tle_validity_days"):
        TNTNCore(make_config("sag", **SMALL, orbit_start_utc="2025-01-20T00:00:00"))
    with pytest.raises(ValueError, match="orbit_start_utc"):
        make_config("sag", orbit_start_utc="yesterday")
    for v in (-1.0, 90.0, float("nan"), "10"):
        with pytest.raises(ValueError, match=r"orbit_min_elevation_deg.*\[0, 90\)"):
            make_config("sag", orbit_min_elevation_deg=v)
    with pytest.raises(ValueError, match="orbit_outage_choices"):
        make_config("sag", orbit_outage_choices="some")
    with pytest.raises(ValueError, match="orbit_enabled.*'sag'"):
        make_config("ag", orbit_enabled=True)
    with pytest.raises(ValueError, match="orbit_raan_deg.*together"):
        make_config("sag", orbit_raan_deg=10.0)
    with pytest.raises(ValueError, match="step_duration_s"):
        make_config("sag", step_duration_s=0.0)
    with pytest.raises(ValueError, match="orbit_inclination_deg.*latitude"):
        TNTNCore(make_config("sag", **SMALL, orbit_inclination_deg=20.0))


def test_user_tle_file(tmp_path):
    l1, l2 = orb.synthetic_tle(H_M, 53.0, 10.0, 20.0, EPOCH)
    path = tmp_path / "sat.tle"
    path.write_text(f"MY SAT\n{l1}\n{l2}\n")
    core = TNTNCore(make_config("sag", **SMALL, orbit_tle=str(path)))
    assert core.orbit.tle == (l1, l2)
    assert core.orbit.start_utc == EPOCH
    assert bool(torch.isfinite(core.orbit.elevation_deg).all())


@pytest.mark.parametrize("outage", ["all", "direct"])
def test_greedy_keeps_to_the_orbit_masks(outage):
    """The greedy heuristic's satellite never picks a choice the orbit masks (the core checks
    every action in raise mode), and it still serves while the satellite is out of view."""
    from tntn_env.baselines import GreedyPolicy

    core = TNTNCore(make_config("sag", **SMALL, orbit_min_elevation_deg=30.0,
                                orbit_outage_choices=outage), num_envs=2)
    vis = core.orbit.visible_host
    core.reset(seed=3)
    greedy = GreedyPolicy()
    greedy.reset(core)
    se_out = []
    for t in range(core.cfg.timing.episode_steps):
        out = core.step(greedy.act(core))  # raises on a masked choice
        if not vis[t]:
            se_out.append(float(out["metrics"]["spectral_efficiency"].mean()))
    assert se_out and min(se_out) >= 0.0
    if outage == "direct":
        assert max(se_out) > 0.0  # beams keep their spectrum out of view
