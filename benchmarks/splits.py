"""build-splits at AVA scale: speed, and class balance against a movie-level random split, in the same run.

A synthetic corpus of 430 movies and about 36,600 instances, whose action labels follow the RAVAR train label
counts (tests/data/ava/ravar_train_label_counts.csv) with movie-to-movie variation (films differ in what people
do), is split with the RefAVA preset fractions.  Printed: build time (target < 10 s), and the largest per-class
share deviation of refava's split divided by the median of the same figure for scikit-learn GroupShuffleSplit over
20 seeds, same fractions (target <= 0.5).  Classes with fewer than 20 labels are left out of both figures: no
movie-level split can balance a class that lives in one or two movies, and they would dominate the maximum.

    python benchmarks/splits.py
"""
from __future__ import annotations

import statistics
import sys
import time
from collections import namedtuple
from pathlib import Path

import numpy as np

from refava.splits import MovieStats, build_splits, max_class_deviation, preset_fractions

COUNTS = Path(__file__).resolve().parent.parent / "tests" / "data" / "ava" / "ravar_train_label_counts.csv"
Inst = namedtuple("Inst", "instance_id clip_id video_id action_ids")
MIN_COUNT = 20


def label_probabilities() -> np.ndarray:
    rows = [line.split(",") for line in COUNTS.read_text().splitlines() if line and line[0].isdigit()]
    counts = np.array([float(c) for _, c in rows])
    return counts / counts.sum()


def synthetic_corpus(n_movies=430, n_instances=36_600, seed=0) -> list[Inst]:
    rng = np.random.default_rng(seed)
    p = label_probabilities()
    sizes = rng.lognormal(0, 0.6, n_movies)
    sizes = np.maximum(1, np.round(sizes / sizes.sum() * n_instances)).astype(int)
    out = []
    for m in range(n_movies):
        video = f"movie{m:04d}"
        pm = p * rng.gamma(0.7, 1.0, p.size)  # this film's own mix of actions
        pm = pm / pm.sum() if pm.sum() > 0 else p
        for i in range(sizes[m]):
            k = 1 + rng.poisson(0.6)
            actions = tuple(sorted({int(a) + 1 for a in rng.choice(p.size, size=k, p=pm)}))
            ts = 902 + i // 3
            out.append(Inst(f"{video}___{ts:04d}___{i % 3}", f"{video}___{ts:04d}", video, actions))
    return out


def random_split_deviation(stats: MovieStats, fractions: dict, seed: int) -> float:
    from sklearn.model_selection import GroupShuffleSplit

    names = list(fractions)
    groups = np.arange(len(stats.movies))
    onehot = np.zeros((len(groups), len(names)))
    rest = groups
    remaining = 1.0
    for s, name in enumerate(names[:-1]):
        frac = fractions[name] / remaining
        splitter = GroupShuffleSplit(n_splits=1, train_size=frac, random_state=seed * 10 + s)
        take, keep = next(splitter.split(rest, groups=rest))
        onehot[rest[take], s] = 1
        rest = rest[keep]
        remaining -= fractions[name]
    onehot[rest, len(names) - 1] = 1
    return max_class_deviation(stats, names, onehot, fractions, min_count=MIN_COUNT)


def main() -> int:
    instances = synthetic_corpus()
    fractions = preset_fractions()
    print(f"corpus: {len({i.video_id for i in instances})} movies, {len(instances)} instances")
    start = time.perf_counter()
    result = build_splits(instances, fractions, seed=0)
    seconds = time.perf_counter() - start
    names, onehot = result.split_matrix()
    ours = max_class_deviation(result.stats, names, onehot, fractions, min_count=MIN_COUNT)
    randoms = [random_split_deviation(result.stats, fractions, seed) for seed in range(20)]
    sizes = {n: int(onehot[:, s] @ result.stats.sizes) for s, n in enumerate(names)}
    print(f"refava split sizes: {sizes} (targets {({n: round(f * len(instances)) for n, f in fractions.items()})})")
    print(f"build time: {seconds:.2f} s (target < 10 s)")
    print(f"largest class share deviation: refava {ours:.4f}, GroupShuffleSplit median of 20 {statistics.median(randoms):.4f}")
    print(f"ratio refava/random: {ours / statistics.median(randoms):.3f} (target <= 0.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
