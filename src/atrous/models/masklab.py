"""MaskLab (Chen et al., CVPR 2018): instance masks from detected boxes, semantic and direction
features. One atrous trunk is shared up to conv4; torchvision's Faster R-CNN parts (RPN, RoI
heads) detect on the conv4 features with a duplicate of conv5 as the box classifier, while ASPP
on the trunk's atrous conv5 features predicts semantic logits and direction logits (the bin of
each pixel's direction and distance from its instance's centre, :mod:`.direction_pooling`).
For each box the semantic channel of its class is cropped and the direction logits are
assembled by direction pooling; a 1x1 conv on both gives a coarse mask, refined by three convs
over hypercolumn features (the trunk's OS4 features cropped in the box).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.roi_heads import RoIHeads, paste_masks_in_image
from torchvision.models.detection.rpn import AnchorGenerator, RegionProposalNetwork, RPNHead
from torchvision.ops import roi_align

from .align import crop_to, pad_to_exact
from .backbones import MobileNetV2, ResNet
from .direction_pooling import NUM_DIRECTIONS, NUM_DISTANCES
from .factory import _backbone
from .heads.aspp import ASPP
from .layers import set_dilation
from .masklab_head import MASK_ROIS, MASK_SIZE, MaskHead, _rois, sample_mask_rois


def _conv5(backbone: nn.Module) -> tuple[nn.Module, str, int]:
    """The backbone's conv5 stage, the name of the module whose input is the conv4 features,
    and their channels: the split of the shared trunk from the duplicated box classifier."""
    if isinstance(backbone, ResNet):
        if backbone.stages != ["layer1", "layer2", "layer3", "layer4"]:
            raise ValueError("masklab duplicates a plain ResNet's block4: extra_blocks must be 0")
        return backbone.layer4, "layer4", backbone.layer3[-1].conv3.out_channels
    if isinstance(backbone, MobileNetV2):
        # features[14:] are the stride-32 units (160 and 320 channels), features[13] ends OS16
        units = backbone.features[14:]
        return units, "features.14", backbone.features[13].conv[-1].num_features
    raise ValueError(
        f"masklab splits ResNet or MobileNetV2 trunks at conv4, not {type(backbone).__name__}"
    )


class _BoxHead(nn.Module):
    """The duplicate conv5 on each box's conv4 crop, then global average pooling: the Faster
    R-CNN box classifier's features (as ResNet C4 detectors have it)."""

    def __init__(self, conv5: nn.Module) -> None:
        super().__init__()
        self.conv5 = copy.deepcopy(conv5)
        for m in self.conv5.modules():  # no atrous rates or strides on 7 x 7 crops
            if isinstance(m, nn.Conv2d) and m.kernel_size[0] > 1:
                set_dilation(m, 1, stride=1)
            elif isinstance(m, nn.Conv2d):
                m.stride = (1, 1)

    def forward(self, crops: Tensor) -> Tensor:
        return self.conv5(crops).mean(dim=(2, 3))


class _AlignedRoIPool(nn.Module):
    """RoIHeads' box pooling with ``roi_align(aligned=True)`` (torchvision's MultiScaleRoIAlign
    uses the half-pixel-off ``aligned=False``) on the one ``"conv4"`` feature map."""

    def __init__(self, output_size: int, sampling_ratio: int = 2) -> None:
        super().__init__()
        self.output_size, self.sampling_ratio = output_size, sampling_ratio

    def forward(
        self, features: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[Any]
    ) -> Tensor:
        feature = features["conv4"]
        scale = feature.shape[-1] / features["input"].shape[-1]
        return roi_align(
            feature, [b.to(feature.dtype) for b in boxes], self.output_size, scale,
            self.sampling_ratio, aligned=True,
        )  # fmt: skip


def _keep_input(module: nn.Module, args: tuple[Tensor, ...]) -> None:
    """Forward pre-hook: the conv5 stage's input (the conv4 features) kept on the module."""
    module.masklab_conv4 = args[0]


class MaskLab(nn.Module):
    """In training ``forward(x, targets)`` (targets: per image ``boxes`` ``[P,4]``, ``labels``
    ``[P]``, ``masks`` bool ``[P,H,W]``, crowd left out) gives the detector's ``losses``,
    ``semantic`` and ``direction`` logits at the input size, and the mask head's
    ``mask_logits`` / ``mask_targets`` ``[R,S,S]`` on sampled boxes. In eval mode it gives
    ``semantic`` logits (so predictors and mIoU work as for any DeepLab) and ``detections``: per
    image ``boxes``, ``labels``, ``scores`` and ``masks`` (probabilities ``[K,H,W]``)."""

    def __init__(
        self,
        backbone: nn.Module,
        *,
        num_classes: int,
        num_directions: int = NUM_DIRECTIONS,
        num_distances: int = NUM_DISTANCES,
        channels: int = 256,
        atrous_rates: Sequence[int] = (6, 12, 18),
        mask_size: int = MASK_SIZE,
        mask_rois: int = MASK_ROIS,
        direction_pooling: bool = True,
        hypercolumn: bool = True,
        anchor_sizes: Sequence[int] = (32, 64, 128, 256, 512),
        aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
        box_batch_size: int = 512,
        detections_per_image: int = 100,
    ) -> None:
        super().__init__()
        self.backbone, self.num_classes = backbone, num_classes
        self.num_directions, self.num_distances = num_directions, num_distances
        self.mask_rois, self.align_corners, self.pad_input = mask_rois, False, True
        conv5, self._tap, conv4_channels = _conv5(backbone)
        box_head = _BoxHead(conv5)  # copied before the trunk's conv5 gets its hook
        backbone.get_submodule(self._tap).register_forward_pre_hook(_keep_input)
        ch = backbone.feature_channels
        self.aspp = ASPP(
            ch["out"], channels, tuple(atrous_rates), output_stride=backbone.output_stride
        )
        self.semantic = nn.Conv2d(channels, num_classes, 1)
        self.direction = nn.Conv2d(channels, num_directions * num_distances, 1)
        anchors = AnchorGenerator((tuple(anchor_sizes),), (tuple(aspect_ratios),))
        self.rpn = RegionProposalNetwork(
            anchors, RPNHead(conv4_channels, anchors.num_anchors_per_location()[0]),
            fg_iou_thresh=0.7, bg_iou_thresh=0.3, batch_size_per_image=256,
            positive_fraction=0.5, pre_nms_top_n={"training": 2000, "testing": 1000},
            post_nms_top_n={"training": 2000, "testing": 1000}, nms_thresh=0.7,
        )  # fmt: skip  # Faster R-CNN's settings, as torchvision's fasterrcnn builders set them
        with torch.no_grad():
            box_channels = box_head(torch.zeros(1, conv4_channels, 7, 7)).shape[1]
        self.roi_heads = RoIHeads(
            _AlignedRoIPool(7), box_head, FastRCNNPredictor(box_channels, num_classes),
            fg_iou_thresh=0.5, bg_iou_thresh=0.5, batch_size_per_image=box_batch_size,
            positive_fraction=0.25, bbox_reg_weights=None, score_thresh=0.05, nms_thresh=0.5,
            detections_per_img=detections_per_image,
        )  # fmt: skip
        self.mask_head = MaskHead(
            ch["os4"], num_directions=num_directions, num_distances=num_distances,
            size=mask_size, direction_pooling=direction_pooling, hypercolumn=hypercolumn,
        )  # fmt: skip

    @property
    def output_stride(self) -> int:
        return self.backbone.output_stride

    @property
    def output_strides(self) -> tuple[int, ...]:
        return (8, 16, 32)

    def set_output_stride(self, output_stride: int) -> None:
        """Re-point the trunk (and ASPP's rates); the detector reads conv4 at whatever stride
        it then has (its RoI pooling scales by the feature map's size)."""
        self.backbone.set_output_stride(output_stride)
        self.aspp.set_output_stride(output_stride)

    def pad(self, x: Tensor) -> Tensor:
        return pad_to_exact(x, self.output_stride)

    def _features(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The padded input and its features: ``conv4``, ``os4``, ``semantic``, ``direction``."""
        xp = self.pad(x) if self.pad_input else x
        features = self.backbone(xp)
        tap = self.backbone.get_submodule(self._tap)
        conv4 = tap.__dict__.pop("masklab_conv4")
        aspp = self.aspp(features["out"])
        return xp, {
            "input": xp,
            "conv4": conv4,
            "os4": features["os4"],
            "semantic": self.semantic(aspp),
            "direction": self.direction(aspp),
        }

    def _mask_logits(self, f: dict[str, Tensor], boxes: list[Tensor], labels: Tensor) -> Tensor:
        return self.mask_head(
            f["semantic"], f["direction"], f["os4"], _rois(boxes), labels, f["input"].shape[-1]
        )

    def _dense(self, f: dict[str, Tensor], size: tuple[int, int]) -> dict[str, Tensor]:
        """Semantic and direction logits at the (padded) input size, cropped to ``size``."""
        up = {
            key: F.interpolate(
                f[key], size=f["input"].shape[-2:], mode="bilinear", align_corners=False
            )  # fmt: skip
            for key in ("semantic", "direction")
        }
        return crop_to(up, *size)

    def forward(self, x: Tensor, targets: list[dict[str, Tensor]] | None = None) -> dict[str, Any]:
        size = (int(x.shape[-2]), int(x.shape[-1]))
        xp, f = self._features(x)
        images = ImageList(xp, [size] * x.shape[0])
        if self.training and targets is None:  # the dense part alone (e.g. precise BN)
            return self._dense(f, size)
        if self.training:
            proposals, rpn_losses = self.rpn(images, {"conv4": f["conv4"]}, targets)
            _, box_losses = self.roi_heads(f, proposals, images.image_sizes, targets)
            rois, labels, mask_targets = sample_mask_rois(
                proposals, targets, self.mask_rois, self.mask_head.size
            )
            return {
                "losses": {**rpn_losses, **box_losses},
                **self._dense(f, size),
                "mask_logits": self._mask_logits(f, rois, labels),
                "mask_targets": mask_targets,
            }
        proposals, _ = self.rpn(images, {"conv4": f["conv4"]})
        detections, _ = self.roi_heads(f, proposals, images.image_sizes)
        return {
            "semantic": self._dense(f, size)["semantic"],
            "detections": self._paste(f, detections, size),
        }

    def _paste(
        self, f: dict[str, Tensor], detections: list[dict[str, Tensor]], size: tuple[int, int]
    ) -> list[dict[str, Tensor]]:
        """Each detection's mask: the head's probabilities pasted into the image."""
        boxes = [d["boxes"] for d in detections]
        labels = torch.cat([d["labels"] for d in detections])
        if len(labels):
            probs = self._mask_logits(f, boxes, labels).float().sigmoid()
        else:
            probs = f["semantic"].new_zeros(0, self.mask_head.size, self.mask_head.size)
        out = []
        for d, p in zip(detections, probs.split([len(b) for b in boxes]), strict=True):
            pasted = paste_masks_in_image(p[:, None], d["boxes"], size, padding=1)[:, 0]
            out.append({**d, "masks": pasted})
        return out

    def segment_boxes(
        self, x: Tensor, boxes: list[Tensor], labels: list[Tensor]
    ) -> list[dict[str, Tensor]]:
        """The mask head on given boxes (e.g. the ground truth's: the head's ceiling without
        detection errors); each image's ``boxes``, ``labels``, ``scores`` 1 and ``masks``."""
        size = (int(x.shape[-2]), int(x.shape[-1]))
        _, f = self._features(x)
        given = [
            {"boxes": b.float(), "labels": lab.long(), "scores": torch.ones(len(b))}
            for b, lab in zip(boxes, labels, strict=True)
        ]
        return self._paste(f, given, size)


def masklab(
    *,
    backbone: str = "resnet101",
    num_classes: int = 81,
    output_stride: int = 16,
    num_directions: int = NUM_DIRECTIONS,
    num_distances: int = NUM_DISTANCES,
    width_mult: float = 1.0,
    channels: int = 256,
    atrous_rates: Sequence[int] = (6, 12, 18),
    mask_size: int = MASK_SIZE,
    mask_rois: int = MASK_ROIS,
    direction_pooling: bool = True,
    hypercolumn: bool = True,
    anchor_sizes: Sequence[int] = (32, 64, 128, 256, 512),
    aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
    box_batch_size: int = 512,
    detections_per_image: int = 100,
    backbone_weights: str | None = None,
) -> MaskLab:
    """MaskLab on a ResNet or MobileNetV2 trunk (the paper: ResNet-101, OS8 or OS16 atrous
    features for the dense outputs; recalled, unverified). ``num_classes`` counts background
    (COCO: 81). ``direction_pooling`` and ``hypercolumn`` switch the mask head's parts off for
    the paper's ablation; ``anchor_sizes`` (pixels) suit COCO's objects by default."""
    if num_classes < 2:
        raise ValueError(f"masklab needs background and at least one class, not {num_classes}")
    net = _backbone(backbone, output_stride, width_mult, weights=backbone_weights)
    return MaskLab(
        net, num_classes=num_classes, num_directions=num_directions,
        num_distances=num_distances, channels=channels, atrous_rates=atrous_rates,
        mask_size=mask_size, mask_rois=mask_rois, direction_pooling=direction_pooling,
        hypercolumn=hypercolumn, anchor_sizes=anchor_sizes, aspect_ratios=aspect_ratios,
        box_batch_size=box_batch_size, detections_per_image=detections_per_image,
    )  # fmt: skip
