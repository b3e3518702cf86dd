"""The DeepLab network: backbone -> head -> optional decoder -> logits at the input's size."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor, nn
from torch.nn import functional as F

from .align import crop_to, pad_to_exact
from .backbones._stride import check_output_stride
from .layers import fast_depthwise


class DeepLab(nn.Module):
    """``[N,3,H,W]`` image -> ``[N,num_classes,H,W]`` logits, bilinearly upsampled to the input.

    ``head`` maps the backbone's ``"out"`` features to features (ASPP) or straight to logits
    (v1 LargeFOV, v2 ASPP); ``decoder`` (v3+) fuses the ``"os4"`` features; ``classifier``
    maps to class logits (``nn.Identity`` when the head already gives them).

    ``forward`` is aligned (:mod:`.align`): it pads the input to the next exact size for the
    model's output stride and ``align_corners`` convention (multiples of the stride for
    ``align_corners=False``, ``k*stride + 1`` for ``True``), so every feature pixel sits at the
    same place in the image at every size, and crops the logits back. ``pad_input=False``
    runs the network on the input as it is (torchvision's behaviour, kept by
    :func:`~atrous.models.from_torchvision` so converted models equal their originals).
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        classifier: nn.Module,
        decoder: nn.Module | None = None,
        *,
        num_classes: int,
        align_corners: bool = False,
        pad_input: bool = True,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.decoder = decoder
        self.classifier = classifier
        self.num_classes = num_classes
        self.align_corners = align_corners
        self.pad_input = pad_input
        fast_depthwise(self)  # CPU bf16 training keeps its slow depthwise kernels in fp32

    @property
    def align_corners(self) -> bool:
        """The resize convention of every upsampling in the model (``False``: torchvision's;
        ``True``: the TF reference's); it decides which input sizes are exact."""
        return self._align_corners

    @align_corners.setter
    def align_corners(self, value: bool) -> None:
        self._align_corners = bool(value)
        if self.decoder is not None and hasattr(self.decoder, "align_corners"):
            self.decoder.align_corners = self._align_corners

    @property
    def output_stride(self) -> int:
        return self.backbone.output_stride

    @property
    def output_strides(self) -> tuple[int, ...]:
        """The output strides :meth:`set_output_stride` takes (8, 16, 32 for the atrous
        backbones; a searched network's path fixes its own)."""
        return tuple(getattr(self.backbone, "output_strides", (8, 16, 32)))

    def set_output_stride(self, output_stride: int) -> None:
        """Evaluate at another output stride with the same weights (v3 paper, Sec. 4.1):
        backbone strides become atrous rates and ASPP rates scale with them."""
        check_output_stride(output_stride)
        self.backbone.set_output_stride(output_stride)
        if hasattr(self.head, "set_output_stride"):
            self.head.set_output_stride(output_stride)

    def forward(self, x: Tensor) -> Tensor:
        if not self.pad_input:
            return self.forward_with_features(x)[0]
        height, width = x.shape[-2], x.shape[-1]
        return crop_to(self.forward_with_features(self.pad(x))[0], height, width)

    def save_pretrained(self, directory: str | Path, **options: Any) -> Path:
        """:func:`atrous.models.save_pretrained` for this model (``spec=``, ``classes=``, ...)."""
        from .registry import save_pretrained

        return save_pretrained(self, directory, **options)

    def pad(self, x: Tensor) -> Tensor:
        """``x`` padded (bottom/right, 0 = the mean pixel) to this model's next exact size: for
        its coarsest feature map (``backbone.max_stride``, e.g. Auto-DeepLab's OS32 cells on an
        OS8 network), else its output stride."""
        stride = getattr(self.backbone, "max_stride", self.output_stride)
        return pad_to_exact(x, stride, align_corners=self.align_corners)

    def forward_with_features(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Logits at input size and the backbone's features dict, for heads that tap the
        backbone too (DT-EdgeNet's edge branch, :mod:`.domain_transform`).

        This is the network itself, without :meth:`pad`: give it inputs of an exact size (or
        accept the drift described in :mod:`.align`)."""
        logits, _, features = self._parts(x)
        logits = F.interpolate(
            logits, size=x.shape[-2:], mode="bilinear", align_corners=self.align_corners
        )
        return logits, features

    def forward_head(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Logits at the classifier's resolution (not upsampled) and the features the
        classifier reads: the "penultimate" features attention to scale looks at. For v1/v2,
        whose heads give logits directly, those are the backbone's output features. Like
        :meth:`forward_with_features`, the network itself (no padding)."""
        logits, penultimate, _ = self._parts(x)
        return logits, penultimate

    @property
    def penultimate_channels(self) -> int:
        """Channels of :meth:`forward_head`'s features."""
        if isinstance(self.classifier, nn.Identity):
            return self.backbone.feature_channels["out"]
        first = next(m for m in self.classifier.modules() if isinstance(m, nn.Conv2d))
        return first.in_channels

    def _parts(self, x: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        features = self.backbone(x)
        y = self.head(features["out"])
        if self.decoder is not None:
            y = self.decoder(y, features["os4"])
        logits = self.classifier(y)
        penultimate = features["out"] if isinstance(self.classifier, nn.Identity) else y
        return logits, penultimate, features
