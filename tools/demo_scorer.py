"""Predictions of two small models for every test instance of a packaged RefAVA, as JSON lines for `refava
evaluate`: what `make demo` scores to show the official scorer, and its robustness report, on models that are not
refava's.

* class prior: each class scored by its share of the train split, the box the mean train box;
* ``--robustness``: a nearest-neighbour model on keyframe thumbnails (pixels only: no text, no box), its scores the
  labels of the 5 nearest train keyframes weighted by closeness, on the clean test split and on every corruption
  configuration of it, one file each (``clean.jsonl``, ``test_fog_s3.jsonl``, ...), the folder that
  ``refava evaluate --robustness`` reads.  It reads pixels, so corruptions move its scores.

    python tools/demo_scorer.py DATASET_DIR OUT.jsonl
    python tools/demo_scorer.py --robustness DATASET_DIR OUT_DIR
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from refava.scorer import load_ground_truth, write_predictions

THUMB = (16, 12)          # width, height of the thumbnails the neighbours are found on
NEIGHBOURS = 5


def main(dataset: str, out: str) -> None:
    train, test = load_ground_truth(dataset, "train"), load_ground_truth(dataset, "test")
    prior = train.labels.mean(axis=0)
    box = train.boxes.mean(axis=0)
    write_predictions(out, test.ids, np.tile(prior, (len(test.ids), 1)), np.tile(box, (len(test.ids), 1)))
    print(f"class-prior predictions for {len(test.ids)} test instances: {out}")


def thumbnails(dataset: str, config: str, split: str) -> tuple[list[str], np.ndarray]:
    """Instance ids and keyframe thumbnails (N, 16 * 12 * 3, float in [0, 1]) of one configuration's split."""
    import cv2
    import pyarrow.parquet as pq
    import simplejpeg

    from refava.package.format import config_split, read_manifest

    manifest = read_manifest(dataset)
    name = config_split(manifest, dataset, config, split)
    ids, rows = [], []
    for shard in manifest["configs"][config]["splits"][name]:
        table = pq.read_table(Path(dataset) / shard["path"], columns=["instance_id", "keyframe"])
        for iid, keyframe in zip(table.column("instance_id").to_pylist(), table.column("keyframe").to_pylist()):
            image = simplejpeg.decode_jpeg(keyframe["bytes"], colorspace="RGB")
            ids.append(iid)
            rows.append(cv2.resize(image, THUMB, interpolation=cv2.INTER_AREA).reshape(-1) / 255.0)
    return ids, np.asarray(rows, dtype=np.float64).reshape(len(rows), -1)


def robustness(dataset: str, out_dir: str) -> None:
    from refava.package.format import read_manifest
    from refava.robustness import corruption_configs

    train = load_ground_truth(dataset, "train")
    train_ids, train_x = thumbnails(dataset, "default", "train")
    order = {iid: k for k, iid in enumerate(train.ids)}
    train_y = train.labels[[order[i] for i in train_ids]].astype(np.float64)
    box = train.boxes.mean(axis=0)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    configs = {"clean": "default", **{name: name for name in
                                      corruption_configs(read_manifest(dataset), "test", "test")}}
    for stem, config in configs.items():
        ids, x = thumbnails(dataset, config, "test")
        distances = ((x[:, None, :] - train_x[None, :, :]) ** 2).mean(axis=2)
        nearest = np.argsort(distances, axis=1, kind="stable")[:, :NEIGHBOURS]
        weights = 1.0 / (np.take_along_axis(distances, nearest, axis=1) + 1e-3)
        scores = (train_y[nearest] * weights[..., None]).sum(axis=1) / weights.sum(axis=1, keepdims=True)
        write_predictions(out / f"{stem}.jsonl", ids, scores, np.tile(box, (len(ids), 1)))
    print(f"nearest-keyframe predictions on the clean test split and {len(configs) - 1} corruption "
          f"configuration(s): {out}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--robustness"]:
        robustness(*sys.argv[2:4])
    else:
        main(*sys.argv[1:3])
