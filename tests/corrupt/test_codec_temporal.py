"""Codec and temporal corruptions (issue 28 item 2): they decode to the clip's shape, give the same bytes again,
and their measured degradation rises with severity (PSNR against the clean clip for the codec ones, which change
pixels; the mean temporal displacement of the frames shown for the temporal ones, which only move frames)."""
from __future__ import annotations

import numpy as np
import pytest

from refava.corrupt import clip_rng, corrupt_clip, corrupt_frames, resolve
from refava.corrupt.codec import CODEC
from refava.corrupt.temporal import TEMPORAL, disorder, order


def scene(n: int = 32, h: int = 96, w: int = 128, texture: float = 0.0) -> np.ndarray:
    """A moving gradient with a moving disc (and noise texture, for a stream with many bytes)."""
    yy, xx = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(0)
    out = []
    for t in range(n):
        img = np.stack([(xx * 2 + t * 3) % 256, (yy * 2) % 256, ((xx + yy) + t * 5) % 256], -1).astype(np.float32)
        img[(xx - 20 - t * 3) ** 2 + (yy - 30 - t) ** 2 < 150] = [240, 40, 40]
        img += rng.normal(0, texture, img.shape)
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return np.stack(out)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255 ** 2 / mse) if mse else 99.0


@pytest.mark.parametrize("kind", CODEC + TEMPORAL)
def test_decodes_to_the_clip_and_gives_the_same_bytes_again(kind):
    clip = scene(24, 48, 64, texture=8.0)
    outs = [corrupt_clip(clip, kind, s, clip_rng(3, "m___0902", f"{kind}_s{s}")) for s in (1, 5)]
    from refava.corrupt.codec import Encodes

    again = [corrupt_clip(clip, kind, s, clip_rng(3, "m___0902", f"{kind}_s{s}"), encodes=Encodes(keep=0))
             for s in (1, 5)]                                                  # encoded again, not kept
    for a, b in zip(outs, again):
        assert a.shape == clip.shape and a.dtype == np.uint8 and np.array_equal(a, b)
    assert not np.array_equal(outs[1], clip)                                   # severity 5 does something


def test_codec_degradation_rises_with_severity():
    clip = scene(32, 96, 128)
    crf = [psnr(clip, corrupt_clip(clip, "h264_crf", s, np.random.default_rng(0))) for s in range(1, 6)]
    assert all(a > b for a, b in zip(crf, crf[1:])), crf
    abr = [psnr(clip, corrupt_clip(clip, "h264_abr", s, np.random.default_rng(0))) for s in range(1, 6)]
    assert all(a >= b for a, b in zip(abr, abr[1:])) and abr[0] > abr[-1], abr
    # bit errors: with one generator for every rate the damaged bytes are nested (a higher rate damages a superset),
    # so the damage rises with severity clip by clip, not only on average
    textured = scene(32, 96, 128, texture=20.0)                                # enough bytes for bit errors
    for seed in range(3):
        errors = [psnr(textured, corrupt_clip(textured, "bit_error", s, clip_rng(seed, "c", "bits")))
                  for s in range(1, 6)]
        assert all(a >= b for a, b in zip(errors, errors[1:])) and errors[0] > errors[-1], (seed, errors)


def test_stored_frames_keep_the_codec_degradation():
    """As the stage stores them (JPEG at the clean frames' quality): PSNR against the stored clean clip still falls
    with severity (the codec's loss is not drowned by the storage's)."""
    from refava.corrupt.stage import _decode, encode_stored, storage_for

    clip = scene(32, 96, 128, texture=6.0)

    def stored(frames, kind, s):
        st = storage_for(resolve(kind, s), 90)
        return np.stack([_decode(encode_stored(f, st)) for f in frames])

    clean = stored(clip, "h264_crf", 1)
    for kind in ("h264_crf", "h264_abr"):
        values = [psnr(clean, stored(corrupt_clip(clip, kind, s, np.random.default_rng(0)), kind, s))
                  for s in range(1, 6)]
        assert all(a >= b for a, b in zip(values, values[1:])) and values[0] > values[-1] + 3, (kind, values)


def test_a_stream_full_of_bit_errors_still_decodes_to_every_frame():
    clip = scene(16, 48, 64, texture=20.0)
    from refava.corrupt import codec

    damaged = codec._bit_errors(codec._encode(list(clip), {"crf": "23"}), 50, np.random.default_rng(0))
    frames = codec._decode(damaged, len(clip), clip.shape[1:3])
    assert len(frames) == 16 and all(f.shape == clip.shape[1:] for f in frames)


@pytest.mark.parametrize("kind", TEMPORAL)
def test_temporal_disorder_rises_with_severity(kind):
    for n in (8, 32, 90):
        d = [np.mean([disorder(order(kind, s, n, np.random.default_rng(seed))) for seed in range(20)])
             for s in range(1, 6)]
        assert all(a <= b + 1e-9 for a, b in zip(d, d[1:])), (kind, n, d)
        assert d[-1] > d[0], (kind, n, d)
        if kind in ("jumble", "freeze"):      # every level a different corruption, even on 8 frames
            d = [np.mean([disorder(order(kind, s, n, np.random.default_rng(seed))) for seed in range(300)])
                 for s in range(1, 6)]
            assert all(a < b for a, b in zip(d, d[1:])), (kind, n, d)
        for s in range(1, 6):
            picks = order(kind, s, n, np.random.default_rng(0))
            assert len(picks) == n and all(0 <= p < n for p in picks)


def test_a_keyframe_of_another_size_moves_with_its_position():
    rng = np.random.default_rng(0)
    frames = [np.full((12, 16, 3), 10 * k, dtype=np.uint8) for k in range(8)]
    keyframe = np.full((24, 32, 3), 200, dtype=np.uint8)
    out = corrupt_frames(frames[:4] + [keyframe] + frames[4:], resolve("reverse", 1), rng)
    assert out[4].shape == keyframe.shape and not np.array_equal(out[4], keyframe)   # shows a moved frame, resized
    out = corrupt_frames(frames[:4] + [keyframe] + frames[4:], resolve("h264_crf", 1), rng)
    assert out[4].shape == keyframe.shape and abs(int(out[4].mean()) - 200) <= 3       # encoded alone


def test_the_stage_stores_them_and_a_rerun_writes_the_same_bytes(sample_workspace_template, tmp_path):
    import shutil
    import subprocess
    import sys

    ws = tmp_path / "ws"
    shutil.copytree(sample_workspace_template, ws)

    def refava(*args):
        proc = subprocess.run([sys.executable, "-m", "refava", *args], cwd=ws, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc

    refava("build-splits")
    args = ["corrupt", "--type", "h264_abr", "--type", "bit_error", "--type", "box_jumble", "--severity", "5",
            "--split", "test", "--no-progress"]
    said = refava(*args).stdout
    assert f"{ws / 'cache' / 'h264'} (" in said and "files" in said              # where the kept encodes went
    stores = sorted((ws / "frames" / "corrupted").rglob("*.parquet"))
    first = {p: p.read_bytes() for p in stores}
    assert {p.parent.name for p in stores} == {"h264_abr_s5", "bit_error_s5", "box_jumble_s5"}
    # the two codec settings shared each clip's reference encode: one kept encode per clip (and per keyframe
    # stored at its own size, encoded alone), none left half-written
    kept = sorted((ws / "cache" / "h264").rglob("*"))
    clips = {c for p in stores if p.parent.name == "bit_error_s5" for c in pq_clips(p)}
    assert len(clips) <= len([k for k in kept if k.suffix == ".h264"]) <= 2 * len(clips)
    assert all(k.is_dir() or k.suffix == ".h264" for k in kept)
    shutil.rmtree(ws / "frames" / "corrupted")
    refava(*args)                                                          # from the kept encodes
    assert {p: p.read_bytes() for p in sorted((ws / "frames" / "corrupted").rglob("*.parquet"))} == first
    assert sorted((ws / "cache" / "h264").rglob("*")) == kept
    shutil.rmtree(ws / "frames" / "corrupted")
    shutil.rmtree(ws / "cache" / "h264")
    refava(*args)                                                          # encoded afresh
    assert {p: p.read_bytes() for p in sorted((ws / "frames" / "corrupted").rglob("*.parquet"))} == first


def pq_clips(path):
    import pyarrow.parquet as pq

    return set(pq.read_table(path, columns=["clip_id"]).column("clip_id").to_pylist())


def test_a_clips_reference_encode_is_paid_once_and_gives_the_same_bytes_as_encoding_again(tmp_path):
    """h264_crf severity 1, h264_abr and bit_error share the clip's CRF-23 encode (codec.Encodes): kept on disk it
    is encoded once for all eleven settings, and every result equals the one encoded afresh."""
    from refava.corrupt import codec

    clip = scene(16, 48, 64, texture=20.0)
    settings = [("h264_crf", 1)] + [(k, s) for k in ("h264_abr", "bit_error") for s in range(1, 6)]
    cold = {}
    for kind, s in settings:                      # a fresh memory-less cache each time: nothing reused
        cold[kind, s] = codec.recode(list(clip), kind, s, clip_rng(0, "c", f"{kind}_s{s}"), codec.Encodes(keep=0))
    shared = codec.Encodes(tmp_path / "h264", keep=0)
    for kind, s in settings:
        out = codec.recode(list(clip), kind, s, clip_rng(0, "c", f"{kind}_s{s}"), shared)
        assert all(np.array_equal(a, b) for a, b in zip(out, cold[kind, s])), (kind, s)
    assert (shared.encoded, shared.reused) == (1, len(settings) - 1)
    assert len(list((tmp_path / "h264").rglob("*.h264"))) == 1
    # another process's view of the folder: read, not encoded
    again = codec.Encodes(tmp_path / "h264", keep=0)
    codec.recode(list(clip), "bit_error", 5, clip_rng(0, "c", "x"), again)
    assert (again.encoded, again.reused) == (0, 1)


@pytest.mark.parametrize("damage", ["truncated", "flipped", "empty", "other_file"])
def test_a_damaged_kept_encode_is_encoded_again_and_rewritten(tmp_path, damage):
    from refava.corrupt import codec

    clip = scene(8, 48, 64, texture=20.0)
    first = codec.Encodes(tmp_path, keep=0)
    expected = codec.recode(list(clip), "bit_error", 5, clip_rng(1, "c", "b"), first)
    (entry,) = list(tmp_path.rglob("*.h264"))
    good = entry.read_bytes()
    bad = {"truncated": good[:len(good) // 2], "flipped": good[:100] + bytes([good[100] ^ 1]) + good[101:],
           "empty": b"", "other_file": b"refava-h264 1\n" + b"\0" * 64}[damage]
    entry.write_bytes(bad)
    second = codec.Encodes(tmp_path, keep=0)
    out = codec.recode(list(clip), "bit_error", 5, clip_rng(1, "c", "b"), second)
    assert all(np.array_equal(a, b) for a, b in zip(out, expected))
    assert (second.encoded, second.reused) == (1, 0) and entry.read_bytes() == good
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p != entry]            # no temporary left


def test_the_kept_encodes_key_covers_the_frames_and_the_encoder_settings():
    from refava.corrupt import codec

    clip = list(scene(4, 16, 16, texture=5.0))
    base = codec.Encodes.key(clip, {"crf": "23"})
    touched = [f.copy() for f in clip]
    touched[3][15, 15, 2] ^= 1                                             # one bit of the last frame
    assert codec.Encodes.key(touched, {"crf": "23"}) != base
    assert codec.Encodes.key(clip, {"crf": "24"}) != base
    assert codec.Encodes.key(clip[:3], {"crf": "23"}) != base
    assert codec.Encodes.key([f.reshape(8, 32, 3) for f in clip], {"crf": "23"}) != base   # same bytes, other size
    assert codec.Encodes.key([f.copy() for f in clip], {"crf": "23"}) == base


def test_a_cache_folder_that_is_a_file_is_refused_naming_it_and_nothing_is_lost(sample_workspace_template, tmp_path):
    import shutil
    import subprocess
    import sys

    ws = tmp_path / "ws"
    shutil.copytree(sample_workspace_template, ws)

    def refava(*args):
        return subprocess.run([sys.executable, "-m", "refava", *args], cwd=ws, capture_output=True, text=True)

    assert refava("build-splits").returncode == 0
    args = ["corrupt", "--type", "fog", "--type", "bit_error", "--severity", "2", "--split", "test", "--no-progress"]
    (ws / "cache").mkdir(exist_ok=True)
    (ws / "cache" / "h264").write_text("a user's file, not a folder\n")
    proc = refava(*args)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert str(ws / "cache" / "h264") in proc.stderr and "must be a folder" in proc.stderr, proc.stderr
    assert (ws / "cache" / "h264").read_text() == "a user's file, not a folder\n"
    assert not list((ws / "frames" / "corrupted").glob("bit_error_s2/*.parquet"))
    assert not [p for p in ws.rglob("*") if p.name.startswith(".") and p.name.endswith(".tmp")]
    (ws / "cache" / "h264").unlink()
    assert refava(*args).returncode == 0
    assert list((ws / "frames" / "corrupted").glob("bit_error_s2/*.parquet"))
