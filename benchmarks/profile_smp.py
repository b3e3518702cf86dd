"""Where the time goes: atrous vs smp DeepLabV3Plus (ResNet-50, OS16, 512x512), per operator.

Run by hand after benchmarks/peers.py:  python benchmarks/profile_smp.py
Writes benchmarks/results/peers_profile.md (torch.profiler, 3 forwards each, CPU time by op).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from atrous.models import deeplabv3plus

RESULTS = Path(__file__).parent / "results"


def table(model: torch.nn.Module, x: torch.Tensor, rows: int = 8) -> str:
    with torch.inference_mode():
        model(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(3):
                model(x)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def main() -> None:
    import segmentation_models_pytorch as smp

    torch.manual_seed(0)
    x = torch.randn(1, 3, 512, 512)
    ours = deeplabv3plus(backbone="resnet50", num_classes=21, output_stride=16).eval()
    peer = smp.DeepLabV3Plus(encoder_name="resnet50", encoder_weights=None, classes=21).eval()
    text = [
        "# atrous DeepLabv3+ ResNet-50 OS16",
        "```",
        table(ours, x),
        "```",
        "# smp DeepLabV3Plus ResNet-50",
        "```",
        table(peer, x),
        "```",
    ]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "peers_profile.md").write_text("\n".join(text) + "\n")
    print("\n".join(text))


if __name__ == "__main__":
    main()
