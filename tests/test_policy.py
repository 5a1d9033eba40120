"""The structured masked policy shared by the three trainers (tntn_env.policy)."""

import pytest
import torch

from tntn_env import TNTNCore, make_config
from tntn_env.baselines.common import sample_uniform
from tntn_env.policy import TierActor, allowed_fraction, infeasible, obs_slices

CFG = dict(num_subbands=4, users_per_region=3)


def actor_input(core, tier, obs, mask):
    E, A = obs[tier].shape[:2]
    eye = torch.eye(A).expand(E, A, A)
    return torch.cat([obs[tier], allowed_fraction(core, tier, mask), eye], -1)


def sharpen(actor, scale):
    """Scale the output layers so that the logits are far from uniform."""
    with torch.no_grad():
        actor.flat.weight.mul_(scale)
        for p in actor.ptrs.values():
            p.out.weight.mul_(scale)
            p.out.bias.normal_(0, scale * 0.1)


@pytest.mark.parametrize("tier", ["satellite", "hap", "local"])
def test_masks_are_exact_and_scoring_matches_sampling(tier):
    """Forbidden choices are never drawn (argmax or sampled, near-one-hot logits included);
    re-scoring the drawn actions (training's teacher-forced pass) gives the log-probabilities
    and entropies of the sampling pass, position by position."""
    torch.manual_seed(0)
    core = TNTNCore(make_config("sag", **CFG, satellite_interval=2, hap_interval=1), num_envs=32)
    obs, masks = core.reset(seed=1)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):  # a few different allocations (masks)
        acts = {t: sample_uniform(core.padded_mask(t, m), gen) for t, m in masks.items()}
        out = core.step(acts)
        obs, masks = out["obs"], out["masks"]
    m = masks[tier]
    x = actor_input(core, tier, obs, m)
    actor = TierActor(core, tier, x.shape[-1])
    P = len(core.nvec[tier])
    for scale in (1.0, 30.0, 300.0):
        sharpen(actor, scale)
        for greedy in (True, False):
            with torch.no_grad():
                a, lp, ent = actor(x, m, greedy=greedy)
                a2, lp2, ent2 = actor(x, m, action=a)
            assert a.shape == lp.shape == ent.shape == (*m.shape[:-1], P)
            assert int(infeasible(core, tier, a, m).sum()) == 0
            assert torch.equal(a, a2)
            assert torch.allclose(lp, lp2, atol=1e-5) and torch.allclose(ent, ent2, atol=1e-4)
            assert torch.isfinite(lp).all() and (lp <= 0).all()
            assert torch.isfinite(ent).all() and (ent >= -1e-6).all()
    # a position whose mask allows one choice has log-probability 0 and entropy 0
    single = torch.tensor([int(m[0, 0, o:o + n].sum()) == 1 for o, n in
                           zip(core._offs_t[tier].tolist(), core.nvec[tier])])
    if single.any():
        assert torch.all(lp[0, 0, single] == 0) and torch.all(ent[0, 0, single].abs() < 1e-6)


def test_sampling_follows_the_policy_distribution():
    """Empirical frequencies of the first (unconditioned) user slot match its masked softmax."""
    torch.manual_seed(0)
    core = TNTNCore(make_config("sag", **CFG), num_envs=1)
    obs, masks = core.reset(seed=3)
    x = actor_input(core, "local", obs, masks["local"])[:, :1]
    m = masks["local"][:, :1]
    actor = TierActor(core, "local", x.shape[-1])
    sharpen(actor, 30.0)
    n = 20_000
    with torch.no_grad():
        a, lp, _ = actor(x.expand(n, 1, -1), m.expand(n, 1, -1))
    K = core.K
    freq = torch.bincount(a[:, 0, 0], minlength=K + 1).double() / n
    p = torch.zeros(K + 1, dtype=torch.float64)
    for k in range(K + 1):
        rows = a[:, 0, 0] == k
        if rows.any():
            p[k] = lp[rows, 0, 0][0].double().exp()
    assert abs(float(p.sum()) - 1.0) < 1e-4  # every allowed choice was drawn
    assert torch.allclose(freq, p, atol=4 * (0.25 / n) ** 0.5)


def test_user_scores_are_shared_across_users():
    """Permuting a region's users in the observation permutes the user choices' logits (one
    network scores every user from its own features); the flat head and the context (an MLP of
    the whole observation, which sees the order) are zeroed to isolate it."""
    torch.manual_seed(0)
    core = TNTNCore(make_config("sag", **CFG), num_envs=4)
    obs, masks = core.reset(seed=4)
    o = obs["local"].flatten(0, 1)
    m = masks["local"].flatten(0, 1)
    K, N = core.K, core.N
    perm = torch.tensor([2, 0, 1])
    s = obs_slices(core, "local")
    op = o.clone()
    op[:, s["holder_snr"]] = o[:, s["holder_snr"]].view(-1, K, N)[:, perm].reshape(-1, K * N)
    for name, w in (("user_xy", 2), ("user_demand", 1), ("user_rate", 1)):
        op[:, s[name]] = o[:, s[name]].view(-1, K, w)[:, perm].reshape(-1, K * w)
    actor = TierActor(core, "local", o.shape[-1])
    with torch.no_grad():
        actor.flat.weight.zero_()
        actor.flat.bias.zero_()
        actor.ctx.weight.zero_()
        sharpen(actor, 50.0)
        a = torch.zeros(o.shape[0], len(core.nvec["local"]), dtype=torch.long)
        _, lp, _ = actor(o, m, action=a)  # log-prob of "none" on every slot
        users = N * core.T
        # with the user choices only permuted, "none" keeps its probability on every slot
        _, lpp, _ = actor(op, m, action=a)
        assert torch.allclose(lp[:, :users], lpp[:, :users], atol=1e-5)
        # and user k's choice in the permuted view is user perm[k]'s in the original
        for k in range(K):
            ak = torch.zeros_like(a)
            ak[:, 0] = k + 1
            ap = torch.zeros_like(a)
            ap[:, 0] = int(perm[k]) + 1
            held = m[:, 1]  # slot 0 open to users
            l1 = actor(op, m, action=ak)[1][held, 0]
            l2 = actor(o, m, action=ap)[1][held, 0]
            assert torch.allclose(l1, l2, atol=1e-5)


def test_autoregressive_argmax_splits_the_subbands():
    """With identical subbands, a factorised argmax hands every subband to the same beam; the
    autoregressive count term (negative gain: diminishing returns) makes the argmax split them."""
    core = TNTNCore(make_config("sag", **CFG), num_envs=1)
    obs, masks = core.reset(seed=0)
    x = actor_input(core, "satellite", obs, masks["satellite"])
    actor = TierActor(core, "satellite", x.shape[-1])
    ptr = actor.ptrs["sat"]
    with torch.no_grad():
        actor.flat.weight.zero_()
        actor.flat.bias.zero_()
        ptr.out.weight.zero_()
        ptr.out.bias.zero_()
        ptr.out.bias[0] = 1.0  # the same score for every candidate...
        a0 = actor(x, masks["satellite"], greedy=True)[0]
        assert len(set(a0.flatten().tolist())) == 1  # ...so one choice for every subband
        ptr.out.bias[1] = -20.0  # gain: a candidate's logit falls with its share so far
        a1 = actor(x, masks["satellite"], greedy=True)[0]
    assert len(set(a1.flatten().tolist())) == min(core.N, core.B + 2)


def test_compact_mask_input_is_lossless():
    """The HAP / local input carries the mask as the allowed fraction per position: over many
    masks the core produces, equal fractions mean equal masks (nothing is lost)."""
    core = TNTNCore(make_config("sag", **CFG, satellite_interval=2, hap_interval=1), num_envs=32)
    _, masks = core.reset(seed=5)
    gen = torch.Generator().manual_seed(0)
    seen = {}
    for _ in range(12):
        for tier in ("hap", "local"):
            m = masks[tier].flatten(0, 1)
            frac = allowed_fraction(core, tier, m)
            for f, row in zip(frac, m):
                key = (tier, tuple(torch.round(f * 1e4).long().tolist()))
                assert torch.equal(seen.setdefault(key, row), row)
        acts = {t: sample_uniform(core.padded_mask(t, m), gen) for t, m in masks.items()}
        masks = core.step(acts)["masks"]
    assert len({k for k in seen if k[0] == "local"}) > 1  # the test saw different masks


def test_uavs_are_kept_in_their_region():
    """At the border, no sampled or argmax move leaves the region, whatever the scores; outside
    (a state only other policies reach), only moves back in are drawn."""
    torch.manual_seed(0)
    core = TNTNCore(make_config("sag", **CFG), num_envs=4)
    obs, masks = core.reset(seed=0)
    s = obs_slices(core, "local")
    U = core.U
    n = 200
    o = obs["local"].flatten(0, 1)[:1].expand(n, -1).clone()
    m = masks["local"].flatten(0, 1)[:1].expand(n, -1)
    # UAVs at the +x border (0.5 region sizes from the centre) or 0.1 beyond it
    xy = torch.zeros(n, U, 2)
    xy[:, :, 0] = torch.where(torch.arange(n) < n // 2, 0.5, 0.6)[:, None]
    o[:, s["uav_xy"]] = xy.view(n, -1)
    actor = TierActor(core, "local", o.shape[-1])
    sharpen(actor, 30.0)
    with torch.no_grad():
        for greedy in (True, False):
            a = actor(o, m, greedy=greedy)[0][:, -U:]  # 0 stay, 1 +x, 2 -x, 3 +y, 4 -y
            assert not (a == 1).any()  # +x leaves (or stays out)
            outside = torch.arange(n) >= n // 2
            assert torch.all(a[outside] == 2)  # only -x brings it back in
