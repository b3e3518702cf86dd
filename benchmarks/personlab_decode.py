"""PersonLab's decoding time against the number of people in the image, and the cost of each
stage, on this CPU. The paper's claim: the greedy decoding's runtime is essentially
independent of the number of people.

Run by hand (about a minute on 2 cores):
    python benchmarks/personlab_decode.py [--size 801] [--people 1 4 16 64] [--repeats 3]
Fields are :func:`atrous.tasks.personlab.encode`'s of generated stick people of one fixed size
(about 90 pixels tall, on a grid of cells so that 64 fit in an 801x801 image), so every row
decodes the same kind of person and only their number changes; heatmap and segmentation are
exact (0/1), as a well-trained network's would be near. After one warm-up decoding, each
stage is timed apart (median of ``--repeats``): Hough voting, the greedy grouping (seeds and
tree walks), the masks, the expected-OKS keypoint scores and the soft keypoint NMS. Rows append to
benchmarks/results/personlab_decode.json and the table is rewritten to personlab_decode.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from atrous.data.person_keypoints import TREE_EDGES
from atrous.tasks.personlab import encode
from atrous.tasks.personlab_decode import (
    RADIUS,
    expected_oks,
    group_keypoints,
    hough_votes,
    instance_scores,
    person_masks,
)

RESULTS = Path(__file__).parent / "results"
# a standing stick person in a 100 x 100 cell, (x, y) of the 17 COCO keypoints
POSE = np.array(
    [(50, 12), (47, 9), (53, 9), (44, 11), (56, 11), (40, 25), (60, 25), (34, 40), (66, 40),
     (30, 55), (70, 55), (43, 55), (57, 55), (41, 73), (59, 73), (40, 92), (60, 92)],
    dtype=np.float32,
)  # fmt: skip


def people(count: int, size: int, seed: int) -> list[dict]:
    """``count`` people in distinct cells of a grid over a ``size`` x ``size`` image."""
    rng = np.random.default_rng(seed)
    cells = [(r, c) for r in range(size // 100) for c in range(size // 100)]
    chosen = rng.choice(len(cells), count, replace=False)
    result = []
    for index in chosen:
        r, c = cells[index]
        points = POSE + (c * 100, r * 100) + rng.uniform(-3, 3, POSE.shape)
        canvas = Image.new("L", (size, size))
        draw = ImageDraw.Draw(canvas)
        for a, b in TREE_EDGES:
            draw.line([tuple(points[a]), tuple(points[b])], fill=1, width=9)
        keypoints = np.concatenate([points, np.full((17, 1), 2, np.float32)], 1)
        mask = torch.from_numpy(np.array(canvas) > 0)
        result.append({"keypoints": torch.from_numpy(keypoints), "mask": mask})
    return result


def time_stages(fields: dict, repeats: int) -> dict[str, float]:
    """Median seconds of each decoding stage over ``repeats`` runs."""
    times: dict[str, list[float]] = {}
    found = 0
    for _ in range(repeats):
        clock = time.perf_counter()
        marks = {}
        votes = hough_votes(fields["heatmap"], fields["short"], RADIUS)
        marks["hough"] = time.perf_counter()
        found_people = group_keypoints(fields, votes)
        marks["grouping"] = time.perf_counter()
        masks = person_masks(fields, found_people)
        marks["masks"] = time.perf_counter()
        areas = [float(m.sum()) for m in masks]
        scores = expected_oks(votes, found_people, areas, RADIUS)
        marks["keypoint scores"] = time.perf_counter()
        instance_scores(found_people, scores)
        marks["soft NMS"] = time.perf_counter()
        for name, mark in marks.items():
            times.setdefault(name, []).append(mark - clock)
            clock = mark
        found = len(found_people)
    result = {name: statistics.median(values) for name, values in times.items()}
    result["total"] = sum(result.values())
    result["found"] = found
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=801)
    parser.add_argument("--people", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = []
    warm = encode(people(1, 201, args.seed), (201, 201))
    time_stages(warm, 1)  # first calls (allocator, kernels) are not any row's
    for count in args.people:
        fields = encode(people(count, args.size, args.seed), (args.size, args.size))
        fields = {k: v for k, v in fields.items() if not k.endswith("_weight")}
        row = {"people": count, "size": args.size, **time_stages(fields, args.repeats)}
        rows.append(row)
        print(json.dumps(row))
    machine = {
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "seed": args.seed,
        "repeats": args.repeats,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "personlab_decode.json").write_text(
        json.dumps({"machine": machine, "rows": rows}, indent=1) + "\n"
    )
    stages = ["hough", "grouping", "masks", "keypoint scores", "soft NMS", "total"]
    lines = [
        "# PersonLab decoding time against the number of people",
        "",
        f"`python benchmarks/personlab_decode.py` on {machine['cpu']}, {machine['threads']} "
        f"threads, torch {machine['torch']}, {machine['date']}; {args.size}x{args.size} "
        f"fields of generated people (encode's, exact), median of {args.repeats} runs, seed "
        f"{args.seed}. Seconds per image by stage.",
        "",
        "| people | found | " + " | ".join(stages) + " |",
        "|---|---|" + "---|" * len(stages),
    ]
    for row in rows:
        cells = " | ".join(f"{row[s]:.3f}" for s in stages)
        lines.append(f"| {row['people']} | {row['found']} | {cells} |")
    (RESULTS / "personlab_decode.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
