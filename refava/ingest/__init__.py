"""``refava ingest``: AVA movies + annotation files -> movies, instances and clips tables, and per-movie frames.

A clip is the window [t - 1.5 s, t + 1.5 s) around AVA keyframe t (seconds of the full movie): a 90-frame grid
``t - 1.5 + k / 30`` (k = 0..89; the keyframe is k = 45).  Ingest stores the keyframe (full size unless
``keyframe_short_side``) and ``frames`` grid frames sampled uniformly (k = floor((i + 0.5) * 90 / frames)),
shrunk to ``short_side``, as JPEG.  For every target time the decoded frame whose presentation time is nearest
is chosen (ties go to the earlier frame).

Each movie is decoded once, sequentially, in timestamp order (one seek to the first window, and one more only
across a gap of more than ``GAP_S`` seconds); movies run in parallel processes.  A movie's frames are written
to ``frames/clean/<video_id>.parquet`` atomically, with the movie's results in the file's metadata, so a rerun
skips finished movies and assembles byte-identical tables.  Bad input is counted, reported and skipped.

The package: ``settings`` (the clip grid), ``movie`` (one movie's frame store, in named steps), ``encode`` and
``pool`` (JPEG encoding; ``jpeg_worker`` is its idle-priority helper process), ``stage`` (the whole stage).
"""
from __future__ import annotations

from .movie import (FAILED_SUFFIX, FRAMES_DIR, GAP_S, MOVIE_EXTENSIONS, MovieResult, completion_record, find_movie,
                    ingest_movie, movie_files)
from .settings import ClipSettings, grid_time
from .stage import IngestResult, ShardResult, ingest, ingest_provenance, load_annotations

__all__ = ["ClipSettings", "FAILED_SUFFIX", "FRAMES_DIR", "GAP_S", "IngestResult", "MOVIE_EXTENSIONS", "MovieResult",
           "ShardResult", "completion_record", "find_movie", "grid_time", "ingest", "ingest_movie",
           "ingest_provenance", "load_annotations", "movie_files"]
