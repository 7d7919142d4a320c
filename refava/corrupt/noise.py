"""Gaussian and shot noise, sampled exactly from the rounded output distribution through lookup tables.

The reference formulas (ImageNet-C) for a uint8 pixel ``x`` are

* Gaussian: ``clip(x/255 + N(0, sigma), 0, 1) * 255``
* shot:     ``clip(Poisson(x/255 * c) / c, 0, 1) * 255``

followed by rounding to uint8 (refava rounds half to even; the references truncate).  Both outputs take at most 256
values, so instead of drawing a float per pixel, refava draws the *output* from its exact discrete distribution by
inverse-CDF lookup: 16 (Gaussian) or 12 (shot) random bits pick a bin of a table; a bin whose probability interval
holds no boundary of the CDF is "pure" and its table entry is the answer; the few bins that straddle a boundary
(under 1 % of pixels) are resolved with 32 further random bits against the float64 CDF.  The result has the formula's
distribution up to a probability resolution of 2^-44 per outcome, and costs two table lookups per value.
"""
from __future__ import annotations

import math
import threading
from functools import lru_cache

import numpy as np

from . import _jit

# "jit": Gaussian noise in one compiled pass (needs numba: refava[fast]); "numpy": the same bytes in five passes
BACKEND = "jit" if _jit.available() else "numpy"

_GAUSS_BITS = 16
_SHOT_BITS = 12
_IMPURE_K = -32768
_IMPURE16 = np.uint16(1 << 15)


def _phi(z: np.ndarray) -> np.ndarray:
    """The standard normal CDF in float64 (erfc form: accurate in both tails)."""
    return np.array([0.5 * math.erfc(-v / math.sqrt(2.0)) for v in z.ravel()]).reshape(z.shape)


def gaussian_level_cdf(sigma: float) -> np.ndarray:
    """CDF of the rounded, clipped noise ``K = clip(rint(255 * sigma * Z), -255, 255)`` over k = -255..255.

    Clipping K at +-255 changes no output (x + K is clipped to 0..255 anyway) and makes the support finite.
    """
    k = np.arange(-255, 256, dtype=np.float64)
    cdf = _phi((k + 0.5) / (255.0 * sigma))
    cdf[-1] = 1.0
    return cdf


def shot_level_cdf(c: float) -> tuple[np.ndarray, np.ndarray]:
    """Per input level x (rows) the CDF of ``P = min(Poisson(x * c / 255), ceil(c))``, and the output of each P.

    Every P >= c gives 255 after clipping, so the tail is lumped into the last column.
    """
    top = int(math.ceil(c))
    counts = np.arange(top + 1, dtype=np.float64)
    values = np.minimum(255.0, np.rint(255.0 * counts / c)).astype(np.uint8)
    lam = np.arange(256, dtype=np.float64) * c / 255.0
    log_fact = np.array([math.lgamma(n + 1.0) for n in counts])
    with np.errstate(divide="ignore", invalid="ignore"):   # x = 0: 0 * log(0), fixed below
        log_pmf = counts[None, :] * np.log(lam)[:, None] - lam[:, None] - log_fact[None, :]
    pmf = np.exp(log_pmf)
    pmf[0] = 0.0
    pmf[0, 0] = 1.0                        # x = 0: no photons
    cdf = np.cumsum(pmf[:, :-1], axis=1)
    cdf = np.concatenate([cdf, np.ones((256, 1))], axis=1)
    return cdf, values


def _bin_table(cdf: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """For each of the 2**bits bins of [0, 1): the outcome index at the bin's start, and whether the bin is pure."""
    n = 1 << bits
    lo = np.searchsorted(cdf, np.arange(n, dtype=np.float64) / n, side="right")
    hi = np.searchsorted(cdf, np.arange(1, n + 1, dtype=np.float64) / n, side="left")
    return lo, lo == hi


@lru_cache(maxsize=16)
def _gaussian_tables(sigma: float):
    """The CDF; per 16-bit bin the noise level k (int16), or ``_IMPURE_K`` where the bin straddles a level; and
    per bin the index of the first CDF entry above its start (where an impure bin's search begins)."""
    cdf = gaussian_level_cdf(sigma)
    lo, pure = _bin_table(cdf, _GAUSS_BITS)
    lut = np.where(pure, lo - 255, _IMPURE_K).astype(np.int16)
    return cdf, lut, lo.astype(np.int16)


@lru_cache(maxsize=16)
def _shot_tables(c: float):
    cdf, values = shot_level_cdf(c)
    n = 1 << _SHOT_BITS
    table = np.empty((256, n), dtype=np.uint16)
    for x in range(256):
        lo, pure = _bin_table(cdf[x], _SHOT_BITS)
        table[x] = values[lo] | np.where(pure, np.uint16(0), _IMPURE16)
    return cdf, values, table.ravel()


_SCRATCH = threading.local()


def _scratch(name: str, size: int, dtype) -> np.ndarray:
    """A per-thread work array, kept between calls (fresh large arrays cost page faults on every frame)."""
    buffers = _SCRATCH.__dict__.setdefault("buffers", {})
    buf = buffers.get(name)
    if buf is None or buf.size < size or buf.dtype != dtype:
        buf = buffers[name] = np.empty(size, dtype=dtype)
    return buf[:size]


def _uniform_bits(rng: np.random.Generator, count: int) -> np.ndarray:
    """``count`` uint16 values of random bits."""
    raw = rng.bit_generator.random_raw((count + 3) // 4)
    return raw.view(np.uint16)[:count]


def _refine(rng: np.random.Generator, coarse: np.ndarray, bits: int) -> np.ndarray:
    """Uniform float64 points inside the bins ``coarse`` of width 2**-bits, from 32 further random bits each."""
    fine = rng.bit_generator.random_raw(len(coarse)) >> np.uint64(32)
    return (coarse.astype(np.float64) + (fine.astype(np.float64) + 0.5) / 2.0 ** 32) / float(1 << bits)


def gaussian_noise(frames: np.ndarray, sigma: float, rng: np.random.Generator, out: np.ndarray | None = None
                   ) -> np.ndarray:
    """``rint(clip(x/255 + N(0, sigma), 0, 1) * 255)`` for a uint8 array of any shape, exactly in distribution
    (written into ``out``, a contiguous uint8 array of the same shape, when given)."""
    cdf, lut, starts = _gaussian_tables(float(sigma))
    flat = frames.reshape(-1)
    u = _uniform_bits(rng, flat.size)
    if BACKEND == "jit":
        if out is None:
            out = np.empty(frames.shape, dtype=np.uint8)
        target = out.reshape(-1)
        spots = _scratch("impure", flat.size, np.int64)
        n = _jit.gaussian_levels(flat, u, lut, _IMPURE_K, target, spots)
        if n:
            _jit.gaussian_resolve(flat, u, spots[:n], rng.bit_generator.random_raw(n), cdf, starts, _GAUSS_BITS,
                                  target)
        return out
    k = lut.take(u, out=_scratch("k", flat.size, np.int16))       # a reused buffer: no fresh pages to fault in
    impure = np.flatnonzero(k == _IMPURE_K)
    if impure.size:
        v = _refine(rng, u[impure], _GAUSS_BITS)
        k[impure] = np.searchsorted(cdf, v, side="right") - 255
    k += flat                                                     # clip(x + k, 0, 255) in int16, then narrowed
    np.clip(k, 0, 255, out=k)
    return _narrow(k, frames.shape, out)


def shot_noise(frames: np.ndarray, c: float, rng: np.random.Generator, out: np.ndarray | None = None) -> np.ndarray:
    """``rint(clip(Poisson(x/255 * c) / c, 0, 1) * 255)`` for a uint8 array of any shape, exactly in distribution
    (written into ``out`` when given)."""
    cdf, values, table = _shot_tables(float(c))
    flat = frames.reshape(-1)
    u = _uniform_bits(rng, flat.size) >> np.uint16(16 - _SHOT_BITS)
    idx = _scratch("idx", flat.size, np.uint32)
    np.copyto(idx, flat)
    idx <<= np.uint32(_SHOT_BITS)
    np.bitwise_or(idx, u, out=idx)
    levels = table.take(idx, out=_scratch("out16", flat.size, np.uint16))
    impure = np.flatnonzero(levels >= _IMPURE16)
    if impure.size:
        v = _refine(rng, u[impure], _SHOT_BITS)
        rows = cdf[flat[impure]]
        counts = (rows <= v[:, None]).sum(axis=1)
        levels[impure] = values[counts]
    return _narrow(levels, frames.shape, out)


def _narrow(values: np.ndarray, shape: tuple, out: np.ndarray | None) -> np.ndarray:
    """Values already in 0..255 as uint8 of ``shape``: a new array, or copied into ``out``."""
    if out is None:
        return values.astype(np.uint8).reshape(shape)
    np.copyto(out.reshape(-1), values, casting="unsafe")
    return out
