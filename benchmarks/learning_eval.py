"""A trained HDRL checkpoint against the greedy heuristic, tier by tier (a measurement, not a test).

On the same held-out episodes (seeds ``--seed``.., ``--steps`` steps each, one env per episode):

- the checkpoint's spectral efficiency with argmax and with sampled actions;
- tier swaps with the greedy heuristic (``tntn_env.baselines.GreedyPolicy``): learned upper tiers
  (satellite, HAPs) with greedy's local scheduling, and greedy's upper tiers with the learned
  local tier, so the gap to greedy can be placed in a tier;
- on greedy's allocations, the share of the learned local tier's argmax user picks (on held
  slots) that are the best-SNR user of the subband (``holder_snr``, the quantity a max-SNR
  scheduler reads), and of its power levels at the top level;
- the UAV penalty of the argmax policy (summed over the episode, mean over episodes).

    python benchmarks/learning_eval.py runs/<run>/checkpoint.pt --episodes 4 --steps 100
    python benchmarks/learning_eval.py CKPT --json out.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from tntn_env import TNTNCore, make_config, parse_overrides
from tntn_env.baselines.greedy import GreedyPolicy, uav_moves
from tntn_env.policy import obs_slices
from tntn_env.trainer_files import load_module, trainer_path

TRAINER = trainer_path("hdrl")


@torch.no_grad()
def measure(ck_path, episodes: int, steps: int, seed: int) -> dict:
    mod = load_module(TRAINER)
    ck = torch.load(ck_path, map_location="cpu", weights_only=True)
    args = mod.Args(**ck["args"])
    ov = {**parse_overrides(args.env_overrides), "episode_steps": steps}
    core = TNTNCore(make_config(args.scenario, **ov), num_envs=episodes, check_actions=False)
    agents = mod.build_agents(core, args, "cpu")
    for t in core.tiers:
        agents[t].load_state_dict(ck["models"][t])
    heur = GreedyPolicy()
    upper_tiers = [t for t in ("satellite", "hap") if t in core.tiers]
    sl = obs_slices(core, "local")
    E, K, N, T, J = episodes, core.K, core.N, core.T, core.J

    def learned(t, obs, m, greedy=True):
        x = mod.tier_input(core, t, obs[t], m, args.mask_in_obs)
        return agents[t].actor(x, m, greedy=greedy)[0]

    def run(upper: str, local: str, greedy: bool = True) -> dict:
        obs, masks = core.reset(seed=seed)
        res = {"se": 0.0, "uav_penalty": 0.0, "best_snr_pick": 0.0, "top_power": 0.0}
        held_total = 0.0
        for _ in range(steps):
            st, dec = core.state, core.decides()
            acts = {}
            if upper == "greedy" and upper_tiers:
                sat_a, hap_a, _ = heur._upper(core, st, dec)
                if "satellite" in core.tiers:
                    acts["satellite"] = sat_a.view(E, 1, -1)
                if "hap" in core.tiers:
                    acts["hap"] = torch.where(dec["hap"][:, None, None],
                                              hap_a.reshape(E, core.I, -1),
                                              st.hap_choice.view(E, core.I, -1))
            else:
                up = {}
                for t in upper_tiers:
                    m = core.masks_for(up)[t] if up else masks[t]
                    acts[t] = learned(t, obs, m, greedy)
                    if bool(dec[t].any()):
                        up[t] = acts[t]
            up = {t: acts[t] for t in upper_tiers if bool(dec[t].any())}
            m = core.masks_for(up)["local"] if up else masks["local"]
            if local == "greedy":
                sat_e, hap_e = core.effective_upper(acts)
                acts["local"] = heur._local(core, st, dec, sat_e, hap_e, uav_moves(core, st))
            else:
                a = learned("local", obs, m, greedy)
                acts["local"] = a
                hs = obs["local"][..., sl["holder_snr"]].view(E, J, K, N)
                users = a[..., :N * T].view(E, J, N, T)
                held = m[..., :N * T * (K + 1)].view(E, J, N, T, K + 1)[..., 1].float()
                best = (users - 1 == hs.argmax(2)[..., None]).float()
                res["best_snr_pick"] += float((best * held).sum())
                held_total += float(held.sum())
                res["top_power"] += float((a[..., N * T:N * T + N] == core.L - 1).float().mean())
            out = core.step(acts)
            res["se"] += out["metrics"]["spectral_efficiency"].mean().item() / steps
            res["uav_penalty"] += out["metrics"]["uav_penalty"].mean().item()
            obs, masks = out["obs"], out["masks"]
        if local == "greedy":
            del res["best_snr_pick"], res["top_power"]
        else:
            res["best_snr_pick"] /= max(held_total, 1.0)
            res["top_power"] /= steps
        return {k: round(v, 4) for k, v in res.items()}

    torch.manual_seed(0)
    return {"checkpoint": str(ck_path), "scenario": args.scenario, "episodes": episodes,
            "steps": steps, "seed": seed, "global_step": ck["global_step"],
            "argmax": run("learned", "learned"), "sampled": run("learned", "learned", False),
            "learned_upper+greedy_local": run("learned", "greedy"),
            "greedy_upper+learned_local": run("greedy", "learned"),
            "greedy": run("greedy", "greedy")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("--episodes", type=int, default=4)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--seed", type=int, default=10_000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None, help="also write the result here")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    res = measure(a.checkpoint, a.episodes, a.steps, a.seed)
    print(json.dumps(res, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
