"""The RAVAR metrics, with NumPy only (no torch, no scikit-learn at run time).

* mAP and AUROC over the action classes that have at least one positive in the split (AUROC also needs one
  negative). The paper's text says macro average; the authors' code calls scikit-learn with ``average="weighted"``
  (weights = positives per class). Both are reported, named ``*_macro`` and ``*_weighted``.
* mIOU: mean IoU between each instance's predicted and ground-truth keyframe box.
* mAP at IoU tau (appendix: 0.2 and 0.5): an instance's class scores are zeroed where its box IoU is below tau.
* Per action group (person movement, object manipulation, person interaction): mAP over the group's classes.

``average_precision`` and ``roc_auc`` follow scikit-learn's definitions exactly (ties included), and ``box_iou``
pycocotools' (``maskUtils.iou`` on non-crowd boxes); the tests compare them on random inputs.

>>> import numpy as np
>>> round(average_precision(np.array([0, 1, 1, 0]), np.array([0.1, 0.4, 0.35, 0.8])), 4)
0.5833
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

GROUP_NAMES = ("person_movement", "object_manipulation", "person_interaction")


def _distinct_thresholds(y_true: np.ndarray, scores: np.ndarray):
    """Cumulative true and false positives at each distinct score, from the highest down (scikit-learn's curve)."""
    order = np.argsort(scores, kind="mergesort")[::-1]
    s = scores[order]
    y = y_true[order].astype(np.float64)
    last = np.r_[np.flatnonzero(np.diff(s)), y.size - 1]    # the last index of each run of equal scores
    tps = np.cumsum(y)[last]
    fps = (1 + last) - tps
    return tps, fps


def average_precision(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Area under the step-wise precision-recall curve: sum over thresholds of (R_n - R_{n-1}) P_n.

    Equals ``sklearn.metrics.average_precision_score``; NaN when there is no positive.
    """
    y_true = np.asarray(y_true).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    require_finite(scores, "scores")
    if not y_true.any():
        return float("nan")
    tps, fps = _distinct_thresholds(y_true, scores)
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (trapezoids between distinct thresholds: ties count half).

    Equals ``sklearn.metrics.roc_auc_score`` for binary labels; NaN without both a positive and a negative.
    """
    y_true = np.asarray(y_true).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    require_finite(scores, "scores")
    if y_true.all() or not y_true.any():
        return float("nan")
    tps, fps = _distinct_thresholds(y_true, scores)
    tpr = np.r_[0.0, tps / tps[-1]]
    fpr = np.r_[0.0, fps / fps[-1]]
    return float(np.trapezoid(tpr, fpr) if hasattr(np, "trapezoid") else np.trapz(tpr, fpr))


def _per_class(fn, y_true: np.ndarray, scores: np.ndarray, classes: np.ndarray) -> np.ndarray:
    return np.array([fn(y_true[:, c], scores[:, c]) for c in classes], dtype=np.float64)


def multilabel_map(y_true: np.ndarray, scores: np.ndarray, *, classes: Sequence[int] | None = None) -> dict:
    """mAP over the classes with a positive: ``{"map_macro", "map_weighted", "per_class", "classes"}``."""
    y_true = np.asarray(y_true).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    _check(y_true, scores)
    candidates = np.arange(y_true.shape[1]) if classes is None else np.asarray(classes, dtype=int)
    present = candidates[y_true[:, candidates].any(axis=0)] if candidates.size else candidates
    if present.size == 0:
        return {"map_macro": float("nan"), "map_weighted": float("nan"), "per_class": {}, "classes": []}
    ap = _per_class(average_precision, y_true, scores, present)
    support = y_true[:, present].sum(axis=0)
    return {"map_macro": float(ap.mean()), "map_weighted": float(np.average(ap, weights=support)),
            "per_class": {int(c): float(v) for c, v in zip(present, ap)}, "classes": present.tolist()}


def multilabel_auroc(y_true: np.ndarray, scores: np.ndarray) -> dict:
    """AUROC over the classes with a positive and a negative: ``{"auroc_macro", "auroc_weighted", ...}``."""
    y_true = np.asarray(y_true).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    _check(y_true, scores)
    counts = y_true.sum(axis=0)
    present = np.flatnonzero((counts > 0) & (counts < y_true.shape[0]))
    if present.size == 0:
        return {"auroc_macro": float("nan"), "auroc_weighted": float("nan"), "per_class": {}, "classes": []}
    auc = _per_class(roc_auc, y_true, scores, present)
    return {"auroc_macro": float(auc.mean()), "auroc_weighted": float(np.average(auc, weights=counts[present])),
            "per_class": {int(c): float(v) for c, v in zip(present, auc)}, "classes": present.tolist()}


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of each box in ``a`` with the box in the same row of ``b``; boxes are (x1, y1, x2, y2).

    Degenerate boxes (zero area) give IoU 0 with everything, as in pycocotools.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    if a.shape != b.shape:
        raise ValueError(f"box_iou: expected two (N, 4) arrays of the same N, found {a.shape} and {b.shape}")
    require_finite(a, "predicted boxes")
    require_finite(b, "ground-truth boxes")
    w = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    h = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = w * h
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a + area_b - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def miou(pred_boxes: np.ndarray, gt_boxes: np.ndarray) -> float:
    """Mean IoU between predicted and ground-truth boxes, one pair per instance."""
    iou = box_iou(pred_boxes, gt_boxes)
    return float(iou.mean()) if iou.size else float("nan")


def map_at_iou(y_true: np.ndarray, scores: np.ndarray, pred_boxes: np.ndarray, gt_boxes: np.ndarray,
               tau: float) -> dict:
    """mAP after zeroing the class scores of every instance whose box IoU is below ``tau`` (the appendix)."""
    keep = box_iou(pred_boxes, gt_boxes) >= tau
    return multilabel_map(y_true, np.where(keep[:, None], np.asarray(scores, dtype=np.float64), 0.0))


def evaluate(y_true: np.ndarray, scores: np.ndarray, pred_boxes: np.ndarray | None = None,
             gt_boxes: np.ndarray | None = None, *, groups: Sequence[int] | None = None,
             taus: Sequence[float] = (0.2, 0.5)) -> dict:
    """Every RAVAR metric at once, as percentages (as the paper reports them).

    ``groups[c]`` is the action group (0..2) of class column ``c``; with it, mAP per group is added.
    """
    out = {}
    m, a = multilabel_map(y_true, scores), multilabel_auroc(y_true, scores)
    out.update({"map_macro": 100 * m["map_macro"], "map_weighted": 100 * m["map_weighted"],
                "auroc_macro": 100 * a["auroc_macro"], "auroc_weighted": 100 * a["auroc_weighted"],
                "classes_evaluated": len(m["classes"])})
    if pred_boxes is not None and gt_boxes is not None:
        out["miou"] = 100 * miou(pred_boxes, gt_boxes)
        for tau in taus:
            at = map_at_iou(y_true, scores, pred_boxes, gt_boxes, tau)
            out[f"map_macro_iou{tau:g}"] = 100 * at["map_macro"]
            out[f"map_weighted_iou{tau:g}"] = 100 * at["map_weighted"]
    if groups is not None:
        groups = np.asarray(groups)
        for g, name in enumerate(GROUP_NAMES):
            gm = multilabel_map(y_true, scores, classes=np.flatnonzero(groups == g))
            out[f"map_macro_{name}"] = 100 * gm["map_macro"]
    return out


def _check(y_true: np.ndarray, scores: np.ndarray) -> None:
    if y_true.ndim != 2 or y_true.shape != scores.shape:
        raise ValueError(f"expected labels and scores of one shape (N, C), found {y_true.shape} and {scores.shape}")
    require_finite(scores, "scores")


def require_finite(values: np.ndarray, what: str) -> None:
    """Raise :class:`~refava.errors.ValidationError` naming the rows where ``values`` holds NaN or an infinity.

    A NaN would otherwise sort as the highest score (a diverged model would get a plausible mAP).

    >>> require_finite(np.array([[0.1, np.nan]]), "scores")
    Traceback (most recent call last):
    ...
    refava.errors.ValidationError: scores: expected finite numbers, found nan in 1 row(s): row 0 (column 1)
    """
    from .errors import ValidationError

    values = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(values)
    if not bad.any():
        return
    bad2 = bad.reshape(len(values), -1) if values.ndim else bad.reshape(1, 1)
    rows = np.flatnonzero(bad2.any(axis=1))
    flat = values.reshape(len(values), -1) if values.ndim else values.reshape(1, 1)
    kinds = sorted({str(v) for v in flat[bad2]})
    shown = ", ".join(f"row {r} (column {int(np.flatnonzero(bad2[r])[0])})" for r in rows[:10])
    more = f" and {len(rows) - 10} more" if len(rows) > 10 else ""
    raise ValidationError(f"{what}: expected finite numbers, found {'/'.join(kinds)} in {len(rows)} row(s): "
                          f"{shown}{more}")
