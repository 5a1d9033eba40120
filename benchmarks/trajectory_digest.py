"""Fingerprint of the core's trajectories, for checking that a change keeps every bit.

Steps the batched core through seeded episodes in six configurations (sag at E = 1 and 6, ag,
uav, correlated fading, a smaller network; short episodes, so auto-resets happen), with uniformly
random masked actions, and records every output: observations, masks, rewards, metrics, region
metrics, voided counts, what-if evaluations and ``link_state()`` every 13 steps. Prints one
SHA-256 over all of it; ``--save`` keeps the tensors, ``--compare`` lists the ones that differ.

    python benchmarks/trajectory_digest.py --save /tmp/before.pt   # before a change
    python benchmarks/trajectory_digest.py --compare /tmp/before.pt  # after it

The digest depends on the torch build and the CPU's vector unit (transcendental functions), so
compare runs on one machine; it is a tool for refactoring, not a test.
"""

from __future__ import annotations

import argparse
import hashlib

import torch

from tntn_env import TNTNCore
from tntn_env.baselines.common import sample_uniform

CASES = [("sag", 1, 80, {}), ("sag", 6, 80, {}), ("ag", 3, 60, {}), ("uav", 2, 60, {}),
         ("sag", 2, 40, {"fading_rho": 0.7}),
         ("sag", 3, 45, {"num_subbands": 4, "users_per_region": 5})]


def _flat(d, pre: str) -> dict:
    if isinstance(d, dict):
        out = {}
        for k, v in d.items():
            out.update(_flat(v, f"{pre}/{k}"))
        return out
    return {pre: d.detach().cpu().clone()} if torch.is_tensor(d) else {}


def run_case(scenario: str, num_envs: int, steps: int, overrides: dict) -> dict:
    core = TNTNCore(scenario=scenario, num_envs=num_envs, check_actions=True, episode_steps=37,
                    **overrides)
    obs, masks = core.reset(seed=5)
    gen = torch.Generator().manual_seed(1)
    rec = _flat({"obs": obs, "masks": masks}, "reset")
    for s in range(steps):
        acts = {t: sample_uniform(core.padded_mask(t, m), gen) for t, m in masks.items()}
        out = core.step(acts, auto_reset=True)
        masks = out["masks"]
        rec.update(_flat(out, f"step{s}"))
        if s % 13 == 0:
            ls = {k: torch.as_tensor(v) for k, v in core.link_state(num_envs - 1).items()}
            rec.update(_flat(ls, f"link_state{s}"))
            what_if = core.evaluate({t: torch.stack([a, a], 1) for t, a in acts.items()},
                                    decide="all")
            rec.update(_flat(what_if, f"evaluate{s}"))
    return rec


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--save", help="write the recorded tensors to this file")
    p.add_argument("--compare", help="compare with tensors written by --save")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    res = {f"{c[0]}-E{c[1]}-{i}": run_case(*c) for i, c in enumerate(CASES)}
    h = hashlib.sha256()
    for case in sorted(res):
        for name in sorted(res[case]):
            t = res[case][name]
            h.update(f"{case}{name}{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    n = sum(len(v) for v in res.values())
    print(f"{n} tensors, sha256 {h.hexdigest()}")
    if a.save:
        torch.save(res, a.save)
    if a.compare:
        ref = torch.load(a.compare, weights_only=True)  # tensors only: no code runs
        bad = [(c, k) for c in ref for k, v in ref[c].items()
               if k not in res.get(c, {}) or res[c][k].shape != v.shape
               or not torch.equal(res[c][k], v)]
        missing = sum(len(v) for v in ref.values()) - n
        for c, k in bad[:20]:
            print("differs:", c, k)
        print(f"{len(bad)} of {sum(len(v) for v in ref.values())} tensors differ"
              + (f"; {missing} fewer recorded now" if missing else ""))
        raise SystemExit(1 if bad else 0)


if __name__ == "__main__":
    main()
