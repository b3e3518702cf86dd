"""ASPP vs DPC heads, sized with ``atrous.models.summary`` beside the DPC paper's table.

Run by hand (seconds):  python benchmarks/heads.py
The paper's Params column counts the heads' atrous branches only (conv weights, no projection,
no BN; for ASPP the three 3x3 separable branches, without the 1x1 and image-pooling ones): that
is "branches" here (MobileNetV2's ASPP: 3 * (320 * 9 + 320 * 256) = 0.25M, as in the paper).
"head" is the whole module (projection and BN included). MAdds are at 769x769 (Cityscapes): the
head on its OS16 features, and the whole DeepLabv3+ model (decoder OS4, 19 classes). The paper's
MAdds are not reproducible from its text (input size and counting rules unstated), so only its
parameters are compared. Writes benchmarks/results/heads.md.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from atrous.models import deeplabv3plus, summary

RESULTS = Path(__file__).parent / "results"
PAPER = {
    ("mobilenetv2", "aspp"): "0.25M", ("mobilenetv2", "dpc"): "0.36M",
    ("xception71", "aspp"): "1.59M", ("xception71", "dpc"): "0.81M",
}  # fmt: skip


def _branch_params(head: nn.Module) -> int:
    branches = head.branches[1:] if hasattr(head, "pooling") else head.branches  # ASPP: no 1x1
    return sum(p.numel() for p in branches.parameters() if p.ndim == 4)


def _head_madds(head: nn.Module, channels: int, size: int) -> int:
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        head.eval()(torch.zeros(1, channels, size, size))
    return counter.get_total_flops() // 2


def main() -> None:
    lines = [
        "# ASPP vs DPC heads (`python benchmarks/heads.py`)",
        "",
        "| backbone | head | branches (paper's Params) | paper | head params | head MAdds "
        "| model params | model MAdds at 769 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for backbone in ("mobilenetv2", "xception71"):
        for head in ("aspp", "dpc"):
            model = deeplabv3plus(backbone=backbone, num_classes=19, head=head)
            channels = model.backbone.feature_channels["out"]
            params = sum(p.numel() for p in model.head.parameters())
            madds = _head_madds(model.head, channels, 49)  # 769 at OS16: 49 x 49 features
            whole = summary(model, (3, 769, 769))
            lines.append(
                f"| {backbone} | {head.upper()} | {_branch_params(model.head) / 1e6:.2f}M | "
                f"{PAPER[(backbone, head)]} | {params / 1e6:.2f}M | {madds / 1e9:.2f}B | "
                f"{whole.params / 1e6:.2f}M | {whole.madds / 1e9:.1f}B |"
            )
            print(lines[-1], flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "heads.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
