"""The decoders of "The Devil is in the Decoder" at DeepLabv3+'s fusion point, on the demo set.

Run by hand (about 15 minutes on 2 CPU cores):  python benchmarks/decoders.py [--steps 1500]
Each row is the demo recipe (DeepLabv3+ MobileNetV2 OS16, width 0.5, 128-channel head) with
``model.decoder`` / ``model.decoder_residual`` set, trained ``--steps`` steps with the same
seed and scored on the 60 held-out scenes (mIoU, trimap 2 px); parameters and MAdds are those
of the paper-width model (21 classes, 513x513, ``atrous.models.summary``). Writes
benchmarks/results/decoders.json / .md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from atrous.data import build_dataset, make_synthetic_dataset
from atrous.demo import demo_config
from atrous.evaluation import Confusion, Trimap, evaluate
from atrous.inference import Predictor
from atrous.loader import load
from atrous.models import DECODERS, deeplabv3plus, summary
from atrous.training import train

RESULTS = Path(__file__).parent / "results"
ROWS = [("deeplabv3plus", False)] + [(d, r) for d in DECODERS[1:] for r in (False, True)]


def _name(decoder: str, residual: bool) -> str:
    return decoder + (" + residual" if residual else "")


def run(decoder: str, residual: bool, steps: int, seed: int, work: Path) -> dict[str, Any]:
    data = work / "data"
    if not (data / "val.txt").is_file():
        make_synthetic_dataset(data, seed=0)
    out = work / f"{decoder}-{int(residual)}-{seed}"
    options = [f"model.decoder={decoder}", f"model.decoder_residual={str(residual).lower()}"]
    cfg = demo_config(out, [f"data.root={data}", f"train.steps={steps}", f"train.seed={seed}",
                            "data.val_split=null", f"train.checkpoint_every={steps}",
                            "train.log_every=100", *options])  # fmt: skip
    result = train(cfg, progress=False)
    loaded = load(result["checkpoint"])
    n = len(loaded.info.classes)
    val = build_dataset("folder", data, "val", num_classes=n)
    found = evaluate(
        Predictor.from_loaded(loaded),
        val,
        {"m": Confusion(n), "t": Trimap(n, (2,))},
        progress=False,
    )
    size = summary(deeplabv3plus(num_classes=21, decoder=decoder, decoder_residual=residual))
    return {
        "miou": found["m"]["miou"],
        "trimap_2px": found["t"]["2"],
        "params": size.params,
        "madds": size.madds,
    }


def report(runs: list[dict[str, Any]], steps: int) -> str:
    lines = [
        f"# Decoders at the v3+ fusion point, demo set, {steps} steps "
        "(`python benchmarks/decoders.py`)",
        "",
        "| decoder | seed | mIoU | trimap 2 px | params | MAdds at 513 |",
        "|---|---|---|---|---|---|",
    ]
    for r in runs:
        if r["steps"] == steps:
            lines.append(
                f"| {_name(r['decoder'], r['residual'])} | {r['seed']} | {100 * r['miou']:.2f} | "
                f"{100 * r['trimap_2px']:.2f} | {r['params'] / 1e6:.2f}M | "
                f"{r['madds'] / 1e9:.2f}B |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="/tmp/atrous-decoders")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    log = RESULTS / "decoders.json"
    runs = json.loads(log.read_text()) if log.is_file() else []
    for decoder, residual in ROWS:
        key = {"decoder": decoder, "residual": residual, "seed": args.seed, "steps": args.steps}
        if any(all(r.get(k) == v for k, v in key.items()) for r in runs):
            continue
        result = {**key, **run(decoder, residual, args.steps, args.seed, Path(args.work))}
        print(json.dumps(result), flush=True)
        runs.append(result)
        log.write_text(json.dumps(runs, indent=1) + "\n")
        (RESULTS / "decoders.md").write_text(report(runs, args.steps))


if __name__ == "__main__":
    main()
