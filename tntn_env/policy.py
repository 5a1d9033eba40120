"""Structured masked policies shared by the three trainers (HDRL, MAPPO, SADRL).

Every choice is scored from its own features by a small network whose weights are shared across
the candidates it chooses between (a pointer-style head), plus the agent's context (an MLP over
its whole input). The candidates and their features, all read from the agent's observation
(``core.obs_spec``):

- local agent, user slot (subband n, time block t), candidate user k: its SNR on n under the
  holder of n (``holder_snr``, the quantity a max-SNR scheduler reads) and that SNR less the best
  user's on n, its demand and last rate, the holder kind and interference on n (one score per time
  block from the same features); candidate "none" by a flag. Power level l on subband n: the
  level, the holder kind, interference and best SNR on n. UAV move: how far inside or outside the
  region it would lead, its distance to the demand-weighted centroid of the users after the move,
  both against staying, and a stay flag; no coordinates or direction (and no flat per-move term),
  so the scores cannot prefer a fixed direction. Moves that would take a UAV out of its region
  are not proposed (a UAV outside may only move back in), as the greedy heuristic's UAVs never
  leave: trained on the sampled policy's random walk, which rarely reaches the border, the argmax
  policy otherwise repeated one move and left the region on long episodes (docs/learning.md).
- HAP, (region r, subband n), candidate node / HAP-direct / off: the candidate's mean SNR to the
  region's users and to its T best users (``node_snr``, ``node_snr_top``) and their gaps to the
  best candidate's, the region's demand, served share,
  SE and fairness, whether n is handed to the beam or satellite-direct, whether the candidate
  holds n now, its kind.
- satellite, subband n, candidate beam b / satellite-direct / off: the beam's demand (sum over
  its regions), served share, SE, mean satellite and terrestrial SNR of its regions (means over
  all regions for satellite-direct), whether it holds n now, its kind.

Choices that divide a resource are decoded autoregressively (subband after subband; slot after
slot): a candidate's score also sees how many of the earlier positions of its group already
chose it (the satellite's subbands, a HAP's subbands per region, a local agent's slots). That is
what lets the argmax policy split spectrum (greedy's "subband by subband to whoever gains most")
instead of handing every position to the same best candidate; training evaluates the taken
actions in one pass (the counts are an exclusive cumulative sum of the taken choices), only
sampling loops over the positions. Log-probabilities and entropies are those of the
autoregressive factorisation given the taken prefix.

Masks stay exact: forbidden choices get logit -inf (probability 0) at every position.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .core import _UAV_MOVES


def layer_init(layer, std=2 ** 0.5, bias_const=0.0):
    """Orthogonal weights, constant bias (CleanRL's init)."""
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias_const)
    return layer


def mlp(in_dim, out_dim, hidden, out_std=1.0, act=nn.Tanh, layers=2, layer_norm=False):
    """MLP with ``layers`` hidden layers (CleanRL init; ``layer_norm``: LayerNorm on the input,
    as MAPPO's critic)."""
    mods, d = ([nn.LayerNorm(in_dim)] if layer_norm else []), in_dim
    for _ in range(layers):
        mods += [layer_init(nn.Linear(d, hidden)), act()]
        d = hidden
    return nn.Sequential(*mods, layer_init(nn.Linear(d, out_dim), std=out_std))


def obs_slices(core, tier: str) -> dict:
    """{name: slice} of a tier's observation vector (``core.obs_spec``)."""
    out, o = {}, 0
    for name, size, *_ in core.obs_spec[tier]:
        out[name] = slice(o, o + size)
        o += size
    return out


def sample_choice(logp: torch.Tensor, greedy: bool) -> torch.Tensor:
    """One choice per row of log-probabilities [..., C] (-inf: never drawn)."""
    if greedy:
        return logp.argmax(-1)
    if logp.is_cuda:
        return torch.multinomial(logp.exp().reshape(-1, logp.shape[-1]), 1).view(logp.shape[:-1])
    cdf = logp.exp().cumsum(-1)  # inverse CDF: one uniform per row
    u = torch.rand(cdf.shape[:-1], device=cdf.device)[..., None] * cdf[..., -1:]
    return (cdf <= u).sum(-1).clamp(max=logp.shape[-1] - 1)


def _entropy(logp: torch.Tensor) -> torch.Tensor:
    # forbidden choices: exp(-inf) = 0 times a finite stand-in for -inf (no 0 * inf = nan)
    return -(logp.exp() * logp.clamp(min=-1e30)).sum(-1)


class Pointer(nn.Module):
    """Scores candidates [B, P, C, F] with one network shared over positions and candidates:
    silu(W_f features + W_c context + b) -> ``scores`` logits per candidate (one per time block
    for the local agent's users, else one), plus, for autoregressive heads, a gain g per
    candidate: its logit at a position is score + g * (share of the group's earlier positions
    that chose it), so the learned split can give diminishing (or increasing) returns per
    candidate. The context enters through its own matrix (computed once per sample)."""

    def __init__(self, feat_dim: int, ctx_dim: int, hidden: int, scores: int,
                 autoregressive: bool):
        super().__init__()
        self.scores = scores
        self.wf = nn.Linear(feat_dim, hidden, bias=False)
        torch.nn.init.orthogonal_(self.wf.weight, 2 ** 0.5)
        self.wc = layer_init(nn.Linear(ctx_dim, hidden))
        self.out = layer_init(nn.Linear(hidden, scores + int(autoregressive)), std=0.01)

    def forward(self, feat, ctx):
        """[B, P, C, F], [B, ctx] -> (scores [B, P, C, scores], gain [B, P, C] or None)."""
        h = torch.nn.functional.silu(self.wf(feat) + self.wc(ctx)[:, None, None])
        y = self.out(h)
        return y[..., :self.scores], (y[..., self.scores] if y.shape[-1] > self.scores else None)


class TierActor(nn.Module):
    """Masked actor of one tier: context MLP + a flat per-position head + pointer heads.

    ``forward(x, mask, action=None, greedy=False) -> (action, log_prob, entropy)``, each
    [B, P] (per action position: sum over positions for the joint log-probability and entropy)
    for inputs ``x`` [B, in_dim] whose first ``core.obs_size(tier)`` entries are the agent's
    observation (the rest, e.g. an agent id, is context only) and the flat mask [B, sum(nvec)];
    with ``action`` given it scores those actions (training), else samples (argmax if greedy).
    """

    def __init__(self, core, tier: str, in_dim: int, hidden: int = 128, ptr_hidden: int = 16,
                 ctx_dim: int = 8):
        super().__init__()
        self.tier = tier
        self.nvec = list(core.nvec[tier])
        self.sl = obs_slices(core, tier)
        self.N, self.K, self.T, self.L, self.U = core.N, core.K, core.T, core.L, core.U
        self.B, self.R, self.M, self.J = core.B, core.R, core.M, core.J
        net = core.cfg.network
        self.uav_step = net.uav_step_m / net.region_size_m
        self.register_buffer("levels", torch.tensor(net.power_levels, dtype=torch.float32))
        self.register_buffer("moves", torch.tensor(_UAV_MOVES))  # stay, +x, -x, +y, -y
        # region j -> beam (satellite features)
        self.register_buffer("region_beam", core.topo.region_beam.clone().cpu())
        self.trunk = nn.Sequential(layer_init(nn.Linear(in_dim, hidden)), nn.Tanh(),
                                   layer_init(nn.Linear(hidden, hidden)), nn.Tanh())
        self.flat = layer_init(nn.Linear(hidden, int(sum(self.nvec))), std=0.01)
        self.ctx = layer_init(nn.Linear(hidden, ctx_dim))
        # segments, in the order of nvec: (name, positions, choices, groups, autoregressive,
        # positions per feature row: the T time blocks of a subband share its user features)
        N, T, K = self.N, self.T, self.K
        if tier == "local":
            self.segments = [("user", N * T, K + 1, 1, True, T), ("power", N, self.L, 1, False, 1),
                             ("uav", self.U, 5, 1, False, 1)]
        elif tier == "hap":
            self.segments = [("hap", self.R * N, self.M + 2, self.R, True, 1)]
        else:
            self.segments = [("sat", N, self.B + 2, 1, True, 1)]
        self.segments = [s for s in self.segments if s[1] > 0]
        feats = self.features(torch.zeros(1, core.obs_size(tier)))
        self.ptrs = nn.ModuleDict({
            name: Pointer(feats[name].shape[-1], ctx_dim, ptr_hidden, reps, ar)
            for name, _, _, _, ar, reps in self.segments})

    # ---------------------------------------------------------------- candidate features
    def features(self, o: torch.Tensor) -> dict:
        """{segment: [B, P, C, F]} candidate features from observations o [B, obs_size]."""
        return getattr(self, f"_{self.tier}_features")(o)

    def _local_features(self, o):
        B, N, K, L, U = o.shape[0], self.N, self.K, self.L, self.U
        s = self.sl
        hs = o[:, s["holder_snr"]].view(B, K, N).transpose(1, 2)  # [B, N, K]
        hk = o[:, s["holder_kind"]].view(B, N, 5)
        inr = o[:, s["inr"]].view(B, N, 1)
        dem = o[:, s["user_demand"]].view(B, 1, K)
        rate = o[:, s["user_rate"]].view(B, 1, K)
        uxy = o[:, s["user_xy"]].view(B, K, 2)
        best = hs.max(-1, keepdim=True).values
        # users: [B, N, K, 5]; "none": zeros with its flag
        user = torch.stack([hs, hs - best, dem.expand(-1, N, -1), rate.expand(-1, N, -1),
                            torch.zeros_like(hs)], -1)
        none = torch.zeros(B, N, 1, 5, device=o.device)
        none[..., 4] = 1.0
        cand = torch.cat([none, user], 2)  # [B, N, K + 1, 5]
        sub = torch.cat([hk, inr], -1)[:, :, None].expand(-1, -1, K + 1, -1)
        out = {"user": torch.cat([cand, sub], -1)}  # [B, N, K + 1, F]: the T blocks share it
        lv = self.levels.view(1, 1, L, 1).expand(B, N, L, 1)
        sub = torch.cat([hk, inr, best, hs.mean(-1, keepdim=True)], -1)
        out["power"] = torch.cat([lv, sub[:, :, None].expand(-1, -1, L, -1)], -1)
        if U > 0:
            vxy = o[:, s["uav_xy"]].view(B, U, 1, 2)
            new = vxy + self.moves.view(1, 1, 5, 2) * self.uav_step
            w = dem.view(B, K, 1)
            cen = (w * uxy).sum(1) / w.sum(1).clamp(min=1e-6)  # [B, 2]
            dist = (new - cen[:, None, None]).norm(dim=-1, keepdim=True)
            edge = new.abs().amax(-1, keepdim=True) - 0.5  # > 0: outside the region
            stay = torch.zeros(1, 1, 5, 1, device=o.device)
            stay[:, :, 0] = 1.0
            # no raw coordinates or direction: the scores cannot prefer a fixed direction
            out["uav"] = torch.cat([edge, edge.clamp(min=0) / self.uav_step, dist,
                                    (dist - dist[:, :, :1]) / self.uav_step,
                                    (edge - edge[:, :, :1]) / self.uav_step,
                                    stay.expand(B, U, -1, -1)], -1)
            # the policy keeps its UAVs in their region (as the greedy heuristic does): moves
            # that end outside are not proposed, and a UAV outside may only move back in
            e = edge.squeeze(-1)
            out["uav_allowed"] = (e <= 0) | (e < e[:, :, :1])
        return out

    def _hap_features(self, o):
        B, N, R, M = o.shape[0], self.N, self.R, self.M
        s = self.sl
        C = M + 2
        z = torch.zeros(B, R, 1, device=o.device)  # off: 0
        parts = []
        for name in ("node_snr", "node_snr_top"):
            snr = o[:, s[name]].view(B, R, M + 1)
            gap = snr - snr.max(-1, keepdim=True).values
            parts += [torch.cat([z, snr], -1), torch.cat([z, gap], -1)]
        region = torch.stack([o[:, s[k]].view(B, R) for k in
                              ("region_demand", "region_served", "region_se", "region_fair")], -1)
        n_feat = torch.stack([o[:, s["beam_avail"]], o[:, s["sat_direct"]]], -1)  # [B, N, 2]
        cur = o[:, s["hap_alloc"]].view(B, R, N, C)
        kind = torch.zeros(C, 4, device=o.device)  # off, TBS, UAV, HAP-direct
        kind[0, 0] = 1.0
        kind[1:1 + M - self.U, 1] = 1.0
        kind[1 + M - self.U:1 + M, 2] = 1.0
        kind[M + 1, 3] = 1.0
        f = torch.cat([
            torch.stack(parts, -1)[:, :, None].expand(-1, -1, N, -1, -1),
            region[:, :, None, None].expand(-1, -1, N, C, -1),
            n_feat[:, None, :, None].expand(-1, R, -1, C, -1),
            cur[..., None],
            kind.expand(B, R, N, C, 4)], -1)
        return {"hap": f.reshape(B, R * N, C, -1)}

    def _satellite_features(self, o):
        B, N, Bm, J = o.shape[0], self.N, self.B, self.J
        s = self.sl
        C = Bm + 2
        reg = torch.stack([o[:, s[k]] for k in ("region_demand", "region_served", "region_se",
                                                 "region_sat_snr", "region_tn_snr")], -1)
        onehot = torch.nn.functional.one_hot(self.region_beam, Bm).float()  # [J, Bm]
        per_beam = torch.einsum("bjf,jc->bcf", reg, onehot / onehot.sum(0).clamp(min=1))
        per_beam = torch.cat([per_beam[..., :1] * (J / Bm), per_beam[..., 1:]], -1)  # demand: sum
        allr = reg.mean(1, keepdim=True)
        allr = torch.cat([allr[..., :1] * J, allr[..., 1:]], -1)
        cand = torch.cat([torch.zeros(B, 1, 5, device=o.device), per_beam, allr], 1)  # [B, C, 5]
        kind = torch.zeros(C, 3, device=o.device)  # off, beam, satellite-direct
        kind[0, 0], kind[C - 1, 2] = 1.0, 1.0
        kind[1:C - 1, 1] = 1.0
        cur = o[:, s["sat_alloc"]].view(B, N, C)
        f = torch.cat([cand[:, None].expand(-1, N, -1, -1), cur[..., None],
                       kind.expand(B, N, C, 3)], -1)
        return {"sat": f}

    # ---------------------------------------------------------------- distribution
    def forward(self, x, mask, action=None, greedy=False):
        lead = x.shape[:-1]
        x = x.reshape(-1, x.shape[-1])
        mask = mask.reshape(-1, mask.shape[-1])
        Bn = x.shape[0]
        h = self.trunk(x)
        flat = self.flat(h)
        ctx = self.ctx(h)
        feats = self.features(x[:, :self.sl[next(reversed(self.sl))].stop])
        if action is not None:
            action = action.reshape(Bn, -1)
        acts, logps, ents, o, p = [], [], [], 0, 0
        for name, P, C, G, ar, reps in self.segments:
            m = mask[:, o:o + P * C].view(Bn, P, C)
            if name == "uav":
                m = m & feats["uav_allowed"]
            score, gain = self.ptrs[name](feats[name], ctx)  # [Bn, P / reps, C, reps]
            lg = score.transpose(2, 3).reshape(Bn, P, C)
            if name != "uav":  # UAV moves: scored from where they lead only (see features)
                lg = lg + flat[:, o:o + P * C].view(Bn, P, C)
            if gain is not None and reps > 1:
                gain = gain.repeat_interleave(reps, 1)
            S = P // G
            if not ar:
                lp = torch.log_softmax(torch.where(m, lg, float("-inf")), -1)
                a = action[:, p:p + P] if action is not None else sample_choice(lp, greedy)
            elif action is not None:  # teacher forcing: shares from the taken actions
                a = action[:, p:p + P]
                oh = torch.nn.functional.one_hot(a, C).to(lg.dtype).view(Bn, G, S, C)
                share = (oh.cumsum(2) - oh).view(Bn, P, C) / S
                lp = torch.log_softmax(torch.where(m, lg + gain * share, float("-inf")), -1)
            else:  # sampling: position by position within each group
                lg_g, gain_g, m_g = (t.view(Bn, G, S, C) for t in (lg, gain, m))
                share = torch.zeros(Bn, G, C, device=x.device)
                lps, cols = [], []
                for i in range(S):
                    lpi = torch.log_softmax(torch.where(m_g[:, :, i], lg_g[:, :, i]
                                                        + gain_g[:, :, i] * share,
                                                        float("-inf")), -1)
                    ai = sample_choice(lpi, greedy)
                    share = share + torch.nn.functional.one_hot(ai, C) / S
                    lps.append(lpi)
                    cols.append(ai)
                lp = torch.stack(lps, 2).view(Bn, P, C)
                a = torch.stack(cols, 2).view(Bn, P)
            logps.append(lp.gather(-1, a[..., None]).squeeze(-1))
            ents.append(_entropy(lp))
            acts.append(a)
            o += P * C
            p += P
        return tuple(torch.cat(v, -1).view(*lead, -1) for v in (acts, logps, ents))


class TierAgent(nn.Module):
    """Structured actor and an MLP critic (input ``critic_in``, default the actor's input) shared
    by the agents of one tier; ``critic_out`` values per input (several for a centralised
    critic that values every agent of the tier from the global state)."""

    def __init__(self, core, tier, in_dim, hidden=128, critic_in=None, critic_out=1):
        super().__init__()
        self.actor = TierActor(core, tier, in_dim, hidden)
        self.critic = mlp(critic_in or in_dim, critic_out, hidden, out_std=1.0)

    def value(self, x):
        v = self.critic(x)
        return v.squeeze(-1) if v.shape[-1] == 1 else v


def infeasible(core, tier, action, mask):
    """Chosen entries that the flat mask forbids, per env ([E, agents, P] actions)."""
    offs = core._offs_t[tier]
    return (~torch.gather(mask, -1, action + offs)).flatten(1).sum(1)


def allowed_fraction(core, tier, mask):
    """[..., sum(nvec)] bool mask -> [..., positions]: the fraction of each position's choices
    that the mask allows (a compact mask input: every mask of the core opens a position either
    fully or to one fixed choice, so it is lossless)."""
    nv = core._nvec_t[tier]
    pos = torch.repeat_interleave(torch.arange(len(nv), device=mask.device), nv)
    out = torch.zeros(*mask.shape[:-1], len(nv), device=mask.device)
    return out.index_add_(-1, pos, mask.float()) / nv.float()
