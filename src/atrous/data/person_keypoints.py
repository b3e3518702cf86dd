"""The 17 COCO person keypoints: names, the left/right swap of a horizontal flip, the OKS
sigmas, and PersonLab's kinematic tree (facts shared by data, models, tasks and metrics)."""

from __future__ import annotations

KEYPOINT_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
"""COCO's keypoint order (``person_keypoints_*.json``, category "person")."""

NUM_KEYPOINTS = len(KEYPOINT_NAMES)

FLIP_PERMUTATION = (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)
"""Index ``i`` of a flipped image's keypoints is keypoint ``FLIP_PERMUTATION[i]`` of the
original (left and right swap places)."""

OKS_SIGMAS = (
    0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72,
    0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89,
)  # fmt: skip
"""Per-keypoint OKS sigmas x 10, as pycocotools ``COCOeval`` (``Params.kpt_oks_sigmas``)."""

TREE_EDGES = (
    (0, 1), (0, 2), (1, 3), (2, 4), (0, 5), (0, 6), (5, 7), (7, 9), (6, 8), (8, 10),
    (5, 11), (11, 13), (13, 15), (6, 12), (12, 14), (14, 16),
)  # fmt: skip
"""PersonLab's kinematic tree in COCO indices, rooted at the nose, as (parent, child): the 16
edges its mid-range offsets follow (translated from the KerasPersonLab port's order)."""

SKELETON = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7),
    (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)  # fmt: skip
"""COCO's drawing skeleton (the annotation file's ``skeleton``, 0-based), for pictures."""
