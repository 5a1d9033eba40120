"""Gymnasium spaces of the PettingZoo env.

:class:`MaskedMultiDiscrete` is a ``MultiDiscrete`` whose ``sample`` also takes the env's binary
action mask (the ``"action_mask"`` entry of an observation) besides Gymnasium's per-position
tuple: flat, length ``sum(nvec)``, the choices of position ``p`` at ``offs[p]:offs[p] + nvec[p]``;
or stacked, ``[positions, choices]``, where every position has the same number of choices.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces


class MaskedMultiDiscrete(spaces.MultiDiscrete):
    """``MultiDiscrete`` whose ``sample(mask=...)`` accepts a flat mask of length ``sum(nvec)``
    (or, where all ``nvec`` are equal, the same mask stacked as ``[len(nvec), nvec[0]]``).

    A flat or stacked binary ``mask`` samples each position uniformly among its allowed choices
    (``start`` where none is allowed), as Gymnasium does for a tuple mask, but vectorised over
    positions. A flat ``probability`` is split into the per-position tuple Gymnasium expects.
    Tuples are passed to :meth:`gymnasium.spaces.MultiDiscrete.sample` unchanged.
    """

    def _flat(self, flat, name: str, stacked_ok: bool = False):
        flat = np.asarray(flat)
        size = int(self.nvec.sum())
        if not hasattr(self, "_stacked_shape"):  # computed once (sample() is on hot paths)
            self._stacked_shape = ((len(self.nvec), int(self.nvec[0]))
                                   if len(set(self.nvec.tolist())) == 1 else None)
        stacked = self._stacked_shape
        if stacked_ok and stacked is not None and flat.shape == stacked:
            return flat.reshape(size)
        if flat.shape != (size,):
            alt = f", or stacked {stacked}" if stacked_ok and stacked is not None else ""
            raise ValueError(f"{name} has shape {flat.shape}; expected flat ({size},) = "
                             f"sum(nvec){alt}, or a tuple of {len(self.nvec)} per-position "
                             "arrays")
        return flat

    def sample(self, mask=None, probability=None):
        flat_mask = mask is not None and not isinstance(mask, tuple) and self.nvec.ndim == 1
        if flat_mask and probability is None:
            m = self._flat(mask, "mask", stacked_ok=True)
            if m.dtype == np.int8 or m.dtype == np.uint8:
                bad = bool((m.view(np.uint8) > 1).any())  # negative int8 reads as > 127
            else:
                bad = m.dtype != bool and not ((m == 0) | (m == 1)).all()
            if bad:
                raise ValueError("mask must be binary (0/1 or bool)")
            if not hasattr(self, "_dense_index"):
                nvec = self.nvec.astype(np.int64)
                rows = np.repeat(np.arange(len(nvec)), nvec)
                cols = np.arange(int(nvec.sum())) - np.repeat(np.cumsum(nvec) - nvec, nvec)
                shape = (len(nvec), int(nvec.max()))
                # flat position of each choice in the dense [positions, max choices] layout;
                # None where the flat layout already is that layout (all nvec equal). The
                # dense buffer is reused: only the index positions are ever written, the
                # padding stays 0.
                index = None if self._stacked_shape else rows * shape[1] + cols
                dense = None if index is None else np.zeros(shape[0] * shape[1])
                self._dense_index = (index, shape, dense, bool(np.any(self.start)))
            index, shape, dense, shifted = self._dense_index
            # 1 + U(0, 1) on the allowed choices, 0 elsewhere; argmax of i.i.d. uniforms over
            # the allowed choices is uniform among them; none allowed -> index 0 (= start)
            keys = self.np_random.random(m.size)
            keys += 1.0
            keys *= m
            if index is not None:
                dense[index] = keys
                keys = dense
            out = np.argmax(keys.reshape(shape), axis=1)
            if shifted:
                out += self.start
            return out.astype(self.dtype, copy=False)
        if probability is not None and not isinstance(probability, tuple) \
                and self.nvec.ndim == 1:
            p = self._flat(probability, "probability").astype(np.float64)
            probability = tuple(np.split(p, np.cumsum(self.nvec)[:-1]))
        return super().sample(mask=mask, probability=probability)
