"""HDRL: hierarchical PPO for TN-NTN spectrum allocation (the paper's Algorithm 1), CleanRL style.

Three PPO learners (satellite, HAP, local), parameters shared within a tier (a one-hot agent id
appended), actors from ``tntn_env.policy`` (shared with mappo.py and ppo_single.py). Each tier
decides on its own time scale (``core.decides()``: satellite every 50 steps, HAPs every 10, local
agents every step) and learns from macro-transitions: the rewards between two of its decisions,
discounted inside the interval, form one transition, and GAE runs over macro-transitions with
gamma^k between them (an SMDP). When an upper tier decides, the tiers are sampled top-down inside
the step (masks from ``core.masks_for``), so no lower choice is voided. An iteration is num_envs
* num_steps env steps (2048 ~ the paper's 2000); each learner updates once per iteration on the
macro-transitions completed in it. Reward modes (the paper's ablation): cumulative (discounted
sum over the interval), aggregative (that sum / interval length), difference (the sum of r_i -
r_i(default), the default being core.default_actions for this agent, scored by core.evaluate).
Clipping, entropy and target_kl are per action position (docs/learning.md, PPO on many
positions); the local learner runs local_update_epochs, the upper tiers up to the paper's 30.

    python trainers/hdrl_ppo.py --seed 1          # then: tensorboard --logdir runs
    torchrun --standalone --nproc_per_node=2 trainers/hdrl_ppo.py --num-envs 64  # data-parallel

Under torchrun each of the W ranks steps num_envs / W envs with minibatch_size / W samples per
gradient step; gradients are averaged over the ranks before clipping (docs/scaling.md).
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
from tntn_env.policy import TierAgent, allowed_fraction
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
    """make_config overrides: JSON object or key=value list, e.g. 'num_subbands=4,hap_interval=5'"""

    # Algorithm (defaults: paper Section 4.1 where it gives a value, else CleanRL PPO)
    total_timesteps: int = 50_000
    """total env steps (summed over the parallel envs)"""
    learning_rate: float = 5e-4
    """learning rate of the three optimisers (paper)"""
    num_envs: int = 64
    """number of environments stepped together by the batched core"""
    num_steps: int = 32
    """env steps per env per iteration; batch_size = num_envs * num_steps = 2048 (paper: 2000)"""
    anneal_lr: bool = False
    """linearly anneal the learning rate to 0 (paper: a constant 5e-4, as RLlib's PPO default)"""
    gamma: float = 0.99
    """discount per env step (paper); a macro-transition of k steps is discounted by gamma^k"""
    gae_lambda: float = 0.7
    """GAE lambda, applied once per macro-transition (0.7: measured better than CleanRL's 0.95,
    docs/learning.md)"""
    minibatch_size: int = 512
    """samples (agent macro-transitions) per gradient step (paper)"""
    update_epochs: int = 30
    """epochs over the satellite's and HAPs' batches per iteration (paper: 30 SGD iterations)"""
    local_update_epochs: int = 2
    """epochs over the local learner's batch per iteration (it holds num_agents times the env
    steps of the batch; 2 measured better than 4, docs/learning.md)"""
    norm_adv: bool = True
    """normalise advantages per minibatch"""
    clip_coef: float = 0.2
    """surrogate clipping coefficient"""
    clip_vloss: bool = False
    """clip the value loss around the old values (off: unnormalised returns are O(10))"""
    ent_coef: float = 0.01
    """entropy coefficient (paper)"""
    ent_per_position: bool = True
    """the entropy bonus on the mean entropy per action position (not the joint sum)"""
    vf_coef: float = 1.0
    """value loss coefficient (paper)"""
    max_grad_norm: float = 0.5
    """gradient norm clip, applied to actor and critic separately"""
    target_kl: float | None = 0.005
    """stop a learner's epochs once its approx KL exceeds this (in place of RLlib's adaptive KL
    penalty, which the paper's prototype ran; None: off)"""
    clip_per_position: bool = True
    """clip the ratio of each action position (given the earlier ones), not the joint ratio"""
    kl_per_position: bool = True
    """compare target_kl with the approx KL per action position (joint KL / positions)"""
    reward_mode: Literal["cumulative", "aggregative", "difference"] = "cumulative"
    """reward formulation of the macro-transitions (see the module docstring)"""
    hidden_size: int = 128
    """hidden units of the two-layer actor and critic MLPs"""
    mask_in_obs: bool = True
    """append the top-down action mask to HAP / local inputs, as the fraction of each position's
    choices it allows (it shows this step's upper choices)"""

    # computed at runtime
    batch_size: int = 0
    """env steps per iteration = num_envs * num_steps (a tier's batch: one sample per agent and
    completed decision interval)"""
    num_iterations: int = 0
    """total_timesteps // batch_size"""

def make_core(args: Args, num_envs: int, device) -> TNTNCore:
    cfg = make_config(args.scenario, **parse_overrides(args.env_overrides))
    # Feasibility comes from the masked policies and is checked below; the core's own check
    # validates against the pre-step masks, which rejects top-down samples (reported to the
    # core's owner).
    return TNTNCore(cfg, num_envs=num_envs, device=device, check_actions=False)


def tier_input(core, tier, obs, mask, with_mask):
    """Observation (+ the mask as allowed fraction per position, for HAP / local) + one-hot agent
    id: [E, agents, in_dim]."""
    E, A = obs.shape[:2]
    eye = torch.eye(A, device=obs.device).expand(E, A, A)
    parts = ([obs, allowed_fraction(core, tier, mask), eye] if with_mask and tier != "satellite"
             else [obs, eye])
    return torch.cat(parts, -1)


def in_dim(core, tier, with_mask):
    extra = len(core.nvec[tier]) if with_mask and tier != "satellite" else 0
    return core.obs_size(tier) + extra + core.num_agents[tier]


def decide(core, agents, obs, masks, with_mask, greedy=False):
    """Top-down pass over the tiers that decide on this step (each sees the masks left by the
    upper choices just made). Returns the joint action for core.step and, per deciding tier,
    (input, mask, action, log-prob)."""
    E, dec = core.num_envs, core.decides()
    acts, taken, upper = {}, {}, {}
    for t in core.tiers:
        if not bool(dec[t].any()):  # not its turn: the core ignores this entry
            acts[t] = torch.zeros(E, core.num_agents[t], len(core.nvec[t]), dtype=torch.long,
                                  device=core.device)
            continue
        assert bool(dec[t].all()), "environments out of step (all envs must share the step count)"
        m = core.masks_for(upper)[t] if upper else masks[t]
        x = tier_input(core, t, obs[t], m, with_mask)
        a, logp, _ = agents[t].actor(x, m, greedy=greedy)
        acts[t] = upper[t] = a
        taken[t] = (x, m, a, logp)
    return acts, taken


def difference_baseline(core, acts, taken):
    """Reward of every tier's agent i with its action replaced by the default (what-if, one
    candidate per agent, batched): {tier: [E, agents]}."""
    E, st = core.num_envs, core.state
    eff = {}  # the allocation in force on this step, as actions
    if "satellite" in core.tiers:
        eff["satellite"] = (acts["satellite"] if "satellite" in taken
                            else st.sat_choice.view(E, 1, -1))
    if "hap" in core.tiers:
        eff["hap"] = acts["hap"] if "hap" in taken else st.hap_choice.view(E, core.I, -1)
    eff["local"] = acts["local"]
    sat = eff["satellite"].view(E, -1) if "satellite" in eff else st.sat_choice
    default = {t: core.default_actions(t) for t in core.tiers}
    if "hap" in default:  # equal split of the satellite allocation of this step
        default["hap"] = core.fixed_hap_choice(sat).view(E, core.I, -1)
    cands = []
    for t in core.tiers:
        for i in range(core.num_agents[t]):
            c = dict(eff)
            c[t] = eff[t].clone()
            c[t][:, i] = default[t][:, i]
            cands.append(c)
    res = core.evaluate({t: torch.stack([c[t] for c in cands], 1) for t in core.tiers}, "all")
    out, k = {}, 0
    for t in core.tiers:
        A = core.num_agents[t]
        out[t] = torch.diagonal(res["rewards"][t][:, k:k + A], dim1=1, dim2=2)
        k += A
    return out


def macro_gae(rows, values, next_value, lam):
    """GAE over macro-transitions: delta = R + gamma^k V(s') (1 - done) - V(s)."""
    adv = torch.zeros_like(values)
    last = torch.zeros_like(next_value)
    for i in reversed(range(len(rows))):
        nv = next_value if i == len(rows) - 1 else values[i + 1]
        keep = 1.0 - rows[i]["done"]
        delta = rows[i]["r"] + rows[i]["disc"] * nv * keep - values[i]
        last = delta + rows[i]["disc"] * lam * keep * last
        adv[i] = last
    return adv, adv + values


def ppo_update(agent, opt, b, args, world=1, epochs_max=1):
    """CleanRL PPO epochs on flat samples b (x, m, a, logp, adv, ret, val); under torchrun on
    this rank's share, minibatches of minibatch_size / world, gradients averaged over ranks."""
    n, mb, dev = b["x"].shape[0], args.minibatch_size // world, b["x"].device
    assert_same(n, world, dev, "samples per update")  # same minibatch count: collectives match
    clipfracs, st = [], {}
    epochs = 0
    for _ in range(epochs_max):
        epochs += 1
        perm = torch.randperm(n, device=b["x"].device)
        for start in range(0, n, mb):
            mbt = {k: v.index_select(0, perm[start:start + mb]) for k, v in b.items()}
            _, newlogp, entropy = agent.actor(mbt["x"], mbt["m"], mbt["a"])  # [mb, positions]
            logratio = newlogp - mbt["logp"]
            if not args.clip_per_position:
                logratio = logratio.sum(-1, keepdim=True)  # the joint ratio
            ratio = logratio.exp()
            with torch.no_grad():
                kl = (ratio - 1) - logratio
                st["old_approx_kl"] = (-logratio).sum(-1).mean().item()
                st["approx_kl"] = kl.sum(-1).mean().item()
                st["approx_kl_per_position"] = st["approx_kl"] / mbt["a"].shape[-1]
                clipfracs.append(((ratio - 1.0).abs() > args.clip_coef).float().mean().item())
            adv = mbt["adv"]
            if args.norm_adv and adv.numel() > 1:
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
            adv = adv[:, None]
            pg_loss = torch.max(-adv * ratio,
                                -adv * ratio.clamp(1 - args.clip_coef, 1 + args.clip_coef)).mean()
            v = agent.value(mbt["x"])
            v_loss = 0.5 * (v - mbt["ret"]) ** 2
            if args.clip_vloss:
                v_clip = mbt["val"] + (v - mbt["val"]).clamp(-args.clip_coef, args.clip_coef)
                v_loss = torch.max(v_loss, 0.5 * (v_clip - mbt["ret"]) ** 2)
            v_loss = v_loss.mean()
            entropy = entropy.mean(-1) if args.ent_per_position else entropy.sum(-1)
            entropy = entropy.mean()
            loss = pg_loss - args.ent_coef * entropy + args.vf_coef * v_loss
            opt.zero_grad()
            loss.backward()
            allreduce_grads(agent.parameters(), world)
            nn.utils.clip_grad_norm_(agent.actor.parameters(), args.max_grad_norm)
            nn.utils.clip_grad_norm_(agent.critic.parameters(), args.max_grad_norm)
            opt.step()
        kl = rank_mean([st["approx_kl_per_position" if args.kl_per_position else "approx_kl"]],
                       world, dev)[0]  # every rank stops at the same epoch
        if args.target_kl is not None and kl > args.target_kl:
            break
    y, var_y = b["ret"], b["ret"].var()
    ev = np.nan if var_y == 0 else (1 - (y - b["val"]).var() / var_y).item()
    st.update(value_loss=v_loss.item(), policy_loss=pg_loss.item(), entropy=entropy.item(),
              clipfrac=float(np.mean(clipfracs)), explained_variance=ev, epochs=epochs)
    return dict(zip(st, rank_mean(st.values(), world, dev)))


def build_agents(core, args, device):
    return {t: TierAgent(core, t, in_dim(core, t, args.mask_in_obs), args.hidden_size).to(device)
            for t in core.tiers}


def load_policy(path, core, greedy=True):
    """Policy of a checkpoint (argmax masked actions; greedy=False samples): act(obs, masks) ->
    actions dict for core.step (top-down)."""
    args, agents = runs.load_trained(path, core, Args, TRAINER, build_agents)

    @torch.no_grad()
    def act(obs, masks):
        return decide(core, agents, obs, masks, args.mask_in_obs, greedy=greedy)[0]

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

    # Environment and learners
    E = args.num_envs // world  # this rank's envs
    core = make_core(args, E, device)
    tiers = core.tiers
    tm = core.cfg.timing
    nested = tm.satellite_interval % tm.hap_interval == 0 or "satellite" not in tiers
    if not nested and rank == 0:
        print("warning: hap_interval does not divide satellite_interval; a satellite decision "
              "can void HAP choices made earlier (counted in env/infeasible_actions)")
    agents = build_agents(core, args, device)
    opts = {t: torch.optim.Adam(a.parameters(), lr=args.learning_rate, eps=1e-5, fused=True)
            for t, a in agents.items()}  # fused: one kernel per step (CPU and CUDA, torch >= 2.4)
    if ck:
        runs.load_models(agents, ck, args.resume)
        runs.load_models(opts, ck, args.resume, "optimizers")
    broadcast_params(agents.values(), world)
    checksum, updates = sync_check(agents.values(), world), 0
    obs, masks = core.reset(seed=args.seed + global_step + rank * E)  # ranks: disjoint env seeds
    # Per tier: the open decision, its discounted reward so far, and completed macro-transitions.
    pend = {t: None for t in tiers}
    acc_r = {t: torch.zeros(E, core.num_agents[t], device=device) for t in tiers}
    acc_g = {t: torch.ones(E, 1, device=device) for t in tiers}
    acc_k = {t: torch.zeros(E, 1, device=device) for t in tiers}
    rows = {t: [] for t in tiers}
    ep_ret = {t: torch.zeros(E, device=device) for t in tiers}

    def close(t, done):
        r = acc_r[t].clone()
        if args.reward_mode == "aggregative":
            r = r / acc_k[t].clamp(min=1)
        x, m, a, logp = pend[t]
        rows[t].append({"x": x, "m": m, "a": a, "logp": logp, "r": r, "disc": acc_g[t].clone(),
                        "done": torch.full((E, 1), float(done), device=device)})
        pend[t] = None

    start_time, start_step = time.time(), global_step
    pbar = tqdm(total=args.num_iterations * args.batch_size, initial=global_step, unit="step",
                disable=rank > 0)
    save_path = run_dir / "checkpoint.pt"
    for iteration in range(start_iteration, args.num_iterations + 1):
        if args.anneal_lr:
            lr = (1.0 - (iteration - 1.0) / args.num_iterations) * args.learning_rate
            for o in opts.values():
                o.param_groups[0]["lr"] = lr
        msum = {k: 0.0 for k in METRICS}
        infeasible = voided = 0

        # Rollout: each tier acts when it decides; rewards accumulate into its macro-transition
        for _ in range(args.num_steps):
            global_step += E * world
            with torch.no_grad():
                acts, taken = decide(core, agents, obs, masks, args.mask_in_obs)
                base = difference_baseline(core, acts, taken) if args.reward_mode == "difference" \
                    else None
            for t, (x, m, a, logp) in taken.items():
                if pend[t] is not None:
                    close(t, done=False)
                pend[t] = (x, m, a, logp)
                acc_r[t].zero_(), acc_g[t].fill_(1.0), acc_k[t].zero_()
                infeasible += int(policy_infeasible(core, t, a, m).sum())
            out = core.step(acts, auto_reset=True)
            voided += int(out["voided"].sum())
            infeasible += int((out["voided"] + out["repaired"]).sum())
            for t in tiers:
                r = out["rewards"][t]
                ep_ret[t] += r.mean(1)
                if base is not None:
                    r = r - base[t]
                acc_r[t] += acc_g[t] * r
                acc_g[t] *= args.gamma
                acc_k[t] += 1
            for k in METRICS:
                msum[k] += out["metrics"][k].mean().item()
            trunc = out["truncated"]
            if bool(trunc.any()):
                assert bool(trunc.all()), "environments out of step"  # so ranks too (same steps)
                rets = rank_mean([ep_ret[t].mean().item() for t in tiers], world, device)
                for t, ret in zip(tiers, rets):
                    if pend[t] is not None:
                        close(t, done=True)
                    writer.add_scalar(f"charts/episodic_return_{t}", ret, global_step)
                    ep_ret[t].zero_()
                writer.add_scalar("charts/episodic_length", tm.episode_steps, global_step)
            obs, masks = out["obs"], out["masks"]
            pbar.update(E * world)
        if nested:
            assert voided == 0, f"{voided} lower-tier choices voided despite top-down sampling"

        # Update each learner on the macro-transitions completed so far
        stats = {}
        for t in tiers:
            if not rows[t]:
                continue
            R = rows[t]
            with torch.no_grad():
                x = torch.stack([r["x"] for r in R])
                values = agents[t].value(x)
                next_value = (agents[t].value(pend[t][0]) if pend[t] is not None
                              else torch.zeros_like(values[0]))
                adv, ret = macro_gae(R, values, next_value, args.gae_lambda)
            b = {"x": x, **{k: torch.stack([r[k] for r in R]) for k in ("m", "a", "logp")},
                 "adv": adv, "ret": ret, "val": values}
            b = {k: v.flatten(0, 2) for k, v in b.items()}
            stats[t] = ppo_update(agents[t], opts[t], b, args, world, args.local_update_epochs
                                  if t == "local" else args.update_epochs)
            rows[t] = []
            writer.add_scalar(f"charts/batch_size_{t}", b["x"].shape[0] * world, global_step)
            for k, v in stats[t].items():
                writer.add_scalar(f"losses/{k}_{t}", v, global_step)
        for k in LOSSES if stats else ():  # plain names: mean over the learners updated now
            writer.add_scalar(f"losses/{k}", float(np.nanmean([s[k] for s in stats.values()])),
                              global_step)
        runs.check_finite({f"{k}_{t}": v for t, s in stats.items() for k, v in s.items()},
                          iteration, global_step, writer)  # NaN / inf: stop with an error
        if ddp:  # every rank must hold the same parameters after the update
            checksum, updates = sync_check(agents.values(), world), updates + 1

        # Logging (env metrics: rank means, counts: rank sums) and checkpoints
        sps = int((global_step - start_step) / (time.time() - start_time))
        writer.add_scalar("charts/SPS", sps, global_step)
        writer.add_scalar("charts/learning_rate", opts[tiers[-1]].param_groups[0]["lr"],
                          global_step)
        env = runs.log_env(writer, {k: msum[k] / args.num_steps for k in METRICS},
                           {"infeasible_actions": infeasible, "voided": voided}, global_step,
                           world, device)
        pbar.set_postfix(SPS=sps, se=f"{env['spectral_efficiency']:.3f}",
                         thr=f"{env['throughput_mbps']:.2f}", fair=f"{env['fairness']:.2f}")
        if rank == 0 and runs.save_due(args, iteration):
            save_checkpoint(save_path, agents, opts, args, global_step, iteration)
    pbar.close()
    if rank == 0 and args.save_model:
        print(f"model saved to {save_path}")
    writer.close()
    distributed.finish(ddp, rank, world, updates, checksum)  # tear down together
