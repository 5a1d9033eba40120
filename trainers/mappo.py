"""MAPPO (the MADRL baseline) for TN-NTN spectrum allocation, CleanRL style.

The same agents as HDRL (satellite, HAPs, local schedulers) but all acting every step (the config
is forced to satellite_interval = hap_interval = 1). Decentralised masked actors with parameters
shared per tier (one-hot agent id appended): the structured policies of ``tntn_env.policy``, the
same as HDRL's, with the same per-position PPO clip and entropy; a centralised critic per tier on
``core.global_state`` (one value head per agent of the tier) and value normalisation, after the
MAPPO recipe (Yu et al., "The Surprising Effectiveness of PPO in Cooperative Multi-Agent Games",
2022): a ReLU MLP with input LayerNorm, Huber value loss on normalised targets, value clipping,
one minibatch, 5 epochs (the paper's advice for hard tasks; its easy ones use 15). By default
the tiers are sampled top-down within a step (each actor still sees only its own observation;
the mask carries the upper tiers' choices), so nothing is voided; --no-top-down lets all agents
act at once on the observed masks.

    python trainers/mappo.py --seed 1          # then: tensorboard --logdir runs
    torchrun --standalone --nproc_per_node=2 trainers/mappo.py --num-envs 16  # data-parallel

Under torchrun (tntn_env/distributed.py) each of the W ranks steps num_envs / W envs and splits
its share into num_minibatches, so the global minibatch is unchanged; gradients are averaged over
the ranks before clipping, and the value-norm statistics are updated with the rank-mean of the
targets' mean and mean square (= the single-process statistics of all ranks' targets), so
parameters and value norms stay identical.
"""

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.distributed as dist
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
          "explained_variance")


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

    # Algorithm (defaults: MAPPO's where they fit; batch as in the HDRL trainer)
    total_timesteps: int = 50_000
    """total env steps (summed over the parallel envs)"""
    learning_rate: float = 5e-4
    """learning rate of actors and critics (MAPPO: 5e-4)"""
    num_envs: int = 64
    """number of environments stepped together by the batched core (as hdrl_ppo.py)"""
    num_steps: int = 32
    """env steps per env per iteration; batch = num_envs * num_steps = 2048 env steps, as
    hdrl_ppo.py (the paper's 2000 rounded to the env batch)"""
    anneal_lr: bool = False
    """linearly anneal the learning rate to 0 (MAPPO: off)"""
    gamma: float = 0.99
    """discount factor"""
    gae_lambda: float = 0.7
    """GAE lambda (as hdrl_ppo.py: measured better than 0.95 there, docs/learning.md)"""
    num_minibatches: int = 1
    """minibatches per epoch (MAPPO: 1)"""
    update_epochs: int = 5
    """PPO epochs per iteration (MAPPO: 15 on easy tasks, 5 on hard ones)"""
    norm_adv: bool = True
    """normalise advantages per minibatch"""
    clip_coef: float = 0.2
    """surrogate clipping coefficient (also clips the normalised value)"""
    clip_vloss: bool = True
    """clip the value loss around the old (normalised) values"""
    ent_coef: float = 0.01
    """entropy coefficient"""
    vf_coef: float = 1.0
    """value loss coefficient"""
    huber_delta: float = 10.0
    """Huber loss delta of the value loss (MAPPO: 10)"""
    max_grad_norm: float = 10.0
    """gradient norm clip, actor and critic separately (MAPPO: 10)"""
    target_kl: float | None = 0.005
    """stop a tier's epochs early once its approx KL per position exceeds this (as hdrl_ppo.py)"""
    clip_per_position: bool = True
    """clip the probability ratio of each action position (given the earlier ones) with the
    agent's advantage, instead of the joint ratio of all its positions (as hdrl_ppo.py)"""
    ent_per_position: bool = True
    """the entropy bonus on the mean entropy per action position, not the joint sum"""
    kl_per_position: bool = True
    """compare target_kl with the approx KL per action position (joint KL / positions)"""
    hidden_size: int = 128
    """hidden units of the actors' context MLP (tntn_env.policy; the same policy as HDRL)"""
    critic_hidden_size: int = 64
    """hidden units of the centralised critic's two-layer ReLU MLP (MAPPO: 64)"""
    value_norm: bool = True
    """normalise value targets with running statistics (MAPPO's ValueNorm)"""
    top_down: bool = True
    """sample tiers top-down in a step (masks_for; nothing voided); off: simultaneous, may void"""
    mask_in_obs: bool = True
    """append the action mask (allowed fraction per position) to HAP and local actor inputs"""

    # computed at runtime
    batch_size: int = 0
    """env steps per iteration = num_envs * num_steps"""
    num_iterations: int = 0
    """total_timesteps // batch_size"""


def make_core(args: Args, num_envs: int, device) -> TNTNCore:
    ov = {**parse_overrides(args.env_overrides), "satellite_interval": 1, "hap_interval": 1}
    # Feasibility comes from the masked policies and is checked below (the core's own check
    # validates against pre-step masks, which rejects top-down samples).
    return TNTNCore(make_config(args.scenario, **ov), num_envs=num_envs, device=device,
                    check_actions=False)


class ValueNorm(nn.Module):
    """Running mean / std of value targets (MAPPO's debiased EMA, beta = 0.99999)."""

    def __init__(self, beta=0.99999, eps=1e-5):
        super().__init__()
        self.beta, self.eps = beta, eps
        for name in ("mean", "mean_sq", "debias"):
            self.register_buffer(name, torch.zeros(()))

    def update(self, x, world=1):
        w, mean, mean_sq = self.beta, x.mean(), (x ** 2).mean()
        if world > 1:  # statistics of all ranks' targets (equal sizes: the mean of the means)
            ms = torch.stack([mean, mean_sq])
            dist.all_reduce(ms)
            mean, mean_sq = ms / world
        self.mean.mul_(w).add_(mean * (1 - w))
        self.mean_sq.mul_(w).add_(mean_sq * (1 - w))
        self.debias.mul_(w).add_(1 - w)

    def stats(self):
        mean = self.mean / self.debias.clamp(min=self.eps)
        var = (self.mean_sq / self.debias.clamp(min=self.eps) - mean ** 2).clamp(min=1e-2)
        return mean, var.sqrt()

    def normalize(self, x):
        mean, std = self.stats()
        return (x - mean) / std

    def denormalize(self, x):
        mean, std = self.stats()
        return x * std + mean


def build_agents(core, args, device):
    """Per tier: the structured actor (own obs [+ mask] + id; tntn_env.policy), a centralised
    critic (global state -> a value per agent; MAPPO's LayerNorm + ReLU MLP), value norm."""
    agents = {}
    for t in core.tiers:
        A = core.num_agents[t]
        extra = len(core.nvec[t]) if args.mask_in_obs and t != "satellite" else 0
        agents[t] = nn.ModuleDict({
            "actor": TierActor(core, t, core.obs_size(t) + extra + A, args.hidden_size),
            "critic": mlp(core.state_size, A, args.critic_hidden_size, 1.0, act=nn.ReLU,
                          layer_norm=True),
            "vnorm": ValueNorm()}).to(device)
    return agents


def with_id(x, A):
    """Append the one-hot agent id: [E, A, d] -> [E, A, d + A]."""
    return torch.cat([x, torch.eye(A, device=x.device).expand(x.shape[0], A, A)], -1)


def decide(core, agents, obs, masks, args, greedy=False):
    """All tiers act (top-down masks if args.top_down). Returns the joint action and, per tier,
    (actor input, mask, action, log-prob)."""
    acts, taken, upper = {}, {}, {}
    for t in core.tiers:
        m = core.masks_for(upper)[t] if args.top_down and upper else masks[t]
        x = obs[t]
        if args.mask_in_obs and t != "satellite":
            x = torch.cat([x, allowed_fraction(core, t, m)], -1)
        x = with_id(x, core.num_agents[t])
        a, logp, _ = agents[t]["actor"](x, m, greedy=greedy)
        acts[t] = upper[t] = a
        taken[t] = (x, m, a, logp)
    return acts, taken


def load_policy(path, core, greedy=True):
    """Policy of a checkpoint (argmax masked actions; greedy=False samples): act(obs, masks) ->
    actions dict for core.step."""
    args, agents = runs.load_trained(path, core, Args, TRAINER, build_agents)

    @torch.no_grad()
    def act(obs, masks):
        return decide(core, agents, obs, masks, args, greedy=greedy)[0]

    return act


def save_checkpoint(path, agents, opts, args, global_step, iteration):
    runs.save_checkpoint(path, agents, opts, args, global_step, iteration, TRAINER)


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

    # Environment, actors, critics
    core = make_core(args, args.num_envs // world, device)  # this rank's envs
    tiers, E, T = core.tiers, args.num_envs // world, args.num_steps
    agents = build_agents(core, args, device)
    opts = {t: torch.optim.Adam(a.parameters(), lr=args.learning_rate, eps=1e-5, fused=True)
            for t, a in agents.items()}
    if ck:
        runs.load_models(agents, ck, args.resume)
        runs.load_models(opts, ck, args.resume, "optimizers")
    broadcast_params(agents.values(), world)
    checksum, updates = sync_check(agents.values(), world), 0
    obs, masks = core.reset(seed=args.seed + global_step + rank * E)  # ranks: disjoint env seeds
    ep_ret = {t: torch.zeros(E, device=device) for t in tiers}
    start_time, start_step = time.time(), global_step
    pbar = tqdm(total=args.num_iterations * args.batch_size, initial=global_step, unit="step",
                disable=rank > 0)
    save_path = run_dir / "checkpoint.pt"
    for iteration in range(start_iteration, args.num_iterations + 1):
        if args.anneal_lr:
            lr = (1.0 - (iteration - 1.0) / args.num_iterations) * args.learning_rate
            for o in opts.values():
                o.param_groups[0]["lr"] = lr
        buf = {t: {k: [] for k in ("x", "m", "a", "logp", "v", "r")} for t in tiers}
        gstates, dones = [], []
        msum = {k: 0.0 for k in METRICS}
        infeasible = 0

        # Rollout: every agent acts every step
        for _ in range(T):
            global_step += E * world
            gs = core.global_state(obs)
            with torch.no_grad():
                acts, taken = decide(core, agents, obs, masks, args)
                for t, (x, m, a, logp) in taken.items():
                    v = agents[t]["critic"](gs)  # [E, A], normalised
                    for k, val in zip(("x", "m", "a", "logp", "v"), (x, m, a, logp, v)):
                        buf[t][k].append(val)
                    infeasible += int(policy_infeasible(core, t, a, m).sum())
            out = core.step(acts, auto_reset=True)
            infeasible += int((out["voided"] + out["repaired"]).sum())
            gstates.append(gs)
            dones.append(out["truncated"].float())
            for t in tiers:
                buf[t]["r"].append(out["rewards"][t])
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

        # GAE per tier (denormalised values), then PPO with a centralised critic
        gstates, dones = torch.stack(gstates), torch.stack(dones)  # [T, E, S], [T, E]
        next_gs = core.global_state(obs)
        stats = {}
        for t in tiers:
            ag, vn = agents[t], agents[t]["vnorm"]
            b = {k: torch.stack(v) for k, v in buf[t].items()}
            with torch.no_grad():
                denorm = vn.denormalize if args.value_norm else (lambda z: z)
                values = denorm(b["v"])
                next_value = denorm(ag["critic"](next_gs))
                adv = torch.zeros_like(values)
                last = torch.zeros_like(next_value)
                for i in reversed(range(T)):
                    nv = next_value if i == T - 1 else values[i + 1]
                    keep = 1.0 - dones[i][:, None]
                    delta = b["r"][i] + args.gamma * nv * keep - values[i]
                    last = adv[i] = delta + args.gamma * args.gae_lambda * keep * last
                ret = adv + values
            if args.value_norm:
                vn.update(ret, world)
            b.update(adv=adv, ret=ret, val=values)
            b = {k: v.flatten(0, 1) for k, v in b.items()}  # [T*E, A, ...]
            gs_flat = gstates.flatten(0, 1)  # [T*E, S]
            n = gs_flat.shape[0]
            mb = max(1, n // args.num_minibatches)
            assert_same(n, world, device, "samples per update")  # same minibatch count
            clipfracs, st = [], {}
            epochs = 0
            for _ in range(args.update_epochs):
                epochs += 1
                perm = torch.randperm(n, device=device)
                for start in range(0, n, mb):  # minibatches of env steps, all agents of each
                    i = perm[start:start + mb]
                    mbt = {k: b[k].index_select(0, i)  # one row gather per key
                           for k in ("a", "adv", "logp", "m", "ret", "v", "x")}
                    _, newlogp, entropy = ag["actor"](mbt["x"], mbt["m"], mbt["a"])  # [.., P]
                    logratio = newlogp - mbt["logp"]
                    if not args.clip_per_position:
                        logratio = logratio.sum(-1, keepdim=True)  # the joint ratio
                    ratio = logratio.exp()
                    with torch.no_grad():
                        st["old_approx_kl"] = (-logratio).sum(-1).mean().item()
                        st["approx_kl"] = ((ratio - 1) - logratio).sum(-1).mean().item()
                        st["approx_kl_per_position"] = st["approx_kl"] / mbt["a"].shape[-1]
                        clipfracs.append(((ratio - 1.0).abs() > args.clip_coef).float().mean()
                                         .item())
                    a_ = mbt["adv"]
                    if args.norm_adv and a_.numel() > 1:
                        a_ = (a_ - a_.mean()) / (a_.std() + 1e-8)
                    a_ = a_[..., None]
                    pg_loss = torch.max(-a_ * ratio, -a_ * ratio.clamp(1 - args.clip_coef,
                                                                       1 + args.clip_coef)).mean()
                    v = ag["critic"](gs_flat.index_select(0, i))  # [mb, A], normalised values
                    target = vn.normalize(mbt["ret"]) if args.value_norm else mbt["ret"]
                    v_loss = nn.functional.huber_loss(v, target, delta=args.huber_delta,
                                                      reduction="none")
                    if args.clip_vloss:
                        v_clip = mbt["v"] + (v - mbt["v"]).clamp(-args.clip_coef, args.clip_coef)
                        v_loss = torch.max(v_loss, nn.functional.huber_loss(
                            v_clip, target, delta=args.huber_delta, reduction="none"))
                    v_loss = v_loss.mean()
                    entropy = (entropy.mean(-1) if args.ent_per_position
                               else entropy.sum(-1)).mean()
                    loss = pg_loss - args.ent_coef * entropy + args.vf_coef * v_loss
                    opts[t].zero_grad()
                    loss.backward()
                    allreduce_grads(ag.parameters(), world)
                    nn.utils.clip_grad_norm_(ag["actor"].parameters(), args.max_grad_norm)
                    nn.utils.clip_grad_norm_(ag["critic"].parameters(), args.max_grad_norm)
                    opts[t].step()
                kl = rank_mean([st["approx_kl_per_position" if args.kl_per_position
                                   else "approx_kl"]], world, device)[0]  # same on every rank
                if args.target_kl is not None and kl > args.target_kl:
                    break
            y, var_y = b["ret"], b["ret"].var()
            ev = np.nan if var_y == 0 else (1 - (y - b["val"]).var() / var_y).item()
            st.update(value_loss=v_loss.item(), policy_loss=pg_loss.item(),
                      entropy=entropy.item(), clipfrac=float(np.mean(clipfracs)),
                      explained_variance=ev, epochs=epochs)
            stats[t] = st = dict(zip(st, rank_mean(st.values(), world, device)))
            for k, v in st.items():
                writer.add_scalar(f"losses/{k}_{t}", v, global_step)
        for k in LOSSES:  # plain names: mean over the tiers
            writer.add_scalar(f"losses/{k}", float(np.nanmean([s[k] for s in stats.values()])),
                              global_step)
        runs.check_finite({f"{k}_{t}": v for t, s in stats.items() for k, v in s.items()},
                          iteration, global_step, writer)  # NaN / inf: stop with an error
        if ddp:  # every rank must hold the same parameters and value norms after the update
            checksum, updates = sync_check(agents.values(), world), updates + 1

        # Logging (env metrics: rank means, counts: rank sums) and checkpoints
        sps = int((global_step - start_step) / (time.time() - start_time))
        writer.add_scalar("charts/SPS", sps, global_step)
        writer.add_scalar("charts/learning_rate", opts[tiers[-1]].param_groups[0]["lr"],
                          global_step)
        env = runs.log_env(writer, {k: msum[k] / T for k in METRICS},
                           {"infeasible_actions": infeasible}, global_step, world, device)
        pbar.set_postfix(SPS=sps, se=f"{env['spectral_efficiency']:.3f}",
                         thr=f"{env['throughput_mbps']:.2f}", fair=f"{env['fairness']:.2f}")
        if rank == 0 and runs.save_due(args, iteration):
            save_checkpoint(save_path, agents, opts, args, global_step, iteration)
    pbar.close()
    if rank == 0 and args.save_model:
        print(f"model saved to {save_path}")
    writer.close()
    distributed.finish(ddp, rank, world, updates, checksum)  # tear down together
