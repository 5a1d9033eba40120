"""Link budgets pinned against hand calculations from the sources of the formulas.

Every expected value here is written out from the standard (TR 38.901, TR 38.811, TR 38.821,
Al-Hourani et al. 2014), either as a literal number computed by hand or as the source formula
typed again in plain numpy/math; nothing is obtained by calling the code under test twice.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from handcalc import aperture_db, spot_sin_theta

from tntn_env import TNTNCore, make_config
from tntn_env import channel as chn

C = 299_792_458.0  # speed of light, m/s
FC_GHZ = 28.0
FC_HZ = 28e9
R_EARTH = 6_371_000.0  # TR 38.811 eq. 6.6-3 (mean Earth radius)


def t64(x):
    return torch.tensor(x, dtype=torch.float64)


# --------------------------------------------------------------------------------------------
# TR 38.901 Table 7.4.1-1 / 7.4.2-1, UMi street canyon (h_BS = 10 m, h_UT = 1.5 m, 28 GHz)
# --------------------------------------------------------------------------------------------
H_BS, H_UT = 10.0, 1.5
# d'_BP = 4 h'_BS h'_UT fc / c with h' = h - 1 m  ->  4 * 9 * 0.5 * 28e9 / c = 1681.16 m
D_BP = 4.0 * (H_BS - 1.0) * (H_UT - 1.0) * FC_HZ / C


def test_umi_breakpoint_hand_value():
    assert D_BP == pytest.approx(1681.16, abs=0.01)


@pytest.mark.parametrize("d2d, expected_literal", [(100.0, 103.376), (200.0, 109.673),
                                                   (300.0, 113.366)])
def test_umi_los_below_breakpoint(d2d, expected_literal):
    d3d = math.hypot(d2d, H_BS - H_UT)
    expected_pl = 32.4 + 21 * math.log10(d3d) + 20 * math.log10(FC_GHZ)  # PL1
    assert expected_pl == pytest.approx(expected_literal, abs=1e-3)
    got = chn.umi_pathloss_db(t64(d2d), t64(d3d), FC_HZ, H_BS, H_UT, torch.tensor(True))
    assert float(got) == pytest.approx(expected_pl, abs=1e-6)


def test_umi_los_beyond_breakpoint():
    d2d = 1800.0  # > d'_BP = 1681 m
    d3d = math.hypot(d2d, H_BS - H_UT)
    expected_pl = (32.4 + 40 * math.log10(d3d) + 20 * math.log10(FC_GHZ)
                   - 9.5 * math.log10(D_BP ** 2 + (H_BS - H_UT) ** 2))  # PL2
    assert expected_pl == pytest.approx(130.268, abs=1e-3)
    got = chn.umi_pathloss_db(t64(d2d), t64(d3d), FC_HZ, H_BS, H_UT, torch.tensor(True))
    assert float(got) == pytest.approx(expected_pl, abs=1e-6)
    # PL1 would be 129.704 dB here: the code must not keep using the below-breakpoint law.
    assert abs(float(got) - 129.704) > 0.5


def test_umi_los_continuous_at_breakpoint():
    lo = chn.umi_pathloss_db(t64(D_BP - 1e-6), t64(math.hypot(D_BP, 8.5)), FC_HZ, H_BS, H_UT,
                             torch.tensor(True))
    hi = chn.umi_pathloss_db(t64(D_BP + 1e-3), t64(math.hypot(D_BP, 8.5)), FC_HZ, H_BS, H_UT,
                             torch.tensor(True))
    assert float(lo) == pytest.approx(float(hi), abs=0.05)


@pytest.mark.parametrize("d2d, expected_literal", [(100.0, 123.880), (200.0, 134.465),
                                                   (300.0, 140.673)])
def test_umi_nlos(d2d, expected_literal):
    d3d = math.hypot(d2d, H_BS - H_UT)
    pl_los = 32.4 + 21 * math.log10(d3d) + 20 * math.log10(FC_GHZ)
    pl_nlos_prime = (35.3 * math.log10(d3d) + 22.4 + 21.3 * math.log10(FC_GHZ)
                     - 0.3 * (H_UT - 1.5))
    expected_pl = max(pl_los, pl_nlos_prime)
    assert expected_pl == pytest.approx(expected_literal, abs=1e-3)
    got = chn.umi_pathloss_db(t64(d2d), t64(d3d), FC_HZ, H_BS, H_UT, torch.tensor(False))
    assert float(got) == pytest.approx(expected_pl, abs=1e-6)


def test_umi_nlos_is_max_with_los():
    # Outside the model's validity (h_UT = 100 m) the NLoS' law falls below the LoS law, which
    # exercises the max(): PL_NLoS must then equal PL_LoS.
    h_ut, d2d = 100.0, 100.0
    d3d = math.hypot(d2d, h_ut - H_BS)
    pl_los = 32.4 + 21 * math.log10(d3d) + 20 * math.log10(FC_GHZ)  # d2d << d'_BP here
    pl_nlos_prime = 35.3 * math.log10(d3d) + 22.4 + 21.3 * math.log10(FC_GHZ) - 0.3 * (h_ut - 1.5)
    assert pl_nlos_prime < pl_los
    got = chn.umi_pathloss_db(t64(d2d), t64(d3d), FC_HZ, H_BS, h_ut, torch.tensor(False))
    assert float(got) == pytest.approx(pl_los, abs=1e-6)


@pytest.mark.parametrize("d2d, expected", [(1.0, 1.0), (10.0, 1.0), (18.0, 1.0),
                                           (50.0, 0.519585), (200.0, 0.0935180)])
def test_umi_los_probability(d2d, expected):
    if d2d > 18.0:
        hand = 18.0 / d2d + math.exp(-d2d / 36.0) * (1.0 - 18.0 / d2d)
        assert hand == pytest.approx(expected, abs=1e-6)
    assert float(chn.umi_los_probability(t64(d2d))) == pytest.approx(expected, abs=1e-6)


# --------------------------------------------------------------------------------------------
# Al-Hourani et al. 2014 air-to-ground, urban: a = 9.61, b = 0.16, eta = 1 / 20 dB
# --------------------------------------------------------------------------------------------
def test_a2g_fixed_uav_geometry():
    d2d, dh = 150.0, 100.0 - 1.5  # UAV at 100 m, UE at 1.5 m, 150 m apart on the ground
    theta = math.degrees(math.atan2(dh, d2d))
    assert theta == pytest.approx(33.2916, abs=1e-4)  # degrees, not radians
    p_los = 1.0 / (1.0 + 9.61 * math.exp(-0.16 * (theta - 9.61)))
    assert p_los == pytest.approx(0.821457, abs=1e-6)
    d3d = math.hypot(d2d, dh)
    fspl = 32.45 + 20 * math.log10(FC_GHZ) + 20 * math.log10(d3d)
    assert fspl == pytest.approx(106.47, abs=0.01)
    el = chn.elevation_deg(t64(d2d), t64(dh))
    assert float(el) == pytest.approx(theta, abs=1e-9)
    assert float(chn.a2g_los_probability(el, 9.61, 0.16)) == pytest.approx(p_los, abs=1e-9)
    # If the elevation were in radians (0.58) the probability would be ~0.04, not 0.82.
    assert float(chn.a2g_los_probability(t64(math.radians(theta)), 9.61, 0.16)) < 0.1
    got = chn.fspl_db(t64(d3d), FC_HZ)
    assert float(got) + 1.0 == pytest.approx(fspl + 1.0, abs=0.01)  # LoS: FSPL + eta_LoS
    assert float(got) + 20.0 == pytest.approx(126.47, abs=0.01)  # NLoS: FSPL + eta_NLoS


def test_a2g_overhead_is_los():
    hand = 1.0 / (1.0 + 9.61 * math.exp(-0.16 * (90.0 - 9.61)))  # 0.999975
    assert float(chn.a2g_los_probability(t64(90.0), 9.61, 0.16)) == pytest.approx(hand, abs=1e-9)
    assert hand == pytest.approx(0.999975, abs=1e-6)


# --------------------------------------------------------------------------------------------
# TR 38.811 section 6.6 (NTN)
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("d_m", [20e3, 550e3, 1.8e6])
def test_fspl_tr38811(d_m):
    expected = 32.45 + 20 * math.log10(FC_GHZ) + 20 * math.log10(d_m)  # eq. 6.6-2, fc in GHz
    # 32.45 is a rounding of 20 log10(4 pi 1e9 / c) = 32.4418 dB: allow 0.01 dB
    assert float(chn.fspl_db(t64(d_m), FC_HZ)) == pytest.approx(expected, abs=0.01)


@pytest.mark.parametrize("el_deg, expected_m", [(90.0, 550_000.0), (60.0, 626_885.4),
                                                (30.0, 992_778.4), (10.0, 1_815_078.8)])
def test_slant_range_tr38811(el_deg, expected_m):
    s, h = math.sin(math.radians(el_deg)), 550e3
    hand = math.sqrt(R_EARTH ** 2 * s ** 2 + h ** 2 + 2 * h * R_EARTH) - R_EARTH * s  # eq. 6.6-3
    assert hand == pytest.approx(expected_m, abs=0.5)
    assert chn.slant_range_m(el_deg, h) == pytest.approx(expected_m, abs=0.5)


@pytest.mark.parametrize("el_deg, expected", [(90.0, 0.32), (30.0, 0.64), (10.0, 1.84275),
                                              (5.0, 1.84275)])
def test_gas_loss(el_deg, expected):
    # A_zenith / sin(el), valid from 10 deg (held at 10 deg below); A_zenith = 0.32 dB at 28 GHz
    got = float(chn.gas_loss_db(t64(el_deg), 0.32))
    assert got == pytest.approx(expected, abs=1e-4)


# Table 6.6.1-1 LoS probability (%) and Tables 6.6.2-1..3 Ka band, typed from the TR.
@pytest.mark.parametrize("env, el, expected_pct", [
    ("urban", 10.0, 24.6), ("urban", 50.0, 72.6), ("urban", 90.0, 99.2),
    ("urban", 45.0, (61.3 + 72.6) / 2), ("urban", 5.0, 24.6),
    ("dense_urban", 10.0, 28.2), ("dense_urban", 90.0, 98.1),
    ("suburban", 30.0, 91.9), ("suburban", 90.0, 99.8)])
def test_ntn_los_probability_table(env, el, expected_pct):
    assert float(chn.ntn_los_probability(t64(el), env)) == pytest.approx(expected_pct / 100,
                                                                         abs=1e-6)


@pytest.mark.parametrize("env, el, cl, sf_los, sf_nlos", [
    ("urban", 10.0, 44.3, 4.0, 6.0), ("urban", 90.0, 32.9, 4.0, 6.0),
    ("urban", 30.0, 37.5, 4.0, 6.0), ("urban", 75.0, (33.3 + 33.0) / 2, 4.0, 6.0),
    ("dense_urban", 10.0, 44.3, 2.9, 17.1), ("dense_urban", 90.0, 32.9, 0.6, 12.3),
    ("suburban", 10.0, 29.5, 1.9, 10.7), ("suburban", 90.0, 16.8, 0.4, 10.8)])
def test_ntn_clutter_and_shadowing_tables(env, el, cl, sf_los, sf_nlos):
    e = torch.tensor([el, el], dtype=torch.float32)
    los = torch.tensor([True, False])
    got_cl = chn.ntn_clutter_loss_db(e, los, env)
    assert float(got_cl[0]) == 0.0  # no clutter loss in LoS
    assert float(got_cl[1]) == pytest.approx(cl, abs=1e-4)
    got_sf = chn.ntn_shadowing_sigma_db(e, los, env)
    assert float(got_sf[0]) == pytest.approx(sf_los, abs=1e-4)
    assert float(got_sf[1]) == pytest.approx(sf_nlos, abs=1e-4)


def _ecef(lat, lon, r):
    la, lo = math.radians(lat), math.radians(lon)
    return np.array([math.cos(la) * math.cos(lo), math.cos(la) * math.sin(lo), math.sin(la)]) * r


def _elevation_and_range_ecef(lat, lon, sub_lat, sub_lon, h):
    """Independent geometry: vector from the user to the satellite in Earth-centred coordinates."""
    u = _ecef(lat, lon, R_EARTH)
    v = _ecef(sub_lat, sub_lon, R_EARTH + h) - u
    el = math.degrees(math.asin(float(v @ u) / (R_EARTH * np.linalg.norm(v))))
    return el, float(np.linalg.norm(v))


def test_satellite_elevation_at_subsatellite_point_is_90():
    assert chn.satellite_elevation_deg(37.43, -122.17, 37.43, -122.17, 550e3) == pytest.approx(
        90.0, abs=1e-9)


@pytest.mark.parametrize("sub_lat, sub_lon", [(38.5, -121.5), (40.0, -122.17), (37.43, -115.0),
                                              (30.0, -130.0)])
def test_satellite_elevation_and_slant_range_vs_ecef(sub_lat, sub_lon):
    lat, lon, h = 37.43, -122.17, 550e3
    el_ref, d_ref = _elevation_and_range_ecef(lat, lon, sub_lat, sub_lon, h)
    el = chn.satellite_elevation_deg(lat, lon, sub_lat, sub_lon, h)
    assert el == pytest.approx(el_ref, abs=1e-6)
    if el >= 10.0:  # eq. 6.6-3 reproduces the true distance at that elevation
        assert chn.slant_range_m(el, h) == pytest.approx(d_ref, rel=1e-9)


def test_default_satellite_geometry_in_core():
    core = TNTNCore(make_config("sag", num_beams=1, regions_per_hap=1, users_per_region=1,
                                num_subbands=1))
    el_ref, d_ref = _elevation_and_range_ecef(37.43, -122.17, 38.5, -121.5, 550e3)
    assert el_ref == pytest.approx(75.277, abs=1e-3)  # (config comment says "~70 deg")
    assert float(core.topo.sat_elevation_deg[0]) == pytest.approx(el_ref, abs=1e-3)
    assert float(core.topo.sat_slant_range_m[0]) == pytest.approx(d_ref, rel=1e-5)
    core = TNTNCore(make_config("sag", num_beams=1, regions_per_hap=1, users_per_region=1,
                                num_subbands=1, subsatellite_latitude_deg=37.43,
                                subsatellite_longitude_deg=-122.17))
    assert float(core.topo.sat_elevation_deg[0]) == pytest.approx(90.0, abs=1e-4)
    assert float(core.topo.sat_slant_range_m[0]) == pytest.approx(550e3, abs=1.0)


# --------------------------------------------------------------------------------------------
# Noise and power conversions
# --------------------------------------------------------------------------------------------
def test_noise_power_20mhz():
    n_dbm = -174.0 + 10 * math.log10(20e6) + 7.0
    assert n_dbm == pytest.approx(-93.99, abs=0.005)
    n_w = 10 ** ((n_dbm - 30.0) / 10.0)  # dBm -> W needs the -30 dB
    assert n_w == pytest.approx(3.9905e-13, rel=1e-4)
    assert chn.noise_power_w(20e6, 7.0) == pytest.approx(n_w, rel=1e-9)
    assert chn.noise_power_w(20e6, 7.0, -174.0) == pytest.approx(3.9905e-13, rel=1e-4)


def test_dbm_to_watt():
    assert float(chn.dbm_to_watt(t64(30.0))) == pytest.approx(1.0)
    assert float(chn.dbm_to_watt(t64(16.0))) == pytest.approx(0.0398107, rel=1e-5)
    assert float(chn.dbm_to_watt(t64(45.0))) == pytest.approx(31.6228, rel=1e-5)


def test_core_noise_and_powers():
    # Default: W = 200 MHz over N = 10 subbands -> 20 MHz per subband, NF 7 dB.
    core = TNTNCore(make_config("sag", users_per_region=2), num_envs=16)
    core.reset(seed=3)
    core.step({t: core.default_actions(t) for t in core.tiers})
    ls = core.link_state(0)
    np.testing.assert_allclose(ls["noise_w"], 3.9905e-13, rtol=1e-4)
    p_dbm = 10 * np.log10(core.state.power_w.double().numpy()) + 30.0  # [E, 4]
    np.testing.assert_allclose(p_dbm[:, 0], 16.0, atol=1e-4)  # TBS
    np.testing.assert_allclose(p_dbm[:, 1], 8.0, atol=1e-4)  # UAV
    assert (p_dbm[:, 2] >= 28.0 - 1e-4).all() and (p_dbm[:, 2] <= 36.0 + 1e-4).all()  # HAP
    assert (p_dbm[:, 3] >= 33.0 - 1e-4).all() and (p_dbm[:, 3] <= 45.0 + 1e-4).all()  # sat
    assert p_dbm[:, 3].std() > 1.0  # drawn per episode, not fixed


# --------------------------------------------------------------------------------------------
# End-to-end: the core's large-scale gain against hand formulas
# --------------------------------------------------------------------------------------------
def _umi_pl_ref(d2, d3, los):
    pl1 = 32.4 + 21 * np.log10(d3) + 20 * np.log10(FC_GHZ)
    pl2 = (32.4 + 40 * np.log10(d3) + 20 * np.log10(FC_GHZ)
           - 9.5 * np.log10(D_BP ** 2 + (H_BS - H_UT) ** 2))
    pl_los = np.where(d2 <= D_BP, pl1, pl2)
    pl_nlos = 35.3 * np.log10(d3) + 22.4 + 21.3 * np.log10(FC_GHZ) - 0.3 * (H_UT - 1.5)
    return np.where(los, pl_los, np.maximum(pl_los, pl_nlos))


def _fspl_ref(d):
    return 32.45 + 20 * np.log10(FC_GHZ) + 20 * np.log10(d)


_EL_TAB = np.arange(10.0, 91.0, 10.0)
_URBAN_LOS_PCT = np.array([24.6, 38.6, 49.3, 61.3, 72.6, 80.5, 91.9, 96.8, 99.2])  # 6.6.1-1
_URBAN_CL_DB = np.array([44.3, 39.9, 37.5, 35.8, 34.6, 33.8, 33.3, 33.0, 32.9])  # 6.6.2-2 Ka
_URBAN_SF_LOS, _URBAN_SF_NLOS = 4.0, 6.0  # 6.6.2-2 Ka band


def _ntn_pl_ref_wo_shadowing(d3, el, los):
    cl = np.where(los, 0.0, np.interp(el, _EL_TAB, _URBAN_CL_DB))
    gas = 0.32 / np.sin(np.radians(np.maximum(el, 10.0)))
    return _fspl_ref(d3) + cl + gas + 0.3  # + scintillation 0.3 dB


E2E = dict(num_beams=2, haps_per_beam=1, regions_per_hap=2, tbs_per_region=1, uavs_per_region=1,
           users_per_region=12, num_subbands=2, time_blocks=1, num_hotspots=0,
           tbs_shadowing_los_db=0.0, tbs_shadowing_nlos_db=0.0)


@pytest.fixture(scope="module")
def e2e():
    core = TNTNCore(make_config("sag", **E2E), num_envs=8)
    core.reset(seed=11)
    st = core.state
    return dict(
        core=core,
        gain_db=10 * np.log10(st.ls_gain.double().numpy()),  # [E, X, Ut]
        los=st.ls_los.numpy(),
        user_xy=st.user_xy.double().numpy(),  # [E, Ut, 2]
        uav_xy=st.uav_xy.double().numpy(),  # [E, J*U, 2]
    )


def test_transmitter_numbering(e2e):
    core = e2e["core"]
    J = 4
    # TBS/UAV region by region (TBS first), one HAP spot per region, then the satellite beams.
    assert core.topo.tx_kind.tolist() == [0, 1] * J + [2] * J + [3] * 2
    assert core.topo.tx_region.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 0, 1, 2, 3, -1, -1]
    assert core.topo.user_region.tolist() == [j for j in range(J) for _ in range(12)]


def test_e2e_tbs_gain(e2e):
    core, g, los, uxy = e2e["core"], e2e["gain_db"], e2e["los"], e2e["user_xy"]
    tbs_xy = core.topo.tbs_xy.double().numpy().reshape(-1, 2)  # [J, 2] (one TBS per region)
    rows = [0, 2, 4, 6]
    d2 = np.linalg.norm(uxy[:, None] - tbs_xy[None, :, None], axis=-1)  # [E, 4, Ut]
    d3 = np.sqrt(d2 ** 2 + (H_BS - H_UT) ** 2)
    lo = los[:, rows]
    expected = 25.0 + 0.0 - _umi_pl_ref(d2, np.maximum(d3, 10.0), lo)  # G_TBS + G_UE - PL
    np.testing.assert_allclose(g[:, rows], expected, atol=0.01)
    # the sample exercises both LoS states and both sides of the breakpoint
    assert lo.any() and (~lo).any()
    assert (lo & (d2 > D_BP)).any() and (lo & (d2 < D_BP)).any()
    # LoS state follows TR 38.901 Table 7.4.2-1 statistically
    p = np.where(d2 <= 18.0, 1.0, 18.0 / d2 + np.exp(-d2 / 36.0) * (1 - 18.0 / d2))
    z = (lo.sum() - p.sum()) / math.sqrt((p * (1 - p)).sum())
    assert abs(z) < 4.5, z
    # one pinned pair, written out
    e, x, u = 0, 0, 0
    d2_ = math.dist(uxy[e, u], tbs_xy[0])
    d3_ = math.hypot(d2_, 8.5)
    if los[e, x, u]:
        pl = (32.4 + 21 * math.log10(d3_) + 20 * math.log10(28) if d2_ <= 1681.16 else
              32.4 + 40 * math.log10(d3_) + 20 * math.log10(28) - 9.5 * math.log10(1681.16 ** 2
                                                                                    + 8.5 ** 2))
    else:
        pl = max(32.4 + 21 * math.log10(d3_) + 20 * math.log10(28),
                 35.3 * math.log10(d3_) + 22.4 + 21.3 * math.log10(28))
    assert g[e, x, u] == pytest.approx(25.0 - pl, abs=0.01)


def test_e2e_uav_gain(e2e):
    g, los, uxy, vxy = e2e["gain_db"], e2e["los"], e2e["user_xy"], e2e["uav_xy"]
    rows = [1, 3, 5, 7]
    d2 = np.linalg.norm(uxy[:, None] - vxy[:, :, None], axis=-1)  # [E, 4, Ut]
    dh = 100.0 - 1.5
    d3 = np.sqrt(d2 ** 2 + dh ** 2)
    lo = los[:, rows]
    eta = np.where(lo, 1.0, 20.0)
    expected = 20.0 + 0.0 - (_fspl_ref(d3) + eta)  # no shadowing term in the A2G model
    np.testing.assert_allclose(g[:, rows], expected, atol=0.02)
    theta = np.degrees(np.arctan2(dh, d2))
    p = 1.0 / (1.0 + 9.61 * np.exp(-0.16 * (theta - 9.61)))
    z = (lo.sum() - p.sum()) / math.sqrt((p * (1 - p)).sum())
    assert abs(z) < 4.5, z
    assert lo.any() and (~lo).any()


def _ntn_z(core, g, los, d3, el, g_tx, own=None, pattern_db=None):
    """Residual of the core's gain against the hand value without shadowing, in table sigmas.

    Satellite beams: main lobe on the own footprint, -17.6 dB elsewhere (``own``); HAP spot
    beams: the aperture pattern at each user's off-axis angle (``pattern_db``).
    """
    beam = np.where(own, 0.0, -17.6) if pattern_db is None else pattern_db
    expected = g_tx + 0.0 - _ntn_pl_ref_wo_shadowing(d3, el, los) + beam
    sigma = np.where(los, _URBAN_SF_LOS, _URBAN_SF_NLOS)
    return (expected - g) / sigma  # PL = ... + z sigma  ->  gain = expected - z sigma


def test_e2e_hap_gain(e2e):
    core, g, los, uxy = e2e["core"], e2e["gain_db"], e2e["los"], e2e["user_xy"]
    hap_xy = core.topo.hap_xy.double().numpy()  # [I, 2]
    region_hap = np.array([0, 0, 1, 1])
    zs, p_los, n_los, var = [], 0.0, 0, 0.0
    for j in range(4):  # HAP spot beam of region j (tx 8 + j) to every user
        d2 = np.linalg.norm(uxy - hap_xy[region_hap[j]], axis=-1)  # [E, Ut]
        dh = 20e3 - 1.5
        d3 = np.sqrt(d2 ** 2 + dh ** 2)
        el = np.degrees(np.arctan2(dh, d2))
        lo = los[:, 8 + j]
        sin_t = spot_sin_theta(hap_xy[region_hap[j]],
                               core.topo.region_centre_xy[j].double().numpy(), uxy)
        z = _ntn_z(core, g[:, 8 + j], lo, d3, el, 26.0, pattern_db=aperture_db(sin_t, 26.0))
        zs.append(z)
        if j in (0, 2):  # one LoS state per (HAP platform, user)
            p = np.interp(el, _EL_TAB, _URBAN_LOS_PCT / 100)
            p_los, n_los, var = p_los + p.sum(), n_los + lo.sum(), var + (p * (1 - p)).sum()
    assert abs(n_los - p_los) / math.sqrt(var) < 4.5
    zs = np.stack(zs, 1)  # [E, 4 spots, Ut]
    # spots of one HAP share the platform's shadowing: identical residuals (float32 pattern)
    np.testing.assert_allclose(zs[:, 0], zs[:, 1], atol=5e-3)
    np.testing.assert_allclose(zs[:, 2], zs[:, 3], atol=5e-3)
    z = zs[:, [0, 2]].ravel()  # one per (HAP, user)
    assert abs(z.mean()) < 0.2, z.mean()
    assert 0.85 < z.std() < 1.15, z.std()
    assert np.abs(z).max() < 5.5


def test_e2e_satellite_gain(e2e):
    core, g, los = e2e["core"], e2e["gain_db"], e2e["los"]
    ureg = np.repeat(np.arange(4), 12)
    el_reg, d_reg = [], []
    for j in range(4):  # region centres to lat/lon (the topology's small-area convention)
        cx, cy = core.topo.region_centre_xy[j].tolist()
        w, h = core.topo.area_size_xy
        lat = 37.43 + (cy - h / 2) / 111_320.0
        lon = -122.17 + (cx - w / 2) / (111_320.0 * math.cos(math.radians(37.43)))
        e_, d_ = _elevation_and_range_ecef(lat, lon, 38.5, -121.5, 550e3)
        el_reg.append(e_)
        d_reg.append(d_)
    el, d3 = np.array(el_reg)[ureg][None], np.array(d_reg)[ureg][None]
    beam_of_region = np.array([0, 0, 1, 1])
    zs = []
    for b in range(2):
        lo = los[:, 12 + b]
        zs.append(_ntn_z(core, g[:, 12 + b], lo, d3, el, 38.5, beam_of_region[ureg][None] == b))
    np.testing.assert_allclose(zs[0], zs[1], atol=1e-3)  # one satellite, one shadowing field
    z = zs[0].ravel()
    assert abs(z.mean()) < 0.25, z.mean()
    assert 0.8 < z.std() < 1.2, z.std()
    lo = los[:, 12]
    p = np.interp(el, _EL_TAB, _URBAN_LOS_PCT / 100) * np.ones_like(lo, dtype=float)
    zl = (lo.sum() - p.sum()) / math.sqrt((p * (1 - p)).sum())
    assert abs(zl) < 4.5, zl


def test_e2e_satellite_overhead_suburban_pinned():
    # Sub-satellite point over the (single-region) area: 90 deg, 550 km. Suburban Ka-band LoS
    # shadowing is only 0.4 dB at 90 deg, so the LoS gain is pinned to within ~2 dB.
    core = TNTNCore(make_config("sag", num_beams=1, regions_per_hap=1, users_per_region=30,
                                num_subbands=1, ntn_environment="suburban", num_hotspots=0,
                                subsatellite_latitude_deg=37.43,
                                subsatellite_longitude_deg=-122.17), num_envs=4)
    core.reset(seed=5)
    g = 10 * np.log10(core.state.ls_gain[:, -1].double().numpy())  # satellite beam row
    los = core.state.ls_los[:, -1].numpy()
    fspl = 32.45 + 20 * math.log10(28) + 20 * math.log10(550e3)  # = 176.20 dB
    hand_los = 38.5 + 0.0 - (fspl + 0.32 / math.sin(math.radians(90)) + 0.3)  # = -138.32 dB
    assert hand_los == pytest.approx(-138.32, abs=0.01)
    assert los.mean() > 0.9  # P_LoS = 99.8 % at 90 deg, suburban
    r = (hand_los - g[los]) / 0.4
    assert abs(r.mean()) < 0.5 and 0.6 < r.std() < 1.4 and np.abs(r).max() < 5.5
    if (~los).any():  # NLoS: clutter loss 16.8 dB, sigma 10.8 dB
        rn = (hand_los - 16.8 - g[~los]) / 10.8
        assert np.abs(rn).max() < 5.5


# --------------------------------------------------------------------------------------------
# docs/model.md, Calibration, by hand (full tier power on one 20 MHz subband, UE 0 dBi)
# --------------------------------------------------------------------------------------------
NOISE_20MHZ_DBM = -174.0 + 10 * math.log10(20e6) + 7.0  # -93.99 dBm


def _snr_db(p_dbm, g_tx_dbi, pl_db):
    return p_dbm + g_tx_dbi + 0.0 - pl_db - NOISE_20MHZ_DBM


def test_calibration_tbs():
    d3 = math.hypot(200.0, 8.5)
    pl_nlos = max(32.4 + 21 * math.log10(d3) + 20 * math.log10(28),
                  35.3 * math.log10(d3) + 22.4 + 21.3 * math.log10(28))  # 134.46 dB
    assert _snr_db(16.0, 25.0, pl_nlos) == pytest.approx(0.5, abs=0.1)  # "~0 dB at 200 m NLoS"
    assert _snr_db(16.0, 0.0, pl_nlos) == pytest.approx(-24.5, abs=0.1)  # "about -25 dB, 0 dBi"
    d3 = math.hypot(300.0, 8.5)
    pl_nlos300 = 35.3 * math.log10(d3) + 22.4 + 21.3 * math.log10(28)
    assert _snr_db(16.0, 25.0, pl_nlos300) < -5.0  # NLoS beyond ~300 m below the noise
    pl_los300 = 32.4 + 21 * math.log10(d3) + 20 * math.log10(28)
    assert _snr_db(16.0, 25.0, pl_los300) == pytest.approx(21.6, abs=0.1)  # LoS reaches far


def test_calibration_uav():
    below = _snr_db(8.0, 20.0, 32.45 + 20 * math.log10(28) + 20 * math.log10(98.5) + 1.0)
    assert below == pytest.approx(19.7, abs=0.1)
    d3 = math.hypot(500.0, 98.5)
    assert _snr_db(8.0, 20.0, 32.45 + 20 * math.log10(28) + 20 * math.log10(d3) + 20.0) < -10


def test_calibration_hap():
    pl = 32.45 + 20 * math.log10(28) + 20 * math.log10(20e3 - 1.5) + 0.32 + 0.3  # nadir, LoS
    assert pl == pytest.approx(148.03, abs=0.01)
    assert _snr_db(28.0, 26.0, pl) == pytest.approx(0.0, abs=0.1)
    assert _snr_db(36.0, 26.0, pl) == pytest.approx(8.0, abs=0.1)
    # at the corner of a 4 km x 2 km HAP area (2.24 km off nadir) the loss grows by < 0.1 dB
    d = math.hypot(2236.0, 20e3)
    assert 20 * math.log10(d / 20e3) < 0.1


def test_calibration_satellite():
    el, d = _elevation_and_range_ecef(37.43, -122.17, 38.5, -121.5, 550e3)  # 75.3 deg, 567 km
    pl = 32.45 + 20 * math.log10(28) + 20 * math.log10(d) + 0.32 / math.sin(math.radians(el)) + 0.3
    assert pl == pytest.approx(177.10, abs=0.01)
    lo, mid, hi = (_snr_db(p, 38.5, pl) for p in (33.0, 39.0, 45.0))
    assert lo == pytest.approx(-11.6, abs=0.1) and hi == pytest.approx(0.4, abs=0.1)
    assert -10.0 <= mid <= 0.0  # "a handheld hears the satellite at about -10..0 dB"


def test_calibration_from_core_defaults():
    """The default config reproduces the hand numbers above (large-scale SNR, full tier power on
    one 20 MHz subband, users of the transmitter's own region / beam)."""
    core = TNTNCore(make_config("sag"), num_envs=16)
    core.reset(seed=0)
    st = core.state
    g, pw, los = st.ls_gain.double().numpy(), st.power_w.double().numpy(), st.ls_los.numpy()
    noise_w = 10 ** ((-174 + 10 * math.log10(20e6) + 7 - 30) / 10)
    kind, txr = core.topo.tx_kind.numpy(), core.topo.tx_region.numpy()
    ureg, rbeam = core.topo.user_region.numpy(), core.topo.region_beam.numpy()

    def snr_db(x, col):
        return 10 * np.log10(g[:, x] * pw[:, col, None] / noise_w)  # [E, Ut]

    hap = np.concatenate([snr_db(x, 2)[:, ureg == txr[x]].ravel()
                          for x in np.nonzero(kind == 2)[0]])
    assert 0.0 <= np.median(hap) <= 8.0  # "the HAP covers the whole area at a few dB"
    sat_rows = np.nonzero(kind == 3)[0]
    sat = np.concatenate([snr_db(x, 3)[:, rbeam[ureg] == b].ravel()
                          for b, x in enumerate(sat_rows)])
    assert -10.0 <= np.median(sat) <= 0.0  # "a handheld hears the satellite at -10..0 dB"
    tbs_rows = np.nonzero(kind == 0)[0]
    tbs_xy = core.topo.tbs_xy.double().numpy().reshape(-1, 2)
    d = np.linalg.norm(st.user_xy.double().numpy()[:, None] - tbs_xy[None, :, None], axis=-1)
    lo = los[:, tbs_rows]
    s = 10 * np.log10(g[:, tbs_rows] * pw[:, 0, None, None] / noise_w)
    ring = (d > 150) & (d < 250)
    assert abs(np.median(s[ring & ~lo])) < 3.0  # ~0 dB at 200 m in NLoS (shadowing 7.82 dB)
    assert np.median(s[(d > 350) & ~lo]) < -6.0  # NLoS beyond ~300 m sits below the noise
