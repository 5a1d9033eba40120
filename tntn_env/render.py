"""Matplotlib (Agg, no display) frames of one environment of a core.

Kept apart from the core so that the core never imports matplotlib. Left panel: the map (regions
tinted by satellite beam, TBS sites, UAV positions, HAPs with lines to the regions they serve,
users coloured by the kind of transmitter that serves them). Right panel: the allocation per
subband (the satellite's choice, then the holder of each subband in each region).
"""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from .topology import TX_HAP, TX_SAT, TX_TBS, TX_UAV

# Colours by serving transmitter kind (index kind + 1; 0 = not served / not held).
KIND_COLOURS = ("#c8c8c8", "tab:orange", "tab:blue", "tab:green", "tab:purple")
KIND_LABELS = ("not served", "TBS", "UAV", "HAP", "satellite")
# Beam tints, distinct from the kind colours above.
_BEAM_COLOURS = ("tab:red", "tab:cyan", "tab:olive", "tab:pink", "tab:brown", "tab:gray",
                 "gold", "navy", "teal", "maroon")
_MAX_CELL_TEXT = 400


def render_frame(core, env: int = 0, fig: Figure | None = None) -> tuple[np.ndarray, Figure]:
    """Draw env ``env`` of ``core``; returns ``(frame HxWx3 uint8, figure)``.

    Pass the returned figure back in to reuse it (it is cleared and redrawn). After a step the
    users and serving transmitters are those of that step (``core.link_state``); right after a
    reset users are shown as not served.
    """
    if core.state is None:
        raise RuntimeError("render needs a reset core")
    if fig is None:
        fig = Figure(figsize=(12, 5.2), dpi=80)
        FigureCanvasAgg(fig)
    fig.clear()
    topo, st = core.topo, core.state
    B, J, N, M, Tn = core.B, core.J, core.N, core.M, core.Tn
    size = core.cfg.network.region_size_m
    sat = st.sat_choice[env].cpu().numpy()
    holder = core.allocation()["holder"][env].cpu().numpy()
    tx_kind = topo.tx_kind.cpu().numpy()
    if core.last is not None:
        ls = core.link_state(env)
        user_xy, uav_xy, serving = ls["user_xy"], ls["uav_xy"], ls["serving_tx"]
        user_kind = _dominant_kind(serving, tx_kind)
    else:
        user_xy = st.user_xy[env].cpu().numpy()
        uav_xy = st.uav_xy[env].cpu().numpy()
        user_kind = np.zeros(core.Ut, dtype=np.int64)

    gs = fig.add_gridspec(1, 2, width_ratios=(1.0, 1.15), wspace=0.25, left=0.05, right=0.98,
                          top=0.9, bottom=0.16)
    ax = fig.add_subplot(gs[0, 0])
    origin = topo.region_origin_xy.cpu().numpy()
    centre = topo.region_centre_xy.cpu().numpy()
    region_beam = topo.region_beam.cpu().numpy()
    region_hap = topo.region_hap.cpu().numpy()
    has_hap = "hap" in core.tiers  # in "uav" there is no HAP platform to draw
    for j in range(J):
        colour = _BEAM_COLOURS[region_beam[j] % len(_BEAM_COLOURS)]
        ax.add_patch(Rectangle(origin[j], size, size, facecolor=colour, alpha=0.10,
                               edgecolor="black", linewidth=1.0))
        hap = f"HAP {region_hap[j]}, " if has_hap else ""
        ax.text(origin[j, 0] + 0.03 * size, origin[j, 1] + 0.95 * size,
                f"region {j}\n{hap}beam {region_beam[j]}", fontsize=7, va="top")
    hap_xy = topo.hap_xy.cpu().numpy() if has_hap else np.zeros((0, 2))
    for i, (hx, hy) in enumerate(hap_xy):
        for j in np.nonzero(region_hap == i)[0]:
            ax.plot([hx, centre[j, 0]], [hy, centre[j, 1]], ls=":", lw=0.8, color="tab:green")
        ax.plot(hx, hy, marker="^", ms=11, color="tab:green", mec="black")
        ax.annotate(f"HAP {i}", (hx, hy), xytext=(6, 6), textcoords="offset points", fontsize=8,
                    color="darkgreen")
    if Tn > 0:
        tbs = topo.tbs_xy.cpu().numpy().reshape(-1, 2)
        ax.scatter(tbs[:, 0], tbs[:, 1], marker="s", s=45, c="tab:orange", edgecolors="black",
                   zorder=3)
    if len(uav_xy):
        ax.scatter(uav_xy[:, 0], uav_xy[:, 1], marker="X", s=70, c="tab:blue",
                   edgecolors="black", zorder=4)
    ax.scatter(user_xy[:, 0], user_xy[:, 1], s=16, zorder=5,
               c=[KIND_COLOURS[k] for k in user_kind], edgecolors="none")
    width, height = topo.area_size_xy
    pad = 0.04 * max(width, height)
    ax.set_xlim(-pad, width + pad)
    ax.set_ylim(-pad, height + pad)
    ax.set_aspect("equal")
    ax.set_xlabel("x (m)", fontsize=8)
    ax.set_ylabel("y (m)", fontsize=8)
    ax.tick_params(labelsize=7)
    direct = int((sat == B + 1).sum())
    sat_txt = (f"satellite: {B} beams (tint), {direct}/{N} subbands direct"
               if "satellite" in core.tiers else "no satellite agent (fixed equal split)")
    ax.set_title(sat_txt, fontsize=9)
    handles = [Line2D([], [], ls="", marker="o", ms=5, color=c, label=f"user: {lab}")
               for c, lab in zip(KIND_COLOURS, KIND_LABELS)]
    handles += [Line2D([], [], ls="", marker="s", ms=6, color="tab:orange", mec="black",
                       label="TBS"),
                Line2D([], [], ls="", marker="X", ms=7, color="tab:blue", mec="black",
                       label="UAV"),
                Line2D([], [], ls="", marker="^", ms=7, color="tab:green", mec="black",
                       label="HAP")]
    ax.legend(handles=handles, fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0),
              frameon=False)

    # Allocation panel: row 0 the satellite's choice per subband, rows 1.. the holder per region.
    ax2 = fig.add_subplot(gs[0, 1])
    img = np.ones((J + 1, N, 3))
    text = [["" for _ in range(N)] for _ in range(J + 1)]
    for n in range(N):
        c = int(sat[n])
        if 1 <= c <= B:
            img[0, n] = to_rgb(_BEAM_COLOURS[(c - 1) % len(_BEAM_COLOURS)])
            text[0][n] = f"b{c - 1}"
        elif c == B + 1:
            img[0, n] = to_rgb(KIND_COLOURS[TX_SAT + 1])
            text[0][n] = "D"
    for j in range(J):
        for n in range(N):
            h = int(holder[j, n])
            if h < 0:
                continue
            kind = int(tx_kind[h])
            img[j + 1, n] = to_rgb(KIND_COLOURS[kind + 1])
            if kind in (TX_TBS, TX_UAV):
                m = h - j * M
                text[j + 1][n] = f"T{m}" if kind == TX_TBS else f"U{m - Tn}"
            else:
                text[j + 1][n] = "H" if kind == TX_HAP else "S"
    ax2.imshow(img, aspect="auto", interpolation="nearest")
    if (J + 1) * N <= _MAX_CELL_TEXT:
        for r in range(J + 1):
            for n in range(N):
                if text[r][n]:
                    ax2.text(n, r, text[r][n], ha="center", va="center", fontsize=7,
                             color="white")
    ax2.set_xticks(range(N))
    ax2.set_xticklabels([str(n) for n in range(N)], fontsize=7)
    ax2.set_yticks(range(J + 1))
    ax2.set_yticklabels(["satellite"] + [f"region {j}" for j in range(J)], fontsize=7)
    ax2.set_xlabel("subband", fontsize=8)
    ax2.axhline(0.5, color="black", lw=1.0)
    ax2.set_title("allocation: beam b / satellite-direct D; holder TBS T, UAV U, HAP H, sat S",
                  fontsize=8)
    ax2.legend(handles=[Patch(color=c, label=lab) for c, lab in
                        zip(KIND_COLOURS[1:], KIND_LABELS[1:])] +
               [Patch(facecolor="white", edgecolor="grey", label="off / not held")],
               fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=5,
               frameon=False)

    t, ep = int(st.t[env]), int(st.episode[env])
    head = f"tntn {core.cfg.scenario}: env {env}, episode {ep}, step {t}"
    if core.last is not None:
        reward = float(core.last.region["reward"][env].mean())
        thr = float(core.last.region["throughput_bps"][env].sum()) / core.Ut / 1e6
        head += f" | last step: reward {reward:.3f}, throughput {thr:.1f} Mbps/user"
    fig.suptitle(head, fontsize=10)
    canvas = fig.canvas
    canvas.draw()
    frame = np.asarray(canvas.buffer_rgba())[..., :3].copy()
    return frame, fig


def _dominant_kind(serving: np.ndarray, tx_kind: np.ndarray) -> np.ndarray:
    """Per user, 1 + the kind of transmitter serving most of its subbands (0 = not served)."""
    kind = np.where(serving >= 0, tx_kind[np.clip(serving, 0, None)] + 1, 0)  # [Ut, N]
    counts = np.stack([(kind == k).sum(1) for k in range(1, len(KIND_COLOURS))], 1)
    return np.where(counts.max(1) > 0, counts.argmax(1) + 1, 0)


def close_figure(fig: Figure) -> None:
    """Release a figure made by :func:`render_frame` (it is not registered with pyplot)."""
    fig.clear()
