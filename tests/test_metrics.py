"""SINR, rates, spectral efficiency, Jain fairness, QoS violation and rewards (eqs. (6)-(11)).

(a) recomputed with plain numpy loops from ``core.link_state()`` after random masked steps;
(b) tiny hand-made cases whose answers are written out.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from handcalc import aperture_db, sample_masked, spot_sin_theta

from tntn_env import TNTNCore, make_config


def region_boxes(core):
    """Region squares from the documented layout: row-major grid of ceil(sqrt(J)) columns."""
    J, size = core.J, core.cfg.network.region_size_m
    ncols = math.ceil(math.sqrt(J))
    return [((j % ncols) * size, (j // ncols) * size, size) for j in range(J)]


def reference(core, e):
    """Everything of eqs. (6)-(11) for env ``e`` of the last step, by plain loops."""
    ls = core.link_state(e)
    cfg = core.cfg
    W, N = cfg.network.bandwidth_hz, core.N
    gain, P, serving, noise = ls["gain"], ls["tx_power_w"], ls["serving_tx"], ls["noise_w"]
    X, Ut, _ = gain.shape
    sinr = np.zeros((Ut, N))
    for u in range(Ut):
        for n in range(N):
            s = serving[u, n]
            if s < 0:
                continue
            sig = float(gain[s, u, n]) * float(P[s, n])
            interf = sum(float(gain[x, u, n]) * float(P[x, n]) for x in range(X) if x != s)
            sinr[u, n] = sig / (interf + float(noise[n]))
    rate = np.array([sum((W / N) * float(ls["time_share"][u, n]) * math.log2(1 + sinr[u, n])
                         for n in range(N)) for u in range(Ut)])
    # The region formulas are evaluated on the core's own (float32) rates: low-SINR rates carry
    # a float32 error of a few bps in log2(1 + SINR), which Jain's index of a region whose users
    # all have tiny rates would amplify. The rates themselves are checked against ``rate``.
    r_core = ls["rate_bps"].astype(np.float64)
    J, K, U = core.J, core.K, core.U
    rmin, rw = cfg.demand.qos_min_rate_bps, cfg.reward
    reg = {k: np.zeros(J) for k in ("sum_rate_bps", "spectral_efficiency", "fairness",
                                    "qos_violation_bps", "throughput_bps", "uav_penalty",
                                    "reward", "utilisation")}
    boxes = region_boxes(core)
    for j in range(J):
        users = [u for u in range(Ut) if ls["user_region"][u] == j]
        assert len(users) == K
        r = r_core[users]
        tot = r.sum()
        reg["sum_rate_bps"][j] = tot
        reg["spectral_efficiency"][j] = tot / W
        reg["fairness"][j] = tot ** 2 / (K * (r ** 2).sum()) if (r ** 2).sum() > 0 else 0.0
        reg["qos_violation_bps"][j] = max(0.0, rmin - r.min())
        reg["throughput_bps"][j] = np.minimum(r, ls["demand_bps"][users]).sum()
        x0, y0, size = boxes[j]
        outside = [not (x0 <= ls["uav_xy"][j * U + k, 0] <= x0 + size
                        and y0 <= ls["uav_xy"][j * U + k, 1] <= y0 + size) for k in range(U)]
        reg["uav_penalty"][j] = float(np.mean(outside)) if U else 0.0
        reg["utilisation"][j] = np.mean([any(serving[u, n] >= 0 for u in users)
                                         for n in range(N)])
        reg["reward"][j] = (rw.w_spectral_efficiency * reg["spectral_efficiency"][j]
                            / rw.se_scale_bps_per_hz
                            + rw.w_fairness * reg["fairness"][j]
                            - rw.w_uav_penalty * reg["uav_penalty"][j]
                            - rw.w_qos_violation * reg["qos_violation_bps"][j] / rmin
                            + rw.w_rate * tot / K / rw.rate_scale_bps)
    return ls, sinr, rate, reg


def check_step(core, out, e):
    ls, sinr, rate, reg = reference(core, e)
    W = core.cfg.network.bandwidth_hz
    served = ls["serving_tx"] >= 0
    # served links carry power; unserved (u, n) have zero SINR and time share
    assert (ls["tx_power_w"][ls["serving_tx"][served], np.nonzero(served)[1]] > 0).all()
    assert (ls["sinr"][~served] == 0).all() and (ls["time_share"][~served] == 0).all()
    np.testing.assert_allclose(ls["sinr"], sinr, rtol=2e-4, atol=1e-12)
    np.testing.assert_allclose(ls["rate_bps"], rate, rtol=2e-4, atol=2e-6 * W / core.N)
    rtol, atol = 2e-4, 1e-6
    for name in ("sum_rate_bps", "throughput_bps", "qos_violation_bps"):
        np.testing.assert_allclose(out["region"][name][e].numpy(), reg[name], rtol=rtol,
                                   atol=1e-6 * W, err_msg=name)
    for name in ("spectral_efficiency", "fairness", "uav_penalty", "reward", "utilisation"):
        np.testing.assert_allclose(out["region"][name][e].numpy(), reg[name], rtol=rtol,
                                   atol=atol, err_msg=name)
    # per-tier rewards: local j = region j, HAP i = mean of its R regions, satellite = mean
    R = core.R
    rew = out["rewards"]
    np.testing.assert_allclose(rew["local"][e].numpy(), reg["reward"], rtol=rtol, atol=atol)
    if "hap" in rew:
        np.testing.assert_allclose(rew["hap"][e].numpy(),
                                   reg["reward"].reshape(-1, R).mean(1), rtol=rtol, atol=atol)
    if "satellite" in rew:
        assert float(rew["satellite"][e, 0]) == pytest.approx(reg["reward"].mean(), rel=rtol,
                                                              abs=atol)
    met = {k: float(v[e]) for k, v in out["metrics"].items()}
    Ut, rmin = core.Ut, core.cfg.demand.qos_min_rate_bps
    assert met["sum_rate_mbps"] == pytest.approx(rate.sum() / 1e6, rel=rtol, abs=1e-3)
    rate = ls["rate_bps"].astype(np.float64)
    assert met["throughput_mbps"] == pytest.approx(reg["throughput_bps"].sum() / Ut / 1e6,
                                                   rel=rtol, abs=1e-4)
    assert met["spectral_efficiency"] == pytest.approx(rate.sum() / W, rel=rtol, abs=atol)
    assert met["fairness"] == pytest.approx(reg["fairness"].mean(), rel=rtol, abs=atol)
    assert met["qos_violation"] == pytest.approx((reg["qos_violation_bps"] / rmin).mean(),
                                                 rel=rtol, abs=atol)
    assert met["uav_penalty"] == pytest.approx(reg["uav_penalty"].mean(), abs=atol)
    assert met["spectrum_utilisation"] == pytest.approx(reg["utilisation"].mean(), abs=atol)
    assert met["reward"] == pytest.approx(reg["reward"].mean(), rel=rtol, abs=atol)
    return ls, sinr


SMALL = dict(num_beams=2, haps_per_beam=1, regions_per_hap=2, tbs_per_region=1,
             uavs_per_region=1, users_per_region=3, num_subbands=3, time_blocks=2,
             satellite_interval=3, hap_interval=2, episode_steps=20)


@pytest.mark.parametrize("scenario", ["sag", "ag", "uav"])
@pytest.mark.parametrize("seed", [0, 7, 123])
def test_metrics_match_numpy_reference(scenario, seed):
    E = 2
    core = TNTNCore(make_config(scenario, **SMALL), num_envs=E)
    obs, masks = core.reset(seed=seed)
    gen = torch.Generator().manual_seed(seed)
    n_served = n_interfered = 0
    for _ in range(5):
        out = core.step(sample_masked(core, masks, gen))
        masks = out["masks"]
        for e in range(E):
            ls, sinr = check_step(core, out, e)
            n_served += int((ls["serving_tx"] >= 0).sum())
            # served links that see interference from another transmitter
            s = ls["serving_tx"]
            rx = ls["gain"] * ls["tx_power_w"][:, None, :]  # [X, Ut, N]
            for u, n in zip(*np.nonzero(s >= 0)):
                n_interfered += int(rx[:, u, n].sum() - rx[s[u, n], u, n] > 0)
    assert n_served > 0  # the random actions did serve users
    assert n_interfered > 0  # and the interference sum was exercised


def test_reward_weights_come_from_config():
    core = TNTNCore(make_config("sag", **SMALL, w_spectral_efficiency=2.0, w_fairness=0.3,
                                w_uav_penalty=0.7, w_qos_violation=0.9, w_rate=0.8,
                                se_scale_bps_per_hz=0.5, rate_scale_bps=5e6,
                                qos_min_rate_bps=1e7, uav_step_m=600.0), num_envs=2)
    obs, masks = core.reset(seed=4)
    gen = torch.Generator().manual_seed(4)
    pen = 0.0
    for _ in range(4):  # UAVs leave their regions after two 600 m moves away from the centre
        out = core.step(sample_masked(core, masks, gen))
        masks = out["masks"]
        for e in range(2):
            check_step(core, out, e)
        pen += float(out["region"]["uav_penalty"].sum())
    assert pen > 0


# --------------------------------------------------------------------------------------------
# (b) hand-made cases
# --------------------------------------------------------------------------------------------
def tiny(**kw):
    base = dict(num_beams=1, haps_per_beam=1, regions_per_hap=1, tbs_per_region=1,
                uavs_per_region=0, users_per_region=2, num_subbands=2, time_blocks=1,
                num_hotspots=0, base_demand_bps=1e6, qos_min_rate_bps=2e6)
    base.update(kw)
    # check_actions=False: these cases test metrics, not masks (see test_properties for masks)
    core = TNTNCore(make_config("sag", **base), num_envs=1, check_actions=False)
    core.reset(seed=0)
    return core


def act(core, sat, hap, local):
    return {"satellite": torch.tensor([[sat]]), "hap": torch.tensor([[hap]]),
            "local": torch.tensor([local])}


def test_hand_one_user_served():
    core = tiny()
    L = len(core.cfg.network.power_levels)
    # satellite: subband 0 -> beam 0, subband 1 off; HAP: subband 0 -> the TBS;
    # local: user 0 on subband 0, nobody on subband 1, full power level.
    out = core.step(act(core, [1, 0], [1, 0], [[1, 0, L - 1, L - 1]]))
    ls = core.link_state()
    assert int(out["voided"][0]) == 0
    assert ls["serving_tx"].tolist() == [[0, -1], [-1, -1]]
    noise = 10 ** ((-174 + 10 * math.log10(100e6) + 7 - 30) / 10)  # 100 MHz subband: -87 dBm
    assert ls["noise_w"][0] == pytest.approx(noise, rel=1e-5)
    assert noise == pytest.approx(1.99526e-12, rel=1e-5)
    p_tbs = 10 ** ((16 - 30) / 10)  # 16 dBm, all on the one subband the TBS holds
    assert ls["tx_power_w"][0].tolist() == pytest.approx([p_tbs, 0.0], rel=1e-6)
    assert ls["tx_power_w"][1:].sum() == 0  # nobody else transmits
    sinr = ls["gain"][0, 0, 0] * p_tbs / noise
    r0 = 100e6 * math.log2(1 + sinr)
    assert ls["sinr"][0, 0] == pytest.approx(sinr, rel=1e-4)
    assert ls["rate_bps"].tolist() == pytest.approx([r0, 0.0], rel=1e-4)
    reg = {k: float(v[0, 0]) for k, v in out["region"].items()}
    assert reg["fairness"] == pytest.approx(0.5, abs=1e-6)
    assert reg["qos_violation_bps"] == pytest.approx(2e6)  # R_min - min R = R_min - 0
    assert reg["spectral_efficiency"] == pytest.approx(r0 / 200e6, rel=1e-4)
    assert reg["throughput_bps"] == pytest.approx(min(r0, 1e6), rel=1e-4)
    assert reg["utilisation"] == pytest.approx(0.5)
    expected = 1.5 * r0 / 200e6 + 0.5 * 0.5 - 0.0 - 0.5 * 1.0
    for tier in ("local", "hap", "satellite"):
        assert float(out["rewards"][tier][0, 0]) == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_hand_two_time_blocks_share_a_subband():
    core = tiny(num_subbands=1, time_blocks=2)
    L = len(core.cfg.network.power_levels)
    out = core.step(act(core, [1], [1], [[1, 2, L - 1]]))  # block 0 -> user 0, block 1 -> user 1
    ls = core.link_state()
    p = 10 ** ((16 - 30) / 10)
    noise = 10 ** ((-174 + 10 * math.log10(200e6) + 7 - 30) / 10)
    rates = [200e6 / 2 * math.log2(1 + ls["gain"][0, u, 0] * p / noise) for u in (0, 1)]
    assert ls["time_share"][:, 0].tolist() == pytest.approx([0.5, 0.5])
    assert ls["rate_bps"].tolist() == pytest.approx(rates, rel=1e-4)
    f = sum(rates) ** 2 / (2 * sum(r * r for r in rates))
    assert float(out["region"]["fairness"][0, 0]) == pytest.approx(f, rel=1e-5)
    v = max(0.0, 2e6 - min(rates))
    assert float(out["region"]["qos_violation_bps"][0, 0]) == pytest.approx(v, rel=1e-4, abs=1)


def test_hand_satellite_direct_time_division_and_power():
    # One beam over one HAP with R = 2 regions; the single subband is satellite-direct: the beam
    # serves both regions, each 1/(H R) = 1/2 of the time, with the beam's whole power.
    core = tiny(regions_per_hap=2, users_per_region=1, num_subbands=1)
    L = len(core.cfg.network.power_levels)
    out = core.step(act(core, [2], [0, 0], [[1, L - 1], [1, L - 1]]))
    ls = core.link_state()
    sat = core.X - 1
    assert ls["satellite_direct"].tolist() == [1]
    assert ls["serving_tx"][:, 0].tolist() == [sat, sat]
    p_beam = float(core._last_state.power_w[0, 3])
    p_dbm = 10 * math.log10(p_beam) + 30
    assert 33.0 - 1e-4 <= p_dbm <= 45.0 + 1e-4
    assert ls["tx_power_w"][sat, 0] == pytest.approx(p_beam, rel=1e-6)
    noise = 10 ** ((-174 + 10 * math.log10(200e6) + 7 - 30) / 10)
    for u in (0, 1):  # no other transmitter: SINR = SNR
        sinr = ls["gain"][sat, u, 0] * p_beam / noise
        assert ls["time_share"][u, 0] == pytest.approx(0.5)
        assert ls["rate_bps"][u] == pytest.approx(200e6 / 2 * math.log2(1 + sinr), rel=1e-4)
    assert int(out["voided"][0]) == 0


def test_hand_hap_power_split_and_spot_interference():
    # HAP-direct in both regions of one HAP on the same subband: the HAP's power is split over
    # its two spot beams, which interfere with each other through the side lobe.
    core = tiny(regions_per_hap=2, users_per_region=1, num_subbands=1)
    L = len(core.cfg.network.power_levels)
    M = core.M
    out = core.step(act(core, [1], [M + 1, M + 1], [[1, L - 1], [1, L - 1]]))
    ls = core.link_state()
    spot = [core.Xt + 0, core.Xt + 1]
    p_hap = float(core._last_state.power_w[0, 2])
    assert ls["tx_power_w"][spot, 0].tolist() == pytest.approx([p_hap / 2] * 2, rel=1e-6)
    noise = 10 ** ((-174 + 10 * math.log10(200e6) + 7 - 30) / 10)
    for u in (0, 1):
        g_own, g_other = ls["gain"][spot[u], u, 0], ls["gain"][spot[1 - u], u, 0]
        sinr = g_own * p_hap / 2 / (g_other * p_hap / 2 + noise)
        assert ls["sinr"][u, 0] == pytest.approx(sinr, rel=1e-4)
    # same platform and shadowing: the two spots differ only by the aperture pattern at the
    # user's off-axis angle from each spot's boresight (its region's centre)
    lsg = core._last_state.ls_gain[0].double().numpy()
    hxy = core.topo.hap_xy[0].double().numpy()
    cen = core.topo.region_centre_xy.double().numpy()
    uxy = core._last_state.user_xy[0, 0].double().numpy()
    expect = (aperture_db(spot_sin_theta(hxy, cen[0], uxy), 26.0)
              - aperture_db(spot_sin_theta(hxy, cen[1], uxy), 26.0))
    assert 10 * math.log10(lsg[spot[0], 0] / lsg[spot[1], 0]) == pytest.approx(float(expect),
                                                                              abs=1e-3)
    assert expect > 1.0  # the own spot is stronger, but a neighbouring spot spills over
    assert float(out["region"]["utilisation"][0].mean()) == pytest.approx(1.0)


def test_hand_uav_penalty():
    # One UAV per region (no TBS), moved 600 m in +x from the centre of a 1 km region: outside.
    core = tiny(tbs_per_region=0, uavs_per_region=1, uav_step_m=600.0, region_size_m=1000.0)
    L = len(core.cfg.network.power_levels)
    stay = core.evaluate({"satellite": torch.tensor([[[[1, 1]]]]),
                          "hap": torch.tensor([[[[1, 1]]]]),
                          "local": torch.tensor([[[[0, 0, L - 1, L - 1, 0]]]])})
    out = core.step(act(core, [1, 1], [1, 1], [[0, 0, L - 1, L - 1, 1]]))
    ls = core.link_state()
    assert ls["uav_xy"][0].tolist() == pytest.approx([500.0 + 600.0, 500.0])
    assert float(out["region"]["uav_penalty"][0, 0]) == 1.0
    # nobody served: F = 0, V = R_min, SE = 0 -> reward = -1.0 * 1 - 0.5 * 1
    assert float(out["rewards"]["local"][0, 0]) == pytest.approx(-1.5)
    assert float(stay["rewards"]["local"][0, 0, 0]) == pytest.approx(-0.5)
