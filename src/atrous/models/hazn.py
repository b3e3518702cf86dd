"""HAZN (Xia, Wang, Chen & Yuille, ECCV 2016): part parsing that zooms to objects, then to parts.

One DeepLab FCN scores the parts; two scale heads on its backbone features predict, per pixel,
the box of the object (the first Auto-Zoom Net, AZN-1) and of the part (AZN-2) the pixel belongs
to, with a confidence (:mod:`.auto_zoom`). At test time the boxes become regions by
confidence-weighted NMS, each region is zoomed to a standard size, re-scored by the same FCN
and merged into the whole image's scores: first the object regions, then the part regions.

This first version makes the second zoom *flat*: the part regions come from the part head on the
whole image and are zoomed from the image, not found again inside each zoomed object as the
paper's AZN-2 does. Training is the FCN's cross-entropy plus both heads' losses on the training
crops (:class:`atrous.tasks.parts.PartsTask`); the paper's training on zoomed regions is left out.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..errors import AtrousError
from .auto_zoom import (
    CONTEXT,
    MAX_ZOOM,
    MERGES,
    MIN_ZOOM,
    ZOOM_TARGET,
    ScaleHead,
    instance_boxes,
    propose_regions,
    zoom_regions,
)
from .deeplab import DeepLab, deeplabv1, deeplabv3

MIN_CONFIDENCE = 0.5
"""Confidence a pixel's box needs to become a region candidate (chosen; the paper's: unknown)."""
NMS_IOU = 0.5
"""IoU above which NMS merges candidate boxes into one region (chosen; the paper's: unknown)."""
MAX_REGIONS = 16
"""Most regions zoomed per image and per zoom level (chosen: bounds the test-time cost)."""


def target_regions(target: Tensor) -> tuple[Tensor, Tensor]:
    """The ground truth's object and part boxes ``[R, 4]`` (image pixels) of a ``[3, H, W]``
    part target (channels 1 and 2; 255, the train transforms' padding, is no instance): the
    regions :meth:`HAZN.forward_regions` zooms for the zoom's ceiling."""
    ids = target.as_subclass(Tensor).long()
    ids = ids.masked_fill(ids == 255, 0)
    return instance_boxes(ids[1])[1], instance_boxes(ids[2])[1]


class HAZN(nn.Module):
    """Training ``forward(x)``: ``{"out": part logits [N,P,H,W], "object_scale": ...,
    "part_scale": ...}``, each scale entry the :class:`~.auto_zoom.ScaleHead` outputs
    (``boxes`` ``[N,4,H,W]``, ``confidence_logits`` ``[N,1,H,W]``) at the input size.

    Eval ``forward(x)``: ``{"semantic": zoomed part logits [N,P,H,W], "object_regions": [...],
    "part_regions": [...]}``, the regions per image ``[R,4]`` (image pixels) that were zoomed.
    ``zoom_objects`` / ``zoom_parts`` switch each zoom level (settable after building: one
    trained model gives the whole ablation); :meth:`forward_regions` zooms given regions."""

    def __init__(
        self,
        fcn: DeepLab,
        *,
        channels: int = 256,
        zoom_objects: bool = True,
        zoom_parts: bool = True,
        target_size: float = ZOOM_TARGET,
        min_zoom: float = MIN_ZOOM,
        max_zoom: float = MAX_ZOOM,
        context: float = CONTEXT,
        merge: str = "max",
        min_confidence: float = MIN_CONFIDENCE,
        nms_iou: float = NMS_IOU,
        max_regions: int = MAX_REGIONS,
        detach_features: bool = False,
    ) -> None:
        super().__init__()
        if merge not in MERGES:
            raise ValueError(f"merge must be one of {MERGES}, got {merge!r}")
        if not 0 < min_zoom <= max_zoom:
            raise ValueError(f"need 0 < min_zoom <= max_zoom, got {min_zoom} and {max_zoom}")
        self.fcn = fcn
        features = fcn.backbone.feature_channels["out"]
        self.object_head = ScaleHead(features, channels)
        self.part_head = ScaleHead(features, channels)
        self.zoom_objects, self.zoom_parts = zoom_objects, zoom_parts
        self.zoom = {
            "target_size": float(target_size), "min_zoom": float(min_zoom),
            "max_zoom": float(max_zoom), "context": float(context), "merge": merge,
        }  # fmt: skip
        self.min_confidence, self.nms_iou, self.max_regions = min_confidence, nms_iou, max_regions
        self.detach_features = detach_features

    @property
    def num_classes(self) -> int:
        return self.fcn.num_classes

    @property
    def align_corners(self) -> bool:
        return self.fcn.align_corners

    @align_corners.setter
    def align_corners(self, value: bool) -> None:
        self.fcn.align_corners = value

    @property
    def output_stride(self) -> int:
        return self.fcn.output_stride

    @property
    def output_strides(self) -> tuple[int, ...]:
        return self.fcn.output_strides

    def set_output_stride(self, output_stride: int) -> None:
        """The FCN's output stride (the scale heads are 3x3 and 1x1 convs, stride-free)."""
        self.fcn.set_output_stride(output_stride)

    def pad(self, x: Tensor) -> Tensor:
        return self.fcn.pad(x)

    def _dense(self, x: Tensor) -> tuple[Tensor, dict[str, dict[str, Tensor]]]:
        """Part logits and both heads' outputs at the input size, from one padded pass."""
        height, width = x.shape[-2], x.shape[-1]
        xp = self.fcn.pad(x)
        logits, features = self.fcn.forward_with_features(xp)
        shared = features["out"].detach() if self.detach_features else features["out"]
        scales = {}
        for key, head in (("object_scale", self.object_head), ("part_scale", self.part_head)):
            scales[key] = {
                name: F.interpolate(
                    value, size=xp.shape[-2:], mode="bilinear", align_corners=self.align_corners
                )[..., :height, :width]
                for name, value in head(shared).items()
            }
        return logits[..., :height, :width], scales

    def _propose(self, scale: dict[str, Tensor], index: int) -> Tensor:
        """One image's regions ``[R, 4]`` from a head's input-size outputs: candidates at
        every ``output_stride``-th pixel (about one per feature pixel)."""
        regions, _ = propose_regions(
            scale["boxes"][index].float(),
            scale["confidence_logits"][index, 0].float().sigmoid(),
            min_confidence=self.min_confidence, iou=self.nms_iou,
            max_regions=self.max_regions, stride=self.output_stride,
        )  # fmt: skip
        return regions

    def forward(self, x: Tensor) -> dict[str, object]:
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            raise AtrousError(
                "HAZN models cannot be exported yet: their regions and zooms have data-dependent "
                "shapes (a trace would bake in one image's); deploy them with atrous.Predictor, "
                "or export model.fcn, the FCN without the zoom"
            )
        logits, scales = self._dense(x)
        if self.training:
            return {"out": logits, **scales}
        n, empty = x.shape[0], logits.new_zeros(0, 4)
        objects = [self._propose(scales["object_scale"], i) if self.zoom_objects else empty
                   for i in range(n)]  # fmt: skip
        parts = [self._propose(scales["part_scale"], i) if self.zoom_parts else empty
                 for i in range(n)]  # fmt: skip
        return self._zoom(x, logits, objects, parts)

    def forward_regions(
        self,
        x: Tensor,
        object_regions: Sequence[Tensor] | None = None,
        part_regions: Sequence[Tensor] | None = None,
    ) -> dict[str, object]:
        """The eval output with given regions (per image ``[R, 4]`` in image pixels, e.g. the
        ground truth's boxes: the zoom's ceiling) instead of proposed ones; ``None`` zooms no
        region at that level, so with neither the scores are the FCN's own logits."""
        n = x.shape[0]
        for name, given in (("object_regions", object_regions), ("part_regions", part_regions)):
            if given is not None and len(given) != n:
                raise ValueError(f"{name}: {len(given)} region sets for a batch of {n} images")
        logits = self.fcn(x)
        empty = [logits.new_zeros(0, 4)] * n
        objects = empty if object_regions is None else list(object_regions)
        parts = empty if part_regions is None else list(part_regions)
        return self._zoom(x, logits, objects, parts)

    def _zoom(
        self, x: Tensor, logits: Tensor, objects: Sequence[Tensor], parts: Sequence[Tensor]
    ) -> dict[str, object]:
        """Each image's scores: its logits, merged with the object regions' zoomed scores, then
        with the part regions' (both zoomed from the image itself)."""
        out = []
        for i in range(x.shape[0]):
            scores = logits[i : i + 1]
            for regions in (objects[i], parts[i]):
                if len(regions):
                    scores = zoom_regions(
                        x[i : i + 1], regions.to(x.device, torch.float32), self.fcn,
                        base=scores, **self.zoom,
                    )  # fmt: skip
            out.append(scores)
        return {
            "semantic": torch.cat(out),
            "object_regions": list(objects),
            "part_regions": list(parts),
        }


def hazn(
    *,
    backbone: str = "vgg16",
    num_parts: int = 7,
    num_classes: int | None = None,
    output_stride: int = 8,
    width_mult: float = 1.0,
    channels: int = 256,
    atrous_rates: Sequence[int] | None = None,
    zoom_objects: bool = True,
    zoom_parts: bool = True,
    target_size: float = ZOOM_TARGET,
    min_zoom: float = MIN_ZOOM,
    max_zoom: float = MAX_ZOOM,
    context: float = CONTEXT,
    merge: str = "max",
    min_confidence: float = MIN_CONFIDENCE,
    nms_iou: float = NMS_IOU,
    max_regions: int = MAX_REGIONS,
    detach_features: bool = False,
    backbone_weights: str | None = None,
    align_corners: bool = False,
) -> HAZN:
    """HAZN on the DeepLab FCN for ``backbone``: DeepLab-LargeFOV (:func:`.deeplabv1`) on
    ``"vgg16"``, as the paper (recalled, unverified); :func:`.deeplabv3` (ASPP of width
    ``channels``) on any other backbone (chosen). ``num_parts`` counts background (Person-Part:
    7); ``num_classes``, which recipes pass, must equal it. ``atrous_rates`` are ASPP's
    (deeplabv3's default when left out; LargeFOV has none). ``channels`` is also the scale
    heads' hidden width. The zoom options are :func:`.auto_zoom.zoom_regions`' (target size,
    zoom bounds, context margin, merge), the region options :func:`.auto_zoom.propose_regions`'
    (``min_confidence``, ``nms_iou``, ``max_regions``); every default is chosen (see the
    constants): the paper's values are unknown. ``detach_features`` stops the scale losses'
    gradients at the backbone (the paper shares it; from scratch the shared losses kept the
    FCN from learning parts, docs/hazn.md)."""
    if num_classes is not None and num_classes != num_parts:
        raise ValueError(
            f"hazn's classes are its parts: num_classes {num_classes} != num_parts {num_parts}"
        )
    if num_parts < 2:
        raise ValueError(f"hazn needs background and at least one part, not {num_parts}")
    if backbone == "vgg16":
        if width_mult != 1.0 or atrous_rates is not None:
            raise ValueError("hazn on vgg16 (DeepLab-LargeFOV) takes no width_mult or atrous_rates")
        fcn = deeplabv1(
            num_classes=num_parts, output_stride=output_stride,
            backbone_weights=backbone_weights, align_corners=align_corners,
        )  # fmt: skip
    else:
        fcn = deeplabv3(
            backbone=backbone, num_classes=num_parts, output_stride=output_stride,
            width_mult=width_mult, channels=channels, backbone_weights=backbone_weights,
            align_corners=align_corners,
            **({} if atrous_rates is None else {"atrous_rates": tuple(atrous_rates)}),
        )  # fmt: skip
    return HAZN(
        fcn, channels=channels, zoom_objects=zoom_objects, zoom_parts=zoom_parts,
        target_size=target_size, min_zoom=min_zoom, max_zoom=max_zoom, context=context,
        merge=merge, min_confidence=min_confidence, nms_iou=nms_iou, max_regions=max_regions,
        detach_features=detach_features,
    )  # fmt: skip
