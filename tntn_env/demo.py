"""One episode of uniformly random masked actions through the PettingZoo env.

    python -m tntn_env.demo --scenario sag --steps 500 --seed 1

Prints the episode means of the system metrics and the speed (steps per second).
"""

import time
from dataclasses import dataclass
from typing import Literal

import torch

from .cli import parse
from .config import SCENARIOS
from .core import SYSTEM_METRICS
from .pettingzoo_env import parallel_env

LABELS = {"throughput_mbps": "throughput per user (Mbps)", "sum_rate_mbps": "sum rate (Mbps)",
          "spectral_efficiency": "spectral efficiency (bit/s/Hz)", "fairness": "Jain fairness",
          "qos_violation": "QoS violation (x R_min)", "uav_penalty": "UAV penalty",
          "spectrum_utilisation": "spectrum utilisation", "reward": "reward (mean over regions)"}
assert tuple(LABELS) == SYSTEM_METRICS


def run(scenario: str = "sag", steps: int = 500, seed: int = 1, device: str = "cpu") -> dict:
    """Run one episode of ``steps`` steps; returns the mean metrics and ``steps_per_s``."""
    env = parallel_env(scenario, device=device, episode_steps=steps)
    obs, _ = env.reset(seed=seed)
    for i, agent in enumerate(env.possible_agents):
        env.action_space(agent).seed(seed * 1000 + i)
    sums: dict[str, float] = {}
    voided = n = 0
    start = time.perf_counter()
    while env.agents:
        actions = {a: env.action_space(a).sample(mask=obs[a]["action_mask"]) for a in env.agents}
        obs, _, _, _, infos = env.step(actions)
        for k, v in env.last_metrics.items():
            sums[k] = sums.get(k, 0.0) + v
        voided += next(iter(infos.values()))["voided_actions"]
        n += 1
    elapsed = time.perf_counter() - start
    env.close()
    means = {k: v / n for k, v in sums.items()}
    means.update(steps=n, steps_per_s=n / elapsed, voided_actions=voided)
    return means


@dataclass
class Args:
    """One episode of uniformly random masked actions through the PettingZoo env."""

    scenario: Literal[SCENARIOS] = "sag"
    """scenario"""
    steps: int = 500
    """episode length (steps)"""
    seed: int = 1
    """seed of the episode and of the action sampling"""
    device: str = "cpu"
    """torch device"""
    threads: int = 1
    """torch CPU threads (1 is fastest for a single env: its tensors are tiny)"""


def main(argv=None) -> None:
    args = parse(Args, argv, "python -m tntn_env.demo", Args.__doc__)
    torch.set_num_threads(args.threads)
    m = run(args.scenario, args.steps, args.seed, args.device)
    print(f"tntn demo: scenario={args.scenario} steps={m['steps']} seed={args.seed} "
          f"(uniformly random masked actions)")
    for key in SYSTEM_METRICS:
        print(f"  {LABELS[key]:<34s} {m[key]:10.4f}")
    print(f"  {'voided lower-tier choices (total)':<34s} {m['voided_actions']:10d}")
    print(f"  {'speed (steps/s)':<34s} {m['steps_per_s']:10.1f}")


if __name__ == "__main__":
    main()
