"""Fidelity (issue 19): what holds away from the sample corpus's 320x240 files."""
from __future__ import annotations

import math

import numpy as np
import pytest

from factories import make_indexed_video
from test_faults import packaged_ws, ws_copy  # noqa: F401  (fixtures shared with the fault suite)
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


# -- 3. frames by true display time in every container ---------------------------------------------------------

AVI_CASES = [("packed", True, 25), ("unpacked", False, 25), ("packed", True, 30)]


@pytest.mark.parametrize("name, packed, fps", AVI_CASES)
def test_avi_with_b_frames_decodes_in_display_order_with_true_times(tmp_path, name, packed, fps):
    from factories import make_packed_bframes_avi, read_index
    from refava.video import iter_frames

    path = tmp_path / f"{name}.avi"
    times = make_packed_bframes_avi(path, 7 * fps, fps=fps, packed=packed)
    decoded = list(iter_frames(path))
    assert [read_index(f.to_rgb()) for f in decoded] == list(range(len(times)))
    assert [f.time for f in decoded] == times


@pytest.mark.parametrize("name, packed, fps", AVI_CASES)
def test_avi_with_b_frames_gives_the_nearest_frame_at_every_grid_position(tmp_path, name, packed, fps):
    from factories import make_packed_bframes_avi, read_index
    from refava.ingest import ClipSettings, grid_time, ingest
    from refava.video import decode_jpeg

    movies = tmp_path / "movies"
    times = make_packed_bframes_avi(movies / f"{name}.avi", 7 * fps, fps=fps, packed=packed)
    csv = write_csv(tmp_path / "gt.csv", people_rows(name, [2, 3, 4, 5]))
    by_frames = {}
    for frames in (1, 8, 90):
        result = ingest(tmp_path / f"ws{frames}", movies, [csv], settings=ClipSettings(frames=frames, short_side=0),
                        workers=1, progress=False, log=quiet)
        assert not result.problems, result.problems.summary_lines()
        by_frames[frames] = sorted(result.clips.ids())
        import pyarrow.parquet as pq

        rows = pq.read_table(tmp_path / f"ws{frames}" / "frames" / "clean" / f"{name}.parquet").to_pylist()
        for row in rows:
            timestamp = int(row["clip_id"].rsplit("___", 1)[1])
            target = grid_time(timestamp, row["grid_index"])
            expected = min(range(len(times)), key=lambda i: (abs(times[i] - target), i))
            got = read_index(decode_jpeg(row["jpeg"]))
            assert got == expected, f"{frames}: {row['clip_id']} grid {row['grid_index']}: frame {got}, nearest {expected}"
            assert row["pts_s"] == pytest.approx(float(times[expected]))
        if frames == 90:
            assert len(rows) == 4 * 91                               # every grid position of every clip
    assert by_frames[1] == by_frames[8] == by_frames[90]


# -- 1. rain looks the same at every size --------------------------------------------------------------------------

SIZES = [(224, 224), (720, 1280), (1080, 1920)]


def _scene(height: int, width: int) -> np.ndarray:
    """A smooth mid-grey scene with a gradient: the same picture at every size."""
    y = np.linspace(0, 1, height)[:, None, None]
    x = np.linspace(0, 1, width)[None, :, None]
    return np.clip(60 + 80 * x + 40 * y + np.zeros((1, 1, 3)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("style", ["streaks", "drops"])
def test_rain_coverage_and_brightening_do_not_depend_on_frame_size(style):
    from refava.corrupt import corrupt_frames, resolve

    for severity in range(1, 6):
        spec = resolve("rain", severity, style=style)
        coverage, brightening = {}, {}
        for height, width in SIZES:
            frame = _scene(height, width)
            covered, brighter = [], []
            for seed in range(3):
                out = corrupt_frames([frame], spec, np.random.default_rng(seed))[0]
                if style == "streaks":
                    from refava.corrupt.rain import streak_mask
                    covered.append(streak_mask(height, width, severity, np.random.default_rng(seed)).mean())
                else:
                    covered.append((np.abs(out.astype(int) - frame).max(axis=2) > 8).mean())
                brighter.append(float(out.mean()) - float(frame.mean()))
            coverage[(height, width)], brightening[(height, width)] = np.mean(covered), np.mean(brighter)
        base_c, base_b = coverage[SIZES[0]], brightening[SIZES[0]]
        for size in SIZES[1:]:
            assert coverage[size] == pytest.approx(base_c, rel=0.15), (style, severity, size, coverage)
            assert brightening[size] == pytest.approx(base_b, rel=0.15, abs=0.3), (style, severity, size, brightening)


# -- 2. stored corrupted frames keep the formula ----------------------------------------------------------------

@pytest.mark.parametrize("kind", ["gaussian_noise", "shot_noise"])
def test_stored_noise_keeps_its_sigma_at_every_severity(kind):
    import simplejpeg

    from refava.corrupt import corrupt_frames, resolve
    from refava.corrupt.stage import encode_stored, storage_for

    clean = np.full((128, 160, 3), 128, np.uint8)
    for severity in range(1, 6):
        spec = resolve(kind, severity)
        raw = corrupt_frames([clean] * 4, spec, np.random.default_rng(severity))
        stored = [simplejpeg.decode_jpeg(encode_stored(f, storage_for(spec, 90)), colorspace="RGB") for f in raw]
        s_raw = np.std(np.stack(raw).astype(float) - 128)
        s_stored = np.std(np.stack(stored).astype(float) - 128)
        assert s_stored == pytest.approx(s_raw, rel=0.03), (kind, severity, s_raw / 255, s_stored / 255)
    if kind == "gaussian_noise":
        assert np.std(np.stack(raw).astype(float) - 128) / 255 == pytest.approx(0.317, abs=0.005)   # clipped 0.38


def test_the_manifest_records_the_storage(ws_copy):
    import json as _json

    import pyarrow.parquet as pq

    from test_faults import refava

    refava("-w", ws_copy, "corrupt", "--type", "gaussian_noise", "--type", "fog", "--severity", "2", "--split",
           "all", "--no-progress", check=True)
    rows = pq.read_table(ws_copy / "tables" / "corruptions.parquet").to_pylist()
    storage = {r["type"]: _json.loads(r["params"])["storage"] for r in rows}
    assert storage["gaussian_noise"] == {"format": "jpeg", "quality": 98, "subsampling": "444"}
    assert storage["fog"]["quality"] == 90



# -- 6. RefAtomNet as the authors built it ----------------------------------------------------------------------

def test_full_size_refatomnet_has_the_authors_parameter_count():
    torch = pytest.importorskip("torch")
    from refava.train.model import ModelConfig, RefAtomNet

    model = RefAtomNet(ModelConfig())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == pytest.approx(27.3e6, abs=0.05e6)
    assert model.visual.qkv.bias is None
    assert [m.out_features for m in model.visual.agent_mlp if hasattr(m, "out_features")] == [384, 3072]
    del torch


def test_with_caaf_off_the_agent_key_map_comes_from_the_raw_agents():
    torch = pytest.importorskip("torch")
    from refava.train.model import ModelConfig, RefAtomNet, fuse

    torch.manual_seed(0)
    model = RefAtomNet(ModelConfig(dim=32, tokens=8, agents=4, detections=6, text_dim=32, caaf=False, catf=True))
    block = model.visual
    visual = torch.randn(2, 8, 32)
    others = torch.randn(2, 4, 32)
    q, v, a_fused, g = block.maps(visual, fuse_a=lambda x: fuse(x, others, dim=-1), fuse_g=None)
    _, k, _ = block.qkv(block.norm1(visual)).chunk(3, dim=-1)
    raw = block.agent_mlp(q).mean(dim=1).view(2, 4, 32)
    expected = torch.softmax(block.alpha * raw @ k.transpose(1, 2), dim=-1)
    assert torch.allclose(g, expected)                              # CATF did not reach G
    assert not torch.allclose(a_fused, raw)                         # but the agents against the queries are fused
    _, _, a_plain, g_plain = block.maps(visual)
    assert torch.allclose(g, g_plain) and torch.allclose(a_plain, raw)


def test_the_location_stream_keeps_confident_person_detections_only(tmp_path):
    pytest.importorskip("torch")
    from refava.train.detections import load_detection_table

    csv = tmp_path / "det.csv"
    csv.write_text("video_id,keyframe_s,x1,y1,x2,y2,score\n"
                   "v,3,0.1,0.1,0.3,0.9,0.95\nv,3,0.4,0.1,0.6,0.9,0.40\nv,3,0.7,0.1,0.9,0.9,0.75\n")
    import torch

    person = torch.ones(5)
    for threshold, kept in ((0.0, 3), (0.7, 2), (0.9, 1)):
        table = load_detection_table(csv, min_score=threshold)
        table.k = 3
        tokens = table.tokens(["v"], [3], person)
        assert int((tokens[0, :, 4] != 0).sum()) == kept, threshold


def test_legacy_is_the_authors_aggregation():
    torch = pytest.importorskip("torch")
    from refava.train.model import ModelConfig, RefAtomNet

    torch.manual_seed(0)
    model = RefAtomNet(ModelConfig(dim=32, tokens=8, detections=6, text_dim=32, legacy=True)).eval()
    visual, text, mask = torch.randn(2, 8, 32), torch.randn(2, 5, 32), torch.ones(2, 5)
    det = torch.randn(2, 6, 36)
    det[:, 4:] = 0                                                     # two slots without a person
    captured = {}
    model.cls_head.register_forward_hook(lambda m, args, out: captured.setdefault("feature", args[0]))
    model(visual, text, mask, det)
    with torch.no_grad():
        projected = model.det_proj(det)
        projected[:, 4:] = 0                                           # the code zeroes them after the projection
        t_tokens = model.text_expand(((text * mask[..., None]).sum(1) / 5).unsqueeze(-1)).transpose(1, 2)
        t_out, g_t, a_t = model.text(t_tokens)
        l_out, g_l, a_l = model.loc(model.det_tokens(projected.transpose(1, 2)).transpose(1, 2))
        from refava.train.model import fuse
        q, v, a, g = model.visual.maps(visual, fuse_a=lambda x: fuse(x, a_t + a_l, dim=-1),
                                       fuse_g=lambda x: fuse(x, g_t + g_l, dim=-1))
        v_out = model.visual.finish(visual, q, v, a, g)
        expected = v_out.mean(1) + t_out.mean(1) + projected.mean(1)   # mean over all 100 (here 6) slots
    assert torch.allclose(captured["feature"], expected, atol=1e-6)


def test_test_time_clips_average_the_logits(monkeypatch):
    torch = pytest.importorskip("torch")
    from refava.train.loop import clip_indices, predict
    from refava.train.model import ModelConfig, RefAtomNet

    assert len({tuple(clip_indices(90, 8, j, 11)) for j in range(11)}) == 11     # eleven different clips
    torch.manual_seed(0)
    model = RefAtomNet(ModelConfig(dim=32, tokens=8, detections=6, text_dim=32)).eval()
    feats = {"visual": torch.randn(3, 4, 8, 32), "text": torch.randn(3, 5, 32), "mask": torch.ones(3, 5),
             "det": torch.randn(3, 6, 36), "labels": torch.zeros(3, 80)}
    scores, _ = predict(model, feats)
    with torch.no_grad():
        logits = torch.stack([model(feats["visual"][:, j], feats["text"], feats["mask"], feats["det"])[0]
                              for j in range(4)]).mean(0)
    assert np.allclose(scores, torch.sigmoid(logits).numpy(), atol=1e-6)
