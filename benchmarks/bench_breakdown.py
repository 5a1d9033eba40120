"""Where a step's time goes (a measurement, not a test): the figures behind docs/benchmarks.md's
account of the two CPU speed targets of the environment (>= 50,000 core env-steps/s at E = 4,096 and
>= 1,000 PettingZoo steps/s).

    python benchmarks/bench_breakdown.py                # core at E = 4,096 and PettingZoo, eager
    python benchmarks/bench_breakdown.py --compile      # PettingZoo also with compile=True
    python benchmarks/bench_breakdown.py --core-compile kernels   # the core's kernels mode
    python benchmarks/bench_breakdown.py --json         # one JSON object with the same figures

Core part: the eager ``core.step`` at ``--envs`` for ``--steps`` steps (uniform random masked
actions, ``check_actions=False``, as ``bench_env.py``), with wall-clock timers around the core's
own methods: scoring (``_score``), advancing the state (``_advance``) and the large-scale channel
inside it (``_large_scale``), the observation (``observe``), and the lazy fading draws
(``_gain``, called from scoring and from the observation). Each is reported in ms per batched
step, averaged over the steps (large-scale refreshes included at their rate of one step in
ten), beside the time the target allows (1,000 * E / 50,000 ms). ``--core-compile kernels``:
the same for a core with ``compile="kernels"`` (after 12 warm-up steps), plus each compiled
kernel's time (those calls are inside the parts above; ``_gain`` is then no longer called).

PettingZoo part: the E = 1 env with each agent's ``action_space(a).sample(mask=...)``, as
``bench_env.py`` measures it. Per step: sampling, ``env.step``, and inside it ``core.step``
(compiled: the graph call), the observation and mask packing, and the rest of the view; the
minimum and median over ``--pz-steps`` steps, since a small CPU machine's speed can swing by
~2x from one step to the next. Eager only: torch ops dispatched per step, counted over 20 steps.

``--draw-layouts``: the observation's fading draw (the [E, J, K, N] links from each region's
subband holders to its users) timed four ways at ``--envs``: eager and compiled, on the core's
broadcast index layout (``core._gain``) and on flat, contiguous link indices computed beforehand
(same values, checked). It shows how much of ``torch.compile``'s result at large E is the layout.
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import platform
import statistics
import time

import torch
from bench_env import random_masked_actions
from torch.utils._python_dispatch import TorchDispatchMode

import tntn_env
from tntn_env import TNTNCore, rng

CORE_PARTS = ("_score", "observe", "_advance", "_large_scale", "_gain")
TARGET_CORE, TARGET_PZ = 50_000, 1_000


def _timed(fn, name: str, acc: dict | None = None, samples: dict | None = None):
    """``fn`` with its wall time added to ``acc[name]`` and/or appended to ``samples[name]``."""
    @functools.wraps(fn)
    def wrapper(*a, **k):
        t0 = time.perf_counter()
        out = fn(*a, **k)
        dt = time.perf_counter() - t0
        if acc is not None:
            acc[name] += dt
        if samples is not None:
            samples[name].append(dt)
        return out
    return wrapper


def core_breakdown(num_envs: int, steps: int, compile: str | None = None) -> dict:
    """Where an eager core's step goes, or (``compile="kernels"``) a core's whose per-link work
    runs in compiled kernels: then each kernel's time too (``kernel:<name>``)."""
    core = TNTNCore(scenario="sag", num_envs=num_envs, check_actions=False,
                    compile=compile or False)
    _, masks = core.reset(seed=0)
    gen = torch.Generator().manual_seed(0)
    out = {"masks": masks}
    for _ in range(12 if compile else 3):  # compiled: past the first refresh step
        out = core.step(random_masked_actions(core, out["masks"], gen), auto_reset=True)
    acc = dict.fromkeys(CORE_PARTS, 0.0)
    for name in CORE_PARTS:  # instance attributes shadow the methods the core calls
        setattr(core, name, _timed(getattr(core, name), name, acc=acc))
    for name in core._kernels or {}:
        acc["kernel:" + name] = 0.0
        core._kernels[name] = _timed(core._kernels[name], "kernel:" + name, acc=acc)
    total = 0.0
    for _ in range(steps):
        acts = random_masked_actions(core, out["masks"], gen)
        t0 = time.perf_counter()
        out = core.step(acts, auto_reset=True)
        total += time.perf_counter() - t0
    ms = {name: 1e3 * v / steps for name, v in acc.items()}
    step_ms = 1e3 * total / steps
    return {"num_envs": num_envs, "compile": compile, "steps": steps, "step_ms": step_ms,
            "env_steps_per_s": num_envs * steps / total,
            "target_step_ms": 1e3 * num_envs / TARGET_CORE, "parts_ms": ms,
            "other_ms": step_ms - ms["_score"] - ms["observe"] - ms["_advance"]}


class _OpCount(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def pettingzoo_breakdown(steps: int, compile: bool) -> dict:
    env = tntn_env.parallel_env("sag", compile=compile)
    obs, _ = env.reset(seed=0)
    spaces = {a: env.action_space(a) for a in env.possible_agents}
    for space in spaces.values():
        space.seed(0)

    def sample(obs):
        return {a: spaces[a].sample(mask=obs[a]["action_mask"]) for a in env.agents}

    episode = 0

    def step(obs):
        nonlocal episode
        if not env.agents:
            episode += 1
            obs, _ = env.reset(seed=episode)
        return env.step(sample(obs))[0]

    for _ in range(12 if compile else 3):  # compiled: past the first refresh step's graph
        obs = step(obs)
    ops = None
    if not compile:  # a dispatch mode would also turn dynamo's compiled code off
        with _OpCount() as counter:
            for _ in range(20):
                obs = step(obs)
        ops = counter.count / 20
    samples = collections.defaultdict(list)
    env.core.step = _timed(env.core.step, "core.step", samples=samples)
    env._observations = _timed(env._observations, "observations", samples=samples)
    if compile:
        env.core._transition_compiled = _timed(env.core._transition_compiled, "graph call",
                                               samples=samples)
    t_start = time.perf_counter()
    for _ in range(steps):
        if not env.agents:
            episode += 1
            obs, _ = env.reset(seed=episode)
        t0 = time.perf_counter()
        acts = sample(obs)
        t1 = time.perf_counter()
        obs = env.step(acts)[0]
        t2 = time.perf_counter()
        samples["sampling"].append(t1 - t0)
        samples["env.step"].append(t2 - t1)
        samples["view (env.step - core.step - observations)"].append(
            (t2 - t1) - samples["core.step"][-1] - samples["observations"][-1])
    wall = time.perf_counter() - t_start
    order = ("sampling", "env.step", "core.step", "graph call", "observations",
             "view (env.step - core.step - observations)")
    parts = {name: {"min_us": 1e6 * min(samples[name]),
                    "median_us": 1e6 * statistics.median(samples[name])}
             for name in order if name in samples}
    return {"compile": compile, "steps": steps, "parallel_steps_per_s": steps / wall,
            "target_step_us": 1e6 / TARGET_PZ, "ops_per_step": ops, "parts": parts}


def _min_ms(fn, *args, reps: int = 10) -> float:
    fn(*args)
    fn(*args)  # a compiled fn compiles on its first call
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - t0)
    return 1e3 * best


def draw_layouts(num_envs: int) -> dict:
    core = TNTNCore(scenario="sag", num_envs=num_envs, check_actions=False)
    core.reset(seed=0)
    st = core.state
    E, J, K, N, Ut = num_envs, core.J, core.K, core.N, core.Ut
    holder = torch.randint(0, core.X, (E, J, 1, N), generator=torch.Generator().manual_seed(0))
    user = (torch.arange(J)[:, None] * K + torch.arange(K))[None, :, :, None]
    sub = torch.arange(N).view(1, 1, 1, N)
    shape = (E, J, K, N)
    pair = (holder * Ut + user).expand(shape).reshape(E, -1).contiguous()
    link = (rng.to_i32(holder * (Ut * N)) + rng.to_i32(user * N + sub)).expand(shape)
    link = link.reshape(E, -1).contiguous()
    ls_gain, ls_k = st.ls_gain.reshape(E, -1), st.ls_k.reshape(E, -1)
    key = core._fade_key(st).view(E, 1)

    def broadcast(holder):
        return core._gain(st, holder, user, sub)

    def flat(pair, link):
        return (torch.gather(ls_gain, 1, pair)
                * rng.rician_power(key, link, torch.gather(ls_k, 1, pair)))

    if not torch.equal(broadcast(holder).reshape(E, -1), flat(pair, link)):
        raise AssertionError("the flat layout draws other values than core._gain")
    ms = {"broadcast_eager": _min_ms(broadcast, holder),
          "flat_eager": _min_ms(flat, pair, link),
          "broadcast_compiled": _min_ms(torch.compile(broadcast, dynamic=False), holder),
          "flat_compiled": _min_ms(torch.compile(flat, dynamic=False), pair, link)}
    return {"num_envs": E, "links": pair.numel(), "ms": ms}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--envs", type=int, default=4096, help="E of the core part")
    p.add_argument("--steps", type=int, default=30, help="timed core steps")
    p.add_argument("--pz-steps", type=int, default=600, help="timed PettingZoo steps")
    p.add_argument("--compile", action="store_true",
                   help="also the PettingZoo env with compile=True (minutes of compiling, cold)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (default: torch's choice, the core count)")
    p.add_argument("--core-compile", choices=("kernels",), default=None,
                   help="the core part with compile=\"kernels\" (about a minute of compiling, "
                        "cold), with each kernel's time")
    p.add_argument("--draw-layouts", action="store_true",
                   help="also time the observation's fading draw eager/compiled, broadcast/flat")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    res = {"machine": {"platform": platform.platform(), "torch": torch.__version__,
                       "threads": torch.get_num_threads()},
           "core": core_breakdown(args.envs, args.steps, args.core_compile),
           "pettingzoo": [pettingzoo_breakdown(args.pz_steps, False)]}
    if args.compile:
        res["pettingzoo"].append(pettingzoo_breakdown(args.pz_steps, True))
    if args.draw_layouts:
        res["draw_layouts"] = draw_layouts(args.envs)
    if args.json:
        print(json.dumps(res))
        return
    m, c = res["machine"], res["core"]
    print(f"torch {m['torch']}, {m['threads']} threads, {m['platform']}\n")
    mode = f'compile="{c["compile"]}"' if c["compile"] else "eager"
    print(f"core.step, {mode}, E = {c['num_envs']}, {c['steps']} steps: "
          f"{c['env_steps_per_s']:,.0f} env-steps/s")
    print("\n| part (ms per batched step) | ms |\n|---|---:|")
    print(f"| whole step | {c['step_ms']:.1f} |")
    labels = {"_score": "scoring (`_score`)", "observe": "observation (`observe`)",
              "_advance": "next state (`_advance`)",
              "_large_scale": "- of which large-scale channel (`_large_scale`)",
              "_gain": "fading draws (`_gain`, inside scoring and observation)"}
    for name in CORE_PARTS:
        print(f"| {labels[name]} | {c['parts_ms'][name]:.1f} |")
    for name, v in c["parts_ms"].items():
        if name.startswith("kernel:"):
            print(f"| compiled kernel `{name[7:]}` | {v:.1f} |")
    print(f"| rest of core.step (checks, masks, metrics, auto-reset) | {c['other_ms']:.1f} |")
    print(f"| allowed by the target ({TARGET_CORE:,} env-steps/s) | {c['target_step_ms']:.1f} |")
    for r in res["pettingzoo"]:
        mode = "compile=True" if r["compile"] else "eager"
        print(f"\nPettingZoo, E = 1, {mode}, {r['steps']} steps: "
              f"{r['parallel_steps_per_s']:.0f} parallel steps/s"
              + (f"; {r['ops_per_step']:.0f} torch ops dispatched per step"
                 if r["ops_per_step"] is not None else ""))
        print("\n| part (us per step) | min | median |\n|---|---:|---:|")
        for name, v in r["parts"].items():
            print(f"| {name} | {v['min_us']:.0f} | {v['median_us']:.0f} |")
        print(f"| allowed by the target ({TARGET_PZ:,} steps/s) | {r['target_step_us']:.0f} | |")
    if "draw_layouts" in res:
        d = res["draw_layouts"]
        print(f"\nThe observation's fading draw, E = {d['num_envs']}, {d['links']:,} links "
              "(ms, minimum of 10):\n\n| index layout | eager | compiled |\n|---|---:|---:|")
        for lay in ("broadcast", "flat"):
            print(f"| {lay} | {d['ms'][lay + '_eager']:.1f} | {d['ms'][lay + '_compiled']:.1f} |")


if __name__ == "__main__":
    main()
