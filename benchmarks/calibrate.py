"""Calibration of the default scenario (docs/model.md, Calibration): a measurement, not a test.

Runs the greedy baseline (and random, for reference) on the default `sag` scenario and prints:
- large-scale SNR percentiles per tier (at a 1/N power share, own region / own beam);
- served SINR percentiles per serving tier under greedy, and how often interference matters
  (interference + noise >= 2x noise on a served slot);
- demand vs carried load (sum of min(rate, demand)) and sum rate;
- the fixed equal split (`uav` preset: fixed satellite and HAP splits, greedy local tier) vs the
  adaptive split (greedy on all tiers) on the same seeds.

    python benchmarks/calibrate.py [--envs 8] [--steps 100] [--seed 0] [--json]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from tntn_env import TNTNCore, make_config
from tntn_env.baselines import make_policy

KINDS = ("TBS", "UAV", "HAP", "satellite")


def pct(x, q=(10, 50, 90)):
    x = np.asarray(x, dtype=np.float64)
    return [round(float(v), 1) for v in np.percentile(x, q)] if x.size else [float("nan")] * 3


def large_scale_snr(core: TNTNCore) -> dict:
    """SNR (dB) of each tier's links to the users it can serve, at a 1/N power share."""
    st, J, K, M, N = core.state, core.J, core.K, core.M, core.N
    E = st.key.numel()
    ls = st.ls_gain.view(E, core.X, J, K)
    j = torch.arange(J)
    node = ls[:, :core.Xt].view(E, J, M, J, K)[:, j, :, j].permute(1, 0, 2, 3)  # [E, J, M, K]
    pw = st.power_w / N
    out = {}
    if core.Tn:
        out["TBS"] = node[:, :, :core.Tn] * pw[:, 0, None, None, None]
    if core.U:
        out["UAV"] = node[:, :, core.Tn:] * pw[:, 1, None, None, None]
    out["HAP"] = ls[:, core.Xt:core.Xt + J][:, j, j] * pw[:, 2, None, None]
    out["satellite"] = ls[:, core.Xt + J:][:, core.topo.region_beam, j] * pw[:, 3, None, None]
    return {k: pct(10 * torch.log10(v / core.noise_w).flatten().numpy()) for k, v in out.items()}


def run(scenario: str, policy_name: str, envs: int, steps: int, seed: int) -> dict:
    core = TNTNCore(make_config(scenario), num_envs=envs)
    core.reset(seed=seed)
    pol = make_policy(policy_name, **({"seed": seed} if policy_name == "random" else {}))
    pol.reset(core)
    sinr = {k: [] for k in KINDS}
    interfered = served = 0
    dem = thr = rate = reward = 0.0
    for _ in range(steps):
        out = core.step(pol.act(core))
        reward += float(out["metrics"]["reward"].mean())
        for e in range(envs):
            ls = core.link_state(e)
            s = ls["serving_tx"]
            u, n = np.nonzero(s >= 0)
            if u.size:
                kind = ls["tx_kind"][s[u, n]]
                val = 10 * np.log10(np.maximum(ls["sinr"][u, n], 1e-12))
                for k, name in enumerate(KINDS):
                    sinr[name].extend(val[kind == k].tolist())
                rx = ls["gain"][:, u, n] * ls["tx_power_w"][:, n]  # [X, served]
                interf = rx.sum(0) - rx[s[u, n], np.arange(u.size)]
                interfered += int((interf >= ls["noise_w"][n]).sum())
                served += u.size
            dem += float(ls["demand_bps"].sum())
            thr += float(np.minimum(ls["rate_bps"], ls["demand_bps"]).sum())
            rate += float(ls["rate_bps"].sum())
    norm = envs * steps
    return {
        "scenario": scenario, "policy": policy_name,
        "served_sinr_db_p10_p50_p90": {k: pct(v) for k, v in sinr.items() if v},
        "served_slots_by_tier": {k: len(v) for k, v in sinr.items()},
        "share_of_served_slots_with_interference_ge_noise": interfered / max(served, 1),
        "demand_gbps": dem / norm / 1e9, "carried_gbps": thr / norm / 1e9,
        "sum_rate_gbps": rate / norm / 1e9, "mean_reward": reward / steps,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--envs", type=int, default=8)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(1)
    core = TNTNCore(num_envs=64)
    core.reset(seed=a.seed)
    res = {"large_scale_snr_db_p10_p50_p90": large_scale_snr(core),
           "noise_dbm_per_subband": 10 * np.log10(core.noise_w) + 30,
           "runs": [run("sag", "greedy", a.envs, a.steps, a.seed),
                    run("uav", "greedy", a.envs, a.steps, a.seed),
                    run("sag", "random", a.envs, a.steps, a.seed)]}
    if a.json:
        print(json.dumps(res))
        return
    print(f"noise per subband: {res['noise_dbm_per_subband']:.1f} dBm")
    print("large-scale SNR (dB, 1/N power share; p10 / p50 / p90):")
    for k, v in res["large_scale_snr_db_p10_p50_p90"].items():
        print(f"  {k:9s} {v}")
    for r in res["runs"]:
        print(f"\n{r['scenario']} / {r['policy']}: mean reward {r['mean_reward']:.3f}, demand "
              f"{r['demand_gbps']:.3f} Gbps, carried {r['carried_gbps']:.3f} Gbps, sum rate "
              f"{r['sum_rate_gbps']:.3f} Gbps")
        print(f"  served SINR (dB, p10/p50/p90): {r['served_sinr_db_p10_p50_p90']}")
        print(f"  served slots by tier: {r['served_slots_by_tier']}; share with interference >= "
              f"noise: {r['share_of_served_slots_with_interference_ge_noise']:.2f}")


if __name__ == "__main__":
    main()
