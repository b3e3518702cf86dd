"""PersonLab (Papandreou et al., ECCV 2018): one fully convolutional network for bottom-up
person pose and instance segmentation. On an atrous backbone, ASPP and the Panoptic-DeepLab
decoder (OS4), one head predicts per keypoint type a heatmap, short-range offsets, mid-range
offsets along each tree edge (both directions), long-range offsets, and a person segmentation.
Every map is brought to the input size (as the KerasPersonLab port does) and the mid- and
long-range offsets are refined there by the short-range ones, twice, inside the graph (Sec.
3.2-3.3), so the losses see the refined offsets.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..data.person_keypoints import NUM_KEYPOINTS, TREE_EDGES
from .align import crop_to, pad_to_exact
from .factory import _backbone
from .heads.aspp import ASPP
from .panoptic.panoptic_deeplab import PanopticDecoder, _head

REFINE_STEPS = 2
"""Recurrent offset refinement steps (paper, Sec. 3.2: "we apply this refinement twice")."""


def sample_offsets(field: Tensor, points: Tensor) -> Tensor:
    """``field`` ``[N, C, 2, H, W]`` read bilinearly at ``points`` ``[N, C, 2, H, W]`` (pixel
    ``(x, y)`` per channel and pixel), clamped at the border: one ``grid_sample`` call."""
    n, c, _, h, w = field.shape
    grid = torch.stack(
        [points[:, :, 0] * (2 / max(w - 1, 1)) - 1, points[:, :, 1] * (2 / max(h - 1, 1)) - 1],
        dim=-1,
    ).reshape(n * c, h, w, 2)
    out = F.grid_sample(
        field.reshape(n * c, 2, h, w), grid.to(field.dtype), mode="bilinear",
        padding_mode="border", align_corners=True,
    )  # fmt: skip
    return out.view(n, c, 2, h, w)


def refine(
    offsets: Tensor,
    short: Tensor,
    targets: Sequence[int],
    steps: int = REFINE_STEPS,
    *,
    stride: float = 1.0,
) -> Tensor:
    """``O(x) <- x' + S_t(x') - x`` with ``x' = x + O(x)``, ``steps`` times (Sec. 3.2): each
    offset channel ``c`` of ``offsets`` ``[N, C, 2, H, W]`` moves by the short-range offset
    ``short[:, targets[c]]`` found where it points. Offsets are in input pixels; on maps
    ``stride`` times coarser than the input (bilinearly aligned, ``align_corners=False``) a
    point ``O`` pixels away is ``O / stride`` map cells away."""
    n, c, _, h, w = offsets.shape
    ys, xs = torch.meshgrid(
        torch.arange(h, device=offsets.device, dtype=offsets.dtype),
        torch.arange(w, device=offsets.device, dtype=offsets.dtype),
        indexing="ij",
    )
    grid = torch.stack([xs, ys])  # [2, H, W]
    chosen = short[:, list(targets)]
    for _ in range(steps):
        offsets = offsets + sample_offsets(chosen, grid + offsets / stride)
    return offsets


def _upsample(fields: Tensor, size: Sequence[int]) -> Tensor:
    """``[N, C, 2, h, w]`` (or ``[N, C, h, w]``) offsets or logits, bilinearly to ``size``."""
    shape = fields.shape
    flat = fields.reshape(shape[0], -1, *shape[-2:])
    up = F.interpolate(flat, size=tuple(size), mode="bilinear", align_corners=False)
    return up.view(*shape[:-2], *up.shape[-2:])


class PersonLab(nn.Module):
    """In training ``forward`` gives ``heatmap_logits`` ``[N,K,H,W]``, ``seg_logits``
    ``[N,H,W]``, ``short`` ``[N,K,2,H,W]``, refined ``mid`` ``[N,2E,2,H,W]`` and refined ``long``
    ``[N,K,2,H,W]`` at the input size (offsets in pixels, ``(x, y)``); in eval mode the fields
    the decoder reads (``heatmap`` and ``seg`` as probabilities) and ``semantic``, two-class
    (background, person) logits, so predictors, mIoU and ``atrous predict`` work as for any
    DeepLab. Offsets are predicted in units of ``radius`` (the losses divide by it)."""

    def __init__(
        self,
        backbone: nn.Module,
        *,
        num_keypoints: int = NUM_KEYPOINTS,
        edges: Sequence[tuple[int, int]] = TREE_EDGES,
        radius: float = 32.0,
        channels: int = 256,
        atrous_rates: Sequence[int] = (6, 12, 18),
        refine_steps: int = REFINE_STEPS,
        refine_stride: int = 1,
    ) -> None:
        super().__init__()
        if refine_stride not in (1, 4):
            raise ValueError(
                f"refine_stride is 1 (the input) or 4 (the decoder), not {refine_stride}"
            )
        self.refine_stride = refine_stride
        bad = [e for e in edges if not all(0 <= i < num_keypoints for i in e)]
        if bad:
            raise ValueError(f"tree edges {bad} name keypoints outside [0, {num_keypoints})")
        self.backbone, self.num_keypoints = backbone, num_keypoints
        self.edges = tuple((int(a), int(b)) for a, b in edges)
        self.directed = (*self.edges, *((b, a) for a, b in self.edges))
        self.radius, self.refine_steps = float(radius), refine_steps
        self.num_classes, self.align_corners, self.pad_input = 2, False, True
        ch = backbone.feature_channels
        self.aspp = ASPP(
            ch["out"], channels, tuple(atrous_rates), output_stride=backbone.output_stride
        )
        self.decoder = PanopticDecoder(
            channels, ch["os8"], ch["os4"], projections=(64, 32), channels=channels
        )
        k, e = num_keypoints, len(self.directed)
        self.sizes = (k, 1, 2 * k, 2 * e, 2 * k)  # heatmap, seg, short, mid, long
        self.head = _head(channels, channels // 2, sum(self.sizes))

    @property
    def output_stride(self) -> int:
        return self.backbone.output_stride

    @property
    def output_strides(self) -> tuple[int, ...]:
        return (8, 16, 32)

    def set_output_stride(self, output_stride: int) -> None:
        self.backbone.set_output_stride(output_stride)
        self.aspp.set_output_stride(output_stride)

    def pad(self, x: Tensor) -> Tensor:
        return pad_to_exact(x, self.output_stride)

    def forward_fields(self, x: Tensor) -> dict[str, Tensor]:
        """Logits and refined offsets at the input size (the training outputs)."""
        height, width = x.shape[-2], x.shape[-1]
        xp = self.pad(x) if self.pad_input else x
        features = self.backbone(xp)
        out = self.head(self.decoder(self.aspp(features["out"]), features))
        if self.refine_stride == 1:  # every map to the input size first (KerasPersonLab)
            out = F.interpolate(out, size=xp.shape[-2:], mode="bilinear", align_corners=False)
        stride = xp.shape[-2] / out.shape[-2]
        n, h, w = out.shape[0], out.shape[-2], out.shape[-1]
        heat, seg, short, mid, long = out.split(self.sizes, dim=1)
        short = short.float().view(n, -1, 2, h, w) * self.radius
        mid = mid.float().view(n, -1, 2, h, w) * self.radius
        long = long.float().view(n, -1, 2, h, w) * self.radius
        ends = [b for _, b in self.directed]
        fields = {
            "heatmap_logits": heat,
            "seg_logits": seg[:, 0],
            "short": short,
            "mid": refine(mid, short, ends, self.refine_steps, stride=stride),
            "long": refine(
                long, short, range(self.num_keypoints), self.refine_steps, stride=stride
            ),
        }
        if self.refine_stride != 1:
            fields = {key: _upsample(value, xp.shape[-2:]) for key, value in fields.items()}
        return crop_to(fields, height, width)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        fields = self.forward_fields(x)
        if self.training:
            return fields
        seg = fields["seg_logits"]
        return {
            "heatmap": torch.sigmoid(fields["heatmap_logits"].float()),
            "seg": torch.sigmoid(seg.float()),
            "short": fields["short"],
            "mid": fields["mid"],
            "long": fields["long"],
            "semantic": torch.stack([torch.zeros_like(seg), seg], dim=1),
        }


def personlab(
    *,
    backbone: str = "resnet101",
    num_keypoints: int = NUM_KEYPOINTS,
    output_stride: int = 16,
    num_classes: int = 2,
    width_mult: float = 1.0,
    radius: float = 32.0,
    channels: int = 256,
    atrous_rates: Sequence[int] = (6, 12, 18),
    refine_steps: int = REFINE_STEPS,
    refine_stride: int = 1,
    backbone_weights: str | None = None,
) -> PersonLab:
    """PersonLab on any atrous backbone (the paper: ResNet-101 / -152, ImageNet weights, OS16 —
    recalled, unverified); ``num_keypoints`` 17 with COCO's tree (see :class:`PersonLab`).
    ``num_classes`` is the segmentation's two classes (background, person) and must be 2.
    ``refine_stride`` 4 refines the offsets on the decoder's OS4 maps and then brings every map
    to the input size: 16x fewer bilinear reads than at the input (1, the KerasPersonLab way)."""
    if num_classes != 2:
        raise ValueError(
            f"personlab segments background and person: num_classes 2, not {num_classes}"
        )
    if num_keypoints != NUM_KEYPOINTS:
        raise ValueError(
            f"personlab's kinematic tree is COCO's {NUM_KEYPOINTS} keypoints, not {num_keypoints}"
        )
    net = _backbone(backbone, output_stride, width_mult, weights=backbone_weights)
    missing = [key for key in ("os4", "os8", "out") if key not in net.feature_channels]
    if missing:
        raise ValueError(
            f"backbone {backbone!r} gives no {', '.join(missing)} features for the decoder"
        )
    return PersonLab(
        net,
        num_keypoints=num_keypoints,
        radius=radius,
        channels=channels,
        atrous_rates=atrous_rates,
        refine_steps=refine_steps,
        refine_stride=refine_stride,
    )
