"""Propagation formulas (dB), written once for tensors of any shape.

Sources:
- TBS -> user: 3GPP TR 38.901 V17 Table 7.4.1-1 (UMi street canyon path loss) and Table 7.4.2-1
  (UMi LoS probability).
- UAV -> user: A. Al-Hourani, S. Kandeepan, S. Lardner, "Optimal LAP altitude for maximum
  coverage", IEEE WCL 3(6), 2014: P_LoS = 1 / (1 + a exp(-b (theta - a))), theta in degrees,
  path loss = FSPL + eta_LoS or eta_NLoS.
- HAP / satellite -> user: 3GPP TR 38.811 V15.4 section 6.6 (free-space loss over the slant range
  eq. 6.6-2/6.6-3, LoS probability Table 6.6.1-1, shadow fading and clutter loss Tables
  6.6.2-1..3 Ka-band, gas absorption 6.6.4 as A_zenith / sin(elevation)).
"""

from __future__ import annotations

import math

import torch

SPEED_OF_LIGHT_M_S = 299_792_458.0
EARTH_RADIUS_M = 6_371_000.0  # TR 38.811 eq. 6.6-3 uses the mean Earth radius

# TR 38.811 tables at elevations 10, 20, ..., 90 degrees.
_ELEVATIONS_DEG = (10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0)
# Table 6.6.1-1: LoS probability (%).
NTN_LOS_PROBABILITY_PCT = {
    "dense_urban": (28.2, 33.1, 39.8, 46.8, 53.7, 61.2, 73.8, 82.0, 98.1),
    "urban": (24.6, 38.6, 49.3, 61.3, 72.6, 80.5, 91.9, 96.8, 99.2),
    "suburban": (78.2, 86.9, 91.9, 92.9, 93.5, 94.0, 94.9, 95.2, 99.8),
}
# Tables 6.6.2-1..3, Ka-band: (sigma_SF LoS, sigma_SF NLoS, clutter loss NLoS), all dB.
NTN_KA_SHADOWING_LOS_DB = {
    "dense_urban": (2.9, 2.4, 2.7, 2.4, 2.4, 2.7, 2.6, 2.8, 0.6),
    "urban": (4.0,) * 9,
    "suburban": (1.9, 1.6, 1.9, 2.3, 2.7, 3.1, 3.0, 3.6, 0.4),
}
NTN_KA_SHADOWING_NLOS_DB = {
    "dense_urban": (17.1, 17.1, 15.6, 14.6, 14.2, 12.6, 12.1, 12.3, 12.3),
    "urban": (6.0,) * 9,
    "suburban": (10.7, 10.0, 11.2, 11.6, 11.8, 10.8, 10.8, 10.8, 10.8),
}
NTN_KA_CLUTTER_LOSS_DB = {
    "dense_urban": (44.3, 39.9, 37.5, 35.8, 34.6, 33.8, 33.3, 33.0, 32.9),
    "urban": (44.3, 39.9, 37.5, 35.8, 34.6, 33.8, 33.3, 33.0, 32.9),
    "suburban": (29.5, 24.6, 21.9, 20.0, 18.7, 17.8, 17.2, 16.9, 16.8),
}


def db_to_linear(x_db):
    if torch.is_tensor(x_db) and torch.compiler.is_compiling():
        # compiled code: exp(x ln(10) / 10), the same value to float rounding (relative ~2e-6
        # at -150 dB); pow(10, x) costs 4-5x exp on the project's x86 CPU (docs/design.md,
        # Compiled code)
        return torch.exp(x_db * (math.log(10.0) / 10.0))
    return 10.0 ** (x_db / 10.0)


def dbm_to_watt(p_dbm):
    """dBm to W (the -30 dB the authors' prototype forgot)."""
    return 10.0 ** ((p_dbm - 30.0) / 10.0)


def noise_power_w(bandwidth_hz: float, noise_figure_db: float,
                  density_dbm_hz: float = -174.0) -> float:
    """N0 = density + 10 log10(bandwidth) + NF, in W."""
    return dbm_to_watt(density_dbm_hz + 10.0 * math.log10(bandwidth_hz) + noise_figure_db)


def fspl_db(distance_m, carrier_hz: float):
    """Free-space path loss 20 log10(4 pi d f / c); equals TR 38.811 eq. 6.6-2."""
    return 20.0 * torch.log10(distance_m) + 20.0 * math.log10(
        4.0 * math.pi * carrier_hz / SPEED_OF_LIGHT_M_S)


def umi_los_probability(d2d_m):
    """TR 38.901 Table 7.4.2-1, UMi street canyon."""
    d = torch.clamp(d2d_m, min=1e-3)
    p = 18.0 / d + torch.exp(-d / 36.0) * (1.0 - 18.0 / d)
    return torch.where(d2d_m <= 18.0, torch.ones_like(p), p)


def umi_pathloss_db(d2d_m, d3d_m, carrier_hz: float, h_bs_m: float, h_ut_m: float, los):
    """TR 38.901 Table 7.4.1-1, UMi street canyon; ``los`` is a bool tensor.

    LoS: PL1 = 32.4 + 21 log10(d3D) + 20 log10(fc) below the breakpoint d'_BP = 4 h'_BS h'_UT fc/c
    (h' = h - 1 m), PL2 = 32.4 + 40 log10(d3D) + 20 log10(fc) - 9.5 log10(d'_BP^2 + (h_BS-h_UT)^2)
    beyond. NLoS: max(PL_LoS, 35.3 log10(d3D) + 22.4 + 21.3 log10(fc) - 0.3 (h_UT - 1.5)).
    fc in GHz. Distances below 10 m are evaluated at 10 m (the model's validity range).
    """
    fc_ghz = carrier_hz / 1e9
    d3 = torch.clamp(d3d_m, min=10.0)
    d_bp = 4.0 * (h_bs_m - 1.0) * (h_ut_m - 1.0) * carrier_hz / SPEED_OF_LIGHT_M_S
    pl1 = 32.4 + 21.0 * torch.log10(d3) + 20.0 * math.log10(fc_ghz)
    pl2 = (32.4 + 40.0 * torch.log10(d3) + 20.0 * math.log10(fc_ghz)
           - 9.5 * math.log10(d_bp ** 2 + (h_bs_m - h_ut_m) ** 2))
    pl_los = torch.where(d2d_m <= d_bp, pl1, pl2)
    pl_nlos = 35.3 * torch.log10(d3) + 22.4 + 21.3 * math.log10(fc_ghz) - 0.3 * (h_ut_m - 1.5)
    return torch.where(los, pl_los, torch.maximum(pl_los, pl_nlos))


def a2g_los_probability(elevation_deg, a: float, b: float):
    """Al-Hourani 2014: P_LoS = 1 / (1 + a exp(-b (theta - a))), theta in degrees."""
    return 1.0 / (1.0 + a * torch.exp(-b * (elevation_deg - a)))


def elevation_deg(ground_distance_m, height_m):
    """Elevation angle (degrees) over flat ground, for aerial nodes close to the users."""
    return torch.rad2deg(torch.atan2(height_m, ground_distance_m))


def _table_interp(elevation_deg_t, table) -> torch.Tensor:
    """Linear interpolation of a TR 38.811 10-degree table, held constant below 10 degrees."""
    tab = torch.as_tensor(table, dtype=torch.float32, device=elevation_deg_t.device)
    pos = torch.clamp((elevation_deg_t - 10.0) / 10.0, 0.0, 8.0)
    i0 = torch.clamp(pos.floor().long(), max=7)
    frac = pos - i0.to(pos.dtype)
    return tab[i0] * (1.0 - frac) + tab[i0 + 1] * frac


def ntn_los_probability(elevation_deg_t, environment: str):
    return _table_interp(elevation_deg_t, NTN_LOS_PROBABILITY_PCT[environment]) / 100.0


def ntn_shadowing_sigma_db(elevation_deg_t, los, environment: str):
    s_los = _table_interp(elevation_deg_t, NTN_KA_SHADOWING_LOS_DB[environment])
    s_nlos = _table_interp(elevation_deg_t, NTN_KA_SHADOWING_NLOS_DB[environment])
    return torch.where(los, s_los, s_nlos)


def ntn_clutter_loss_db(elevation_deg_t, los, environment: str):
    """Clutter loss applies to NLoS links only (TR 38.811 6.6.2)."""
    cl = _table_interp(elevation_deg_t, NTN_KA_CLUTTER_LOSS_DB[environment])
    return torch.where(los, torch.zeros_like(cl), cl)


def gas_loss_db(elevation_deg_t, zenith_db: float):
    """TR 38.811 6.6.4: A_zenith(fc) / sin(elevation), elevation >= 10 degrees."""
    el = torch.clamp(elevation_deg_t, min=10.0)
    return zenith_db / torch.sin(torch.deg2rad(el))


def aperture_pattern_db(sin_theta, gain_dbi: float, floor_db: float = -60.0):
    """Relative gain (dB) of a uniformly illuminated circular aperture, TR 38.811 6.4.1.

    G(theta) / G_max = 4 |J1(ka sin theta) / (ka sin theta)|^2, with ka = sqrt(G_max) (a uniform
    circular aperture of diameter D has G_max = (pi D / lambda)^2 = (ka)^2). Nulls are floored
    at ``floor_db`` so that the gain stays finite in dB.
    """
    ka = math.sqrt(10.0 ** (gain_dbi / 10.0))
    u = ka * sin_theta
    small = u.abs() < 1e-6
    us = torch.where(small, torch.ones_like(u), u)
    pat = torch.where(small, torch.ones_like(u), 4.0 * (torch.special.bessel_j1(us) / us) ** 2)
    return 10.0 * torch.log10(pat.clamp(min=10.0 ** (floor_db / 10.0)))


def slant_range_m(elevation_deg_val: float, altitude_m: float) -> float:
    """TR 38.811 eq. 6.6-3: d = sqrt(R^2 sin^2(a) + h^2 + 2 h R) - R sin(a)."""
    s = math.sin(math.radians(elevation_deg_val))
    r = EARTH_RADIUS_M
    return math.sqrt(r * r * s * s + altitude_m ** 2 + 2.0 * altitude_m * r) - r * s


def satellite_elevation_deg(lat_deg: float, lon_deg: float, sub_lat_deg: float,
                            sub_lon_deg: float, altitude_m: float) -> float:
    """Elevation of a satellite seen from (lat, lon) given its sub-satellite point (sphere).

    Central angle psi by the haversine formula; elevation = atan2(cos psi - R/(R+h), sin psi).
    """
    p1, p2 = math.radians(lat_deg), math.radians(sub_lat_deg)
    dlat, dlon = p2 - p1, math.radians(sub_lon_deg - lon_deg)
    h = math.sin(dlat / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dlon / 2) ** 2
    psi = 2.0 * math.asin(min(1.0, math.sqrt(h)))
    ratio = EARTH_RADIUS_M / (EARTH_RADIUS_M + altitude_m)
    return math.degrees(math.atan2(math.cos(psi) - ratio, math.sin(psi)))
