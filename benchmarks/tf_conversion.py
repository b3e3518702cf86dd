"""How closely converted TF checkpoints match the TF graph: the test networks of
tests/models/test_convert_tf.py (each zoo variant family, random weights, the reference's ops and
names), converted, both frameworks run in float64 and in float32 on the same weights and input.

Run by hand (under a minute; needs the extra atrous[tf]):  python benchmarks/tf_conversion.py
Writes benchmarks/results/tf_conversion.md.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from atrous.models import from_tf_checkpoint

sys.path.insert(0, str(Path(__file__).parent.parent))  # the test module's reference networks


RESULTS = Path(__file__).parent / "results"


def _diff(a: np.ndarray, b: np.ndarray) -> str:
    return f"{np.abs(a - b).max():.1e}"


def main() -> None:
    # After atrous (torchvision must load before TensorFlow).
    import tensorflow as tf

    import tests.models.test_convert_tf as cases
    from tests import tf_reference as ref

    torch.set_num_threads(1)  # see the test module: float64 depthwise convs and shared cores
    lines = [
        "# Converted TF checkpoints against the TF graph (`python benchmarks/tf_conversion.py`)",
        "",
        "Largest absolute logit difference; the same float32 weights and input for every column.",
        "",
        "| network | input | atrous vs TF, float64 | atrous vs TF, float32 "
        "| TF float32 vs float64 | atrous float32 vs float64 | max abs logit | variables |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for case, (build, variant, options) in cases.CASES.items():
        size = cases._size(case)
        with tempfile.TemporaryDirectory() as tmp:
            tf64, prefix, graph = cases._reference(case, Path(tmp), dtype=tf.float64)
            g32 = ref.Graph(dtype=tf.float32)
            g32.variables = dict(graph.variables)  # the same weights, run in float32
            x = tf.constant(cases._input(size=size))
            tf32 = ref.logits(g32, build(g32, x), cases.CLASSES, [size, size]).numpy()
            tf32 = tf32.transpose(0, 3, 1, 2)
            model = from_tf_checkpoint(
                prefix, variant=variant, num_classes=cases.CLASSES, **options
            )
        ours32 = cases._run(model, cases._input(size=size), torch.float32)
        ours64 = cases._run(model, cases._input(size=size), torch.float64)
        row = [case, f"{size}x{size}", _diff(ours64, tf64), _diff(ours32, tf32)]
        row += [_diff(tf32, tf64), _diff(ours32, ours64), f"{np.abs(tf64).max():.2f}"]
        lines.append("| " + " | ".join([*row, str(len(graph.variables))]) + " |")
        print(lines[-1], flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tf_conversion.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
