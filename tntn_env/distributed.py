"""The trainers' data-parallel (torchrun) pieces, CleanRL's ppo_atari_multigpu pattern: one
process per GPU or CPU share, e.g.

    torchrun --standalone --nproc_per_node=2 trainers/hdrl_ppo.py --num-envs 64
    torchrun --nnodes=2 --node_rank=0 --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 \\
        --nproc_per_node=8 trainers/hdrl_ppo.py          # node_rank=1 on the second node

Under torchrun (detected by WORLD_SIZE; backend nccl on cuda:LOCAL_RANK, gloo on CPU) num_envs
(and a trainer's minibatch_size) stay global: each of the W ranks steps num_envs / W envs (rank r
resets its core with seed + r * num_envs / W, so the ranks together hold the single-process
envs). Gradients are averaged over the ranks (one flat all_reduce per optimiser step) before
clipping, so all ranks keep identical parameters (rank 0's initial ones, broadcast; checked after
every iteration). Policy sampling is seeded per rank (seed + r); target_kl uses the rank-mean
approx KL. Only rank 0 logs (:class:`NoLog` elsewhere), shows the bar, prints and saves
checkpoints; it logs global_step and SPS over all ranks, rank means of env metrics, episodic
returns and losses, and counts (infeasible actions) summed over the ranks. ``--resume``: every rank
loads the checkpoint (a shared file system across nodes); ``--eval-only`` runs on rank 0 only.

Every helper is a no-op (or the identity) in a single process (``world == 1``).
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


class NoLog:
    """Stands in for the SummaryWriter on ranks > 0 (rank 0 logs)."""

    def __getattr__(self, name):
        return lambda *a, **k: None


def ranks() -> tuple[bool, int, int]:
    """(launched by torchrun, this process's rank, world size) from torchrun's environment."""
    return ("WORLD_SIZE" in os.environ, int(os.environ.get("RANK", 0)),
            int(os.environ.get("WORLD_SIZE", 1)))


def device(cuda: bool, ddp: bool) -> torch.device:
    """cuda when available and asked for (``cuda:LOCAL_RANK`` under torchrun), else CPU."""
    dev = torch.device("cuda" if torch.cuda.is_available() and cuda else "cpu")
    if ddp and dev.type == "cuda":
        dev = torch.device(f"cuda:{os.environ['LOCAL_RANK']}")
        torch.cuda.set_device(dev)
    return dev


def init(ddp: bool, device) -> None:
    """Start the process group under torchrun: nccl on cuda, gloo on CPU."""
    if ddp:
        dist.init_process_group("nccl" if torch.device(device).type == "cuda" else "gloo")


def finish(ddp: bool, rank: int, world: int, updates: int, checksum: float) -> None:
    """Report the parameter check (rank 0) and tear the process group down together, after rank
    0's checkpoint and prints."""
    if not ddp:
        return
    if rank == 0:
        print(f"ddp: parameters identical on {world} ranks after {updates} updates "
              f"(checksum {checksum:.17g})")
    dist.barrier()
    dist.destroy_process_group()


def broadcast_object(x, world):
    """Rank 0's ``x`` (any picklable object) on every rank."""
    if world == 1:
        return x
    box = [x]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def rank_mean(xs, world, device):
    """Mean over the ranks of a list of floats (one all_reduce); unchanged in a single process."""
    if world == 1:
        return list(xs)
    t = torch.tensor([float(x) for x in xs], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return (t / world).tolist()


def assert_same(x, world, device, what):
    """Raise on every rank unless x is equal on all ranks (guards the collectives in the loops)."""
    if world > 1:
        t = torch.tensor([x, -x], dtype=torch.float64, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        lo, hi = 0.0 - t[1].item(), t[0].item()
        if lo != hi:
            raise RuntimeError(f"ddp: {what} differs across ranks ({lo:g} .. {hi:g})")


def allreduce_grads(params, world):
    """Average the gradients over the ranks: one flat all_reduce (no-op in a single process)."""
    if world == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    flat = torch.cat([g.flatten() for g in grads])
    dist.all_reduce(flat)
    flat /= world
    for g, v in zip(grads, flat.split([g.numel() for g in grads])):
        g.copy_(v.view_as(g))


def broadcast_params(modules, world):
    """Rank 0's parameters and buffers to every rank (identical initial weights)."""
    for m in modules if world > 1 else ():
        for v in [*m.parameters(), *m.buffers()]:
            dist.broadcast(v.data, src=0)


def sync_check(modules, world):
    """Raise unless all ranks hold identical parameters and buffers; returns a float64 checksum."""
    flat = torch.cat([v.detach().double().flatten() for m in modules
                      for v in [*m.parameters(), *m.buffers()]])
    if world > 1:
        hi, lo = flat.clone(), flat.clone()
        dist.all_reduce(hi, op=dist.ReduceOp.MAX)
        dist.all_reduce(lo, op=dist.ReduceOp.MIN)
        if not torch.equal(hi, lo):
            raise RuntimeError(f"ddp: parameters differ across ranks in {int((hi != lo).sum())} "
                               f"of {flat.numel()} entries")
    return flat.sum().item()
