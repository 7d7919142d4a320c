"""Ingest: frame-accurate clips in every container and frame rate, bad input counted and skipped, resumable."""
from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from factories import make_indexed_video, read_index
from refava.errors import StrictModeError
from refava.ingest import ClipSettings, grid_time, ingest
from refava.records import Clips, Instances, Movies
from refava.video import decode_jpeg, iter_frames

W, H = 160, 120


def write_csv(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join(rows) + "\n")
    return path


def people_rows(video_id: str, timestamps, people=2) -> list[str]:
    rows = []
    for t in timestamps:
        for p in range(people):
            x = 0.05 + 0.3 * p
            rows.append(f"{video_id},{t:04d},{x:.3f},0.100,{x + 0.25:.3f},0.900,{12 if p else 14},{p}")
    return rows


def frames_of(ws: Path, video_id: str) -> list[dict]:
    return pq.read_table(ws / "frames" / "clean" / f"{video_id}.parquet").to_pylist()


def nearest(times: list[Fraction], target: Fraction) -> int:
    return min(range(len(times)), key=lambda i: (abs(times[i] - target), i))


def quiet(*_):
    pass


VFR_TIMES = [Fraction(0)]
for _step in [2, 1, 3, 2, 2, 1, 1, 4, 3, 2] * 30:
    VFR_TIMES.append(VFR_TIMES[-1] + Fraction(_step, 60))  # 24 fps on average, from 60 to 15 fps


@pytest.mark.parametrize("name, fps, pts", [
    ("h264_30.mp4", Fraction(30), None),
    ("h264_2997.mp4", Fraction(30000, 1001), None),
    ("h264_25.mkv", Fraction(25), None),
    ("h264_2997.mkv", Fraction(30000, 1001), None),
    ("vp9_25.webm", Fraction(25), None),
    ("vp9_30.webm", Fraction(30), None),
    ("mpeg4_bframes_25.avi", Fraction(25), None),
    ("mpeg4_bframes_2997.avi", Fraction(30000, 1001), None),
    ("vfr.mkv", Fraction(24), VFR_TIMES),
])
def test_every_stored_frame_is_the_nearest_decoded_frame(tmp_path, name, fps, pts):
    movies = tmp_path / "movies"
    video_id = name.replace(".", "-")
    path = movies / f"{video_id}{Path(name).suffix}"
    n = len(pts) if pts else int(7 * fps)
    make_indexed_video(path, n, fps=fps, pts_s=pts, time_base=Fraction(1, 1000) if pts else None)
    decoded = list(iter_frames(path))
    assert [read_index(f.to_rgb()) for f in decoded] == list(range(n))
    times = [f.time for f in decoded]
    stamps = [2, 3, 4, 5] if times[-1] > Fraction(13, 2) else [2, 3, 4]
    csv = write_csv(tmp_path / "gt.csv", people_rows(video_id, stamps))
    result = ingest(tmp_path / "ws", movies, [csv], settings=ClipSettings(frames=90, short_side=0),
                    workers=1, progress=False, log=quiet)
    assert not result.problems, result.problems.summary_lines()
    rows = frames_of(tmp_path / "ws", video_id)
    assert len(rows) == len(stamps) * 91
    for row in rows:
        timestamp = int(row["clip_id"].rsplit("___", 1)[1])
        target = grid_time(timestamp, row["grid_index"])
        assert row["target_s"] == pytest.approx(float(target))
        expected = nearest(times, target)
        got = read_index(decode_jpeg(row["jpeg"]), W, H)
        assert got == expected, f"{row['clip_id']} grid {row['grid_index']}: frame {got}, nearest is {expected}"
        assert row["pts_s"] == pytest.approx(float(times[expected]))
    keyframes = [r for r in rows if r["role"] == "keyframe"]
    assert [r["grid_index"] for r in keyframes] == [45] * len(stamps)


def test_default_sampling_and_sizes(tmp_path):
    movies = tmp_path / "movies"
    make_indexed_video(movies / "vid.mp4", 240, fps=30, width=320, height=240)
    csv = write_csv(tmp_path / "gt.csv", people_rows("vid", [2, 3, 4, 5], people=3))
    result = ingest(tmp_path / "ws", movies, [csv], settings=ClipSettings(frames=8, short_side=120),
                    workers=1, progress=False, log=quiet)
    assert not result.problems
    assert len(result.clips) == 4 and len(result.instances) == 12
    clip = result.clips["vid___0003"]
    assert (clip.n_people, clip.n_frames) == (3, 8)
    assert (clip.keyframe_width, clip.keyframe_height) == (320, 240)
    assert (clip.frame_width, clip.frame_height) == (160, 120)
    assert clip.window_start_s == 1.5 and clip.window_end_s == 4.5
    rows = [r for r in frames_of(tmp_path / "ws", "vid") if r["clip_id"] == "vid___0003"]
    assert [r["grid_index"] for r in rows if r["role"] == "sampled"] == [5, 16, 28, 39, 50, 61, 73, 84]
    # frame 90 * 0 + 45 is the keyframe: movie time 3.0 s = frame 90
    key = next(r for r in rows if r["role"] == "keyframe")
    assert read_index(decode_jpeg(key["jpeg"])) == 90
    sampled = [read_index(decode_jpeg(r["jpeg"]), 320, 240) for r in rows if r["role"] == "sampled"]
    assert sampled == [45 + k for k in (5, 16, 28, 39, 50, 61, 73, 84)]
    # tables on disk agree with the returned result and join by key
    ws = tmp_path / "ws"
    assert Clips.from_parquet(ws / "tables" / "clips.parquet") == result.clips
    instances = Instances.from_parquet(ws / "tables" / "instances.parquet")
    assert {i.clip_id for i in instances} == set(result.clips.ids())
    movie = Movies.from_parquet(ws / "tables" / "movies.parquet")["vid"]
    assert (movie.codec, movie.width, movie.height, movie.frame_count) == ("h264", 320, 240, 240)


@pytest.fixture
def two_movies(tmp_path):
    movies = tmp_path / "movies"
    make_indexed_video(movies / "good.mkv", 240, fps=30)
    make_indexed_video(movies / "other.mp4", 240, fps=25)
    rows = people_rows("good", [2, 3, 4, 5]) + people_rows("other", [2, 3, 4, 5, 6])
    return movies, rows


def run(tmp_path, movies, rows, **kw):
    csv = write_csv(tmp_path / "gt.csv", rows)
    kw.setdefault("workers", 1)
    return ingest(tmp_path / "ws", movies, [csv], progress=False, log=quiet, **kw)


def report(tmp_path) -> dict:
    return json.loads((tmp_path / "ws" / "reports" / "ingest.json").read_text())


def assert_good_part_kept(result, n_good_clips=4):
    assert len([c for c in result.clips if c.video_id == "good"]) == n_good_clips
    assert len([i for i in result.instances if i.video_id == "good"]) == 2 * n_good_clips


def test_missing_movie_is_counted_and_the_rest_ingested(tmp_path, two_movies):
    movies, rows = two_movies
    result = run(tmp_path, movies, rows + people_rows("absent", [2, 3]))
    assert result.problems.counts() == {"missing_movie": 1}
    assert result.skipped_instances == {"missing_movie": 4}
    assert "absent" in result.problems.problems[0].message()
    assert_good_part_kept(result)
    assert report(tmp_path)["problem_counts"] == {"missing_movie": 1}


def test_unreadable_movie(tmp_path, two_movies):
    movies, rows = two_movies
    (movies / "other.mp4").write_bytes(b"this is not a video" * 100)
    result = run(tmp_path, movies, rows)
    assert result.problems.counts() == {"unreadable_movie": 1}
    assert "other.mp4" in result.problems.problems[0].message()
    assert_good_part_kept(result)
    assert "other" not in result.movies


def test_truncated_movie_keeps_the_clips_before_the_cut(tmp_path):
    movies = tmp_path / "movies"
    make_indexed_video(movies / "good.mkv", 240, fps=30)
    cut = movies / "cut.mkv"
    make_indexed_video(cut, 450, fps=30)  # 15 s
    data = cut.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    rows = people_rows("good", [2, 3, 4, 5]) + people_rows("cut", [2, 3, 12, 13])
    result = run(tmp_path, movies, rows)
    counts = result.problems.counts()
    assert counts.get("truncated_movie") == 1
    assert counts.get("keyframe_past_end") == 2
    assert sorted(c.clip_id for c in result.clips if c.video_id == "cut") == ["cut___0002", "cut___0003"]
    assert_good_part_kept(result)


def test_keyframe_past_the_end_and_before_the_start(tmp_path, two_movies):
    movies, rows = two_movies
    result = run(tmp_path, movies, rows + people_rows("good", [7, 20]) + people_rows("good", [1], people=1))
    counts = result.problems.counts()
    assert counts == {"keyframe_past_end": 2, "keyframe_before_start": 1}
    messages = " ".join(p.message() for p in result.problems.problems)
    assert "good___0007" in messages and "good___0020" in messages and "good___0001" in messages
    assert_good_part_kept(result)


@pytest.mark.parametrize("bad_row, kind", [
    ("good,0003,0.7,0.1,0.2,0.9,12,5", "invalid_box"),
    ("good,0003,0.1,0.1,0.2,1.9,12,5", "invalid_box"),
    ("good,0003,0.1,0.1,0.2,0.9,99,5", "unknown_action"),
    ("good,0003,0.050,0.100,0.300,0.900,14,0", "duplicate_row"),
    ("../../escape,0003,0.1,0.1,0.2,0.9,12,5", "unsafe_id"),
    ("good,0003,0.1,0.1", "malformed_row"),
])
def test_bad_rows_through_ingest(tmp_path, two_movies, bad_row, kind):
    movies, rows = two_movies
    result = run(tmp_path, movies, rows + [bad_row])
    assert result.problems.counts() == {kind: 1}
    assert result.problems.problems[0].where.startswith("gt.csv line")
    assert_good_part_kept(result)
    assert len(result.instances) == 18
    assert not (tmp_path / "escape").exists() and not (tmp_path / "ws" / "frames" / "escape.parquet").exists()
    assert report(tmp_path)["problems"][0]["kind"] == kind


def test_excluded_timestamps_are_dropped_and_counted(tmp_path, two_movies):
    movies, rows = two_movies
    excluded = tmp_path / "excluded.csv"
    excluded.write_text("good,0003\nother,0002\n")
    result = run(tmp_path, movies, rows, excluded_files=[excluded])
    assert (result.excluded_rows, result.excluded_keyframes) == (4, 2)
    assert "good___0003" not in result.clips and "other___0002" not in result.clips
    assert not result.problems
    assert report(tmp_path)["counts"]["excluded_rows"] == 4


def test_strict_fails_after_writing_the_good_part(tmp_path, two_movies):
    movies, rows = two_movies
    with pytest.raises(StrictModeError, match="invalid_box"):
        run(tmp_path, movies, rows + ["good,0003,0.7,0.1,0.2,0.9,12,5"], strict=True)
    assert len(Clips.from_parquet(tmp_path / "ws" / "tables" / "clips.parquet")) == 9


def snapshot(ws: Path) -> dict[str, bytes]:
    return {str(p.relative_to(ws)): p.read_bytes() for p in sorted(ws.rglob("*.parquet"))}


def test_rerun_reuses_movies_and_gives_identical_bytes(tmp_path, two_movies):
    movies, rows = two_movies
    first = run(tmp_path, movies, rows)
    before = snapshot(tmp_path / "ws")
    second = run(tmp_path, movies, rows)
    assert (first.reused_movies, second.reused_movies) == (0, 2)
    assert snapshot(tmp_path / "ws") == before


def test_a_killed_run_resumes_to_the_same_bytes(tmp_path, two_movies, monkeypatch):
    import refava.ingest.stage as ingest_mod

    movies, rows = two_movies
    clean = tmp_path / "clean"
    clean.mkdir()
    run(clean, movies, rows)

    real = ingest_mod.ingest_movie
    calls = []

    def dies_on_second_movie(video_id, *args, **kwargs):
        calls.append(video_id)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(video_id, *args, **kwargs)

    monkeypatch.setattr(ingest_mod, "ingest_movie", dies_on_second_movie)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, movies, rows)
    frames = tmp_path / "ws" / "frames" / "clean"
    assert [p.name for p in frames.iterdir()] == ["good.parquet"]  # finished work kept, no temporary files
    monkeypatch.setattr(ingest_mod, "ingest_movie", real)
    resumed = run(tmp_path, movies, rows)
    assert resumed.reused_movies == 1
    assert snapshot(tmp_path / "ws") == snapshot(clean / "ws")


def test_parallel_and_serial_runs_agree(tmp_path, two_movies):
    movies, rows = two_movies
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    run(tmp_path / "a", movies, rows, workers=1)
    run(tmp_path / "b", movies, rows, workers=2)
    assert snapshot(tmp_path / "a" / "ws") == snapshot(tmp_path / "b" / "ws")


def test_a_changed_movie_is_redone(tmp_path, two_movies):
    movies, rows = two_movies
    run(tmp_path, movies, rows)
    make_indexed_video(movies / "other.mp4", 200, fps=25)
    again = run(tmp_path, movies, rows)
    assert again.reused_movies == 1
    assert again.movies["other"].frame_count == 200


def test_sample_corpus_ingests_cleanly(sample_workspace_template):
    report_data = json.loads((sample_workspace_template / "reports" / "ingest.json").read_text())
    assert report_data["problem_counts"] == {}
    assert report_data["counts"]["excluded_keyframes"] == 2
    clips = Clips.from_parquet(sample_workspace_template / "tables" / "clips.parquet")
    instances = Instances.from_parquet(sample_workspace_template / "tables" / "instances.parquet")
    assert len(clips) == 86 and len(instances) == sum(c.n_people for c in clips)
    movies = Movies.from_parquet(sample_workspace_template / "tables" / "movies.parquet")
    assert {m.codec for m in movies} == {"h264", "vp9"}
    assert {round(m.fps, 2) for m in movies} == {25.0, 29.97, 30.0}


@pytest.mark.parametrize("name, fps, pts", [
    ("bframes.mp4", Fraction(30), None),
    ("bframes.mkv", Fraction(30000, 1001), None),
    ("bframes25.mp4", Fraction(25), None),
    ("vfr.mkv", Fraction(24), VFR_TIMES),
])
def test_skipping_unneeded_frames_changes_no_output_byte(tmp_path, name, fps, pts):
    """Non-reference frames that cannot be nearest to a target are not decoded; the stored frames are the same."""
    from refava.ingest import ingest_movie
    from refava.video import decode_from, open_for_decoding

    path = tmp_path / "movies" / name
    n = len(pts) if pts else int(9 * fps)
    make_indexed_video(path, n, fps=fps, pts_s=pts, time_base=Fraction(1, 1000) if pts else None)
    stamps = [(2, 1), (3, 2), (4, 1), (6, 1)]
    a = ingest_movie("m", path, stamps, ClipSettings(frames=8), tmp_path / "a", skip_frames=True)
    b = ingest_movie("m", path, stamps, ClipSettings(frames=8), tmp_path / "b", skip_frames=False)
    assert a.clips == b.clips and not a.problems
    rows_a, rows_b = frames_of(tmp_path / "a", "m"), frames_of(tmp_path / "b", "m")
    assert rows_a == rows_b
    # and frames really were skipped (the files have B-frames, and most frames are not near a target)
    container, stream = open_for_decoding(path)
    targets = sorted({grid_time(t, k) for t, _ in stamps for k in [45, *ClipSettings(frames=8).grid_indices()]})
    decoded = sum(1 for _ in decode_from(container, stream, None, path=path, targets=targets))
    container.close()
    assert decoded < n
