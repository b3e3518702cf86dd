"""What every backbone declares about the features it returns (CONVENTIONS habit 5)."""

from __future__ import annotations

from torch import nn


class Backbone(nn.Module):
    """Base of the backbones: ``forward`` returns features keyed by name (``"os4"``, ``"os8"``
    where the backbone has it, and ``"out"``, the features at ``output_stride``);
    ``feature_channels`` maps each name to its channels and :attr:`feature_info` adds the
    stride, in timm's form (a list of dicts, finest first)."""

    feature_channels: dict[str, int]
    output_stride: int

    @property
    def feature_info(self) -> list[dict[str, int | str]]:
        """``[{"name": "os4", "stride": 4, "channels": C}, ..., {"name": "out", "stride":
        output_stride, "channels": C}]``, following :meth:`set_output_stride`."""
        return [
            {
                "name": name,
                "stride": self.output_stride if name == "out" else int(name.removeprefix("os")),
                "channels": channels,
            }
            for name, channels in self.feature_channels.items()
        ]
