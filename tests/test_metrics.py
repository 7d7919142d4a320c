"""refava.metrics against scikit-learn (AP, AUROC, macro and weighted) and pycocotools (box IoU)."""
from __future__ import annotations

import numpy as np
import pytest

from refava import metrics as M

sklearn_metrics = pytest.importorskip("sklearn.metrics")


def random_multilabel(rng, n=120, c=12):
    y = rng.random((n, c)) < rng.uniform(0.02, 0.5, c)
    y[:, 3] = False                        # a class with no positive: left out of both averages
    y[:, 5] = True                         # a class with no negative: left out of AUROC
    scores = np.round(rng.random((n, c)), int(rng.integers(1, 4)))     # rounding makes ties
    return y, scores


@pytest.mark.parametrize("seed", range(8))
def test_binary_ap_and_auroc_equal_scikit_learn_with_ties(seed):
    rng = np.random.default_rng(seed)
    for _ in range(50):
        n = int(rng.integers(2, 80))
        y = rng.random(n) < rng.random()
        s = np.round(rng.random(n), int(rng.integers(1, 4)))
        if y.any():
            assert M.average_precision(y, s) == pytest.approx(sklearn_metrics.average_precision_score(y, s), abs=1e-12)
        else:
            assert np.isnan(M.average_precision(y, s))
        if y.any() and not y.all():
            assert M.roc_auc(y, s) == pytest.approx(sklearn_metrics.roc_auc_score(y, s), abs=1e-12)
        else:
            assert np.isnan(M.roc_auc(y, s))


@pytest.mark.parametrize("seed", range(6))
def test_multilabel_macro_and_weighted_equal_scikit_learn_over_classes_with_positives(seed):
    y, s = random_multilabel(np.random.default_rng(seed))
    has_pos = y.any(axis=0)
    m = M.multilabel_map(y, s)
    assert m["classes"] == np.flatnonzero(has_pos).tolist()
    for average in ("macro", "weighted"):
        ref = sklearn_metrics.average_precision_score(y[:, has_pos], s[:, has_pos], average=average)
        assert m[f"map_{average}"] == pytest.approx(ref, abs=1e-12)
    both = has_pos & ~y.all(axis=0)
    a = M.multilabel_auroc(y, s)
    assert a["classes"] == np.flatnonzero(both).tolist()
    for average in ("macro", "weighted"):
        ref = sklearn_metrics.roc_auc_score(y[:, both], s[:, both], average=average)
        assert a[f"auroc_{average}"] == pytest.approx(ref, abs=1e-12)


def test_box_iou_equals_pycocotools():
    mask = pytest.importorskip("pycocotools.mask")
    rng = np.random.default_rng(0)
    a = rng.random((200, 4))
    b = rng.random((200, 4))
    a[:, 2:] = a[:, :2] + rng.random((200, 2)) * 0.6
    b[:, 2:] = b[:, :2] + rng.random((200, 2)) * 0.6
    b[:10] = a[:10]                                     # identical boxes
    b[10:15, 2:] = b[10:15, :2]                         # degenerate boxes
    ours = M.box_iou(a, b)
    xywh = lambda x: np.c_[x[:, :2], x[:, 2:] - x[:, :2]]  # noqa: E731
    ref = np.array([mask.iou(xywh(a[i:i + 1]), xywh(b[i:i + 1]), [0])[0, 0] for i in range(len(a))])
    assert np.allclose(ours, ref, atol=1e-12)
    assert np.allclose(ours[:10], 1.0) and np.all(ours[10:15] == 0)
    assert M.miou(a, b) == pytest.approx(ref.mean())


def test_map_at_iou_zeroes_instances_with_a_bad_box_and_groups_split_the_classes():
    rng = np.random.default_rng(1)
    y, s = random_multilabel(rng, n=60, c=6)
    gt = np.tile([0.1, 0.1, 0.5, 0.5], (60, 1))
    pred = gt.copy()
    pred[:30] += 0.35                                   # half the boxes miss
    full = M.multilabel_map(y, s)
    at = M.map_at_iou(y, s, pred, gt, 0.5)
    manual = M.multilabel_map(y, np.where((M.box_iou(pred, gt) >= 0.5)[:, None], s, 0.0))
    assert at["map_macro"] == manual["map_macro"] != full["map_macro"]
    assert M.map_at_iou(y, s, gt, gt, 0.5)["map_macro"] == full["map_macro"]
    report = M.evaluate(y, s, pred, gt, groups=[0, 0, 1, 1, 2, 2])
    assert {"map_macro", "map_weighted", "auroc_macro", "auroc_weighted", "miou", "map_macro_iou0.2",
            "map_macro_iou0.5", "map_macro_person_movement", "map_macro_person_interaction"} <= set(report)
    assert report["map_macro"] == pytest.approx(100 * full["map_macro"])
    with pytest.raises(ValueError, match="one shape"):
        M.multilabel_map(y, s[:, :3])
