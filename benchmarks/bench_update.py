"""Speed of one PPO update of hdrl_ppo.py's local tier, in isolation (a measurement, not a test).

Builds the learners with the trainer's own ``build_agents`` (default Args, or ``--hidden``), takes
one batch of real local-tier inputs, masks and sampled actions from a reset core (``--rows``
samples), random advantages and returns, and times the trainer's own ``ppo_update`` (fused Adam
as in the trainer, ``target_kl`` off so that every epoch runs). Prints rows/s = minibatch rows
through forward + backward + Adam per second, and ms per 512-row gradient step.

    python benchmarks/bench_update.py                        # 1 and 2 threads, hidden 128 and 64
    python benchmarks/bench_update.py --threads 2 --hidden 128 --json
    python benchmarks/bench_update.py --threads 2 --profile   # + the matrix products' share

``--profile`` runs the timed update once more under the torch profiler and reports the self
time of the matrix products (aten::mm, aten::addmm: forward and backward of every layer) per
gradient step and as a share of all self time: a floor no per-op saving can go below.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from tntn_env.trainer_files import load_module, trainer_path

TRAINER = trainer_path("hdrl")


def bench(mod, hidden: int, threads: int, rows: int, epochs: int, profile: bool = False) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    args = mod.Args(hidden_size=hidden, update_epochs=epochs, target_kl=None)
    agents_per_env = mod.make_core(args, 1, "cpu").num_agents["local"]
    core = mod.make_core(args, rows // agents_per_env, "cpu")
    obs, masks = core.reset(seed=0)
    agents = mod.build_agents(core, args, "cpu")
    t = "local"
    x = mod.tier_input(core, t, obs[t], masks[t], args.mask_in_obs)
    with torch.no_grad():
        a, logp, _ = agents[t].actor(x, masks[t])
        v = agents[t].value(x)
        b = {"x": x, "m": masks[t], "a": a, "logp": logp,
             "adv": torch.randn_like(v), "ret": torch.randn_like(v), "val": v}
    b = {k: val.flatten(0, 1) for k, val in b.items()}
    opt = torch.optim.Adam(agents[t].parameters(), lr=args.learning_rate, eps=1e-5, fused=True)
    warm = mod.Args(hidden_size=hidden, update_epochs=1, target_kl=None)
    mod.ppo_update(agents[t], opt, b, warm, epochs_max=1)
    t0 = time.perf_counter()
    mod.ppo_update(agents[t], opt, b, args, epochs_max=epochs)
    dt = time.perf_counter() - t0
    n = b["x"].shape[0]
    steps = epochs * -(-n // args.minibatch_size)
    res = {"hidden": hidden, "threads": threads, "in_dim": x.shape[-1],
           "logits": core.action_size(t), "rows": n, "minibatch": args.minibatch_size,
           "epochs": epochs, "rows_per_s": epochs * n / dt, "ms_per_step": 1e3 * dt / steps}
    if profile:
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as torch_profile

        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            mod.ppo_update(agents[t], opt, b, args, epochs_max=epochs)
        ev = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in ev)
        mm = sum(e.self_cpu_time_total for e in ev if e.key in ("aten::mm", "aten::addmm"))
        res["matmul_ms_per_step"] = mm / 1e3 / steps
        res["matmul_share"] = mm / total
        res["matmul_floor_rows_per_s"] = args.minibatch_size / (mm / 1e6 / steps)
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--hidden", type=int, nargs="+", default=[128, 64])
    p.add_argument("--rows", type=int, default=8192, help="local-tier samples in the batch")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--json", action="store_true")
    p.add_argument("--profile", action="store_true",
                   help="also report the matrix products' self time (torch profiler)")
    a = p.parse_args()
    mod = load_module(TRAINER)
    res = [bench(mod, h, th, a.rows, a.epochs, a.profile) for h in a.hidden for th in a.threads]
    if a.json:
        print(json.dumps(res, indent=2))
        return
    extra = " matmul ms per step (share) | matmul-only rows/s |" if a.profile else ""
    print("| hidden | threads | input -> logits | rows/s (fwd + bwd + Adam) "
          "| ms per 512-row step |" + extra)
    print("|---:|---:|---|---:|---:|" + ("---:|---:|" if a.profile else ""))
    for r in res:
        line = (f"| {r['hidden']} | {r['threads']} | {r['in_dim']} -> {r['logits']} | "
                f"{r['rows_per_s']:,.0f} | {r['ms_per_step']:.1f} |")
        if a.profile:
            line += (f" {r['matmul_ms_per_step']:.1f} ({100 * r['matmul_share']:.0f} %) | "
                     f"{r['matmul_floor_rows_per_s']:,.0f} |")
        print(line)


if __name__ == "__main__":
    main()
