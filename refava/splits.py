"""``refava build-splits``: movie-disjoint train/val/test splits, balanced over action classes, reproducible.

Whole movies are assigned to splits.  The target is a fraction of *instances* per split (the RefAVA preset:
22,658 / 10,916 / 3,056 of 36,630), and within that the count of every action class in each split as close as the
movie constraint allows to the split's share of that class.  Method: a greedy assignment (largest movies first)
then local search over single-movie moves and pairwise swaps, minimising a chi-square-like cost over
(split, class) counts plus a size term, with movies pinned by the user or by previous splits never moved.
Everything is deterministic for the same inputs and seed (ties are broken by a seeded permutation).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from .errors import ValidationError
from .summary import Summary

REFAVA_PRESET = {"train": 22658, "val": 10916, "test": 3056}


class SplitError(ValidationError):
    """A split request that cannot be met, or splits that break an invariant."""


def preset_fractions(name: str = "refava") -> dict[str, float]:
    """Fractions of the named preset; ``refava`` is the published RefAVA sizes.

    >>> round(preset_fractions()["test"], 4)
    0.0834
    """
    if name != "refava":
        raise SplitError(f"unknown split preset {name!r}: expected 'refava' or explicit fractions")
    total = sum(REFAVA_PRESET.values())
    return {k: v / total for k, v in REFAVA_PRESET.items()}


def parse_fractions(text: str) -> dict[str, float]:
    """Parse ``train=0.7,val=0.2,test=0.1``; the fractions must be positive and sum to 1."""
    out: dict[str, float] = {}
    for part in text.split(","):
        name, eq, value = part.partition("=")
        name = name.strip()
        if not eq or not name:
            raise SplitError(f"fractions: expected 'name=fraction,...', found {part!r}")
        try:
            out[name] = float(value)
        except ValueError:
            raise SplitError(f"fractions: {name}: expected a number, found {value!r}") from None
    check_fractions(out)
    return out


def check_fractions(fractions: Mapping[str, float]) -> None:
    import re

    if not fractions:
        raise SplitError("fractions: expected at least one split")
    for name, value in fractions.items():
        if not re.match(r"^[a-z][a-z0-9_]*$", name):
            raise SplitError(f"fractions: split name {name!r}: expected lower-case letters, digits or '_'")
        if not value > 0:
            raise SplitError(f"fractions: {name}: expected a fraction > 0, found {value}")
    total = sum(fractions.values())
    if abs(total - 1.0) > 1e-6:
        raise SplitError(f"fractions must sum to 1, found {total:.6f} ({dict(fractions)})")


@dataclass
class MovieStats:
    """Per-movie instance counts and per-class label counts (rows of ``classes`` follow ``movies``)."""

    movies: list[str]
    sizes: np.ndarray           # (M,) instances per movie
    classes: np.ndarray         # (M, K) instances per movie having each class
    class_ids: list[int]

    @classmethod
    def from_instances(cls, instances, class_ids: Sequence[int] | None = None) -> "MovieStats":
        movies = sorted({i.video_id for i in instances})
        index = {m: n for n, m in enumerate(movies)}
        class_ids = list(class_ids) if class_ids is not None else sorted({a for i in instances for a in i.action_ids})
        col = {c: n for n, c in enumerate(class_ids)}
        sizes = np.zeros(len(movies), np.int64)
        counts = np.zeros((len(movies), len(class_ids)), np.int64)
        for inst in instances:
            row = index[inst.video_id]
            sizes[row] += 1
            for a in inst.action_ids:
                if a in col:
                    counts[row, col[a]] += 1
        return cls(movies, sizes, counts, class_ids)


@dataclass
class SplitResult:
    assignment: dict[str, str]                 # video_id -> split
    fractions: dict[str, float]
    stats: MovieStats
    seed: int
    pinned: dict[str, str] = field(default_factory=dict)

    def split_matrix(self):
        names = list(self.fractions)
        col = {n: i for i, n in enumerate(names)}
        onehot = np.zeros((len(self.stats.movies), len(names)))
        for row, movie in enumerate(self.stats.movies):
            onehot[row, col[self.assignment[movie]]] = 1
        return names, onehot

    def report(self, instances=None) -> dict:
        """Per split: instances, movies (and clips when ``instances`` is given); per class: count and share per
        split, and the deviation of each share from the split's target fraction."""
        names, onehot = self.split_matrix()
        sizes = onehot.T @ self.stats.sizes
        counts = onehot.T @ self.stats.classes          # (S, K)
        totals = self.stats.classes.sum(axis=0)
        total = self.stats.sizes.sum()
        splits = {}
        for s, name in enumerate(names):
            splits[name] = {"instances": int(sizes[s]), "movies": int(onehot[:, s].sum()),
                            "share": float(sizes[s] / total) if total else 0.0, "target": self.fractions[name]}
        if instances is not None:
            for name in names:
                splits[name]["clips"] = len({i.clip_id for i in instances if self.assignment[i.video_id] == name})
        classes = []
        for k, cid in enumerate(self.stats.class_ids):
            if totals[k] == 0:
                continue
            shares = {name: float(counts[s, k] / totals[k]) for s, name in enumerate(names)}
            deviation = {name: shares[name] - self.fractions[name] for name in names}
            worst = max(deviation, key=lambda n: abs(deviation[n]))
            classes.append({"class_id": int(cid), "count": int(totals[k]),
                            "per_split": {n: int(counts[s, k]) for s, n in enumerate(names)},
                            "share": shares, "largest_deviation": {"split": worst, "value": deviation[worst]}})
        return {"seed": self.seed, "fractions": self.fractions, "splits": splits, "classes": classes,
                "max_abs_class_deviation": max_class_deviation(self.stats, names, onehot, self.fractions),
                "pinned_movies": len(self.pinned)}


def max_class_deviation(stats: MovieStats, names, onehot, fractions, *, min_count: int = 0) -> float:
    """max over splits and classes (with more than ``min_count`` instances) of |class share in split - target|."""
    counts = onehot.T @ stats.classes
    totals = stats.classes.sum(axis=0)
    keep = totals > min_count
    if not keep.any():
        return 0.0
    target = np.array([fractions[n] for n in names])[:, None]
    return float(np.abs(counts[:, keep] / totals[keep] - target).max())


def build_splits(instances, fractions: Mapping[str, float], *, seed: int = 0,
                 pins: Mapping[str, str] | None = None, previous: Mapping[str, str] | None = None,
                 class_ids: Sequence[int] | None = None, iterations: int = 4000) -> SplitResult:
    """Assign every movie of ``instances`` to one split.

    ``pins`` forces movies into splits; ``previous`` (an earlier assignment) keeps its movies where they are so
    only new movies are placed.  Raises :class:`SplitError` for impossible requests.
    """
    fractions = dict(fractions)
    check_fractions(fractions)
    stats = MovieStats.from_instances(instances, class_ids)
    names = list(fractions)
    if len(stats.movies) < len(names):
        raise SplitError(f"cannot make {len(names)} movie-disjoint splits ({', '.join(names)}) from "
                         f"{len(stats.movies)} movie(s): each split needs at least one movie")
    fixed: dict[str, str] = {}
    for source, mapping in (("previous splits", previous or {}), ("pins", pins or {})):
        for movie, split in mapping.items():
            if split not in fractions:
                raise SplitError(f"{source}: movie {movie!r} is assigned to unknown split {split!r}; "
                                 f"expected one of {names}")
            if movie not in stats.movies:
                if source == "pins":
                    raise SplitError(f"pins: unknown movie {movie!r}: it has no accepted instances")
                continue  # a movie of earlier splits that no longer has instances
            fixed[movie] = split
    assignment = _optimise(stats, names, np.array([fractions[n] for n in names]), fixed, seed, iterations)
    result = SplitResult({m: names[s] for m, s in zip(stats.movies, assignment)}, fractions, stats, seed,
                         dict(pins or {}))
    empty = [n for n in names if n not in set(result.assignment.values())]
    if empty:
        raise SplitError(f"split(s) {empty} received no movie: too few movies for these fractions and pins")
    return result


MIN_SUPPORT = 20   # classes with fewer labels get the weight of a class with this many (they cannot be balanced)
POWER = 4          # an L4 norm of the share deviations: close to minimising the largest one, but smooth


def _optimise(stats: MovieStats, names, frac: np.ndarray, fixed: Mapping[str, str], seed: int,
              iterations: int) -> np.ndarray:
    """Greedy placement, then local search (best single-movie move, else random swaps) on

        cost = sum_{s,k} ((X_sk - f_s C_k) / max(C_k, MIN_SUPPORT)) ** POWER + K * sum_s ((n_s - f_s N) / N) ** POWER * 10

    i.e. the deviation of every class's share in every split from the split's target fraction, plus the split
    sizes' deviation from their targets.  Pinned movies never move.
    """
    rng = np.random.default_rng(seed)
    M, S = len(stats.movies), len(names)
    sizes = stats.sizes.astype(np.float64)
    X = stats.classes.astype(np.float64)
    N = sizes.sum()
    C = X.sum(axis=0)
    scale = np.maximum(C, MIN_SUPPORT)
    size_weight = 10.0 * max(1, X.shape[1])
    target_size = frac * N
    target_cls = frac[:, None] * C[None, :]
    movable = np.array([m not in fixed for m in stats.movies])
    assign = np.full(M, -1)
    for row, movie in enumerate(stats.movies):
        if movie in fixed:
            assign[row] = names.index(fixed[movie])

    _greedy(assign, sizes, target_size, rng)

    def class_pen(x, s):      # x: (..., K) counts of split(s) s
        return (np.abs(x - target_cls[s]) / scale) ** POWER

    def size_pen(n, s):
        return size_weight * (np.abs(n - target_size[s]) / N) ** POWER

    onehot = np.zeros((M, S))
    onehot[np.arange(M), assign] = 1
    n_s, x_s = onehot.T @ sizes, onehot.T @ X
    rows = np.flatnonzero(movable)
    split_pen = np.array([class_pen(x_s[s], s).sum() + size_pen(n_s[s], s) for s in range(S)])
    for _ in range(iterations):
        improved = False
        best_gain, best = 1e-12, None
        a = assign[rows]
        for src in range(S):
            sel = rows[a == src]
            if sel.size == 0:
                continue
            after_src = class_pen(x_s[src][None, :] - X[sel], src).sum(1) + size_pen(n_s[src] - sizes[sel], src)
            for b in range(S):
                if b == src:
                    continue
                after_b = class_pen(x_s[b][None, :] + X[sel], b).sum(1) + size_pen(n_s[b] + sizes[sel], b)
                gain = split_pen[src] + split_pen[b] - after_src - after_b
                gain[n_s[src] - sizes[sel] <= 0] = -np.inf   # never empty a split
                i = int(np.argmax(gain))
                if gain[i] > best_gain:
                    best_gain, best = float(gain[i]), (int(sel[i]), b)
        if best is not None:
            m, b = best
            src = assign[m]
            x_s[src] -= X[m]
            x_s[b] += X[m]
            n_s[src] -= sizes[m]
            n_s[b] += sizes[m]
            assign[m] = b
            for s in (src, b):
                split_pen[s] = class_pen(x_s[s], s).sum() + size_pen(n_s[s], s)
            improved = True
        elif rows.size >= 2:
            improved = _try_swaps(rng, rows, assign, X, sizes, x_s, n_s, split_pen, class_pen, size_pen)
        if not improved:
            break
    return assign


def _greedy(assign: np.ndarray, sizes: np.ndarray, target_size: np.ndarray, rng) -> None:
    """Place the unpinned movies: biggest first (a seeded permutation breaks ties), each into the split furthest
    below its target size."""
    S = len(target_size)
    load = np.array([sizes[assign == s].sum() for s in range(S)])
    order = rng.permutation(len(assign))
    order = order[np.argsort(-sizes[order], kind="stable")]
    for row in order:
        if assign[row] >= 0:
            continue
        s = int(np.argmax((target_size - load) / target_size))
        assign[row] = s
        load[s] += sizes[row]


def _try_swaps(rng, rows, assign, X, sizes, x_s, n_s, split_pen, class_pen, size_pen) -> bool:
    """No single move helps: try random swaps between splits; the first that lowers the cost is made (the arrays
    are updated in place).  Returns whether one was."""
    for i, j in rng.integers(0, rows.size, size=(512, 2)):
        m1, m2 = rows[i], rows[j]
        s1, s2 = assign[m1], assign[m2]
        if s1 == s2:
            continue
        d = X[m2] - X[m1]
        dn = sizes[m2] - sizes[m1]
        p1 = class_pen(x_s[s1] + d, s1).sum() + size_pen(n_s[s1] + dn, s1)
        p2 = class_pen(x_s[s2] - d, s2).sum() + size_pen(n_s[s2] - dn, s2)
        if p1 + p2 < split_pen[s1] + split_pen[s2] - 1e-12:
            x_s[s1] += d
            x_s[s2] -= d
            n_s[s1] += dn
            n_s[s2] -= dn
            assign[m1], assign[m2] = s2, s1
            split_pen[s1], split_pen[s2] = p1, p2
            return True
    return False


def check_splits(split_rows, instances) -> None:
    """Raise :class:`SplitError` unless: no movie in two splits, every instance in exactly one split, no clip
    split across splits, and no split row for an unknown instance."""
    movie_split: dict[str, str] = {}
    clip_split: dict[str, str] = {}
    seen: dict[str, str] = {}
    for row in split_rows:
        iid, split = row["instance_id"], row["split"]
        if iid in seen:
            raise SplitError(f"splits: instance {iid} appears twice ({seen[iid]}, {split})")
        seen[iid] = split
        for key, table, what in ((row["video_id"], movie_split, "movie"), (row["clip_id"], clip_split, "clip")):
            if table.setdefault(key, split) != split:
                raise SplitError(f"splits: {what} {key} is in two splits ({table[key]} and {split}); "
                                 f"rebuild with `refava build-splits --force`")
    expected = {i.instance_id for i in instances}
    missing = sorted(expected - set(seen))
    extra = sorted(set(seen) - expected)
    if missing:
        raise SplitError(f"splits: {len(missing)} accepted instance(s) in no split, e.g. {missing[:3]}; "
                         f"rerun `refava build-splits`")
    if extra:
        raise SplitError(f"splits: {len(extra)} split row(s) for instances that are not accepted, e.g. {extra[:3]}")


def split_rows(result: SplitResult, instances) -> list[dict]:
    return [{"instance_id": i.instance_id, "clip_id": i.clip_id, "video_id": i.video_id,
             "split": result.assignment[i.video_id]} for i in sorted(instances, key=lambda i: i.instance_id)]


def report_markdown(report: dict, labels: Mapping[int, str] | None = None, top: int = 15) -> str:
    names = list(report["fractions"])
    lines = ["# RefAVA splits", "", f"seed {report['seed']}; movies pinned: {report['pinned_movies']}", "",
             "| split | target | instances | share | clips | movies |", "|---|---|---|---|---|---|"]
    for name, s in report["splits"].items():
        lines.append(f"| {name} | {s['target']:.3f} | {s['instances']} | {s['share']:.3f} | {s.get('clips', '')} | {s['movies']} |")
    lines += ["", f"Largest class share deviation from target: {report['max_abs_class_deviation']:.3f}", "",
              f"## Classes, largest deviation first (top {top}; all in splits.json)", "",
              "| class | count | " + " | ".join(f"{n} count (share)" for n in names) + " | largest deviation |",
              "|---|---|" + "---|" * len(names) + "---|"]
    ordered = sorted(report["classes"], key=lambda c: -abs(c["largest_deviation"]["value"]))
    for c in ordered[:top]:
        name = (labels or {}).get(c["class_id"], str(c["class_id"]))
        cells = " | ".join(f"{c['per_split'][n]} ({c['share'][n]:.2f})" for n in names)
        dev = c["largest_deviation"]
        lines.append(f"| {name} | {c['count']} | {cells} | {dev['split']} {dev['value']:+.3f} |")
    return "\n".join(lines) + "\n"


def accepted_instances(ws):
    """The instances later stages use: accepted by `annotate check` when it has run, else all ingested ones."""
    from .records import Instances
    from .tables import read_table

    instances = list(Instances.from_parquet(ws.table("instances")))
    if not ws.table("annotation_status").exists():
        return instances, "ingested instances (no `annotate check` yet: all of them)"
    accepted = {r["instance_id"] for r in read_table("annotation_status", ws.table("annotation_status")).to_pylist()
                if r["status"] == "accepted"}
    return [i for i in instances if i.instance_id in accepted], "accepted instances"


# --- the stage ---------------------------------------------------------------------------------------------------

def check(ws) -> Summary:
    """``refava build-splits --check``: tables/splits.parquet verified against the instances."""
    from .tables import read_table

    instances, _ = accepted_instances(ws)
    out = ws.table("splits")
    rows = read_table("splits", out).to_pylist()
    check_splits(rows, instances)
    return Summary("build-splits", [f"splits OK: {len(rows)} instances, {len({r['video_id'] for r in rows})} "
                                    f"movies, no movie or clip in two splits ({out})"])


def run(ws, *, fractions: str | None = None, preset: str = "refava", seed: int | None = None, pins=(),
        fresh: bool = False) -> Summary:
    """``refava build-splits``: whole movies to train/val/test, every class balanced; tables/splits.parquet
    (verified before it is written) and reports/splits.{json,md}.  Movies already placed stay unless ``fresh``."""
    from .ava import default_label_map
    from .fsutil import sha256_file, write_json_atomic, write_text_atomic
    from .tables import read_table, write_table

    instances, source = accepted_instances(ws)
    out = ws.table("splits")
    target = parse_fractions(fractions) if fractions else preset_fractions(preset)
    pin_map = {}
    for pin in pins:
        movie, eq, split = pin.partition("=")
        if not eq:
            raise SplitError(f"--pin {pin!r}: expected VIDEO=SPLIT")
        pin_map[movie] = split
    previous = {}
    if out.exists() and not fresh:
        previous = {r["video_id"]: r["split"] for r in read_table("splits", out).to_pylist()}
        previous = {m: s for m, s in previous.items() if s in target}
    seed = ws.config["seeds"]["splits"] if seed is None else seed
    result = build_splits(instances, target, seed=seed, pins=pin_map, previous=previous)
    rows = split_rows(result, instances)
    check_splits(rows, instances)
    write_table("splits", rows, out, provenance={"stage": "build-splits", "params": {
        "fractions": target, "seed": seed, "pins": pin_map, "kept_from_previous": len(previous)},
        "inputs": {name: sha256_file(ws.table(name)) for name in ("instances", "annotation_status")
                   if ws.table(name).exists()}})
    report = result.report(instances)
    labels = {k: v.name for k, v in default_label_map().items()}
    write_json_atomic(ws.reports_dir / "splits.json", report)
    write_text_atomic(ws.reports_dir / "splits.md", report_markdown(report, labels))
    lines = [f"  {name:<6} {s['instances']:>6} instances ({s['share']:.3f}, target {s['target']:.3f}), "
             f"{s['clips']} clips, {s['movies']} movies" for name, s in report["splits"].items()]
    lines += [f"over {len(instances)} {source}",
              f"largest class share deviation {report['max_abs_class_deviation']:.3f}; "
              f"{len(previous)} movies kept from earlier splits"]
    return Summary("build-splits", lines, {"splits": out, "report": ws.reports_dir / "splits.md"})
