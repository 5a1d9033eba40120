"""IPPO on the batched core with TorchRL's own components: a template for TorchRL / BenchMARL users.

TorchRL's multi-agent PPO recipe (its VMAS tutorial) on ``tntn_env.torchrl_env.TNTNTorchRLEnv``:
one ``Collector`` over E batched environments, and per tier (TorchRL group) a parameter-shared
``MultiAgentMLP`` actor and critic, a ``ClipPPOLoss`` with GAE and an Adam optimiser. The one
tntn-specific piece is the action distribution: every agent's action is a ``MultiDiscrete`` with a
flat mask, so the actor emits one logit per choice and :class:`MaskedMultiCategorical` turns
(logits, mask) into independent categoricals per position with the forbidden choices at -inf;
sampled actions are always feasible (the env runs in its default raise mode). All tiers act
every step here (``--hierarchical`` keeps the config's decision intervals; the core then ignores
the upper tiers' actions between their decisions, which this template does not model).

    pip install -e ".[torchrl]"
    python examples/torchrl_ippo.py --num-envs 64 --total-frames 200000
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import tyro
from tensordict.nn import TensorDictModule, TensorDictSequential
from torch import nn
from torch.utils.tensorboard import SummaryWriter
from torchrl.collectors import Collector
from torchrl.data import LazyTensorStorage, ReplayBuffer
from torchrl.data.replay_buffers.samplers import SamplerWithoutReplacement
from torchrl.modules import MultiAgentMLP, ProbabilisticActor
from torchrl.objectives import ClipPPOLoss, ValueEstimators

from tntn_env import parse_overrides
from tntn_env.torchrl_env import TNTNTorchRLEnv


@dataclass
class Args:
    scenario: str = "sag"
    """network scenario (sag, ag, uav)"""
    seed: int = 1
    """env i of the batch is seeded with seed + i; also torch's seed"""
    num_envs: int = 64
    """environments stepped together"""
    frames_per_batch: int = 64 * 32
    """env steps per collection (num_envs x steps)"""
    total_frames: int = 64 * 32 * 10
    """env steps in all"""
    minibatch_size: int = 512
    """samples (env steps) per gradient step"""
    epochs: int = 4
    """epochs over each batch"""
    lr: float = 5e-4
    """Adam learning rate"""
    gamma: float = 0.99
    """discount"""
    lmbda: float = 0.95
    """GAE lambda"""
    clip_epsilon: float = 0.2
    """PPO clip"""
    entropy_coeff: float = 0.01
    """entropy bonus"""
    hidden: int = 128
    """units of the two hidden layers of actor and critic"""
    hierarchical: bool = False
    """keep the config's decision intervals (default: every tier decides every step)"""
    device: str = "cpu"
    """torch device of envs and networks"""
    overrides: str = ""
    """make_config overrides, key=value list, e.g. 'num_subbands=4,episode_steps=100'"""


class MaskedMultiCategorical(torch.distributions.Independent):
    """Independent categoricals over the positions of a flat MultiDiscrete logit vector; choices
    the flat mask forbids get logit -inf (probability 0). log_prob / entropy sum over positions."""

    def __init__(self, logits: torch.Tensor, mask: torch.Tensor, nvec: tuple):
        cmax, nv = max(nvec), torch.tensor(nvec, device=logits.device)
        offs = torch.cumsum(nv, 0) - nv
        choice = torch.arange(cmax, device=logits.device)
        valid = choice[None] < nv[:, None]  # [P, cmax]
        flat = torch.where(valid, offs[:, None] + choice[None], 0)  # padded -> index 0
        allowed = mask.bool()[..., flat] & valid
        padded = torch.where(allowed, logits[..., flat], float("-inf"))
        super().__init__(torch.distributions.Categorical(logits=padded), 1, validate_args=False)

    @property
    def deterministic_sample(self):
        return self.base_dist.probs.argmax(-1)


if __name__ == "__main__":
    args = tyro.cli(Args)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    overrides = parse_overrides(args.overrides)
    if not args.hierarchical:
        overrides = {"satellite_interval": 1, "hap_interval": 1, **overrides}
    env = TNTNTorchRLEnv(args.scenario, num_envs=args.num_envs, device=device, **overrides)
    env.set_seed(args.seed)
    core = env.core
    run_name = f"{args.scenario}__torchrl_ippo__{args.seed}__{int(time.time())}"
    writer = SummaryWriter(f"runs/{run_name}")

    # Per tier: actor, critic, loss, optimiser
    policies, losses, optims = {}, {}, {}
    for g in env.group_map:
        A, nvec = core.num_agents[g], tuple(core.nvec[g])
        actor_net = MultiAgentMLP(core.obs_size(g), sum(nvec), A, centralized=False,
                                  share_params=True, device=device, depth=2,
                                  num_cells=args.hidden, activation_class=nn.Tanh)
        actor = ProbabilisticActor(
            TensorDictModule(actor_net, in_keys=[(g, "observation")], out_keys=[(g, "logits")]),
            in_keys={"logits": (g, "logits"), "mask": (g, "action_mask")},
            out_keys=[(g, "action")], distribution_class=MaskedMultiCategorical,
            distribution_kwargs={"nvec": nvec}, return_log_prob=True,
            log_prob_key=(g, "sample_log_prob"))
        critic_net = MultiAgentMLP(core.obs_size(g), 1, A, centralized=False, share_params=True,
                                   device=device, depth=2, num_cells=args.hidden,
                                   activation_class=nn.Tanh)
        critic = TensorDictModule(critic_net, in_keys=[(g, "observation")],
                                  out_keys=[(g, "state_value")])
        loss = ClipPPOLoss(actor, critic, clip_epsilon=args.clip_epsilon,
                           entropy_coeff=args.entropy_coeff, normalize_advantage=True)
        loss.set_keys(reward=(g, "reward"), action=(g, "action"),
                      sample_log_prob=(g, "sample_log_prob"), value=(g, "state_value"),
                      done=(g, "done"), terminated=(g, "terminated"),
                      advantage=(g, "advantage"), value_target=(g, "value_target"))
        loss.make_value_estimator(ValueEstimators.GAE, gamma=args.gamma, lmbda=args.lmbda)
        policies[g], losses[g] = actor, loss
        optims[g] = torch.optim.Adam(loss.parameters(), lr=args.lr)

    policy = TensorDictSequential(*policies.values())  # all tiers act on one tensordict
    collector = Collector(env, policy, frames_per_batch=args.frames_per_batch,
                          total_frames=args.total_frames, device=device)
    buffer = ReplayBuffer(storage=LazyTensorStorage(args.frames_per_batch, device=device),
                          sampler=SamplerWithoutReplacement(),
                          batch_size=args.minibatch_size)
    frames, start, out = 0, time.time(), {}
    for it, data in enumerate(collector):
        frames += data.numel()
        # root done/terminated -> per agent, as each group's GAE expects
        for g in env.group_map:
            shape = data.get_item_shape(("next", g, "reward"))
            for k in ("done", "terminated"):
                data.set(("next", g, k), data.get(("next", k)).unsqueeze(-1).expand(shape))
        with torch.no_grad():
            for loss in losses.values():
                loss.value_estimator(data, params=loss.critic_network_params,
                                     target_params=loss.target_critic_network_params)
        buffer.extend(data.reshape(-1))  # one row per env step, all agents of it
        for _ in range(args.epochs):
            for _ in range(args.frames_per_batch // args.minibatch_size):
                mb = buffer.sample()
                for g, loss in losses.items():
                    out[g] = loss(mb)
                    total = out[g]["loss_objective"] + out[g]["loss_critic"] \
                        + out[g]["loss_entropy"]
                    optims[g].zero_grad()
                    total.backward()
                    nn.utils.clip_grad_norm_(loss.parameters(), 0.5)
                    optims[g].step()
        collector.update_policy_weights_()
        se = data["next", "info", "spectral_efficiency"].mean().item()
        sps = int(frames / (time.time() - start))
        writer.add_scalar("env/spectral_efficiency", se, frames)
        writer.add_scalar("charts/SPS", sps, frames)
        for g in losses:
            writer.add_scalar(f"losses/objective_{g}", out[g]["loss_objective"].item(), frames)
            writer.add_scalar(f"charts/reward_{g}", data["next", g, "reward"].mean().item(),
                              frames)
        infeasible = int(data["next", "info", "repaired_actions"].sum())
        print(f"iter {it + 1}: frames {frames}, SE {se:.3f} bit/s/Hz, SPS {sps}, "
              f"repaired {infeasible}", flush=True)
    collector.shutdown()
    writer.close()
