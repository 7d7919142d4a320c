"""Readers for the AVA annotation files.

- ``load_ava_csv``: ground-truth csv (video_id,timestamp,x1,y1,x2,y2,action_id,person_id; one row per box+action)
- ``group_instances``: rows -> one :class:`~refava.records.Instance` per (video, keyframe second, person)
- ``load_ava_results_csv``: detection results csv (last column a score)
- ``load_label_map``: the 80-class ``label {}`` pbtxt, the 60-class ``item {}`` pbtxt, or the csv form
- ``load_excluded_timestamps``, ``load_file_list``, ``load_proposals`` (pickle, loaded without running code)
"""
from .csv import AvaRow, ResultRow, group_instances, load_ava_csv, load_ava_results_csv
from .labelmap import ActionClass, ACTION_GROUPS, default_label_map, load_label_map, save_label_map_pbtxt
from .lists import load_excluded_timestamps, load_file_list
from .proposals import load_proposals

__all__ = [
    "AvaRow", "ResultRow", "group_instances", "load_ava_csv", "load_ava_results_csv",
    "ActionClass", "ACTION_GROUPS", "default_label_map", "load_label_map", "save_label_map_pbtxt",
    "load_excluded_timestamps", "load_file_list", "load_proposals",
]
