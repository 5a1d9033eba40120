"""The exhaustive search equals a plain brute force over every feasible joint action.

The brute force here is written independently of tntn_env/baselines/: it lists every joint
action with itertools.product over each position's allowed values (top-down masks from the
core), scores each candidate with core.evaluate (candidates are independent rows; they are merely
sent in batches), and takes the maximum of the system reward.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from tntn_env import TNTNCore, make_config
from tntn_env.baselines import ExhaustivePolicy, GreedyPolicy, SpaceTooLarge, check_feasible


@pytest.fixture(autouse=True)
def _one_thread():
    """Small tensors: one intra-op thread is faster, above all on a shared machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

# Brute-force instances (every feasible joint action stays below ~25k candidates): a topology of
# its own, smaller than the package's tiny preset (config.TINY_OVERRIDES).
BRUTE = dict(num_beams=2, haps_per_beam=1, regions_per_hap=1, tbs_per_region=1,
            uavs_per_region=0, num_subbands=2, users_per_region=4, power_levels=(0.5, 1.0),
            time_blocks=1, episode_steps=20)


def allowed(core, tier, flat):
    """Allowed values per (agent, position) of env 0, from a flat mask."""
    nv = core.nvec[tier]
    out = []
    for a in range(flat.shape[1]):
        off, row = 0, []
        for n in nv:
            row.append([c for c in range(n) if bool(flat[0, a, off + c])])
            off += n
        out.append(row)
    return out


def brute_force(core, tiers_deciding):
    """Max of metrics['reward'] over every feasible joint action (deciding tiers), by listing."""
    st = core.state
    cands = []
    sat_opts = ([tuple(x) for x in itertools.product(*allowed(core, "satellite",
                                                              core.masks()["satellite"])[0])]
                if "satellite" in tiers_deciding else [tuple(st.sat_choice[0].tolist())])
    for s in sat_opts:
        a_s = torch.tensor(s).view(1, 1, -1)
        m1 = core.masks_for({"satellite": a_s})
        if "hap" in tiers_deciding:
            per_agent = [list(itertools.product(*pos)) for pos in allowed(core, "hap", m1["hap"])]
            hap_opts = list(itertools.product(*per_agent))
        else:
            hap_opts = [tuple(tuple(r) for r in st.hap_choice[0].view(core.I, -1).tolist())]
        for h in hap_opts:
            a_h = torch.tensor(h).view(1, core.I, -1)
            m2 = core.masks_for({"satellite": a_s, "hap": a_h})
            per_agent = [list(itertools.product(*pos)) for pos in allowed(core, "local",
                                                                         m2["local"])]
            for loc in itertools.product(*per_agent):
                cands.append((s, h, loc))
    best = -float("inf")
    for i in range(0, len(cands), 4096):
        part = cands[i:i + 4096]
        acts = {"satellite": torch.tensor([c[0] for c in part]).view(1, len(part), 1, -1),
                "hap": torch.tensor([c[1] for c in part]).view(1, len(part), core.I, -1),
                "local": torch.tensor([c[2] for c in part]).view(1, len(part), core.J, -1)}
        r = core.evaluate(acts, decide="scheduled")["metrics"]["reward"][0]
        best = max(best, float(r.max()))
    return best, len(cands)


def _check_optimum(core, pol, best):
    a = pol.act(core)
    check_feasible(core, a)
    got = pol.info["reward"][0]
    assert got == pytest.approx(best, rel=1e-5, abs=1e-6)
    # the returned action achieves it when stepped
    out = core.step(a)
    assert float(out["metrics"]["reward"][0]) == pytest.approx(best, rel=1e-5, abs=1e-6)
    assert int(out["voided"][0]) == 0
    return a


@pytest.mark.parametrize("overrides,seed", [
    ({}, 0), ({}, 1), ({}, 2),
    ({"time_blocks": 2, "num_subbands": 1}, 3),  # multiset reduction of time blocks
    # one beam, two regions of one HAP: reuse interference and the HAP's shared power
    ({"num_beams": 1, "regions_per_hap": 2, "power_levels": (1.0,)}, 4),
])
def test_matches_brute_force_all_tiers_deciding(overrides, seed):
    core = TNTNCore(make_config("sag", **{**BRUTE, **overrides}), num_envs=1)
    core.reset(seed=seed)
    assert all(bool(v[0]) for v in core.decides().values())
    best, count = brute_force(core, ("satellite", "hap", "local"))
    pol = ExhaustivePolicy(max_candidates=10**6)
    _check_optimum(core, pol, best)
    assert pol.info["covered"][0] == count  # covered = every feasible joint action
    assert pol.info["evaluated"][0] <= count + 1


@pytest.mark.parametrize("seed", [5, 6])
def test_matches_brute_force_local_step_with_beam_decomposition(seed):
    core = TNTNCore(make_config("sag", **{**BRUTE, "time_blocks": 2, "uavs_per_region": 1,
                                          "users_per_region": 2}),
                    num_envs=1)
    core.reset(seed=seed)
    core.step(GreedyPolicy().act(core))  # t = 1: only the local tier decides
    assert not bool(core.decides()["hap"][0])
    assert not bool((core.state.sat_choice == core.B + 1).any())  # no satellite-direct
    best, count = brute_force(core, ("local",))
    pol = ExhaustivePolicy(max_candidates=10**6)
    a = _check_optimum(core, pol, best)
    assert pol.info["groups"][0] == 2  # the beams were searched apart (exact here)
    assert pol.info["covered"][0] == count
    assert a["local"].shape == (1, core.J, len(core.nvec["local"]))


def test_subspace_power_is_exact_over_power_levels():
    # one beam, two regions reusing its subbands: power reductions trade interference
    core = TNTNCore(make_config("sag", **{**BRUTE, "num_beams": 1, "regions_per_hap": 2,
                                          "num_subbands": 3, "power_levels": (0.25, 0.5, 1.0)}),
                    num_envs=1)
    core.reset(seed=7)
    core.step(GreedyPolicy().act(core))
    g = GreedyPolicy().act(core)
    N, T, J, L = core.N, core.T, core.J, core.L
    loc = g["local"][0]
    # brute force over every level combination of the greedy's schedule
    active = (loc[:, :N * T].view(J, N, T) > 0).any(-1)
    sat_direct = (core.state.sat_choice[0] == core.B + 1)[None].expand(J, N)
    free = [(j, n) for j in range(J) for n in range(N) if active[j, n] and not sat_direct[j, n]]
    combos = list(itertools.product(range(L), repeat=len(free)))
    acts = loc[None, None].repeat(1, len(combos), 1, 1)
    for c, lv in enumerate(combos):
        for (j, n), x in zip(free, lv):
            acts[0, c, j, N * T + n] = x
    r = core.evaluate({"satellite": g["satellite"][:, None].expand(1, len(combos), 1, N),
                       "hap": g["hap"][:, None].expand(1, len(combos), *g["hap"].shape[1:]),
                       "local": acts})["metrics"]["reward"][0]
    pol = ExhaustivePolicy(subspace="power")
    assert pol.name == "exhaustive-over-power"
    pol.act(core)
    assert pol.info["reward"][0] == pytest.approx(float(r.max()), rel=1e-5, abs=1e-6)
    assert float(r.max()) >= float(r[0]) - 1e-6


def test_infeasible_space_raises_with_size():
    core = TNTNCore(make_config("sag"), num_envs=1)
    core.reset(seed=0)
    pol = ExhaustivePolicy(max_candidates=10**6)
    with pytest.raises(SpaceTooLarge) as ei:
        pol.act(core)
    msg = str(ei.value)
    assert "joint actions" in msg and f"{ei.value.covered:.4e}" in msg
    assert "hap:blocks+schedule:rules" in msg  # names the documented sub-space
    assert ei.value.evaluated > 10**6
    with pytest.raises(ValueError, match="contiguous"):
        ExhaustivePolicy(subspace="satellite+power")


def test_structured_subspace_matches_plain_enumeration():
    """hap:blocks+schedule:rules (beams searched apart) equals a plain joint enumeration."""
    from tntn_env.baselines.greedy import SCHED_VARIANTS, local_action, rule_schedule

    cfg = make_config("sag", num_beams=2, haps_per_beam=1, regions_per_hap=2, tbs_per_region=1,
                      uavs_per_region=0, num_subbands=4, users_per_region=4,
                      power_levels=(0.5, 1.0), time_blocks=2, episode_steps=20)
    core = TNTNCore(cfg, num_envs=1)
    core.reset(seed=11)
    st, N, J, M = core.state, core.N, core.J, core.M
    sat = GreedyPolicy().act(core)["satellite"].view(1, N)
    beam = core.topo.region_beam.tolist()
    rules = [list(w) for w in SCHED_VARIANTS[:2]]
    per_region = []
    for j in range(J):
        sub = [n for n in range(N) if int(sat[0, n]) == beam[j] + 1]
        opts = []
        for counts in itertools.product(range(len(sub) + 1), repeat=M + 1):
            if sum(counts) != len(sub):
                continue
            v, k = [0] * N, 0
            for h, c in enumerate(counts):
                for _ in range(c):
                    v[sub[k]] = h + 1
                    k += 1
            opts.append(v)
        per_region.append(opts)
    combos = list(itertools.product(*per_region))
    hap = torch.tensor(combos).view(len(combos), J, N)
    C = hap.shape[0]
    users = rule_schedule(core, st.repeat(C), sat.expand(C, N), hap, rules)  # [V, C, J, N, T]
    best = -float("inf")
    for var in itertools.product(range(len(rules)), repeat=J):
        u = torch.stack([users[var[j], :, j] for j in range(J)], 1)
        loc = local_action(core, u, torch.full((C, J, N), core.L - 1),
                           torch.zeros(C, J, 0, dtype=torch.long))
        r = core.evaluate({"satellite": sat.view(1, 1, 1, N).expand(1, C, 1, N),
                           "hap": hap.view(1, C, core.I, -1), "local": loc[None]})
        best = max(best, float(r["metrics"]["reward"].max()))
    pol = ExhaustivePolicy(subspace="hap:blocks+schedule:rules")
    assert pol.name == "exhaustive-over-hap:blocks+schedule:rules"
    a = pol.act(core)
    check_feasible(core, a)
    assert pol.info["groups"][0] == 2
    assert pol.info["covered"][0] == C * len(rules) ** J
    assert pol.info["reward"][0] == pytest.approx(best, rel=1e-5, abs=1e-6)
