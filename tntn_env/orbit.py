"""The serving LEO satellite's pass: TLEs, SGP4 propagation and the topocentric geometry of
every region over an episode (docs/model.md, Orbit).

Propagation is the reference SGP4 implementation (the ``sgp4`` package, vectorised over
satellites and instants by ``SatrecArray``) from a two-line element set: a synthetic TLE built
from (altitude, inclination, right ascension of the ascending node, mean anomaly, epoch), or a
user TLE (a file or its two lines). It runs once when the core is built, on the host, over every
step of an episode (and as many steps beyond, for the look-ahead features); every episode starts
at the same instant, so every episode sees the same pass. The core gathers the per-step tensors
of :class:`OrbitTrack` by each env's step counter.

Frames: SGP4 gives positions in TEME; they are rotated to Earth-fixed coordinates by the
Greenwich mean sidereal time (IAU-82, ``sgp4.propagation.gstime``), which is the TEME -> PEF
transformation of Vallado et al. (AIAA 2006-6753, Appendix C). Approximations: UT1 = UTC
(|UT1 - UTC| < 0.9 s: at most 0.004 deg of Earth rotation, 0.4 km at the equator) and polar
motion neglected (< 20 m). Ground points are on the WGS-84 ellipsoid with the geodetic normal as
the local vertical. Together these keep the elevation within ~0.05 deg of a full IERS reduction
for a 550 km orbit, far below SGP4's own ~1 km accuracy at epoch.

Layer: imports config and channel only; the core imports it.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from dataclasses import dataclass

import numpy as np
import torch

from .channel import EARTH_RADIUS_M, aperture_pattern_db
from .config import EnvConfig, _utc

MU_WGS72_KM3_S2 = 398600.8  # WGS-72 gravitational parameter, the constant SGP4 uses
WGS84_A_M = 6_378_137.0  # WGS-84 semi-major axis (NIMA TR8350.2)
WGS84_E2 = 6.694379990141e-3  # WGS-84 first eccentricity squared (NIMA TR8350.2)
SYNTHETIC_SATNUM = 99999


# ---------------------------------------------------------------------- TLE text
def tle_checksum(line: str) -> int:
    """TLE checksum of the first 68 columns: digits summed, each '-' counts 1, modulo 10."""
    return sum(int(c) if c.isdigit() else (c == "-") for c in line[:68]) % 10


def synthetic_tle(altitude_m: float, inclination_deg: float, raan_deg: float,
                  mean_anomaly_deg: float, epoch: dt.datetime) -> tuple[str, str]:
    """Two TLE lines of a circular orbit at ``altitude_m`` above the mean Earth radius
    (6,371 km, TR 38.811 eq. 6.6-3), no drag, argument of perigee 0. The mean motion is the
    two-body n = sqrt(mu / a^3) with mu of WGS-72 (SGP4's constant)."""
    a_km = (EARTH_RADIUS_M + altitude_m) / 1000.0
    n_rev_day = math.sqrt(MU_WGS72_KM3_S2 / a_km ** 3) * 86400.0 / (2.0 * math.pi)
    epoch = epoch.astimezone(dt.timezone.utc)
    start = dt.datetime(epoch.year, 1, 1, tzinfo=dt.timezone.utc)
    doy = 1.0 + (epoch - start).total_seconds() / 86400.0
    l1 = (f"1 {SYNTHETIC_SATNUM:05d}U 25001A   {epoch.year % 100:02d}{doy:012.8f}  .00000000 "
          " 00000+0  00000+0 0  999")
    l2 = (f"2 {SYNTHETIC_SATNUM:05d} {inclination_deg % 180.0:8.4f} {raan_deg % 360.0:8.4f} "
          f"0000000 {0.0:8.4f} {mean_anomaly_deg % 360.0:8.4f} {n_rev_day:11.8f}    1")
    return l1 + str(tle_checksum(l1)), l2 + str(tle_checksum(l2))


# numeric fields (1-based columns) of the TLE format (CelesTrak, "NORAD Two-Line Element Set
# Format"), checked so that an error names the field
_TLE_NUMBERS_1 = (((19, 20), "epoch year"), ((21, 32), "epoch day"),
                  ((34, 43), "first derivative of mean motion"))
_TLE_NUMBERS_2 = (((9, 16), "inclination"), ((18, 25), "right ascension of the ascending node"),
                  ((27, 33), "eccentricity"), ((35, 42), "argument of perigee"),
                  ((44, 51), "mean anomaly"), ((53, 63), "mean motion"))


def read_tle(source, field: str = "OrbitConfig.orbit_tle") -> tuple[str, str]:
    """The two lines of a TLE given as a file path, one string with a newline, or two strings
    (a name line before them is allowed). Raises ValueError naming ``field``."""
    if isinstance(source, (tuple, list)):
        lines = [str(x) for x in source]
    else:
        text = str(source)
        if "\n" not in text.strip():
            if not os.path.isfile(text):
                raise ValueError(f"{field} = {text!r} is invalid; allowed: '' (synthetic), a "
                                 "path to an existing TLE file, or the TLE's two lines")
            with open(text) as f:
                text = f.read()
        lines = text.splitlines()
    lines = [ln.rstrip() for ln in lines if ln.strip()]
    lines = [ln for ln in lines if ln[:2] in ("1 ", "2 ")]
    if len(lines) != 2 or not lines[0].startswith("1 ") or not lines[1].startswith("2 "):
        raise ValueError(f"{field}: expected two TLE lines starting with '1 ' and '2 ', got "
                         f"{len(lines)} such lines")
    for ln in lines:
        if len(ln) != 69:
            raise ValueError(f"{field}: TLE line {ln[0]} has {len(ln)} characters; allowed: 69")
        if not ln[68].isdigit() or int(ln[68]) != tle_checksum(ln):
            raise ValueError(f"{field}: checksum of TLE line {ln[0]} is {ln[68]!r}, computed "
                             f"{tle_checksum(ln)}")
    for ln, cols in ((lines[0], _TLE_NUMBERS_1), (lines[1], _TLE_NUMBERS_2)):
        for (a, b), name in cols:
            text = ln[a - 1:b].strip()
            try:
                float(("0" + text) if text.startswith(".") else text)
            except ValueError:
                raise ValueError(f"{field}: TLE line {ln[0]} columns {a}-{b} ({name}) = "
                                 f"{ln[a - 1:b]!r} is not a number") from None
    if lines[0][2:7] != lines[1][2:7]:
        raise ValueError(f"{field}: the satellite numbers of the two lines differ "
                         f"({lines[0][2:7]!r}, {lines[1][2:7]!r})")
    return lines[0], lines[1]


def parse_tle(l1: str, l2: str, field: str = "OrbitConfig.orbit_tle"):
    """``sgp4.api.Satrec`` of checked TLE lines; a parse or SGP4 initialisation error names
    ``field``."""
    from sgp4.api import Satrec

    try:
        sat = Satrec.twoline2rv(l1, l2)
    except Exception as exc:  # the library's own parse errors (ValueError, IndexError)
        raise ValueError(f"{field}: the TLE does not parse ({exc})") from exc
    if sat.error != 0:
        from sgp4.api import SGP4_ERRORS

        raise ValueError(f"{field}: SGP4 rejects the TLE (error {sat.error}: "
                         f"{SGP4_ERRORS.get(sat.error, 'unknown')})")
    if not 0.0 < sat.no_kozai:
        raise ValueError(f"{field}: mean motion must be positive")
    return sat


def tle_epoch(sat) -> dt.datetime:
    """Epoch of a Satrec as a UTC datetime."""
    jd = sat.jdsatepoch + sat.jdsatepochF
    return (dt.datetime(2000, 1, 1, 12, tzinfo=dt.timezone.utc)
            + dt.timedelta(days=jd - 2451545.0))


def _jd(t: dt.datetime) -> float:
    return 2451545.0 + (t - dt.datetime(2000, 1, 1, 12, tzinfo=dt.timezone.utc)).total_seconds() \
        / 86400.0


def plane_satellites(sat, count: int) -> list:
    """``count`` satellites of ``sat``'s plane, evenly spaced in mean anomaly; satellite k trails
    satellite 0 by k/count of a revolution (it passes k/count of a period later)."""
    from sgp4.api import WGS72, Satrec

    out = [sat]
    epoch = sat.jdsatepoch + sat.jdsatepochF - 2433281.5  # days since 1949-12-31 00:00 UT
    for k in range(1, count):
        s = Satrec()
        s.sgp4init(WGS72, "i", sat.satnum, epoch, sat.bstar, sat.ndot, sat.nddot, sat.ecco,
                   sat.argpo, sat.inclo, (sat.mo - 2.0 * math.pi * k / count) % (2.0 * math.pi),
                   sat.no_kozai, sat.nodeo)
        out.append(s)
    return out


# ---------------------------------------------------------------------- geometry
def gmst_rad(jd_ut1: np.ndarray) -> np.ndarray:
    """Greenwich mean sidereal time (IAU-82, radians) of Julian dates (UT1)."""
    from sgp4.propagation import gstime

    return np.array([gstime(float(j)) for j in np.ravel(jd_ut1)]).reshape(np.shape(jd_ut1))


def teme_to_ecef(r_teme: np.ndarray, gmst: np.ndarray) -> np.ndarray:
    """TEME -> Earth-fixed (PEF, polar motion neglected): rotation by -GMST about z.
    ``r_teme`` [..., T, 3], ``gmst`` [T] radians."""
    c, s = np.cos(gmst), np.sin(gmst)
    x, y, z = r_teme[..., 0], r_teme[..., 1], r_teme[..., 2]
    return np.stack([c * x + s * y, -s * x + c * y, z], -1)


def ground_ecef(lat_deg, lon_deg, height_m=0.0, ellipsoid: bool = True):
    """(ECEF position [.., 3] in m, local vertical unit vector [.., 3]) of ground points:
    WGS-84 geodetic (``ellipsoid``) or a sphere of the mean Earth radius 6,371 km."""
    lat, lon = np.radians(lat_deg), np.radians(lon_deg)
    up = np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], -1)
    if not ellipsoid:
        return (EARTH_RADIUS_M + np.asarray(height_m))[..., None] * up, up
    n = WGS84_A_M / np.sqrt(1.0 - WGS84_E2 * np.sin(lat) ** 2)
    pos = np.stack([(n + height_m) * np.cos(lat) * np.cos(lon),
                    (n + height_m) * np.cos(lat) * np.sin(lon),
                    (n * (1.0 - WGS84_E2) + height_m) * np.sin(lat)], -1)
    return pos, up


def look_angles(sat_ecef_m: np.ndarray, ground_m: np.ndarray, up: np.ndarray):
    """(elevation in degrees, slant range in m) of satellites ``sat_ecef_m`` [..., 3] seen from
    ground points ``ground_m`` [..., 3] with local verticals ``up`` (broadcast)."""
    d = sat_ecef_m - ground_m
    rng = np.linalg.norm(d, axis=-1)
    sin_el = (d * up).sum(-1) / rng
    return np.degrees(np.arcsin(np.clip(sin_el, -1.0, 1.0))), rng


def aimed_elements(lat_deg: float, lon_deg: float, altitude_m: float, inclination_deg: float,
                   epoch: dt.datetime, culmination_s: float) -> tuple[float, float]:
    """(RAAN, mean anomaly at epoch), degrees, of a circular orbit whose ascending pass is
    over (lat, lon) ``culmination_s`` after ``epoch`` (two-body; SGP4's J2 terms move the
    actual culmination by a few km, i.e. the peak elevation is ~85-90 deg)."""
    inc = math.radians(inclination_deg)
    lat = math.radians(lat_deg)
    if abs(math.sin(lat)) > abs(math.sin(inc)) + 1e-12:
        raise ValueError(
            f"OrbitConfig.orbit_inclination_deg = {inclination_deg} never reaches the area's "
            f"latitude {lat_deg}; allowed: an inclination >= |latitude| (or give "
            "orbit_raan_deg and orbit_mean_anomaly_deg)")
    u = math.asin(max(-1.0, min(1.0, math.sin(lat) / math.sin(inc))))  # argument of latitude
    a_m = EARTH_RADIUS_M + altitude_m
    n = math.sqrt(MU_WGS72_KM3_S2 * 1e9 / a_m ** 3)  # rad/s
    ma0 = u - n * culmination_s
    ra = math.atan2(math.cos(inc) * math.sin(u), math.cos(u))  # RA of the point minus RAAN
    jd_c = _jd(epoch) + culmination_s / 86400.0
    raan = math.radians(lon_deg) + float(gmst_rad(np.array(jd_c))) - ra
    return math.degrees(raan) % 360.0, math.degrees(ma0) % 360.0


# ---------------------------------------------------------------------- the track
@dataclass
class OrbitTrack:
    """Per-step geometry of the serving satellite over one episode and as many steps beyond
    (index = step, H = 2 (episode_steps + 1) rows). Tensors on the core's device; host copies of
    what the step needs without a device sync."""

    tle: tuple  # the TLE lines of satellite 0
    start_utc: dt.datetime
    elevation_deg: torch.Tensor  # [H, J] serving satellite's elevation at each region centre
    slant_range_m: torch.Tensor  # [H, J]
    beam_gain_db: torch.Tensor  # [H, J] own beam's pattern at the region (<= 0 dB)
    visible: torch.Tensor  # [H] bool: the serving satellite is at or above the minimum
    features: torch.Tensor  # [H, 3]: coverage steps left, steps until coverage, handover next
    visible_host: list  # [H] bool
    serving: np.ndarray  # [H] index of the satellite in the plane whose geometry is used
    handover: np.ndarray  # [H] bool: the serving satellite changed at this step

    def at(self, t: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """Rows of ``table`` at steps ``t`` [E] (clamped to the horizon)."""
        return table[t.clamp(max=table.shape[0] - 1)]


def start_time(cfg: EnvConfig, sat) -> dt.datetime:
    """Start of every episode, checked against the TLE's validity window."""
    o = cfg.orbit
    epoch = tle_epoch(sat)
    start = _utc(o.orbit_start_utc) if o.orbit_start_utc else epoch
    age = abs((start - epoch).total_seconds()) / 86400.0
    span = cfg.timing.episode_steps * cfg.timing.step_duration_s / 86400.0
    if age + span > o.orbit_tle_validity_days:
        raise ValueError(
            f"OrbitConfig.orbit_start_utc = {o.orbit_start_utc!r}: the episode runs up to "
            f"{age + span:.2f} days from the TLE's epoch {epoch.isoformat()}; allowed: within "
            f"orbit_tle_validity_days = {o.orbit_tle_validity_days}")
    return start


def satellite_of(cfg: EnvConfig, area_lat: float, area_lon: float):
    """(Satrec, TLE lines) of the configured orbit: the user TLE or the synthetic one."""
    o, net, tm = cfg.orbit, cfg.network, cfg.timing
    if o.orbit_tle:
        l1, l2 = read_tle(o.orbit_tle)
        return parse_tle(l1, l2), (l1, l2)
    epoch = _utc(o.orbit_epoch_utc)
    if o.orbit_raan_deg is None:
        start = _utc(o.orbit_start_utc) if o.orbit_start_utc else epoch
        culm = (start - epoch).total_seconds() + tm.episode_steps * tm.step_duration_s / 2.0
        raan, ma = aimed_elements(area_lat, area_lon, net.satellite_altitude_m,
                                  o.orbit_inclination_deg, epoch, culm)
    else:
        raan, ma = o.orbit_raan_deg, o.orbit_mean_anomaly_deg
    l1, l2 = synthetic_tle(net.satellite_altitude_m, o.orbit_inclination_deg, raan, ma, epoch)
    return parse_tle(l1, l2, "OrbitConfig (synthetic TLE)"), (l1, l2)


def propagate(sats: list, jd: np.ndarray) -> np.ndarray:
    """Earth-fixed positions [P, T, 3] (m) of satellites ``sats`` at Julian dates ``jd`` [T]
    (SGP4 via ``SatrecArray``, then the GMST rotation)."""
    from sgp4.api import SatrecArray

    whole = np.floor(jd - 0.5) + 0.5
    err, r, _ = SatrecArray(sats).sgp4(whole, jd - whole)
    if np.any(err != 0):
        from sgp4.api import SGP4_ERRORS

        code = int(err[err != 0][0])
        raise ValueError(f"OrbitConfig.orbit_tle: SGP4 fails during the episode (error {code}: "
                         f"{SGP4_ERRORS.get(code, 'unknown')})")
    return teme_to_ecef(r * 1000.0, gmst_rad(jd))


def build_track(cfg: EnvConfig, region_lat_deg, region_lon_deg, region_beam,
                device) -> OrbitTrack:
    """The :class:`OrbitTrack` of ``cfg`` for regions at (lat, lon) [J] with beams
    ``region_beam`` [J] (beam b is steered at the mean position of its regions)."""
    o, tm, net, ch = cfg.orbit, cfg.timing, cfg.network, cfg.channel
    lat, lon = np.asarray(region_lat_deg, float), np.asarray(region_lon_deg, float)
    sat, tle = satellite_of(cfg, float(lat.mean()), float(lon.mean()))
    start = start_time(cfg, sat)
    sats = plane_satellites(sat, o.orbit_plane_satellites)
    S = tm.episode_steps
    H = 2 * (S + 1)
    steps = np.arange(H, dtype=float)
    if o.orbit_static_step is not None:
        steps = np.full(H, float(o.orbit_static_step))
    jd = _jd(start) + steps * tm.step_duration_s / 86400.0
    pos = propagate(sats, jd)  # [P, H, 3]
    g, up = ground_ecef(lat, lon, net.ue_height_m)  # [J, 3]
    el, rng = look_angles(pos[:, :, None], g[None, None], up[None, None])  # [P, H, J]
    # the serving satellite: kept while at or above the minimum elevation everywhere, then the
    # highest one that is (the next of the plane), else none (the nearest one's geometry)
    worst = el.min(-1)  # [P, H]
    ok = worst >= o.orbit_min_elevation_deg
    serving = np.zeros(H, dtype=int)
    visible = np.zeros(H, dtype=bool)
    cur = -1
    for t in range(H):
        if cur < 0 or not ok[cur, t]:
            cand = np.where(ok[:, t])[0]
            cur = int(cand[np.argmax(worst[cand, t])]) if cand.size else -1
        visible[t] = cur >= 0
        serving[t] = cur if cur >= 0 else int(np.argmax(worst[:, t]))
    handover = np.zeros(H, dtype=bool)
    handover[1:] = visible[1:] & visible[:-1] & (serving[1:] != serving[:-1])
    idx = np.arange(H)
    el_s, rng_s, pos_s = el[serving, idx], rng[serving, idx], pos[serving, idx]  # [H, J], [H, 3]
    # Earth-fixed beams: beam b points at the mean ground position of its regions; the own
    # beam's gain at region j follows the aperture pattern at the off-axis angle between the
    # aim point and the region centre, floored at the side-lobe level.
    beam = np.asarray(region_beam)
    aim = np.stack([g[beam == b].mean(0) for b in range(net.num_beams)])[beam]  # [J, 3]
    v_aim = aim[None] - pos_s[:, None]
    v_reg = g[None] - pos_s[:, None]
    cos_t = (v_aim * v_reg).sum(-1) / (np.linalg.norm(v_aim, axis=-1)
                                        * np.linalg.norm(v_reg, axis=-1))
    sin_t = np.sqrt(np.clip(1.0 - cos_t ** 2, 0.0, 1.0))
    pat = aperture_pattern_db(torch.as_tensor(sin_t, dtype=torch.float64),
                              ch.satellite_antenna_gain_dbi).numpy()
    beam_db = np.maximum(pat, -ch.satellite_sidelobe_db)
    # look-ahead features per step: steps until the serving satellite's coverage ends (handover
    # or loss), steps until coverage begins (0 while covered), whether the end is a handover
    left = np.zeros(H)
    wait = np.zeros(H)
    nxt_ho = np.zeros(H)
    end, nxt = H, 0.0  # scan backwards
    for t in range(H - 1, -1, -1):
        if t + 1 < H and (not visible[t + 1] or handover[t + 1]):
            end, nxt = t + 1, float(handover[t + 1])
        if visible[t]:
            left[t] = end - t
            nxt_ho[t] = nxt
    soon = H
    for t in range(H - 1, -1, -1):
        if visible[t]:
            soon = t
        else:
            wait[t] = soon - t
    feats = np.stack([np.minimum(left, S) / S, np.minimum(wait, S) / S, nxt_ho], -1)

    def tt(x, dtype=torch.float32):
        return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)

    return OrbitTrack(tle=tle, start_utc=start, elevation_deg=tt(el_s), slant_range_m=tt(rng_s),
                      beam_gain_db=tt(beam_db), visible=tt(visible, torch.bool),
                      features=tt(feats), visible_host=visible.tolist(), serving=serving,
                      handover=handover)
