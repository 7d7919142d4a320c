"""A fast PyTorch loading path for a packaged RefAVA: rows as tensors, JPEGs decoded in batches.

``datasets`` decodes every image of every row with PIL, one at a time, although the people of one clip share its
frames.  Here the rows come from the same memory-mapped Arrow table ``datasets.load_dataset`` builds (nothing is
held in memory but the small scalar columns, so any size of dataset loads), and a batch's JPEGs are decoded once
per clip with libjpeg-turbo (``simplejpeg``, which releases the GIL) on a few threads, straight into the batch
tensor, optionally at a smaller size (libjpeg-turbo's DCT scaling, then resized)::

    import torch
    from refava.loader import RefAVAFrames, collate
    data = RefAVAFrames("refava", split="train", size=224)        # the packaged folder
    loader = torch.utils.data.DataLoader(data, batch_size=32, shuffle=True, collate_fn=collate)
    batch = next(iter(loader))   # frames (B, T, 224, 224, 3) uint8, keyframe (B, 224, 224, 3), labels (B, 80), ...

With ``size=None`` images keep their stored size (identical pixels to ``datasets``' decoding, both libjpeg-turbo);
:func:`collate` stacks them when they agree and otherwise returns lists.  ``DataLoader`` calls
:meth:`RefAVAFrames.__getitems__` with a whole batch's indices, which is where the batch decoding happens.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .errors import RefavaError

IMAGES = ("keyframe", "frames")          # decoded per batch; every other column is held as Python values
_THREADS = max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


class LoaderError(RefavaError, ValueError):
    """The dataset folder or the request cannot be loaded."""


def _decode(data, size: int) -> np.ndarray:
    """One JPEG as uint8 (size, size, 3) RGB: decoded at the smallest DCT scale that still covers size x size,
    then resized to exactly that (area interpolation)."""
    import simplejpeg

    image = simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=size, min_width=size)
    if image.shape[0] != size or image.shape[1] != size:
        import cv2

        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    return image


class RefAVAFrames:
    """One split of one configuration of a packaged RefAVA folder, as a map-style PyTorch dataset.

    Each item is a dict: ``frames`` uint8 (T, H, W, 3) and ``keyframe`` uint8 (H, W, 3) (with ``pixels``), the
    fixed-size fields as tensors (``labels`` float32 (80,), ``box`` / ``box_px`` float32 (4,), ``keyframe_index``),
    and the strings (``instance_id``, ``expression``, ...).
    """

    def __init__(self, dataset: str | os.PathLike = "refava", split: str = "train", config: str = "default", *,
                 size: int | None = None, pixels: bool = True, threads: int = _THREADS,
                 cache_dir: str | os.PathLike | None = None):
        from .package.format import config_split, read_manifest

        folder = Path(dataset)
        manifest = read_manifest(folder, LoaderError)
        split = config_split(manifest, folder, config, split, LoaderError)
        if size is not None and size < 1:
            raise LoaderError(f"size must be a positive number of pixels, found {size}")
        import datasets

        self.pixels = pixels and manifest["configs"][config]["pixels"]
        self.size = size
        self.threads = threads
        # the Arrow table datasets memory-maps from its cache (built once per folder, as load_dataset does)
        self.data = datasets.load_dataset(str(folder), config, split=split,
                                          cache_dir=str(cache_dir) if cache_dir else None)
        table = self.data.data.table
        self._rows = table.num_rows
        # every column of the configuration but the images (``rephrasings`` in ``rephrased``, ``annotators``, ...)
        self._scalars = {name: table.column(name).to_pylist() for name in table.column_names if name not in IMAGES}
        videos, seconds = self._scalars.get("video_id", []), self._scalars.get("keyframe_s", [])
        self._clip = list(zip(videos, seconds))          # rows of one clip share its frames
        self._images = table.select(["keyframe", "frames"]) if self.pixels else None
        self._pool = None

    def __len__(self) -> int:
        return self._rows

    def __getstate__(self):
        """For DataLoader workers: the thread pool is not sent (each worker makes its own), nor the Arrow table
        (pickled, it would carry every JPEG); ``datasets`` pickles its Dataset as a reference to the memory-mapped
        cache files, from which the worker takes the table again."""
        state = dict(self.__dict__)
        state["_pool"] = None
        state["_images"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if self.pixels:
            self._images = self.data.data.table.select(["keyframe", "frames"])

    def _map(self, fn, items: list) -> list:
        if len(items) < 4 or self.threads <= 1:
            return [fn(x) for x in items]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="refava-jpeg")
        return list(self._pool.map(fn, items))

    def _shape(self, data) -> tuple[int, int]:
        if self.size is not None:
            return self.size, self.size
        import simplejpeg

        height, width, _, _ = simplejpeg.decode_jpeg_header(data)
        return height, width

    def _into(self, data, out: np.ndarray) -> None:
        """Decode JPEG ``data`` into ``out`` (uint8 (H, W, 3)) without an intermediate array where its
        stored size is the requested one."""
        if self.size is None:
            import simplejpeg

            simplejpeg.decode_jpeg(data, colorspace="RGB", buffer=out)
        else:
            out[...] = _decode(data, self.size)

    def __getitem__(self, index: int) -> dict:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: list[int]) -> list[dict]:
        """Rows ``indices``, decoded together: the JPEGs of each clip of the batch once, straight into one batch
        tensor per image column (rows are views of it, which :func:`collate` hands on without copying)."""
        import torch

        indices = [int(i) for i in indices]
        for i in indices:
            if not -self._rows <= i < self._rows:
                raise IndexError(f"row {i} out of range for {self._rows} rows")
        indices = [i % self._rows for i in indices]
        out = []
        for i in indices:
            item = {}
            for name, values in self._scalars.items():
                v = values[i]
                if name in ("labels", "box", "box_px"):
                    v = torch.tensor(v, dtype=torch.float32)
                elif name in ("keyframe_index", "keyframe_s", "person_id"):
                    v = torch.tensor(v, dtype=torch.int64)
                item[name] = v
            out.append(item)
        if not self.pixels:
            return out
        # one representative row per clip of the batch: its JPEGs are read (zero-copy from the memory map) once
        firsts: dict = {}
        for i in indices:
            firsts.setdefault(self._clip[i], i)
        jpegs: list = []
        slots_of: dict = {}                                # clip -> (keyframe jpeg index, [frame jpeg indices])
        for clip, r in firsts.items():
            row = self._images.slice(r, 1)                 # zero-copy views into the memory map
            key = _binary_views(row.column("keyframe").chunk(0).flatten()[0])
            frames = _binary_views(row.column("frames").chunk(0).flatten().flatten()[0])
            slots_of[clip] = (len(jpegs), list(range(len(jpegs) + 1, len(jpegs) + 1 + len(frames))))
            jpegs += key + frames
        slots = {"keyframe": [[slots_of[self._clip[i]][0]] for i in indices],
                 "frames": [slots_of[self._clip[i]][1] for i in indices]}
        distinct = sorted({j for rows in slots.values() for row in rows for j in row})
        shape = dict(zip(distinct, self._map(lambda j: self._shape(jpegs[j]), distinct)))
        targets_of: dict[int, list[np.ndarray]] = {}
        for name, rows in slots.items():
            shapes = {shape[j] for row in rows for j in row}
            widths = {len(row) for row in rows}
            if len(shapes) == 1 and len(widths) == 1:        # one batch tensor for the column
                (h, w), = shapes
                batch = torch.empty((len(rows), widths.pop(), h, w, 3), dtype=torch.uint8)
                view = batch.numpy()
                targets = [[view[r, t] for t in range(len(row))] for r, row in enumerate(rows)]
                tensors = [batch[r] for r in range(len(rows))]
            else:                                               # sizes differ: a tensor per image
                singles = [[torch.empty((*shape[j], 3), dtype=torch.uint8) for j in row] for row in rows]
                targets = [[t.numpy() for t in row] for row in singles]
                tensors = singles
            for row, dest in zip(rows, targets):
                for j, target in zip(row, dest):
                    targets_of.setdefault(j, []).append(target)
            for item, tensor in zip(out, tensors):
                item[name] = tensor[0] if name == "keyframe" else tensor
        self._map(lambda job: self._fill(jpegs[job[0]], job[1]), list(targets_of.items()))
        return out

    def _fill(self, data, targets: list[np.ndarray]) -> None:
        """Decode one JPEG into its first slot and copy it to the others (on a pool thread)."""
        self._into(data, targets[0])
        for target in targets[1:]:
            np.copyto(target, targets[0])


def _binary_views(array) -> list[np.ndarray]:
    """The values of a (possibly sliced) Arrow binary array as uint8 NumPy views of its buffers, without copies."""
    import pyarrow as pa

    width = np.int64 if pa.types.is_large_binary(array.type) else np.int32
    offsets = np.frombuffer(array.buffers()[1], width)[array.offset:array.offset + len(array) + 1]
    data = np.frombuffer(array.buffers()[2], np.uint8) if array.buffers()[2] is not None else np.zeros(0, np.uint8)
    return [data[offsets[i]:offsets[i + 1]] for i in range(len(array))]


def collate(items: list[dict]) -> dict:
    """Stack what has one shape across the batch (tensors), keep the rest (strings, images of other sizes) as
    lists.  Rows that are consecutive views of one batch tensor (what :meth:`RefAVAFrames.__getitems__` gives) are
    handed on as that tensor, without a copy."""
    import torch

    out = {}
    for name in items[0]:
        values = [item[name] for item in items]
        if isinstance(values[0], torch.Tensor) and all(
                isinstance(v, torch.Tensor) and v.shape == values[0].shape for v in values):
            out[name] = _shared(values)
            if out[name] is None:
                out[name] = torch.stack(values)
        else:
            out[name] = values
    return out


def _shared(values: list):
    """The batch tensor whose consecutive rows ``values`` are, or None."""
    import torch

    first = values[0]
    storage = first.untyped_storage()
    n = first.numel()
    if not all(v.is_contiguous() for v in values) or first.dtype != torch.uint8 or n == 0:
        return None
    if storage.nbytes() != n * len(values) * first.element_size():
        return None
    for r, v in enumerate(values):
        if v.untyped_storage().data_ptr() != storage.data_ptr() or v.storage_offset() != r * n:
            return None
    return torch.empty(0, dtype=first.dtype).set_(storage, 0, (len(values), *first.shape))
