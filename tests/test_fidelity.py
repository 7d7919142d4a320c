"""Fidelity (issue 19): what holds away from the sample corpus's 320x240 files."""
from __future__ import annotations

import math

import numpy as np
import pytest

from factories import make_indexed_video
from test_ingest import people_rows, quiet, write_csv


# -- 4. the clip set does not depend on --frames -----------------------------------------------------------------

@pytest.mark.parametrize("fps", [30, 25])
def test_the_same_clips_for_one_eight_and_all_frames(tmp_path, fps):
    from refava.ingest import ClipSettings, ingest

    movies = tmp_path / "movies"
    make_indexed_video(movies / "m.mkv", 8 * fps, fps=fps)        # frames up to 8 s - 1/fps
    csv = write_csv(tmp_path / "gt.csv", people_rows("m", [1, 2, 3, 5, 6, 7, 8]))
    clip_sets = {}
    for frames in (1, 8, 90):
        result = ingest(tmp_path / f"ws{frames}", movies, [csv], settings=ClipSettings(frames=frames), workers=1,
                        progress=False, log=quiet)
        clip_sets[frames] = sorted(result.clips.ids())
        past = sorted(p.id for p in result.problems.problems if p.kind == "keyframe_past_end")
        assert past == ["m___0007", "m___0008"], (frames, past)
    assert clip_sets[1] == clip_sets[8] == clip_sets[90] == ["m___0002", "m___0003", "m___0005", "m___0006"]


# -- 5. metrics refuse NaN and infinite scores -------------------------------------------------------------------

@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_scores_raise_naming_the_rows(bad):
    from refava.errors import ValidationError
    from refava.metrics import evaluate, multilabel_map

    rng = np.random.default_rng(0)
    y = rng.random((20, 5)) < 0.3
    y[0] = True
    scores = rng.random((20, 5))
    scores[[3, 11], 2] = bad
    for fn in (lambda: multilabel_map(y, scores), lambda: evaluate(y, scores)):
        with pytest.raises(ValidationError) as info:
            fn()
        assert "row 3" in str(info.value) and "row 11" in str(info.value) and "2 row(s)" in str(info.value)
    boxes = rng.random((20, 4))
    boxes[7, 0] = bad
    with pytest.raises(ValidationError, match="row 7"):
        evaluate(y, rng.random((20, 5)), boxes, rng.random((20, 4)))


def test_a_nan_no_longer_earns_a_plausible_map():
    from refava.metrics import average_precision

    with pytest.raises(ValueError):
        average_precision(np.array([1, 0, 0, 0]), np.array([np.nan, 0.1, 0.2, 0.3]))
    assert math.isclose(average_precision(np.array([1, 0, 0, 0]), np.array([0.9, 0.1, 0.2, 0.3])), 1.0)
