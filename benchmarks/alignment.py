"""What the aligned forward changes: one checkpoint scored with and without input padding.

Run by hand:  python benchmarks/alignment.py --checkpoint CKPT --data ROOT [--split val]
              [--dataset folder] [--name demo]
Scores the checkpoint twice on the same split at each image's own size: with the network run on
the image as it is (``pad_input=False``: the resize from a stride-16 map back to an odd size is
fractional, so the prediction drifts against the image) and with atrous's aligned forward (the
image padded to the next multiple of the output stride, the logits cropped back). Appends a row
to benchmarks/results/alignment.md and alignment.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from atrous.data import build_dataset
from atrous.evaluation import Confusion, Trimap, evaluate
from atrous.inference import Predictor

RESULTS = Path(__file__).parent / "results"


def _set_padding(predictor: Predictor, on: bool) -> None:
    for module in predictor.model.modules():
        if hasattr(module, "pad_input"):
            module.pad_input = on


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--dataset", default="folder")
    parser.add_argument("--split", default="val")
    parser.add_argument("--name", default="", help="row label (default: the checkpoint path)")
    args = parser.parse_args()

    predictor = Predictor.from_checkpoint(args.checkpoint)
    classes = predictor.info.classes
    options = {"num_classes": len(classes)} if args.dataset == "folder" else {}
    data = build_dataset(args.dataset, args.data, args.split, **options)
    sizes = {tuple(data[i][0].shape[-2:]) for i in range(len(data))}
    stride = predictor.model.output_stride
    exact = sum(h % stride == 0 and w % stride == 0 for h, w in sizes)
    row = {"name": args.name or args.checkpoint, "images": len(data), "exact_sizes": exact}
    for label, on in (("unpadded", False), ("aligned", True)):
        _set_padding(predictor, on)
        accumulators = {"metrics": Confusion(len(classes)), "trimap": Trimap(len(classes), (2,))}
        found = evaluate(predictor, data, accumulators, progress=False)
        metrics = found["metrics"]
        row[label] = {
            "miou": metrics["miou"],
            "pixel_accuracy": metrics["pixel_accuracy"],
            "trimap_2px": found["trimap"]["2"],
        }
        r = row[label]
        print(
            f"{label:>9}: mIoU {100 * r['miou']:.2f}  pixel acc {100 * r['pixel_accuracy']:.2f}"
            f"  trimap 2px {100 * r['trimap_2px']:.2f}"
        )

    RESULTS.mkdir(exist_ok=True)
    log = RESULTS / "alignment.json"
    rows = json.loads(log.read_text()) if log.is_file() else []
    rows = [r for r in rows if r["name"] != row["name"]] + [row]
    log.write_text(json.dumps(rows, indent=2) + "\n")
    lines = [
        "# One checkpoint, scored unpadded and aligned (`python benchmarks/alignment.py`)",
        "",
        "Each image at its own size; `unpadded` runs the network on the image as it is, "
        "`aligned` pads it to the next multiple of the output stride and crops the logits.",
        "",
        "| checkpoint | images (exact size) | mIoU unpadded | mIoU aligned | pixel acc unpadded "
        "| pixel acc aligned | trimap 2px unpadded | trimap 2px aligned |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        u, a = r["unpadded"], r["aligned"]
        lines.append(
            f"| {r['name']} | {r['images']} ({r['exact_sizes']}) | {100 * u['miou']:.2f} | "
            f"{100 * a['miou']:.2f} | {100 * u['pixel_accuracy']:.2f} | "
            f"{100 * a['pixel_accuracy']:.2f} | {100 * u['trimap_2px']:.2f} | "
            f"{100 * a['trimap_2px']:.2f} |"
        )
    (RESULTS / "alignment.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
