"""Test-time video corruptions of the RAVAR paper (Gaussian noise, shot noise, fog, rain) and the rest of the RAVAR
authors' set (brightness, contrast, saturate, motion blur over time; :mod:`refava.corrupt.photometric`).

>>> import numpy as np
>>> from refava.corrupt import corrupt_clip
>>> clip = np.zeros((8, 256, 340, 3), dtype=np.uint8)
>>> out = corrupt_clip(clip, "fog", 3, np.random.default_rng(0))
>>> out.shape, out.dtype
((8, 256, 340, 3), dtype('uint8'))

Every frame gets its own generator spawned from ``rng``, so the output does not depend on the number of threads;
``clip_rng(seed, clip_id, name)`` seeds a clip's generator from the build's seed and the clip, so any subset, order or
worker count of a dataset run gives the same bytes.  No global random state is used.
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..errors import RefavaError

CORRUPTIONS = ("gaussian_noise", "shot_noise", "fog", "rain", "brightness", "contrast", "saturate", "motion_blur",
               "h264_crf", "h264_abr", "bit_error", "frame_rate", "freeze", "jumble", "box_jumble", "reverse")
RAIN_STYLES = ("streaks", "drops")
PRESETS = ("paper", "authors_code")
# "ravar" was the one preset before the two (it is "paper"); "authors-code" is how the command line spells it
PRESET_ALIASES = {"ravar": "paper", "authors-code": "authors_code"}

GAUSSIAN_SIGMA = (0.08, 0.12, 0.18, 0.26, 0.38)
SHOT_C = (60, 25, 12, 5, 3)
FOG_C = ((1.5, 2.0), (2.0, 2.0), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4))

_ALIASES = {"gaussian": "gaussian_noise", "shot": "shot_noise", "motion": "motion_blur",
            **{name: name for name in CORRUPTIONS}}


class CorruptionError(RefavaError, ValueError):
    """A corruption was asked for with a bad type, severity or input array."""


@dataclass(frozen=True)
class CorruptionSpec:
    """One corruption setting: what ``corrupt_clip`` applies and what the manifest records."""

    type: str
    severity: int | None
    preset: str | None = None
    style: str = "streaks"
    params: dict = field(default_factory=dict, compare=False)

    @property
    def name(self) -> str:
        """The setting's name: ``fog_s3``, ``gaussian_noise_paper``, ``rain_authors_code``, ``rain_s2_drops``."""
        if self.preset:
            return f"{self.type}_{self.preset}"
        return f"{self.type}_s{self.severity}" + ("_drops" if self.type == "rain" and self.style == "drops" else "")


def resolve(type: str, severity: int | None = None, *, preset: str | None = None,
            style: str = "streaks") -> CorruptionSpec:
    """Check a (type, severity | preset, rain style) request and return its spec with the formula's parameters.

    ``preset="ravar"`` is what the RAVAR authors ran: Gaussian sigma 0.2, shot c = 5, rain severity 2 with fresh
    drops every frame; their fog setting was not released, so fog takes the middle severity 3.
    """
    kind = _ALIASES.get(str(type).lower().replace("-", "_"))
    if kind is None:
        raise CorruptionError(f"unknown corruption type {type!r}; expected one of {', '.join(CORRUPTIONS)}")
    if style not in RAIN_STYLES:
        raise CorruptionError(f"unknown rain style {style!r}; expected one of {', '.join(RAIN_STYLES)}")
    if preset is not None:
        return _preset(kind, PRESET_ALIASES.get(preset, preset), style)
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or not 1 <= int(severity) <= 5:
        raise CorruptionError(f"{kind}: severity must be an integer 1..5, found {severity!r}")
    severity = int(severity)
    return CorruptionSpec(kind, severity, None, style if kind == "rain" else "streaks", _params(kind, severity, style))


def _preset(kind: str, preset: str, style: str) -> CorruptionSpec:
    """The two presets of the paper's four corruptions (the other types have none).

    * ``paper``: what the RAVAR paper's appendix G describes, with the settings of the authors' released calls where
      its numbers are missing: Gaussian sigma 0.2 on the [0, 1] scale, shot noise c = 5, rain as the appendix's
      ellipse drops at severity 2 (fresh drops every frame), fog at severity 3 (its setting was not released) over
      the whole frame, all scaled to the frame's size;
    * ``authors_code``: literally the authors' loader (``dataloaders/ravar_dataset.py``): Gaussian ``x + N(0, 0.2)``
      in grey levels (0.2 of a grey level, on the 0..255 scale), shot noise c = 5, rain as their line streaks with
      slant -1 for every streak, ``area // 770`` drops 30 px long whatever the frame size, and their uint8
      arithmetic (the rain's addition wraps around, results are truncated), and fog on the centre 224 x 224 crop
      of each frame (the output is that crop).
    """
    if preset not in PRESETS:
        raise CorruptionError(f"unknown preset {preset!r}; expected one of paper, authors-code")
    levels = {"gaussian_noise": None, "shot_noise": 4, "fog": 3, "rain": 2}
    if kind not in levels:
        raise CorruptionError(f"{kind}: the RAVAR authors' runs have no setting for it; give --severity 1..5")
    level = levels[kind]
    if preset == "paper":
        style = "drops" if kind == "rain" else "streaks"
        params = {"sigma": 0.2} if kind == "gaussian_noise" else _params(kind, level, style)
    else:
        style = "streaks"
        if kind == "gaussian_noise":
            params = {"sigma_grey_levels": 0.2, "sigma": 0.2 / 255}
        elif kind == "rain":
            params = {"style": "authors_code", "count": "area // 770", "length_px": 30, "slant": -1, "colour": 220,
                      "blur": 3, "contrast": 0.8, "size_scaled": False, "uint8_wrap": True}
        elif kind == "fog":
            params = {**_params("fog", level, style), "centre_crop": 224}
        else:
            params = _params(kind, level, style)
    if kind == "fog":
        params["published"] = False
    return CorruptionSpec(kind, level, preset, style, params)


def _params(kind: str, severity: int | None, style: str) -> dict:
    from . import photometric as ph
    from . import rain

    if kind == "brightness":
        return {"c": ph.BRIGHTNESS_C[severity - 1], "space": "HSV value"}
    if kind == "contrast":
        return {"c": ph.CONTRAST_C[severity - 1], "table": "RAVAR authors'"}
    if kind == "saturate":
        return {"c": list(ph.SATURATE_C[severity - 1]), "space": "HSV saturation"}
    if kind == "motion_blur":
        return {"frames_each_side": ph.MOTION_FRAMES[severity - 1], "window": "2c frames, clamped at the ends"}
    if kind in ("h264_crf", "h264_abr", "bit_error"):
        from . import codec

        return {"h264_crf": {"crf": codec.H264_CRF[severity - 1]},
                "h264_abr": {"bitrate": f"crf-23 bitrate / {codec.H264_ABR_DIVISOR[severity - 1]}"},
                "bit_error": {"one_byte_in": codec.BIT_ERROR_ONE_IN[severity - 1], "stream": "crf 23"}}[kind] | {
            "encoder": "libx264 (PyAV), preset medium, 1 thread", "source": "Yi et al. 2021"}
    if kind in ("frame_rate", "freeze", "jumble", "box_jumble", "reverse"):
        from . import temporal

        table = {"frame_rate": {"fps": temporal.FRAME_RATE_FPS[severity - 1], "source": "Yi et al. 2021"},
                 "reverse": {"rate": temporal.REVERSE_RATE[severity - 1]},
                 "jumble": {"segment": temporal.JUMBLE_SEGMENT[severity - 1]},
                 "box_jumble": {"segment": temporal.BOX_SEGMENT[severity - 1]},
                 "freeze": {"picked": f"{temporal.FREEZE_SHARE[severity - 1]} T, at least 1"}}[kind]
        return table if "source" in table else {**table, "source": "Schiappa et al. 2023"}

    if kind == "gaussian_noise":
        return {"sigma": GAUSSIAN_SIGMA[severity - 1]}
    if kind == "shot_noise":
        return {"c": SHOT_C[severity - 1]}
    if kind == "fog":
        c0, c1 = FOG_C[severity - 1]
        return {"c0": c0, "wibbledecay": c1, "plasma_size": 256, "view_cells": 224}
    if style == "drops":
        return {"style": "drops", "divisor": rain.DROP_DIVISOR[severity - 1], "count": "area / (divisor * scale^2)",
                "long_radius_224": list(rain.DROP_LONG_RADIUS_224[severity - 1]),
                "alpha": list(rain.DROP_ALPHA[severity - 1]), "angle_deg": rain.DROP_ANGLE_DEG}
    return {"style": "streaks", "divisor": rain.STREAK_DIVISOR[severity - 1], "count": "area / (divisor * scale)",
            "length_224": rain.STREAK_LENGTH_224[severity - 1], "contrast": rain.STREAK_CONTRAST[severity - 1],
            "slant_224": rain.SLANT_224, "fresh_drops_every_frame": True}


def clip_rng(seed: int, clip_id: str, name: str) -> np.random.Generator:
    """The generator of one clip under one setting, from the build's seed, the clip id and the setting's name.

    SFC64: the fastest of NumPy's bit generators, and the noise samplers spend a fifth of their time drawing bits.
    """
    digest = hashlib.sha256(f"{clip_id}\x1f{name}".encode()).digest()
    words = [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 32, 4)]
    return np.random.Generator(np.random.SFC64(np.random.SeedSequence([int(seed), *words])))


def _check_frame(frame, where: str) -> None:
    if not isinstance(frame, np.ndarray):
        raise CorruptionError(f"{where}: expected a numpy array, found {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise CorruptionError(f"{where}: expected dtype uint8, found {frame.dtype}; convert with "
                              f"np.clip(x, 0, 255).astype(np.uint8) (or x * 255 for floats in [0, 1])")
    if frame.ndim != 3 or frame.shape[-1] != 3 or min(frame.shape) < 1:
        raise CorruptionError(f"{where}: expected shape (H, W, 3) with H, W >= 1, found {frame.shape}")


def corrupt_frames(frames: Sequence[np.ndarray], spec: CorruptionSpec, rng: np.random.Generator, *,
                   threads: int | None = None, plasma: np.ndarray | None = None,
                   out: Sequence[np.ndarray] | None = None, encodes=None) -> list[np.ndarray]:
    """Corrupt the frames of one clip, which may differ in size (a larger keyframe, say).

    Frame ``i`` draws from the ``i``-th generator spawned from ``rng``; fog draws one plasma per clip from ``rng``
    first (or takes ``plasma``) and shows it at every frame size alike.  ``out``: contiguous uint8 arrays of the
    frames' shapes to write into (fresh arrays otherwise); when ``frames`` is a whole clip (T, H, W, 3), ``out`` may
    be one C-contiguous array of its shape, and runs of frames are then worked on in place.  ``encodes``: where
    the codec types keep a clip's reference encode between settings (a :class:`codec.Encodes`; default in memory).
    """
    from . import fog, noise, rain

    for i, frame in enumerate(frames):
        _check_frame(frame, f"frame {i}")
    p = spec.params
    if spec.preset == "authors_code" and spec.type in ("rain", "fog"):
        from .authors import authors_fog, authors_rain

        if spec.type == "fog":
            from .authors import CROP

            small = [f.shape[:2] for f in frames if min(f.shape[:2]) < CROP]
            if small:
                raise CorruptionError(f"fog with --preset authors-code crops every frame to its centre {CROP}x{CROP}, "
                                      f"as the authors' code does; found a frame of {small[0][1]}x{small[0][0]}: use "
                                      f"--preset paper or --severity for frames this small")
            return authors_fog(frames, p["c0"], p["wibbledecay"], rng)      # the crops: other shapes than ``out``
        done = [authors_rain(np.ascontiguousarray(f), r) for f, r in zip(frames, rng.spawn(len(frames)))]
        if out is None:
            return done
        for target, image in zip(out, done):
            target[...] = image
        return list(out)
    if spec.type == "fog":
        plasma = fog.plasma_fractal(rng, fog.PLASMA_SIZE, p["wibbledecay"]) if plasma is None else plasma
        layers: dict[tuple[int, int], np.ndarray] = {}
        for frame in frames:
            size = frame.shape[:2]
            if size not in layers:
                layers[size] = fog.fog_layer(fog.fog_field(plasma, *size), p["c0"])
    rngs = rng.spawn(len(frames))
    if out is None:
        out = [np.empty(f.shape, dtype=np.uint8) for f in frames]
    if spec.type in ("h264_crf", "h264_abr", "bit_error"):
        from .codec import recode

        for target, image in zip(out, recode(frames, spec.type, spec.severity, rng, encodes)):
            target[...] = image
        return list(out)
    if spec.type in ("frame_rate", "freeze", "jumble", "box_jumble", "reverse"):
        from .temporal import reorder

        for target, image in zip(out, reorder(frames, spec.type, spec.severity, rng)):
            target[...] = image
        return list(out)
    if spec.type == "motion_blur":
        from .photometric import motion_blur

        return motion_blur(frames, p["frames_each_side"], out)

    def one(i: int) -> np.ndarray:
        frame = np.ascontiguousarray(frames[i])
        if spec.type == "gaussian_noise":
            return noise.gaussian_noise(frame, p["sigma"], rngs[i], out[i])
        if spec.type == "shot_noise":
            return noise.shot_noise(frame, p["c"], rngs[i], out[i])
        if spec.type == "fog":
            return fog.fog_frame(frame, layers[frame.shape[:2]], p["c0"], out[i])
        if spec.type in ("brightness", "contrast", "saturate"):
            from . import photometric

            return getattr(photometric, spec.type)(frame, p["c"], out[i])
        out[i][...] = rain.drops_frame(frame, spec.severity, rngs[i])
        return out[i]

    workers = max(1, min(len(frames), threads or os.cpu_count() or 1))
    if spec.type == "rain" and spec.style == "streaks":
        return _streak_clip(frames, spec, rngs, workers, out)
    if workers == 1:
        return [one(i) for i in range(len(frames))]
    # one task per worker (every workers-th frame): a task per frame cost 5-10 % in dispatching
    _share(lambda j: [one(i) for i in range(j, len(frames), workers)], range(workers))
    return list(out)


def _streak_clip(frames: Sequence[np.ndarray], spec: CorruptionSpec, rngs, workers: int,
                 out: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Rain streaks, vectorised over runs of same-size frames, one run per task (frame i draws from rngs[i]).

    When ``frames`` and ``out`` are whole clips (4-d arrays), runs are slices of them: no copies in or out.
    """
    from . import rain

    whole = isinstance(frames, np.ndarray) and isinstance(out, np.ndarray)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, frame in enumerate(frames):
        groups.setdefault(frame.shape[:2], []).append(i)
    jobs = []
    for members in groups.values():   # one run per worker: each task costs dispatching and the GIL
        run_length = -(-len(members) // workers)
        jobs += [members[j:j + run_length] for j in range(0, len(members), run_length)]

    def run(members: list[int]) -> None:
        height, width = frames[members[0]].shape[:2]
        masks = rain.streak_masks(height, width, spec.severity, [rngs[i] for i in members])
        if whole:   # same size throughout, so each run is a slice
            lo, hi = members[0], members[-1] + 1
            rain.streak_clip(np.ascontiguousarray(frames[lo:hi]), masks, spec.params["contrast"], out[lo:hi])
            return
        done = rain.streak_clip(np.stack([frames[i] for i in members]), masks, spec.params["contrast"])
        for i, image in zip(members, done):
            out[i][...] = image

    _share(run, jobs)
    return list(out)


_POOLS: dict[int, ThreadPoolExecutor] = {}


def _share(fn, tasks) -> None:
    """Run ``fn`` over ``tasks``: all but the first on the thread pool, the first on the calling thread.

    The caller works instead of waiting, so a clip wakes one thread fewer; on a virtual machine a core that has
    been idle (between clips, or while something single-threaded ran) can take a long while to wake, and with
    every task on the pool the whole clip waited for it.
    """
    tasks = list(tasks)
    if len(tasks) <= 1:
        for task in tasks:
            fn(task)
        return
    from concurrent.futures import wait

    futures = [_pool(len(tasks) - 1).submit(fn, task) for task in tasks[1:]]
    try:
        fn(tasks[0])
    finally:
        wait(futures)                 # never leave a task writing into the output after returning or raising
    for future in futures:
        future.result()


def _pool(workers: int) -> ThreadPoolExecutor:
    """A thread pool kept for the process (the work releases the GIL: numpy takes, OpenCV calls)."""
    if workers not in _POOLS:
        _POOLS[workers] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="refava-corrupt")
    return _POOLS[workers]


def corrupt_clip(frames: np.ndarray, type: str, severity: int | None = None, rng: np.random.Generator | None = None,
                 *, preset: str | None = None, style: str = "streaks", threads: int | None = None,
                 encodes=None) -> np.ndarray:
    """Corrupt a whole clip: uint8 (T, H, W, 3) in, uint8 of the same shape out.

    ``type`` is one of gaussian_noise, shot_noise, fog, rain, brightness, contrast, saturate, motion_blur;
    ``severity`` 1..5 (ImageNet-C tables; the RAVAR authors' for contrast and motion blur) unless
    ``preset`` is "paper" or "authors_code" (see :func:`_preset`); ``style`` picks the rain style (``streaks`` as in the reference, ``drops`` as in the paper's
    appendix); ``rng`` a ``numpy.random.Generator`` (required: no global random state); ``encodes`` where the
    codec types keep a clip's reference encode (a :class:`codec.Encodes`; default: the last few in memory).
    """
    spec = resolve(type, severity, preset=preset, style=style)
    if not isinstance(rng, np.random.Generator):
        raise CorruptionError(f"rng: expected a numpy.random.Generator (e.g. np.random.default_rng(seed) or "
                              f"refava.corrupt.clip_rng(...)), found {_type_name(rng)}")
    if not isinstance(frames, np.ndarray):
        raise CorruptionError(f"frames: expected a numpy array (T, H, W, 3) uint8, found {_type_name(frames)}")
    if frames.ndim != 4:
        raise CorruptionError(f"frames: expected rank 4 (T, H, W, 3), found rank {frames.ndim} with shape "
                              f"{frames.shape}; add a time axis with frames[None] for a single image")
    if frames.shape[0] < 1:
        raise CorruptionError("frames: expected at least one frame, found 0")
    _check_frame(frames[0], "frames")
    if spec.preset == "authors_code" and spec.type == "fog":   # the authors' centre crops
        return np.stack(corrupt_frames(frames, spec, rng, threads=threads))
    result = np.empty(frames.shape, dtype=np.uint8)          # C-contiguous, whatever the input's layout
    corrupt_frames(frames, spec, rng, threads=threads, out=result, encodes=encodes)
    return result


def _type_name(obj) -> str:
    """``type(obj).__name__`` where the builtin ``type`` is shadowed by a parameter."""
    return type(obj).__name__


__all__ = ["CORRUPTIONS", "PRESETS", "RAIN_STYLES", "CorruptionError", "CorruptionSpec", "clip_rng",
           "corrupt_clip", "corrupt_frames", "resolve"]
