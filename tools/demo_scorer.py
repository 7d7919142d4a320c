"""Predictions of a class-prior model (each class scored by its share of the train split, the box is the mean train
box) for every test instance of a packaged RefAVA, as JSON lines for `refava evaluate --predictions`: what `make
demo` scores to show the official scorer on a model that is not refava's.

    python tools/demo_scorer.py DATASET_DIR OUT.jsonl
"""
from __future__ import annotations

import sys

import numpy as np

from refava.scorer import load_ground_truth, write_predictions


def main(dataset: str, out: str) -> None:
    train, test = load_ground_truth(dataset, "train"), load_ground_truth(dataset, "test")
    prior = train.labels.mean(axis=0)
    box = train.boxes.mean(axis=0)
    write_predictions(out, test.ids, np.tile(prior, (len(test.ids), 1)), np.tile(box, (len(test.ids), 1)))
    print(f"class-prior predictions for {len(test.ids)} test instances: {out}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
