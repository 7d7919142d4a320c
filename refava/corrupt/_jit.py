"""Compiled kernels (Numba) for the corruptions whose NumPy form makes many passes over memory; each gives the same
bytes as its NumPy path (tests compare them), and is used only where Numba is installed (``pip install
refava[fast]``, which ``make`` does).

* Rain streaks (:mod:`.rain`): the NumPy path takes its box sums from a full-frame OpenCV filter, then gathers,
  scatters and does float64 arithmetic on the pixels under drops and a table lookup over the frame: about ten passes.
  Here one loop visits the drops (their 3x3 sums in integers, borders reflected as OpenCV's default), a second applies
  the contrast table and writes the drops' values, with the same float64 operations in the same order.
* Gaussian noise (:mod:`.noise`): table lookup, impure-bin scan, add, clip and narrowing in one pass instead of five;
  the impure bins' positions come out in ascending order, as ``np.flatnonzero`` gives them, so they are resolved with
  the same random draws.
"""
from __future__ import annotations

import numpy as np

try:
    import numba
except ImportError:                                  # pragma: no cover - exercised where numba is absent
    numba = None


def available() -> bool:
    """Whether the compiled kernels can be used (Numba is installed)."""
    return numba is not None


if numba is not None:
    @numba.njit(cache=True, nogil=True, inline="always")
    def _reflect(i, n):
        """OpenCV's BORDER_REFLECT_101 for one step outside [0, n): -1 -> 1, n -> n - 2 (a size of 1 stays 0)."""
        if n == 1:
            return 0
        if i < 0:
            return -i
        if i > n - 1:
            return 2 * (n - 1) - i
        return i

    @numba.njit(cache=True, nogil=True)
    def streak_kernel(x, mask, contrast, drop_colour, sums, out):  # pragma: no cover - compiled, tested by value
        """Streaks on one C-contiguous uint8 frame ``x`` (H, W, 3) with its drop mask as uint8 0/1 (H, W) and the
        frame's per-channel sums (float64, as ``cv2.sumElems``), into ``out``."""
        h, w, _ = x.shape
        count = h * w
        m = drop_colour / 255.0
        gain = m * (1.0 - (sums[0] + sums[1] + sums[2]) / (count * 3) / 255.0)
        a = gain * m / 9.0
        b = m / 9.0
        c = 1.0 - m
        xf = x.reshape(-1)
        mf = mask.reshape(-1)
        n = 0
        if h >= 2:                                   # as the NumPy path: no streaks on a frame one pixel high
            for i in range(count):
                n += mf[i]
        where = np.empty(n, np.int64)
        box = np.empty((n, 6), np.int32)             # S(x) per channel, then S(q), q = mask01 * (255 - x)
        tx0 = tx1 = tx2 = tq0 = tq1 = tq2 = t80 = t81 = t82 = 0
        k = 0
        for y in range(h if n else 0):
            inner_y = 0 < y < h - 1
            for xx in range(w):
                i = y * w + xx
                if mf[i] == 0:
                    continue
                s0 = s1 = s2 = q0 = q1 = q2 = 0
                inner = inner_y and 0 < xx < w - 1
                for dy in range(-1, 2):
                    for dx in range(-1, 2):
                        if inner:
                            j = i + dy * w + dx
                        else:                        # on the border: reflected neighbours
                            j = _reflect(y + dy, h) * w + _reflect(xx + dx, w)
                        p = 3 * j
                        v0 = np.int32(xf[p])
                        v1 = np.int32(xf[p + 1])
                        v2 = np.int32(xf[p + 2])
                        s0 += v0
                        s1 += v1
                        s2 += v2
                        on = np.int32(mf[j])
                        q0 += on * (255 - v0)
                        q1 += on * (255 - v1)
                        q2 += on * (255 - v2)
                where[k] = i
                box[k, 0] = s0
                box[k, 1] = s1
                box[k, 2] = s2
                box[k, 3] = q0
                box[k, 4] = q1
                box[k, 5] = q2
                tx0 += s0
                tx1 += s1
                tx2 += s2
                tq0 += q0
                tq1 += q1
                tq2 += q2
                p = 3 * i
                t80 += xf[p]
                t81 += xf[p + 1]
                t82 += xf[p + 2]
                k += 1
        # the blend's sum over the drops, then the contrast step's per-channel means (as rain._streak_one)
        totals = ((tq0, tx0, t80), (tq1, tx1, t81), (tq2, tx2, t82))
        means = np.empty(3)
        for ch in range(3):
            tq, tx, t8 = totals[ch]
            shift = a * tq + b * tx + (c - 1.0) * t8
            means[ch] = (sums[ch] + shift) / count
        table = np.empty((3, 256), np.uint8)
        for ch in range(3):
            for v in range(256):
                e = (v - means[ch]) * contrast + means[ch]
                table[ch, v] = np.uint8(np.rint(min(max(e, 0.0), 255.0)))
        t0 = table[0]
        t1 = table[1]
        t2 = table[2]
        for y in range(h):
            for xx in range(w):
                out[y, xx, 0] = t0[x[y, xx, 0]]
                out[y, xx, 1] = t1[x[y, xx, 1]]
                out[y, xx, 2] = t2[x[y, xx, 2]]
        of = out.reshape(-1)
        ac = a * contrast
        bc = b * contrast
        cc = c * contrast
        bases = np.empty(3)
        for ch in range(3):
            bases[ch] = means[ch] * (1.0 - contrast)
        for j in range(n):                           # drop by drop, its three channels together
            q = 3 * where[j]
            for ch in range(3):
                p = q + ch
                value = box[j, 3 + ch] * ac
                value += box[j, ch] * bc
                value += xf[p] * cc
                value += bases[ch]
                of[p] = np.uint8(np.rint(min(max(value, 0.0), 255.0)))

    @numba.njit(cache=True, nogil=True)
    def gaussian_levels(x, u, lut, impure_k, out, impure):  # pragma: no cover - compiled, tested by value
        """``out[i] = clip(x[i] + lut[u[i]], 0, 255)`` over flat uint8 ``x``; the positions whose bin is impure
        (``lut == impure_k``; their ``out`` is left for the caller) are written to ``impure`` in ascending order and
        counted (the return value)."""
        n = 0
        for i in range(x.size):
            k = np.int32(lut[u[i]])
            if k == impure_k:                          # under 1 % of values: a well-predicted branch
                impure[n] = i
                n += 1
            v = np.int32(x[i]) + k
            out[i] = np.uint8(min(max(v, 0), 255))
        return n

    @numba.njit(cache=True, nogil=True)
    def gaussian_resolve(x, u, impure, fine, cdf, starts, bits, out):  # pragma: no cover - compiled, tested by value
        """The impure positions ``impure`` (ascending): a float64 point ``v`` inside each one's bin from 32 further
        random bits (``fine``, raw 64-bit draws, top half used; as ``noise._refine``), its noise level as
        ``searchsorted(cdf, v, side="right") - 255`` (found by stepping up from the bin's first level ``starts[u]``:
        one or two steps, where a binary search takes nine), then ``clip(x + k, 0, 255)``."""
        scale = float(1 << bits)
        top = cdf.size
        for j in range(impure.size):
            i = impure[j]
            b = u[i]
            v = (float(b) + (float(fine[j] >> np.uint64(32)) + 0.5) / 2.0 ** 32) / scale
            level = np.int64(starts[b])
            while level < top and cdf[level] <= v:
                level += 1
            out[i] = np.uint8(min(max(np.int64(x[i]) + level - 255, 0), 255))
