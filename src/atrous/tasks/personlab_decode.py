"""PersonLab's decoding (Papandreou et al., ECCV 2018, Sec. 3.1-3.4): Hough voting of the
heatmaps along the short-range offsets, a greedy decoder that starts a person at the most
confident unclaimed keypoint and walks the kinematic tree along the mid-range offsets,
expected-OKS keypoint scores with a soft keypoint NMS for the person score, and person masks
by the long-range-offset embedding.

Fields are one image's, in :func:`atrous.tasks.personlab_targets.encode`'s layout, with the
heatmap and the segmentation as probabilities.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from ..data.person_keypoints import OKS_SIGMAS, TREE_EDGES
from .personlab_targets import RADIUS, _grid, directed_edges

PEAK_THRESHOLD = 0.004
"""Hough-score threshold of a seed, on the map normalised by pi R^2 (the KerasPersonLab
port's value, as read in it; the paper's: recalled, unverified)."""
NMS_RADIUS = 10.0
"""A seed within r = 10 px of the same keypoint of a person already found is dropped, and a
keypoint within it of a higher-scoring person's is not counted in the person score (paper,
Sec. 3.2)."""
SEG_THRESHOLD = 0.5
"""Pixels whose segmentation probability exceeds this are assigned to people (recalled,
unverified)."""
MASK_THRESHOLD = 0.25
"""A pixel joins the nearest person when its normalised embedding distance is under t = 0.25
(recalled, unverified; the KerasPersonLab port's value too)."""
VOTE_MIN = 0.01
"""Heatmap probability under which a pixel does not vote (atrous's shortcut, see
:func:`hough_votes`)."""
MASK_MIN_SCORE = 0.1
"""Only people scoring at least this take person pixels (atrous's choice, as tfjs-models
body-pix assigns pixels only to poses above a score threshold): without it the many faint
people of stray seeds take the pixels of the real ones (the demo's mask AP: 0.2% without,
16% with; benchmarks/results/personlab.md)."""
SNAP_STEPS = 2
"""After each mid-range step the keypoint is moved by its short-range offset this many times
(tfjs-models body-pix's decoder, as read in it)."""


def hough_votes(
    heatmap: Tensor, short: Tensor, radius: float = RADIUS, *, vote_min: float = VOTE_MIN
) -> Tensor:
    """``h_k(x) = 1 / (pi R^2) sum_i p_k(x_i) B(x_i + S_k(x_i) - x)`` (Sec. 3.1): every pixel
    casts its heatmap probability at the point its short-range offset names, split bilinearly
    among the four pixels around it; ``[K, H, W]`` from ``heatmap`` ``[K,H,W]`` and ``short``
    ``[K,2,H,W]``. One scatter-add over the voting pixels of every keypoint type at once; pixels
    under ``vote_min`` do not vote (atrous's shortcut: each such vote is under 1% of a pixel's,
    and skipping them makes voting on an 801 x 801 image about 20x cheaper)."""
    k, h, w = heatmap.shape
    p = heatmap.float().reshape(-1)
    voters = (p > vote_min).nonzero().squeeze(1)
    channel, pixel = voters // (h * w), voters % (h * w)
    row, col = pixel // w, pixel % w
    offsets = short.float().permute(0, 2, 3, 1).reshape(-1, 2)[voters]  # [V, 2] (x, y)
    x, y = col + offsets[:, 0], row + offsets[:, 1]
    x0, y0 = x.floor(), y.floor()
    fx, fy = x - x0, y - y0
    weight = p[voters]
    votes = torch.zeros(k * h * w + 1, device=heatmap.device)  # the last cell takes the outside
    for dx, dy, share in (
        (0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)),
        (0, 1, (1 - fx) * fy), (1, 1, fx * fy),
    ):  # fmt: skip
        xi, yi = (x0 + dx).long(), (y0 + dy).long()
        inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
        index = torch.where(inside, (channel * h + yi) * w + xi, k * h * w)
        votes.index_add_(0, index, weight * share)
    return votes[:-1].view(k, h, w) / (math.pi * radius**2)


def find_seeds(
    votes: Tensor, threshold: float = PEAK_THRESHOLD
) -> list[tuple[float, int, int, int]]:
    """``(score, keypoint, col, row)`` of every 3x3 local maximum of the Hough maps above
    ``threshold``, highest score first (the greedy decoder's priority queue, Sec. 3.2)."""
    pooled = F.max_pool2d(votes[None], 3, stride=1, padding=1)[0]
    keep = (votes == pooled) & (votes > threshold)
    k, row, col = keep.nonzero(as_tuple=True)
    scores = votes[k, row, col]
    order = torch.argsort(scores, descending=True, stable=True)
    return list(
        zip(
            scores[order].tolist(), k[order].tolist(), col[order].tolist(), row[order].tolist(),
            strict=True,
        )
    )  # fmt: skip


def _bilinear(field: np.ndarray, x: float, y: float) -> np.ndarray:
    """``field`` ``[..., H, W]`` at the point ``(x, y)``, bilinearly, clamped to the image."""
    h, w = field.shape[-2:]
    x, y = min(max(x, 0.0), w - 1.0), min(max(y, 0.0), h - 1.0)
    x0, y0 = min(int(x), w - 2) if w > 1 else 0, min(int(y), h - 2) if h > 1 else 0
    fx, fy = x - x0, y - y0
    x1, y1 = min(x0 + 1, w - 1), min(y0 + 1, h - 1)
    return (
        field[..., y0, x0] * (1 - fx) * (1 - fy) + field[..., y0, x1] * fx * (1 - fy)
        + field[..., y1, x0] * (1 - fx) * fy + field[..., y1, x1] * fx * fy
    )  # fmt: skip


def group_keypoints(
    fields: dict[str, Tensor],
    votes: Tensor,
    *,
    edges: Sequence[tuple[int, int]] = TREE_EDGES,
    threshold: float = PEAK_THRESHOLD,
    nms_radius: float = NMS_RADIUS,
    snap_steps: int = SNAP_STEPS,
    max_people: int | None = None,
) -> list[np.ndarray]:
    """People as ``[K, 3]`` arrays (x, y, heatmap probability): seeds popped from one priority
    queue; a seed within ``nms_radius`` of the same keypoint of a person already found is
    dropped, otherwise it starts a person whose other keypoints follow the tree breadth-first,
    ``y_l = y_k + M_kl(y_k)``, each then snapped by its short-range offset (Sec. 3.2).

    Fields with a ``mid_weight`` (:func:`~.personlab_targets.encode`'s) say where a mid-range
    offset is defined: a walk does not cross an edge to a keypoint that was not labelled, and
    the keypoints it then cannot reach are read from the long-range offsets of the person's
    pixels instead (atrous's addition; a network's offsets are defined everywhere, so on its
    fields the walk is the paper's)."""
    heatmap = fields["heatmap"].float().cpu().numpy()
    short = fields["short"].float().cpu().numpy()
    mid = fields["mid"].float().cpu().numpy()
    known = fields.get("mid_weight")
    known = None if known is None else known.float().cpu().numpy()
    k = heatmap.shape[0]
    directed = directed_edges(edges)
    neighbours: dict[int, list[tuple[int, int]]] = {i: [] for i in range(k)}
    for channel, (a, b) in enumerate(directed):
        neighbours[a].append((channel, b))
    queue = [(-score, kp, col, row) for score, kp, col, row in find_seeds(votes, threshold)]
    heapq.heapify(queue)
    people: list[np.ndarray] = []
    found = np.zeros((0, k, 2))
    embedding: tuple[np.ndarray, np.ndarray | None] | None = None
    while queue and (max_people is None or len(people) < max_people):
        _, kp, col, row = heapq.heappop(queue)
        x, y = (float(col), float(row)) + short[kp, :, row, col]
        if len(people) and (np.hypot(*(found[:, kp] - (x, y)).T) <= nms_radius).any():
            continue
        person = np.full((k, 3), np.nan)
        person[kp] = (x, y, _bilinear(heatmap[kp], x, y))
        frontier = [kp]
        while frontier:
            a = frontier.pop(0)
            for channel, b in neighbours[a]:
                if not np.isnan(person[b, 0]):
                    continue
                if known is not None and _bilinear(known[channel], *person[a, :2]) < 0.5:
                    continue  # no mid-range offset was defined along this edge here
                point = person[a, :2] + _bilinear(mid[channel], *person[a, :2])
                for _ in range(snap_steps):
                    point = point + _bilinear(short[b], *point)
                person[b] = (*point, _bilinear(heatmap[b], *point))
                frontier.append(b)
        if np.isnan(person[:, 0]).any():
            embedding = embedding or _embedding(fields)
            _fill_from_long(person, kp, embedding, heatmap, short, nms_radius, snap_steps)
        person[np.isnan(person)] = 0.0  # not reached (a forest's other trees, no long offsets)
        people.append(person)
        found = np.concatenate([found, person[None, :, :2]])
    return people


def _embedding(fields: dict[str, Tensor]) -> tuple[np.ndarray, np.ndarray | None]:
    """``x + L_k(x)`` ``[K, 2, P]`` of the person pixels (segmentation above 0.5), and where
    the long-range offsets are defined ``[K, P]`` (from a ``long_weight``, else None)."""
    seg = fields["seg"].float().cpu().numpy()
    rows, cols = np.nonzero(seg > SEG_THRESHOLD)
    long = fields["long"].float().cpu().numpy()[:, :, rows, cols]
    weight = fields.get("long_weight")
    defined = None if weight is None else weight.float().cpu().numpy()[:, rows, cols] > 0.5
    return long + np.stack([cols, rows])[None].astype(np.float32), defined


def _fill_from_long(
    person: np.ndarray,
    seed: int,
    embedding: tuple[np.ndarray, np.ndarray | None],
    heatmap: np.ndarray,
    short: np.ndarray,
    radius: float,
    snap_steps: int,
) -> None:
    """The keypoints a walk did not reach (NaN), in place: the median of ``x + L_b(x)`` over the
    person's pixels (those whose seed-type embedding lies within ``radius`` of the seed), then
    snapped by the short-range offsets."""
    points, defined = embedding
    if points.shape[-1] == 0:
        return
    own = np.hypot(*(points[seed] - person[seed, :2, None])) <= radius
    if defined is not None:
        own &= defined[seed]
    for b in np.nonzero(np.isnan(person[:, 0]))[0]:
        chosen = own if defined is None else own & defined[b]
        if not chosen.any():
            continue
        point = np.median(points[b][:, chosen], axis=1)
        for _ in range(snap_steps):
            point = point + _bilinear(short[b], *point)
        person[b] = (*point, _bilinear(heatmap[b], *point))


def person_masks(
    fields: dict[str, Tensor],
    people: Sequence[np.ndarray | None],
    *,
    seg_threshold: float = SEG_THRESHOLD,
    mask_threshold: float = MASK_THRESHOLD,
    radius: float = RADIUS,
) -> Tensor:
    """Bool ``[J, H, W]`` masks: each pixel with segmentation above ``seg_threshold`` joins the
    person ``j`` with the least ``D = sum_k p_jk |x + L_k(x) - y_jk| / (lambda_j sum_k p_jk)``
    if ``D < mask_threshold`` (Sec. 3.4; argmin, not the argmax of the KerasPersonLab port).
    ``lambda_j``: the square root of the area of the box of the person's keypoints, at least
    ``radius`` (recalled, unverified: the paper's person scale is not known before its mask).
    A ``None`` person takes no pixels."""
    seg = fields["seg"].float()
    h, w = seg.shape
    masks = torch.zeros(len(people), h, w, dtype=torch.bool, device=seg.device)
    candidates = (seg > seg_threshold).reshape(-1).nonzero().squeeze(1)
    if not people or candidates.numel() == 0:
        return masks
    long = fields["long"].float()
    k = long.shape[0]
    embedding = (_grid(h, w, seg.device)[None] + long).reshape(k, 2, -1)[:, :, candidates]
    best = torch.full((candidates.numel(),), float("inf"), device=seg.device)
    owner = torch.full((candidates.numel(),), -1, dtype=torch.long, device=seg.device)
    rows, cols = candidates // w, candidates % w
    for j, person in enumerate(people):
        if person is None:
            continue
        points = torch.as_tensor(person, dtype=torch.float32, device=seg.device)
        p = points[:, 2].clamp_min(0)
        if float(p.sum()) <= 0:
            continue
        scale = max(_box_area(person), radius**2) ** 0.5
        # only pixels within the person's keypoint box widened by its scale on every side
        # (atrous's shortcut: the cost grows with the people's area, not people x image)
        low, high = _box(person) - scale, _box(person, upper=True) + scale
        # candidates are in row-major order: the window's rows are one slice of them
        first = int(torch.searchsorted(rows, low[1].ceil().long()))
        last = int(torch.searchsorted(rows, high[1].floor().long(), right=True))
        band = cols[first:last]
        near = ((band >= low[0]) & (band <= high[0])).nonzero().squeeze(1) + first
        delta = embedding[:, :, near] - points[:, :2, None]
        distance = (delta[:, 0] ** 2 + delta[:, 1] ** 2).sqrt()  # [K, P]
        d = (p[:, None] * distance).sum(0) / (scale * p.sum())
        better = d < best[near]
        best[near[better]] = d[better]
        owner[near[better]] = j
    chosen = best < mask_threshold
    flat = masks.view(len(people), -1)
    flat[owner[chosen], candidates[chosen]] = True
    return masks


def _box(person: np.ndarray, upper: bool = False, min_score: float = 0.1) -> Tensor:
    """The lower (or ``upper``) corner of the box around the keypoints scoring above
    ``min_score`` (all if none)."""
    confident = person[person[:, 2] > min_score]
    points = confident if len(confident) else person
    corner = points[:, :2].max(0) if upper else points[:, :2].min(0)
    return torch.as_tensor(corner, dtype=torch.float64)


def _box_area(person: np.ndarray, min_score: float = 0.1) -> float:
    """The area of the box around the keypoints scoring above ``min_score`` (all if none)."""
    span = _box(person, upper=True, min_score=min_score) - _box(person, min_score=min_score)
    return float(span[0] * span[1])


def expected_oks(
    votes: Tensor, people: Sequence[np.ndarray], areas: Sequence[float], radius: float = RADIUS
) -> list[np.ndarray]:
    """Keypoint scores ``s_jk = p_k(y_jk) * sum_{x in D_R(y_jk)} h_k(x) exp(-|x - y_jk|^2 / (2
    lambda_j^2 kappa_k^2))`` with ``lambda_j^2`` the person's area and ``kappa_k`` twice COCO's
    OKS sigma (Sec. 3.2: the expected OKS of the keypoint); ``[K]`` per person."""
    k, h, w = votes.shape
    r = int(math.ceil(radius))
    offsets = torch.arange(-r, r + 1, device=votes.device, dtype=torch.float32)
    dy, dx = torch.meshgrid(offsets, offsets, indexing="ij")
    disk = (dx**2 + dy**2) <= radius**2
    kappa = 2 * torch.tensor(OKS_SIGMAS[:k], device=votes.device) / 10
    scores = []
    for person, area in zip(people, areas, strict=True):
        centre = torch.as_tensor(person[:, :2], dtype=torch.float32, device=votes.device).round()
        xs = (centre[:, 0, None, None] + dx).long()
        ys = (centre[:, 1, None, None] + dy).long()
        inside = disk & (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
        values = votes[torch.arange(k)[:, None, None], ys.clamp(0, h - 1), xs.clamp(0, w - 1)]
        true = torch.as_tensor(person[:, :2], dtype=torch.float32, device=votes.device)
        d2 = (xs - true[:, 0, None, None]) ** 2 + (ys - true[:, 1, None, None]) ** 2
        falloff = torch.exp(-d2 / (2 * max(area, 1.0) * kappa[:, None, None] ** 2))
        mass = (values * falloff * inside).sum((1, 2)).cpu().numpy()
        scores.append(np.clip(person[:, 2], 0, 1) * mass)
    return scores


def instance_scores(
    people: Sequence[np.ndarray], scores: Sequence[np.ndarray], nms_radius: float = NMS_RADIUS
) -> list[float]:
    """Soft keypoint NMS (Sec. 3.2): a person's score is the sum of its keypoint scores, less
    those within ``nms_radius`` of the same keypoint of a higher-scoring person, over ``K``."""
    order = sorted(range(len(people)), key=lambda j: -float(scores[j].mean()))
    result = [0.0] * len(people)
    kept: list[np.ndarray] = []
    for j in order:
        points = people[j][:, :2]
        free = np.ones(len(points), dtype=bool)
        for other in kept:
            free &= np.hypot(*(points - other).T) > nms_radius
        result[j] = float(scores[j][free].sum() / len(points))
        kept.append(points)
    return result


def _check_fields(fields: dict[str, Tensor]) -> None:
    """One clear error for fields that are not one image's in :func:`encode`'s layout."""
    missing = [key for key in ("heatmap", "short", "mid", "long", "seg") if key not in fields]
    if missing:
        raise ValueError(f"decode needs one image's fields; missing {', '.join(missing)}")
    heatmap = fields["heatmap"]
    if heatmap.ndim != 3:
        raise ValueError(
            f"decode takes one image's fields: heatmap [K, H, W], got {tuple(heatmap.shape)} "
            "(index a batch's fields with [i])"
        )
    k, h, w = heatmap.shape
    expected = {"short": (k, 2, h, w), "long": (k, 2, h, w), "seg": (h, w)}
    for key, shape in expected.items():
        if tuple(fields[key].shape) != shape:
            raise ValueError(f"decode: {key} must be {list(shape)}, got {list(fields[key].shape)}")
    mid = fields["mid"]
    if mid.ndim != 4 or tuple(mid.shape[1:]) != (2, h, w):
        raise ValueError(f"decode: mid must be [2E, 2, {h}, {w}], got {list(mid.shape)}")


@torch.no_grad()
def decode(
    fields: dict[str, Tensor],
    *,
    radius: float = RADIUS,
    edges: Sequence[tuple[int, int]] = TREE_EDGES,
    threshold: float = PEAK_THRESHOLD,
    nms_radius: float = NMS_RADIUS,
    snap_steps: int = SNAP_STEPS,
    seg_threshold: float = SEG_THRESHOLD,
    mask_threshold: float = MASK_THRESHOLD,
    max_people: int | None = None,
    mask_min_score: float = MASK_MIN_SCORE,
) -> list[dict[str, Any]]:
    """People of one image's fields (``heatmap`` ``[K,H,W]`` and ``seg`` ``[H,W]`` as
    probabilities, ``short`` ``[K,2,H,W]``, refined ``mid`` ``[2E,2,H,W]`` and ``long``
    ``[K,2,H,W]``), highest score first: each ``{"keypoints": [K, 3] (x, y, score), "score":
    float, "mask": bool [H, W]}``, keypoints in COCO's continuous pixel coordinates (as
    :func:`~.personlab_targets.encode` takes them)."""
    _check_fields(fields)
    votes = hough_votes(fields["heatmap"], fields["short"], radius)
    people = group_keypoints(
        fields, votes, edges=edges, threshold=threshold, nms_radius=nms_radius,
        snap_steps=snap_steps, max_people=max_people,
    )  # fmt: skip
    # scored with their keypoint box's area as the person area (the mask's is not known yet);
    # the people scoring mask_min_score or more take the person pixels
    scores = expected_oks(votes, people, [_box_area(p) for p in people], radius)
    totals = instance_scores(people, scores, nms_radius)
    claim = [p if t >= mask_min_score else None for p, t in zip(people, totals, strict=True)]
    masks = person_masks(
        fields, claim, seg_threshold=seg_threshold, mask_threshold=mask_threshold, radius=radius
    )
    result = [
        {
            "keypoints": torch.tensor(  # back to continuous pixel coordinates
                np.concatenate([p[:, :2] + 0.5, s[:, None]], 1), dtype=torch.float32
            ),
            "score": total,
            "mask": mask.cpu(),
        }
        for p, s, total, mask in zip(people, scores, totals, masks, strict=True)
    ]
    return sorted(result, key=lambda person: -person["score"])
