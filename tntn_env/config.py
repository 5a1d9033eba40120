"""Validated, frozen configuration of the TN-NTN environment.

Every number of the model is a field here. Defaults follow docs/model.md (paper
Table 1 and Section 4.1); the source of each physical constant is given beside it. Bad values raise
``ValueError`` naming the field and the allowed range; unknown override keys are an error.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field, fields

SCENARIOS = ("sag", "ag", "uav")
ORBIT_OUTAGE_CHOICES = ("direct", "all")  # OrbitConfig.orbit_outage_choices
NTN_ENVIRONMENTS = ("dense_urban", "urban", "suburban")
INVALID_ACTION_MODES = ("raise", "repair")
MEMORY_LIMIT_GIB = 4.0  # default EnvConfig.memory_limit_gib (the default config needs ~0.2 MiB)
# The one tiny-config preset: make_config overrides of a small network (4 subbands, 3 users per
# region, 40-step episodes) for tests, the experiments' tiny / quick presets and quick trials.
# Callers needing a variant derive it ({**TINY_OVERRIDES, "episode_steps": 12}); never mutate it.
TINY_OVERRIDES = {"num_subbands": 4, "users_per_region": 3, "episode_steps": 40}


def _fail(cls: str, name: str, value, allowed: str) -> None:
    raise ValueError(f"{cls}.{name} = {value!r} is invalid; allowed: {allowed}")


def _int_at_least(cfg, name: str, low: int) -> None:
    v = getattr(cfg, name)
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        _fail(type(cfg).__name__, name, v, f"an integer >= {low}")


def _float_in(cfg, name: str, low: float = -math.inf, high: float = math.inf,
              low_open: bool = False) -> None:
    v = getattr(cfg, name)
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if ok:
        ok = (v > low if low_open else v >= low) and v <= high
    if not ok:
        lo = f"({low}" if low_open else f"[{low}"
        _fail(type(cfg).__name__, name, v, f"a finite number in {lo}, {high}]")


def _number(x) -> bool:
    """A finite int or float, not a bool."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _range_dbm(cfg, name: str) -> None:
    v = getattr(cfg, name)
    if (not isinstance(v, tuple) or len(v) != 2 or not all(_number(x) for x in v)
            or v[0] > v[1] or v[0] < -50 or v[1] > 80):
        _fail(type(cfg).__name__, name, v,
              "a tuple (min_dbm, max_dbm) with -50 <= min <= max <= 80")


@dataclass(frozen=True)
class NetworkConfig:
    """Topology, spectrum and powers (paper Table 1 and Section 4.1)."""

    num_beams: int = 2  # B, Table 1
    haps_per_beam: int = 1  # H, Table 1
    regions_per_hap: int = 2  # R, Section 4.1
    tbs_per_region: int = 2  # T_n, Section 4.1 ("2 base stations")
    uavs_per_region: int = 1  # U, Table 1
    users_per_region: int = 10  # K, Table 1
    region_size_m: float = 2000.0  # Section 4.1: 2 km x 2 km regions
    bandwidth_hz: float = 200e6  # W, Table 1
    num_subbands: int = 10  # N, Table 1
    carrier_hz: float = 28e9  # f_c, Section 4.1
    time_blocks: int = 2  # T, Table 1: a subband serves <= T users per step, 1/T of the time each
    power_levels: tuple = (0.25, 0.5, 1.0)  # fractions of the equal per-subband power share
    satellite_altitude_m: float = 550e3  # Section 4.1
    hap_altitude_m: float = 20e3  # Section 4.1
    uav_altitude_m: float = 100.0  # Section 4.1
    tbs_height_m: float = 10.0  # TR 38.901 Table 7.4.1-1, UMi: h_BS = 10 m
    ue_height_m: float = 1.5  # TR 38.901 Table 7.4.1-1, UMi: h_UT = 1.5 m
    satellite_power_dbm: tuple = (33.0, 45.0)  # per beam, Section 4.1
    hap_power_dbm: tuple = (28.0, 36.0)  # per HAP, Section 4.1
    tbs_power_dbm: tuple = (16.0, 16.0)  # per TBS, Section 4.1
    uav_power_dbm: tuple = (8.0, 8.0)  # per UAV, Section 4.1
    uav_step_m: float = 10.0  # Section 4.1: UAVs move in 10 m steps

    def __post_init__(self) -> None:
        for name in ("num_beams", "haps_per_beam", "regions_per_hap", "users_per_region",
                     "num_subbands", "time_blocks"):
            _int_at_least(self, name, 1)
        for name in ("tbs_per_region", "uavs_per_region"):
            _int_at_least(self, name, 0)
        if self.tbs_per_region + self.uavs_per_region < 1:
            _fail("NetworkConfig", "tbs_per_region", self.tbs_per_region,
                  "tbs_per_region + uavs_per_region >= 1 (each region needs a terrestrial node)")
        _float_in(self, "region_size_m", 50.0, 20000.0)
        _float_in(self, "bandwidth_hz", 0.0, 1e12, low_open=True)
        _float_in(self, "carrier_hz", 0.5e9, 100e9)
        for name in ("satellite_altitude_m", "hap_altitude_m", "uav_altitude_m"):
            _float_in(self, name, 10.0, 40000e3)
        if not self.hap_altitude_m < self.satellite_altitude_m:
            _fail("NetworkConfig", "hap_altitude_m", self.hap_altitude_m,
                  f"below satellite_altitude_m ({self.satellite_altitude_m})")
        _float_in(self, "tbs_height_m", 1.5, 150.0)
        _float_in(self, "ue_height_m", 1.0, 22.5)
        lv = self.power_levels
        if (not isinstance(lv, tuple) or len(lv) < 1
                or not all(_number(x) and 0 < x <= 1 for x in lv)
                or list(lv) != sorted(set(lv))):
            _fail("NetworkConfig", "power_levels", lv,
                  "a non-empty, strictly increasing tuple of fractions in (0, 1]")
        for name in ("satellite_power_dbm", "hap_power_dbm", "tbs_power_dbm", "uav_power_dbm"):
            _range_dbm(self, name)
        _float_in(self, "uav_step_m", 0.0, 1000.0)
        if self.num_regions * self.users_per_region > 100_000:
            _fail("NetworkConfig", "users_per_region", self.users_per_region,
                  "at most 100000 users in all")

    @property
    def num_haps(self) -> int:
        return self.num_beams * self.haps_per_beam

    @property
    def num_regions(self) -> int:
        return self.num_haps * self.regions_per_hap

    @property
    def nodes_per_region(self) -> int:
        return self.tbs_per_region + self.uavs_per_region

    @property
    def num_users(self) -> int:
        return self.num_regions * self.users_per_region


@dataclass(frozen=True)
class ChannelConfig:
    """Propagation, antennas and noise (docs/model.md, Model; sources beside each field)."""

    noise_density_dbm_hz: float = -174.0  # thermal noise density, Section 4.1
    noise_figure_db: float = 7.0  # TR 38.821 Table 6.1.1.1-2, handheld UE noise figure
    tbs_antenna_gain_dbi: float = 25.0  # docs/model.md, Model (mmWave array gain)
    uav_antenna_gain_dbi: float = 20.0  # docs/model.md, Model
    hap_antenna_gain_dbi: float = 26.0  # docs/model.md, Model; spot beams: aperture pattern
    satellite_antenna_gain_dbi: float = 38.5  # TR 38.821 Table 6.1.1.1-1, Set-1 LEO-600 Ka-band
    ue_antenna_gain_dbi: float = 0.0  # TR 38.821 Table 6.1.1.1-2, handheld
    satellite_sidelobe_db: float = 17.6  # first side lobe of the TR 38.811 6.4.1 Bessel pattern
    tbs_shadowing_los_db: float = 4.0  # TR 38.901 Table 7.4.1-1, UMi LoS sigma_SF
    tbs_shadowing_nlos_db: float = 7.82  # TR 38.901 Table 7.4.1-1, UMi NLoS sigma_SF
    a2g_a: float = 9.61  # Al-Hourani et al. 2014, urban
    a2g_b: float = 0.16  # Al-Hourani et al. 2014, urban
    a2g_eta_los_db: float = 1.0  # Al-Hourani et al. 2014, urban
    a2g_eta_nlos_db: float = 20.0  # Al-Hourani et al. 2014, urban
    ntn_environment: str = "urban"  # TR 38.811 Tables 6.6.1-1 and 6.6.2-1..3
    gas_zenith_db: float = 0.32  # TR 38.811 6.6.4 (ITU-R P.676 Fig. 6) zenith attenuation at 28 GHz
    scintillation_db: float = 0.3  # TR 38.811 6.6.6.2 order of magnitude for Ka band above 20 deg
    rician_k_tbs_db: float = 9.0  # TR 38.901 Table 7.5-6, UMi LoS K-factor mean
    rician_k_uav_db: float = 9.0  # no 3GPP value for A2G; taken equal to the UMi LoS K-factor
    rician_k_ntn_db: float = 9.0  # TR 38.811 Tables 6.7.2-3b, urban LoS Ka-band K-factor mean
    fading_rho: float = 0.0  # Gauss-Markov time correlation of fading; 0 = i.i.d. block fading
    shadowing_grid_m: float = 10.0  # TR 38.901 Table 7.5-6, UMi shadowing decorrelation 10-13 m
    los_grid_m: float = 50.0  # TR 38.901 Table 7.6.3.1-2, UMi LoS-state correlation distance 50 m
    large_scale_refresh_steps: int = 10  # user path-loss/shadowing refresh (UAV rows: each step)
    area_latitude_deg: float = 37.43  # centre of the simulated area
    area_longitude_deg: float = -122.17
    subsatellite_latitude_deg: float = 38.5  # satellite's nadir point (elevation ~75 deg)
    subsatellite_longitude_deg: float = -121.5

    def __post_init__(self) -> None:
        _float_in(self, "noise_density_dbm_hz", -220.0, -100.0)
        _float_in(self, "noise_figure_db", 0.0, 30.0)
        for name in ("tbs_antenna_gain_dbi", "uav_antenna_gain_dbi", "hap_antenna_gain_dbi",
                     "satellite_antenna_gain_dbi", "ue_antenna_gain_dbi"):
            _float_in(self, name, -20.0, 70.0)
        for name in ("satellite_sidelobe_db", "tbs_shadowing_los_db",
                     "tbs_shadowing_nlos_db", "a2g_eta_los_db", "a2g_eta_nlos_db",
                     "gas_zenith_db", "scintillation_db"):
            _float_in(self, name, 0.0, 100.0)
        _float_in(self, "a2g_a", 0.0, 100.0, low_open=True)
        _float_in(self, "a2g_b", 0.0, 10.0, low_open=True)
        if self.ntn_environment not in NTN_ENVIRONMENTS:
            _fail("ChannelConfig", "ntn_environment", self.ntn_environment, str(NTN_ENVIRONMENTS))
        for name in ("rician_k_tbs_db", "rician_k_uav_db", "rician_k_ntn_db"):
            _float_in(self, name, -100.0, 40.0)
        _float_in(self, "fading_rho", 0.0, 1.0)
        if self.fading_rho >= 1.0:
            _fail("ChannelConfig", "fading_rho", self.fading_rho, "a number in [0, 1)")
        _float_in(self, "shadowing_grid_m", 1.0, 1000.0)
        _float_in(self, "los_grid_m", 1.0, 1000.0)
        _int_at_least(self, "large_scale_refresh_steps", 1)
        for name in ("area_latitude_deg", "subsatellite_latitude_deg"):
            _float_in(self, name, -89.0, 89.0)
        for name in ("area_longitude_deg", "subsatellite_longitude_deg"):
            _float_in(self, name, -180.0, 180.0)


@dataclass(frozen=True)
class DemandConfig:
    """Users' positions, mobility and requested rates (docs/model.md, Model)."""

    num_hotspots: int = 2  # demand hotspots drifting over the whole area
    hotspot_user_fraction: float = 0.5  # share of users placed around a hotspot at reset
    hotspot_radius_m: float = 300.0  # spatial spread (std) of a hotspot
    hotspot_speed_m: float = 20.0  # hotspot drift per step (random waypoints over the area)
    user_speed_m: float = 1.0  # user random-walk step length per step
    base_demand_bps: float = 5e6  # requested rate of a user far from every hotspot
    hotspot_demand_bps: float = 20e6  # extra requested rate at a hotspot's centre
    qos_min_rate_bps: float = 1e6  # R_min of eq. (10)

    def __post_init__(self) -> None:
        _int_at_least(self, "num_hotspots", 0)
        _float_in(self, "hotspot_user_fraction", 0.0, 1.0)
        _float_in(self, "hotspot_radius_m", 0.0, 1e5, low_open=True)
        _float_in(self, "hotspot_speed_m", 0.0, 1e4)
        _float_in(self, "user_speed_m", 0.0, 1e3)
        _float_in(self, "base_demand_bps", 0.0, 1e12, low_open=True)
        _float_in(self, "hotspot_demand_bps", 0.0, 1e12)
        _float_in(self, "qos_min_rate_bps", 0.0, 1e12, low_open=True)


@dataclass(frozen=True)
class RewardConfig:
    """Weights and normalisation of eq. (11) (Section 4.1 weights)."""

    w_spectral_efficiency: float = 1.5  # Section 4.1
    w_fairness: float = 0.5  # Section 4.1
    w_uav_penalty: float = 1.0  # Section 4.1 (enters with a minus sign)
    w_qos_violation: float = 0.5  # Section 4.1 (enters with a minus sign)
    w_rate: float = 0.0  # eq. (11)'s R_avg term, off by default as in Section 4.1
    se_scale_bps_per_hz: float = 1.0  # eta_j is divided by this
    rate_scale_bps: float = 20e6  # mean user rate is divided by this for the w_rate term

    def __post_init__(self) -> None:
        for name in ("w_spectral_efficiency", "w_fairness", "w_uav_penalty", "w_qos_violation",
                     "w_rate"):
            _float_in(self, name, 0.0, 1e6)
        _float_in(self, "se_scale_bps_per_hz", 0.0, 1e6, low_open=True)
        _float_in(self, "rate_scale_bps", 0.0, 1e15, low_open=True)


@dataclass(frozen=True)
class TimingConfig:
    """Episode length and decision intervals (Table 1)."""

    episode_steps: int = 500  # S, Table 1
    satellite_interval: int = 50  # delta_s, Table 1
    hap_interval: int = 10  # delta_h, Table 1
    local_interval: int = 1  # delta_l, Table 1 (local agents act every step)
    # The network is in operation when an episode starts: the first observation reports the
    # feedback (user rates, served share, SE, fairness, interference) of one step of the
    # initial allocation with max-SNR scheduling at full power (the env docstring, Starting
    # State). The paper does not specify the initial feedback; False starts from zero feedback.
    warm_start: bool = True
    # Duration of one step. 1 s matches the per-step mobility of the defaults: users walk 1 m
    # (pedestrian ~1 m/s, TR 38.901 7.6.3 uses 3 km/h), UAVs fly 10 m (10 m/s), and a LEO at
    # 550 km crosses the sky above 10 deg in about 8 minutes, so a 500-step episode spans about
    # one pass (docs/model.md, Orbit). Used only by the orbit (OrbitConfig).
    step_duration_s: float = 1.0

    def __post_init__(self) -> None:
        _int_at_least(self, "episode_steps", 1)
        _float_in(self, "step_duration_s", 0.0, 3600.0, low_open=True)
        _int_at_least(self, "satellite_interval", 1)
        _int_at_least(self, "hap_interval", 1)
        if not isinstance(self.warm_start, bool):
            _fail("TimingConfig", "warm_start", self.warm_start, "True or False")
        if self.local_interval != 1:
            _fail("TimingConfig", "local_interval", self.local_interval,
                  "1 (local agents schedule users every step)")


@dataclass(frozen=True)
class OrbitConfig:
    """The serving LEO satellite's orbit (docs/model.md, Orbit). Off by default: the satellite
    then stays at the sub-satellite point of ChannelConfig for the whole episode."""

    orbit_enabled: bool = False  # propagate the satellite with SGP4 (tntn_env/orbit.py)
    # "" = a synthetic TLE from the fields below and NetworkConfig.satellite_altitude_m; else a
    # path to a file holding a TLE, or its two lines (one string with a newline, or a tuple)
    orbit_tle: str | tuple = ""
    orbit_inclination_deg: float = 53.0  # synthetic TLE; the 550 km Starlink shell (FCC
    # SAT-MOD-20200417-00037), a typical LEO broadband inclination
    orbit_raan_deg: float | None = None  # synthetic TLE; None: aimed (see orbit_mean_anomaly_deg)
    # synthetic TLE; None (with orbit_raan_deg None): RAAN and mean anomaly are chosen so that
    # the pass culminates over the area's centre in the middle of the episode
    orbit_mean_anomaly_deg: float | None = None
    orbit_epoch_utc: str = "2025-01-01T00:00:00"  # synthetic TLE's epoch (ISO 8601, UTC)
    orbit_start_utc: str = ""  # start of every episode; "" = the TLE's epoch
    # SGP4 from a TLE degrades by ~1-3 km per day from its epoch (Vallado et al., "Revisiting
    # Spacetrack Report #3", AIAA 2006-6753): episodes must start within this many days of it
    orbit_tle_validity_days: float = 7.0
    orbit_min_elevation_deg: float = 10.0  # TR 38.821 6.1.1.1: 10 deg (30 deg also studied)
    orbit_plane_satellites: int = 1  # satellites evenly spaced in the plane; > 1: handover
    # satellite choices masked below the minimum elevation: "direct" (satellite-direct, the
    # satellite's own transmission; the spectrum it handed down stays in force) or "all"
    # (every choice but off: no spectrum is handed down while the satellite is out of view)
    orbit_outage_choices: str = "direct"
    orbit_static_step: int | None = None  # if set, the satellite stays where it is at that step

    def __post_init__(self) -> None:
        c = "OrbitConfig"
        if not isinstance(self.orbit_enabled, bool):
            _fail(c, "orbit_enabled", self.orbit_enabled, "True or False")
        tle = self.orbit_tle
        if not (isinstance(tle, str) or (isinstance(tle, tuple) and len(tle) == 2
                                         and all(isinstance(x, str) for x in tle))):
            _fail(c, "orbit_tle", tle, "'' (synthetic), a file path, or the TLE's two lines")
        _float_in(self, "orbit_inclination_deg", 0.0, 180.0)
        for name, low, high in (("orbit_raan_deg", 0.0, 360.0),
                                ("orbit_mean_anomaly_deg", 0.0, 360.0)):
            if getattr(self, name) is not None:
                _float_in(self, name, low, high)
        if (self.orbit_raan_deg is None) != (self.orbit_mean_anomaly_deg is None):
            _fail(c, "orbit_raan_deg", self.orbit_raan_deg,
                  "given together with orbit_mean_anomaly_deg, or both None (aimed pass)")
        for name in ("orbit_epoch_utc", "orbit_start_utc"):
            v = getattr(self, name)
            if not isinstance(v, str) or (v or name == "orbit_epoch_utc") and _utc(v) is None:
                _fail(c, name, v, "an ISO 8601 UTC time such as '2025-01-01T00:00:00'"
                      + (" or ''" if name == "orbit_start_utc" else ""))
        _float_in(self, "orbit_tle_validity_days", 0.0, 365.0, low_open=True)
        v = self.orbit_min_elevation_deg
        if not _number(v) or not 0.0 <= v < 90.0:
            _fail(c, "orbit_min_elevation_deg", v, "a number in [0, 90)")
        _int_at_least(self, "orbit_plane_satellites", 1)
        if self.orbit_plane_satellites > 100:
            _fail(c, "orbit_plane_satellites", self.orbit_plane_satellites,
                  "an integer in [1, 100]")
        if self.orbit_outage_choices not in ORBIT_OUTAGE_CHOICES:
            _fail(c, "orbit_outage_choices", self.orbit_outage_choices, str(ORBIT_OUTAGE_CHOICES))
        if self.orbit_static_step is not None:
            _int_at_least(self, "orbit_static_step", 0)


def _utc(text: str):
    """datetime (UTC) of an ISO 8601 string, or None if it does not parse."""
    import datetime as dt
    try:
        t = dt.datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return t.replace(tzinfo=dt.timezone.utc) if t.tzinfo is None else t.astimezone(dt.timezone.utc)


_SUBCONFIGS = {"network": NetworkConfig, "channel": ChannelConfig, "demand": DemandConfig,
               "reward": RewardConfig, "timing": TimingConfig, "orbit": OrbitConfig}


@dataclass(frozen=True)
class EnvConfig:
    """The whole environment: scenario preset plus the six groups of fields."""

    scenario: str = "sag"
    network: NetworkConfig = field(default_factory=NetworkConfig)
    channel: ChannelConfig = field(default_factory=ChannelConfig)
    demand: DemandConfig = field(default_factory=DemandConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    timing: TimingConfig = field(default_factory=TimingConfig)
    orbit: OrbitConfig = field(default_factory=OrbitConfig)
    invalid_action: str = "raise"
    memory_limit_gib: float = MEMORY_LIMIT_GIB  # refuse configs whose one env needs more

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            _fail("EnvConfig", "scenario", self.scenario, str(SCENARIOS))
        if self.invalid_action not in INVALID_ACTION_MODES:
            _fail("EnvConfig", "invalid_action", self.invalid_action, str(INVALID_ACTION_MODES))
        for name, cls in _SUBCONFIGS.items():
            if not isinstance(getattr(self, name), cls):
                _fail("EnvConfig", name, getattr(self, name), f"a {cls.__name__}")
        _float_in(self, "memory_limit_gib", 0.0, 1e9, low_open=True)
        if self.orbit.orbit_enabled and self.scenario != "sag":
            _fail("OrbitConfig", "orbit_enabled", True,
                  "False in scenario 'ag' and 'uav' (the orbit changes the satellite's own link "
                  "and choices, which only 'sag' has)")
        st = self.orbit.orbit_static_step
        if st is not None and st > self.timing.episode_steps:
            _fail("OrbitConfig", "orbit_static_step", st,
                  f"None or a step in [0, episode_steps = {self.timing.episode_steps}]")
        need = memory_estimate_bytes(self) / 2 ** 30
        if need > self.memory_limit_gib:
            raise ValueError(
                f"this config needs about {need:,.1f} GiB for one environment (estimate: "
                f"{memory_breakdown(self)}), above memory_limit_gib = {self.memory_limit_gib:g}; "
                "reduce the sizes, or raise memory_limit_gib (a config field) if the machine "
                "has the memory")

    @property
    def has_satellite_agent(self) -> bool:
        return self.scenario == "sag"

    @property
    def has_hap_agents(self) -> bool:
        return self.scenario in ("sag", "ag")


_FIELD_OWNER = {f.name: group for group, cls in _SUBCONFIGS.items() for f in fields(cls)}


def _memory_terms(cfg: EnvConfig, num_envs: int = 1) -> dict:
    """Bytes by what needs them (see :func:`memory_estimate_bytes`)."""
    n, E = cfg.network, num_envs
    J, M, K, N, T, U = (n.num_regions, n.nodes_per_region, n.users_per_region, n.num_subbands,
                        n.time_blocks, n.uavs_per_region)
    I, B, R, L, Ut = n.num_haps, n.num_beams, n.regions_per_hap, len(n.power_levels), n.num_users
    X, Hs = J * M + J + B, cfg.demand.num_hotspots  # transmitters, hotspots
    agents = {"satellite": 1, "hap": I, "local": J}
    positions = {"satellite": N, "hap": R * N, "local": N * T + N + U}
    choices = {"satellite": N * (B + 2), "hap": R * N * (M + 2),
               "local": N * T * (K + 1) + N * L + 5 * U}
    widest = {"satellite": B + 2, "hap": M + 2, "local": max(K + 1, L, 5)}
    obs = {"satellite": N * (B + 2) + 5 * J + 2,
           "hap": 2 * N + R * N * (M + 2) + 4 * R + 2 * R * (M + 1) + 3,
           "local": 6 * N + K * N + 4 * K + 2 * U + 3}
    return {
        # per-step counter codes, per-choice index tables (Python lists and tensors),
        # region-pair tables
        "tables": 16 * (cfg.timing.episode_steps + 2) + 48 * sum(choices.values())
        + 44 * J * J,
        # large-scale gain / LoS / K tables of every (transmitter, user) pair and their
        # temporaries; the fading state under correlated fading
        "links": E * (64 * X * Ut + (80 * X * Ut * N if cfg.channel.fading_rho > 0 else 0)),
        # hotspots and the user-hotspot distances of the demand field
        "demand": E * (16 * Ut * Hs + 64 * Hs),
        # fading draws of a step: every scheduled slot with its interferers, holder SNRs
        "step": E * 48 * J * N * (T * J + K),
        # masks (flat and padded) and observations, with their temporaries
        "agents": E * sum(agents[t] * (16 * positions[t] * widest[t] + 16 * choices[t]
                                       + 12 * obs[t]) for t in agents),
    }


def memory_estimate_bytes(cfg: EnvConfig, num_envs: int = 1) -> int:
    """Rough estimate of the memory a :class:`~tntn_env.TNTNCore` of ``cfg`` with ``num_envs``
    environments needs (bytes): its tables, state and a step's temporaries. Within a factor of
    about two of the peak measured over a reset and a few steps on CPU (beyond the ~50 MiB of a
    torch process); the default config needs ~0.2 MiB per env. ``EnvConfig`` refuses a config
    whose single environment needs more than ``memory_limit_gib``."""
    return int(sum(_memory_terms(cfg, num_envs).values()))


def memory_breakdown(cfg: EnvConfig, num_envs: int = 1) -> str:
    """The estimate's terms, largest first: 'step 3.2 GiB, links 0.1 GiB, ...'."""
    terms = sorted(_memory_terms(cfg, num_envs).items(), key=lambda kv: -kv[1])
    return ", ".join(f"{k} {v / 2 ** 30:,.2f} GiB" for k, v in terms if v >= 2 ** 20) or "-"


def make_config(scenario: str = "sag", **overrides) -> EnvConfig:
    """Build an :class:`EnvConfig` for a preset with flat overrides.

    Overrides are field names of any group (``num_beams=3``, ``noise_figure_db=5``), a whole
    group (``channel=ChannelConfig(...)``), ``invalid_action`` or ``memory_limit_gib``. Unknown
    keys raise.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario = {scenario!r} is unknown; allowed: {SCENARIOS}")
    groups: dict = {}
    per_group: dict = {g: {} for g in _SUBCONFIGS}
    top: dict = {}
    for key, value in overrides.items():
        if key in _SUBCONFIGS:
            groups[key] = value
        elif key in ("invalid_action", "memory_limit_gib"):
            top[key] = value
        elif key in _FIELD_OWNER:
            if isinstance(value, list):
                value = tuple(value)
            per_group[_FIELD_OWNER[key]][key] = value
        else:
            allowed = sorted([*_FIELD_OWNER, *_SUBCONFIGS, "invalid_action", "memory_limit_gib"])
            raise ValueError(f"unknown config key {key!r}; allowed keys: {', '.join(allowed)}")
    built = {}
    for g, cls in _SUBCONFIGS.items():
        base = groups.get(g, cls())
        if not isinstance(base, cls):
            raise ValueError(f"{g} = {base!r} is invalid; allowed: a {cls.__name__}")
        built[g] = dataclasses.replace(base, **per_group[g]) if per_group[g] else base
    return EnvConfig(scenario=scenario, **built, **top)


def _unique_keys(pairs) -> dict:
    keys = [k for k, _ in pairs]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise ValueError(f"env override {dup[0]!r} is given twice; give each key once")
    return dict(pairs)


def format_overrides(overrides: dict) -> str:
    """Overrides -> the text form :func:`parse_overrides` reads ('num_subbands=4,...'; values
    as JSON), e.g. a trainer's ``--env-overrides``."""
    def text(v) -> str:
        return json.dumps(list(v) if isinstance(v, tuple) else v, separators=(",", ":"))

    return ",".join(f"{k}={text(v)}" for k, v in overrides.items())


def parse_overrides(text: str) -> dict:
    """Overrides given as text (the trainers' ``--env-overrides``) -> dict for make_config:
    '{"num_subbands": 4}' or 'num_subbands=4,power_levels=[0.5,1.0]' (values parsed as JSON,
    else kept as strings). A key given twice is an error."""
    text = text.strip()
    if not text:
        return {}
    if text.startswith("{"):
        return json.loads(text, object_pairs_hook=_unique_keys)
    parts, tok, depth = [], "", 0
    for ch in text + ",":
        depth += (ch in "[{(") - (ch in "]})")
        if depth == 0 and (ch == "," or ch.isspace()):
            parts, tok = parts + [tok] * bool(tok), ""
        else:
            tok += ch
    out = {}
    for p in parts:
        key, eq, val = p.partition("=")
        if not eq:
            raise ValueError(f"env override {p!r} is not key=value")
        if key in out:
            raise ValueError(f"env override {key!r} is given twice; give each key once")
        try:
            out[key] = json.loads(val)
        except json.JSONDecodeError:
            out[key] = val
    return out
