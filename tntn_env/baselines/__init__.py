"""Baselines over the batched TN-NTN core (docs/experiments.md, Baselines and evaluation;
paper Section 4.2).

All policies share one interface (:class:`Policy`): ``act(core)`` returns
``{tier: LongTensor [E, n_agents, dims]}`` for the core's current state.
"""

from .checkpoint import CheckpointPolicy
from .common import Policy, check_feasible, feasible
from .exhaustive import DEFAULT_SUBSPACE, ExhaustivePolicy, SpaceTooLarge
from .greedy import GreedyPolicy
from .random_policy import RandomPolicy

__all__ = ["Policy", "RandomPolicy", "GreedyPolicy", "ExhaustivePolicy", "SpaceTooLarge",
           "CheckpointPolicy", "check_feasible", "feasible", "make_policy", "DEFAULT_SUBSPACE"]


def make_policy(name: str, **kwargs) -> Policy:
    """Build a baseline by name: 'random', 'greedy', 'exhaustive'."""
    table = {"random": RandomPolicy, "greedy": GreedyPolicy, "exhaustive": ExhaustivePolicy}
    if name not in table:
        raise ValueError(f"unknown policy {name!r}; allowed: {sorted(table)}")
    return table[name](**kwargs)
