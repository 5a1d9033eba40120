"""SADRL: one centralised PPO agent for the whole TN-NTN network, CleanRL style.

A single agent observes ``core.global_state`` (all agents' observations) and chooses the full
joint action every step (the config is forced to satellite_interval = hap_interval = 1). Its
policy is the structured masked policy of ``tntn_env.policy`` (the same as HDRL's and MAPPO's),
applied to every agent's row with the whole global state as context, sampled top-down: the
satellite, then the HAPs with masks from ``core.masks_for`` given the satellite's choice, then
the local agents given both, so the joint action is always feasible. One critic on the global
state. Reward: the network reward (mean over regions of eq. (11)); PPO with the paper's
hyperparameters where they fit (batch = num_envs * num_steps = 64 * 32 = 2048 joint samples,
minibatch 512) and the same per-position clip, entropy and KL as hdrl_ppo.py; 4 epochs (each
joint sample holds every agent's ~170 action positions; 30 would take ~8x the time).

    python trainers/ppo_single.py --seed 1          # then: tensorboard --logdir runs
    torchrun --standalone --nproc_per_node=2 trainers/ppo_single.py --num-envs 16  # data-parallel

Under torchrun (tntn_env/distributed.py) each of the W ranks steps num_envs / W envs and takes
minibatch_size / W samples per gradient step; gradients are averaged over the ranks before
clipping, so parameters stay identical.
"""

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn as nn
import tyro
from tqdm import tqdm

from tntn_env import TNTNCore, distributed, make_config, parse_overrides, runs
from tntn_env.core import SYSTEM_METRICS as METRICS
from tntn_env.distributed import (
    allreduce_grads,
    assert_same,
    broadcast_params,
    rank_mean,
    sync_check,
)
from tntn_env.policy import TierActor, allowed_fraction, mlp
from tntn_env.policy import infeasible as policy_infeasible

TRAINER = Path(__file__).stem  # recorded in checkpoints
LOSSES = ("value_loss", "policy_loss", "entropy", "old_approx_kl", "approx_kl", "clipfrac",
          "explained_variance", "epochs")


@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment"""
    seed: int = 1
    """seed of the experiment (env i of the batch is reset with seed + i)"""
    torch_deterministic: bool = True
    """if toggled, `torch.backends.cudnn.deterministic=True`"""
    cuda: bool = True
    """if toggled, cuda is used when available (CPU otherwise)"""
    threads: int = 1
    """torch CPU threads (0: torch's default, one per core; 1: best for these small networks)"""
    save_model: bool = False
    """write runs/{run_name}/checkpoint.pt every `save_interval` iterations and at the end"""
    save_interval: int = 10
    """iterations between periodic checkpoints"""
    resume: str | None = None
    """continue a run from its checkpoint: same dir, step, Args, saving (CLI may change: budget,
    device, threads, saving; other arguments are refused)"""
    eval_only: str | None = None
    """checkpoint to evaluate (see eval_greedy); writes eval.json next to it, or eval-N.json"""
    eval_episodes: int = 8
    """episodes of the evaluation (run as that many parallel envs)"""
    eval_seed: int = 10_000
    """seed of the evaluation episodes (episode i uses eval_seed + i)"""
    eval_greedy: bool = True
    """evaluate the argmax masked actions (--no-eval-greedy: sample from the policy)"""

    # Environment
    scenario: Literal["sag", "ag", "uav"] = "sag"
    """network scenario (sag: satellite+HAP+ground, ag: HAP+ground, uav: ground only)"""
    env_overrides: str = ""
    """make_config overrides (JSON or key=value list); satellite/hap intervals are forced to 1"""

    # Algorithm (defaults: paper Section 4.1 where it gives a value, else CleanRL PPO)
    total_timesteps: int = 50_000
    """total env steps (summed over the parallel envs)"""
    learning_rate: float = 5e-4
    """learning rate of the optimiser (paper)"""
    num_envs: int = 64
    """number of environments stepped together by the batched core (as hdrl_ppo.py)"""
    num_steps: int = 32
    """env steps per env per iteration; batch = num_envs * num_steps = 2048 env steps, as
    hdrl_ppo.py (the paper's 2000 rounded to the env batch)"""
    anneal_lr: bool = False
    """linearly anneal the learning rate to 0 (paper: a constant 5e-4, as RLlib's PPO default)"""
    gamma: float = 0.99
    """discount factor (paper)"""
    gae_lambda: float = 0.7
    """GAE lambda (as hdrl_ppo.py: measured better than 0.95 there, docs/learning.md)"""
    minibatch_size: int = 512
    """samples per gradient step (paper)"""
    update_epochs: int = 4
    """epochs per iteration (paper: 30 SGD iterations on a per-agent batch; see the docstring)"""
    norm_adv: bool = True
    """normalise advantages per minibatch"""
    clip_coef: float = 0.2
    """surrogate clipping coefficient"""
    clip_vloss: bool = False
    """clip the value loss around the old values (off: unnormalised returns are O(10))"""
    ent_coef: float = 0.01
    """entropy coefficient (paper)"""
    vf_coef: float = 1.0
    """value loss coefficient (paper)"""
    max_grad_norm: float = 0.5
    """gradient norm clip, applied to actor and critic separately"""
    target_kl: float | None = 0.005
    """stop the epochs once approx KL per position exceeds this (as hdrl_ppo.py; None: off)"""
    clip_per_position: bool = True
    """clip the probability ratio of each action position (given the earlier ones) with the
    advantage, instead of the joint ratio of all ~170 positions (as hdrl_ppo.py)"""
    ent_per_position: bool = True
    """the entropy bonus on the mean entropy per action position, not the joint sum"""
    kl_per_position: bool = True
    """compare target_kl with the approx KL per action position (joint KL / positions), so a
    joint action of ~170 positions is not frozen after an epoch"""
    hidden_size: int = 128
    """hidden units of the actors' context MLP (tntn_env.policy) and of the critic"""

    # computed at runtime
    batch_size: int = 0
    """env steps (= samples) per iteration = num_envs * num_steps"""
    num_iterations: int = 0
    """total_timesteps // batch_size"""


def make_core(args: Args, num_envs: int, device) -> TNTNCore:
    ov = {**parse_overrides(args.env_overrides), "satellite_interval": 1, "hap_interval": 1}
    # Feasibility comes from the masked policies and is checked below (the core's own check
    # validates against pre-step masks, which rejects top-down samples).
    return TNTNCore(make_config(args.scenario, **ov), num_envs=num_envs, device=device,
                    check_actions=False)


class Agent(nn.Module):
    """Centralised agent: one structured actor per tier (tntn_env.policy, the same as HDRL's and
    MAPPO's), applied to every agent's row of the global state; each row's input is that agent's
    observation, its allowed fraction per position, its one-hot id and the whole global state
    (the centralised context). One critic on the global state."""

    def __init__(self, core, hidden):
        super().__init__()
        S = core.state_size
        self.tiers = core.tiers
        self.obs_sizes = [core.num_agents[t] * core.obs_size(t) for t in core.tiers]
        self.mask_sizes = [core.num_agents[t] * core.action_size(t) for t in core.tiers]
        self.act_sizes = [core.num_agents[t] * len(core.nvec[t]) for t in core.tiers]
        self.actors = nn.ModuleDict({
            t: TierActor(core, t, core.obs_size(t) + len(core.nvec[t]) + core.num_agents[t] + S,
                         hidden) for t in core.tiers})
        self.critic = mlp(S, 1, hidden, out_std=1.0)
        self.core = core

    def value(self, s):
        return self.critic(s).squeeze(-1)

    def rows(self, t, obs_t, m_t, s):
        """Actor input of tier t's agents: [E, A, obs + positions + A + S]."""
        E, A = obs_t.shape[:2]
        eye = torch.eye(A, device=s.device).expand(E, A, A)
        return torch.cat([obs_t, allowed_fraction(self.core, t, m_t), eye,
                          s[:, None].expand(-1, A, -1)], -1)

    def score(self, s, m, a):
        """(log-prob, entropy) [E, positions] of flat joint actions a under flat joint masks m,
        per action position of every agent."""
        E, core = s.shape[0], self.core
        obs = dict(zip(self.tiers, s.split(self.obs_sizes, 1)))
        ms = dict(zip(self.tiers, m.split(self.mask_sizes, 1)))
        acts = dict(zip(self.tiers, a.split(self.act_sizes, 1)))
        logp, ent = [], []
        for t in self.tiers:
            A = core.num_agents[t]
            m_t = ms[t].view(E, A, -1)
            _, lp, en = self.actors[t](self.rows(t, obs[t].view(E, A, -1), m_t, s), m_t,
                                       acts[t].view(E, A, -1))
            logp.append(lp.flatten(1))
            ent.append(en.flatten(1))
        return torch.cat(logp, 1), torch.cat(ent, 1)


def build(core, args, device):
    return Agent(core, args.hidden_size).to(device)


def decide(core, agent, obs, masks, greedy=False):
    """Top-down joint action: each tier's agents are sampled with masks that account for the
    tiers above. Returns (actions, flat action, flat mask, log-prob per position)."""
    gs = core.global_state(obs)
    acts, flat_a, flat_m, logp, upper = {}, [], [], [], {}
    for t in core.tiers:
        m = core.masks_for(upper)[t] if upper else masks[t]
        a, lp, _ = agent.actors[t](agent.rows(t, obs[t], m, gs), m, greedy=greedy)
        acts[t] = upper[t] = a
        logp.append(lp.flatten(1))
        flat_a.append(a.flatten(1))
        flat_m.append(m.flatten(1))
    return acts, torch.cat(flat_a, 1), torch.cat(flat_m, 1), torch.cat(logp, 1)


def load_policy(path, core, greedy=True):
    """Policy of a checkpoint (argmax masked actions; greedy=False samples): act(obs, masks) ->
    actions dict for core.step (top-down)."""
    ck = runs.load_checkpoint(path, core.device, TRAINER, need=("models", "args"))
    agent = build(core, runs.checkpoint_args(Args, ck, path, TRAINER), core.device)
    runs.load_models({"agent": agent}, ck, path)

    @torch.no_grad()
    def act(obs, masks):
        return decide(core, agent, obs, masks, greedy=greedy)[0]

    return act


def save_checkpoint(path, agent, opt, args, global_step, iteration):
    runs.save_checkpoint(path, {"agent": agent}, {"agent": opt}, args, global_step, iteration,
                         TRAINER)


def evaluate(path, episodes, seed, device, greedy=True):
    """Mean metrics of a checkpoint's policy over `episodes` episodes (--eval-only)."""
    return runs.evaluate(path, episodes, seed, device, greedy, args_cls=Args, trainer=TRAINER,
                         make_core=make_core, load_policy=load_policy)


if __name__ == "__main__":
    args = tyro.cli(Args)
    ddp, rank, world = distributed.ranks()  # torchrun sets WORLD_SIZE, RANK, LOCAL_RANK
    runs.check_args(args, world)  # before anything is created
    device = distributed.device(args.cuda, ddp)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.eval_only:  # rank 0 writes eval.json next to the checkpoint, then all exit
        runs.eval_only(evaluate, args, device, rank)
    args, ck = runs.resume(Args, args, TRAINER, world, device)  # --resume: the checkpoint's Args
    args.batch_size = args.num_envs * args.num_steps
    args.num_iterations = args.total_timesteps // args.batch_size
    distributed.init(ddp, device)
    run_dir, writer = runs.run_folder(args, ck, rank, world)  # resumed: purged after ck's step

    # Seeding (per rank: policy sampling; the initial weights are rank 0's, broadcast below)
    start_iteration = ck["iteration"] + 1 if ck else 1
    global_step = ck["global_step"] if ck else 0
    runs.seed_everything(args.seed + (start_iteration - 1) + rank, args.torch_deterministic)

    # Environment and agent
    core = make_core(args, args.num_envs // world, device)  # this rank's envs
    tiers, E, T = core.tiers, args.num_envs // world, args.num_steps
    agent = build(core, args, device)
    opt = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5, fused=True)
    if ck:
        runs.load_models({"agent": agent}, ck, args.resume)
        runs.load_models({"agent": opt}, ck, args.resume, "optimizers")
    broadcast_params([agent], world)
    checksum, updates = sync_check([agent], world), 0
    obs, masks = core.reset(seed=args.seed + global_step + rank * E)  # ranks: disjoint env seeds
    ep_ret = {t: torch.zeros(E, device=device) for t in tiers}
    start_time, start_step = time.time(), global_step
    pbar = tqdm(total=args.num_iterations * args.batch_size, initial=global_step, unit="step",
                disable=rank > 0)
    save_path = run_dir / "checkpoint.pt"
    for iteration in range(start_iteration, args.num_iterations + 1):
        if args.anneal_lr:
            opt.param_groups[0]["lr"] = (1.0 - (iteration - 1.0) / args.num_iterations) * \
                args.learning_rate
        buf = {k: [] for k in ("s", "a", "m", "logp", "v", "r", "done")}
        msum = {k: 0.0 for k in METRICS}
        infeasible = 0

        # Rollout: one joint action per env and step, sampled top-down
        for _ in range(T):
            global_step += E * world
            gs = core.global_state(obs)
            with torch.no_grad():
                acts, a, m, logp = decide(core, agent, obs, masks)
                v = agent.value(gs)
            for t, m_t in zip(tiers, m.split(agent.mask_sizes, 1)):
                m_t = m_t.view(E, core.num_agents[t], -1)
                infeasible += int(policy_infeasible(core, t, acts[t], m_t).sum())
            out = core.step(acts, auto_reset=True)
            infeasible += int((out["voided"] + out["repaired"]).sum())
            for k, val in zip(buf, (gs, a, m, logp, v, out["metrics"]["reward"],
                                    out["truncated"].float())):
                buf[k].append(val)
            for t in tiers:
                ep_ret[t] += out["rewards"][t].mean(1)
            for k in METRICS:
                msum[k] += out["metrics"][k].mean().item()
            trunc = out["truncated"]
            if bool(trunc.any()):  # all envs (and ranks) at once: same episode length
                rets = rank_mean([ep_ret[t][trunc].mean().item() for t in tiers], world, device)
                for t, ret in zip(tiers, rets):
                    writer.add_scalar(f"charts/episodic_return_{t}", ret, global_step)
                    ep_ret[t][trunc] = 0.0
                writer.add_scalar("charts/episodic_length", core.cfg.timing.episode_steps,
                                  global_step)
            obs, masks = out["obs"], out["masks"]
            pbar.update(E * world)

        # GAE
        b = {k: torch.stack(v) for k, v in buf.items()}  # [T, E, ...]
        with torch.no_grad():
            next_value = agent.value(core.global_state(obs))
            adv = torch.zeros_like(b["r"])
            last = torch.zeros_like(next_value)
            for i in reversed(range(T)):
                nv = next_value if i == T - 1 else b["v"][i + 1]
                keep = 1.0 - b["done"][i]
                delta = b["r"][i] + args.gamma * nv * keep - b["v"][i]
                last = adv[i] = delta + args.gamma * args.gae_lambda * keep * last
            ret = adv + b["v"]
        b.update(adv=adv, ret=ret)
        b = {k: v.flatten(0, 1) for k, v in b.items()}  # [T*E, ...]

        # PPO update
        n, mb = b["s"].shape[0], args.minibatch_size // world  # per rank
        assert_same(n, world, device, "samples per update")  # same minibatch count
        clipfracs = []
        epochs = 0
        for _ in range(args.update_epochs):
            epochs += 1
            perm = torch.randperm(n, device=device)
            for start in range(0, n, mb):
                i = perm[start:start + mb]
                mbt = {k: b[k].index_select(0, i)  # one row gather per key
                       for k in ("a", "adv", "logp", "m", "ret", "s", "v")}
                newlogp, entropy = agent.score(mbt["s"], mbt["m"], mbt["a"])  # [mb, positions]
                logratio = newlogp - mbt["logp"]
                if not args.clip_per_position:
                    logratio = logratio.sum(-1, keepdim=True)  # the joint ratio
                ratio = logratio.exp()
                with torch.no_grad():
                    old_approx_kl = (-logratio).sum(-1).mean()
                    approx_kl = ((ratio - 1) - logratio).sum(-1).mean()
                    if args.kl_per_position:
                        approx_kl = approx_kl / mbt["a"].shape[-1]
                    clipfracs.append(((ratio - 1.0).abs() > args.clip_coef).float().mean().item())
                mb_adv = mbt["adv"]
                if args.norm_adv and mb_adv.numel() > 1:
                    mb_adv = (mb_adv - mb_adv.mean()) / (mb_adv.std() + 1e-8)
                mb_adv = mb_adv[:, None]
                pg_loss = torch.max(-mb_adv * ratio, -mb_adv * ratio.clamp(
                    1 - args.clip_coef, 1 + args.clip_coef)).mean()
                newv = agent.value(mbt["s"])
                v_loss = 0.5 * (newv - mbt["ret"]) ** 2
                if args.clip_vloss:
                    v_clip = mbt["v"] + (newv - mbt["v"]).clamp(-args.clip_coef, args.clip_coef)
                    v_loss = torch.max(v_loss, 0.5 * (v_clip - mbt["ret"]) ** 2)
                v_loss = v_loss.mean()
                entropy = (entropy.mean(-1) if args.ent_per_position
                           else entropy.sum(-1)).mean()
                loss = pg_loss - args.ent_coef * entropy + args.vf_coef * v_loss
                opt.zero_grad()
                loss.backward()
                allreduce_grads(agent.parameters(), world)
                nn.utils.clip_grad_norm_(agent.actors.parameters(), args.max_grad_norm)
                nn.utils.clip_grad_norm_(agent.critic.parameters(), args.max_grad_norm)
                opt.step()
            kl = rank_mean([approx_kl], world, device)[0]  # every rank stops at the same epoch
            if args.target_kl is not None and kl > args.target_kl:
                break
        y_pred, y_true = b["v"], b["ret"]
        var_y = y_true.var()
        explained_var = np.nan if var_y == 0 else (1 - (y_true - y_pred).var() / var_y).item()

        if ddp:  # every rank must hold the same parameters after the update
            checksum, updates = sync_check([agent], world), updates + 1

        # Logging (rank means; infeasible counts: rank sums) and checkpoints
        losses = rank_mean([v_loss.item(), pg_loss.item(), entropy.item(), old_approx_kl.item(),
                            approx_kl.item(), np.mean(clipfracs), explained_var, epochs], world,
                           device)
        writer.add_scalar("charts/learning_rate", opt.param_groups[0]["lr"], global_step)
        for k, v in zip(LOSSES, losses):
            writer.add_scalar(f"losses/{k}", v, global_step)
        runs.check_finite(dict(zip(LOSSES, losses)), iteration, global_step, writer)  # NaN / inf
        sps = int((global_step - start_step) / (time.time() - start_time))
        writer.add_scalar("charts/SPS", sps, global_step)
        env = runs.log_env(writer, {k: msum[k] / T for k in METRICS},
                           {"infeasible_actions": infeasible}, global_step, world, device)
        pbar.set_postfix(SPS=sps, se=f"{env['spectral_efficiency']:.3f}",
                         thr=f"{env['throughput_mbps']:.2f}", fair=f"{env['fairness']:.2f}")
        if rank == 0 and runs.save_due(args, iteration):
            save_checkpoint(save_path, agent, opt, args, global_step, iteration)
    pbar.close()
    if rank == 0 and args.save_model:
        print(f"model saved to {save_path}")
    writer.close()
    distributed.finish(ddp, rank, world, updates, checksum)  # tear down together
