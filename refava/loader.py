"""A fast PyTorch loading path for a packaged RefAVA: rows as tensors, JPEGs decoded in batches.

``datasets`` decodes every image of every row with PIL, one at a time, although the people of one clip share its
frames.  Here the image columns are read from Parquet as dictionaries (each distinct JPEG once in memory), a batch's
distinct JPEGs are decoded once each with libjpeg-turbo (``simplejpeg``, which releases the GIL) on a few threads,
optionally straight to a smaller size (libjpeg-turbo's DCT scaling) and resized, and the rows are assembled from
them::

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

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .errors import RefavaError

SCALAR_COLUMNS = ("instance_id", "video_id", "keyframe_s", "person_id", "box", "box_px", "labels",
                  "keyframe_index", "expression")
_THREADS = max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


class LoaderError(RefavaError, ValueError):
    """The dataset folder or the request cannot be loaded."""


def _decode(data: bytes, size: int | None) -> np.ndarray:
    """One JPEG as uint8 (H, W, 3) RGB; with ``size``, decoded at the smallest DCT scale that still covers
    size x size, then resized to exactly that (area interpolation)."""
    import simplejpeg

    if size is None:
        return simplejpeg.decode_jpeg(data, colorspace="RGB")
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
                 size: int | None = None, pixels: bool = True, threads: int = _THREADS):
        import pyarrow as pa
        import pyarrow.parquet as pq

        from .package import MANIFEST

        folder = Path(dataset)
        if not (folder / MANIFEST).exists():
            raise LoaderError(f"{folder}: not a packaged RefAVA dataset (no {MANIFEST}); pass the folder "
                              f"`refava package` wrote")
        manifest = json.loads((folder / MANIFEST).read_text())
        configs = manifest["configs"]
        if config not in configs:
            raise LoaderError(f"{folder} has no configuration {config!r}; it has {', '.join(sorted(configs))}")
        split = {"val": "validation"}.get(split, split)
        if split not in configs[config]["splits"]:
            raise LoaderError(f"{folder} configuration {config!r} has no split {split!r}; it has "
                              f"{', '.join(configs[config]['splits'])}")
        if size is not None and size < 1:
            raise LoaderError(f"size must be a positive number of pixels, found {size}")
        self.pixels = pixels and configs[config]["pixels"]
        self.size = size
        self.threads = threads
        tables = []
        for shard in configs[config]["splits"][split]:
            path = folder / shard["path"]
            names = pq.read_schema(path).names
            columns = [c for c in SCALAR_COLUMNS if c in names]
            if self.pixels:
                columns += ["keyframe", "frames"]
            tables.append(pq.read_table(path, columns=columns,
                                        read_dictionary=["keyframe.bytes", "frames.list.element.bytes"]
                                        if self.pixels else None))
        self._scalars = {}
        self._rows = sum(t.num_rows for t in tables)
        for name in (c for c in SCALAR_COLUMNS if tables and c in tables[0].column_names):
            values = [v for t in tables for v in t.column(name).to_pylist()]
            self._scalars[name] = values
        # images: a global list of distinct JPEGs (per shard dictionary) and per row their indices
        self._jpegs: list = []
        self._key: list[int] = []
        self._frames: list[list[int]] = []
        if self.pixels:
            for t in tables:
                base = len(self._jpegs)
                key = t.column("keyframe").combine_chunks().field("bytes")
                frames = t.column("frames").combine_chunks()
                inner = frames.values.field("bytes")
                for dictionary_array in (key, inner):
                    if not isinstance(dictionary_array.type, pa.DictionaryType):
                        raise LoaderError(f"{folder}: image bytes are not dictionary-encoded; repackage with this "
                                          f"refava version")
                # one dictionary per column per shard: offset the frames' indices past the keyframes'
                self._jpegs += key.dictionary.to_pylist()
                offset = len(self._jpegs)
                self._jpegs += inner.dictionary.to_pylist()
                self._key += (key.indices.to_numpy(zero_copy_only=False) + base).tolist()
                idx = inner.indices.to_numpy(zero_copy_only=False) + offset
                bounds = frames.offsets.to_numpy()
                self._frames += [idx[bounds[r]:bounds[r + 1]].tolist() for r in range(t.num_rows)]
        self._pool = None

    def __len__(self) -> int:
        return self._rows

    def __getstate__(self):                          # DataLoader workers: a pool does not pickle; each makes its own
        state = dict(self.__dict__)
        state["_pool"] = None
        return state

    def _map(self, fn, items: list) -> list:
        if len(items) < 4 or self.threads <= 1:
            return [fn(x) for x in items]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="refava-jpeg")
        return list(self._pool.map(fn, items))

    def _shape(self, j: int) -> tuple[int, int]:
        if self.size is not None:
            return self.size, self.size
        import simplejpeg

        height, width, _, _ = simplejpeg.decode_jpeg_header(self._jpegs[j])
        return height, width

    def _into(self, j: int, out: np.ndarray) -> None:
        """Decode distinct JPEG ``j`` into ``out`` (uint8 (H, W, 3)) without an intermediate array where its
        stored size is the requested one."""
        if self.size is None:
            import simplejpeg

            simplejpeg.decode_jpeg(self._jpegs[j], colorspace="RGB", buffer=out)
        else:
            out[...] = _decode(self._jpegs[j], self.size)

    def __getitem__(self, index: int) -> dict:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: list[int]) -> list[dict]:
        """Rows ``indices``, decoded together: each distinct JPEG of the batch once, straight into one batch tensor
        per image column (rows are views of it, which :func:`collate` hands on without copying)."""
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
        # every image slot of the batch: (column, row, position) -> distinct JPEG; shapes from the headers
        slots = {"keyframe": [[self._key[i]] for i in indices], "frames": [self._frames[i] for i in indices]}
        distinct = sorted({j for rows in slots.values() for row in rows for j in row})
        shape = dict(zip(distinct, self._map(self._shape, distinct)))
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
        self._map(self._fill, list(targets_of.items()))
        return out

    def _fill(self, job: tuple[int, list[np.ndarray]]) -> None:
        """Decode one distinct JPEG into its first slot and copy it to the others (on a pool thread)."""
        j, targets = job
        self._into(j, targets[0])
        for target in targets[1:]:
            np.copyto(target, targets[0])


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
