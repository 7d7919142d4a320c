"""build-splits: movie-disjoint, complete, reproducible, stable, pinned, balanced; impossible requests refused."""
from __future__ import annotations

import subprocess
import sys
from collections import namedtuple

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refava.splits import (SplitError, build_splits, check_splits, max_class_deviation, parse_fractions,
                           preset_fractions, split_rows)

Inst = namedtuple("Inst", "instance_id clip_id video_id action_ids")


def corpus(n_movies: int, seed: int = 0, per_movie=(1, 40), classes=12) -> list[Inst]:
    rng = np.random.default_rng(seed)
    out = []
    for m in range(n_movies):
        video = f"mov{m:03d}"
        bias = rng.gamma(0.5, 1.0, classes) + 1e-3
        for i in range(int(rng.integers(*per_movie))):
            ts = 902 + i // 2
            actions = tuple(sorted({int(a) + 1 for a in rng.choice(classes, size=1 + rng.poisson(0.5), p=bias / bias.sum())}))
            out.append(Inst(f"{video}___{ts:04d}___{i % 2}", f"{video}___{ts:04d}", video, actions))
    return out


FRACTIONS = {"train": 0.6, "val": 0.3, "test": 0.1}


@settings(max_examples=40, deadline=None)
@given(n_movies=st.integers(3, 40), seed=st.integers(0, 10_000),
       fracs=st.sampled_from([FRACTIONS, {"train": 0.5, "test": 0.5}, {"a": 0.2, "b": 0.3, "c": 0.4, "d": 0.1}]))
def test_disjoint_and_complete_on_random_inputs(n_movies, seed, fracs):
    if n_movies < len(fracs):
        return
    instances = corpus(n_movies, seed)
    result = build_splits(instances, fracs, seed=seed)
    rows = split_rows(result, instances)
    check_splits(rows, instances)  # raises on any violation
    assert set(result.assignment) == {i.video_id for i in instances}
    assert set(result.assignment.values()) == set(fracs)
    assert len(rows) == len(instances)


def test_check_splits_catches_every_violation():
    instances = corpus(6)
    rows = split_rows(build_splits(instances, FRACTIONS), instances)
    moved = [dict(r) for r in rows]
    moved[0]["split"] = "test" if moved[0]["split"] != "test" else "train"
    with pytest.raises(SplitError, match="in two splits"):
        check_splits(moved, instances)
    with pytest.raises(SplitError, match="in no split"):
        check_splits(rows[1:], instances)
    with pytest.raises(SplitError, match="appears twice"):
        check_splits(rows + rows[:1], instances)
    with pytest.raises(SplitError, match="not accepted"):
        check_splits(rows, instances[1:])


def test_reproducible_for_the_same_inputs_and_seed():
    instances = corpus(30, 1)
    a = build_splits(instances, FRACTIONS, seed=3).assignment
    b = build_splits(list(reversed(instances)), FRACTIONS, seed=3).assignment
    assert a == b


def test_stable_when_movies_are_added():
    instances = corpus(30, 2)
    first = build_splits(instances, FRACTIONS, seed=0).assignment
    more = instances + [i._replace(video_id="new" + i.video_id, instance_id="new" + i.instance_id,
                                   clip_id="new" + i.clip_id) for i in corpus(5, 9)]
    second = build_splits(more, FRACTIONS, seed=0, previous=first).assignment
    assert all(second[m] == s for m, s in first.items())
    assert {m for m in second if m.startswith("new")} == {"new" + m for m in {i.video_id for i in corpus(5, 9)}}


def test_pins_are_honoured():
    instances = corpus(20, 4)
    result = build_splits(instances, FRACTIONS, pins={"mov000": "test", "mov001": "test", "mov002": "val"})
    assert [result.assignment[m] for m in ("mov000", "mov001", "mov002")] == ["test", "test", "val"]


@pytest.mark.parametrize("kwargs, message", [
    (dict(n=2, fractions=FRACTIONS), "cannot make 3 movie-disjoint splits"),
    (dict(n=10, fractions={"train": 0.7, "test": 0.2}), "must sum to 1"),
    (dict(n=10, fractions={"train": 1.2, "test": -0.2}), "expected a fraction > 0"),
    (dict(n=10, fractions=FRACTIONS, pins={"nosuchmovie": "test"}), "unknown movie 'nosuchmovie'"),
    (dict(n=10, fractions=FRACTIONS, pins={"mov001": "holdout"}), "unknown split 'holdout'"),
    (dict(n=10, fractions={"Train": 0.5, "test": 0.5}), "split name 'Train'"),
])
def test_impossible_requests_are_refused_clearly(kwargs, message):
    instances = corpus(kwargs.pop("n"))
    with pytest.raises(SplitError, match=message):
        build_splits(instances, kwargs.pop("fractions"), **kwargs)


@pytest.mark.parametrize("text, message", [("train=0.5,test", "expected 'name=fraction"),
                                           ("train=x,test=0.5", "expected a number"),
                                           ("train=0.5,test=0.4", "must sum to 1")])
def test_fraction_parsing(text, message):
    with pytest.raises(SplitError, match=message):
        parse_fractions(text)
    assert parse_fractions("train=0.8,test=0.2") == {"train": 0.8, "test": 0.2}


def test_preset_is_the_published_refava_sizes():
    f = preset_fractions()
    assert round(f["train"] * 36630) == 22658 and round(f["val"] * 36630) == 10916 and round(f["test"] * 36630) == 3056


def test_balanced_better_than_random_movie_assignment():
    instances = corpus(120, 5, per_movie=(20, 120), classes=20)
    result = build_splits(instances, FRACTIONS, seed=0)
    names, onehot = result.split_matrix()
    ours = max_class_deviation(result.stats, names, onehot, FRACTIONS, min_count=20)
    rng = np.random.default_rng(0)
    randoms = []
    for _ in range(10):
        choice = rng.choice(3, size=len(result.stats.movies), p=[0.6, 0.3, 0.1])
        random_onehot = np.eye(3)[choice]
        randoms.append(max_class_deviation(result.stats, names, random_onehot, FRACTIONS, min_count=20))
    assert ours < 0.5 * np.median(randoms)
    sizes = onehot.T @ result.stats.sizes
    assert np.allclose(sizes / sizes.sum(), [0.6, 0.3, 0.1], atol=0.02)


def run(*args, cwd):
    return subprocess.run([sys.executable, "-m", "refava", *args], cwd=cwd, capture_output=True, text=True)


def test_build_splits_command_on_the_sample(sample_workspace_template, tmp_path):
    import shutil

    import pyarrow.parquet as pq

    ws = tmp_path / "ws"
    shutil.copytree(sample_workspace_template, ws)
    proc = run("build-splits", cwd=ws)
    assert proc.returncode == 0, proc.stderr
    first = (ws / "tables" / "splits.parquet").read_bytes()
    assert "reports/splits.md" in proc.stdout or "splits.md" in proc.stdout
    assert run("build-splits", "--check", cwd=ws).returncode == 0
    assert run("build-splits", "--fresh", cwd=ws).returncode == 0
    assert (ws / "tables" / "splits.parquet").read_bytes() == first  # byte-identical rebuild
    rows = pq.read_table(ws / "tables" / "splits.parquet").to_pylist()
    movie = rows[0]["video_id"]
    proc = run("build-splits", "--fresh", "--pin", f"{movie}=test", cwd=ws)
    assert proc.returncode == 0, proc.stderr
    rows = pq.read_table(ws / "tables" / "splits.parquet").to_pylist()
    assert {r["split"] for r in rows if r["video_id"] == movie} == {"test"}
    bad = run("build-splits", "--fractions", "train=0.5,test=0.6", cwd=ws)
    assert bad.returncode != 0 and "must sum to 1" in bad.stderr
