"""The aligned forward (atrous.models.align): every resize in the path from image to logits is
by a whole factor, so each feature pixel sits at the same place in the image at every position
and every input size; and a forward equals the one on the image padded to an exact size."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from atrous.models import build_model, deeplabv3plus
from atrous.models.align import crop_to, exact_size, pad_to_exact

SIZES = [(65, 65), (97, 97), (100, 100), (217, 181), (513, 513)]
# Every builder, and each backbone family under the builders that take one.
BUILDS = [
    ("deeplabv1", {}),
    ("deeplabv2", {"backbone": "resnet101"}),
    ("deeplabv2", {"backbone": "vgg16"}),
    ("deeplabv3", {"backbone": "resnet50"}),
    ("deeplabv3", {"backbone": "resnet101", "multi_grid": (1, 2, 4)}),
    ("deeplabv3plus", {"backbone": "mobilenetv2"}),
    ("deeplabv3plus", {"backbone": "resnet50"}),
    ("deeplabv3plus", {"backbone": "xception65"}),
    ("mobile_deeplabv3", {}),
]


def _ids(build: tuple[str, dict]) -> str:
    return build[0] + "-" + str(build[1].get("backbone", ""))


def test_exact_sizes() -> None:
    assert [exact_size(n, 16) for n in (1, 16, 17, 33, 513)] == [16, 16, 32, 48, 528]
    assert [exact_size(n, 16, align_corners=True) for n in (1, 17, 18, 513, 514)] == [
        1,
        17,
        33,
        513,
        529,
    ]
    x = torch.randn(1, 3, 217, 181)
    assert pad_to_exact(x, 16).shape[-2:] == (224, 192)
    assert pad_to_exact(x, 8, align_corners=True).shape[-2:] == (217, 185)
    assert torch.equal(pad_to_exact(x, 16)[..., :217, :181], x)
    assert pad_to_exact(x, 16)[..., 217:, :].abs().max() == 0  # the mean pixel
    assert crop_to({"out": torch.zeros(1, 2, 9, 9)}, 4, 5)["out"].shape == (1, 2, 4, 5)
    with pytest.raises(ValueError, match="positive"):
        exact_size(0, 16)


def _resizes(model: torch.nn.Module, size: tuple[int, int]) -> list[tuple]:
    """(input size, output size, align_corners) of every bilinear resize in a forward, on the
    meta device (shapes only, so the full-size networks cost nothing)."""
    calls: list[tuple] = []
    original = F.interpolate

    def recording(x, size=None, scale_factor=None, mode="nearest", align_corners=None, **kw):
        out = original(x, size, scale_factor, mode, align_corners, **kw)
        calls.append((tuple(x.shape[-2:]), tuple(out.shape[-2:]), bool(align_corners)))
        return out

    F.interpolate = recording
    try:
        with torch.no_grad():
            out = model(torch.zeros(1, 3, *size, device="meta"))
    finally:
        F.interpolate = original
    assert out.shape[-2:] == size
    return calls


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("output_stride", [8, 16])
@pytest.mark.parametrize("build", BUILDS, ids=_ids)
def test_every_resize_is_by_a_whole_factor(build, output_stride, align_corners) -> None:
    """align_corners=False: out = k * in; align_corners=True: out - 1 = k * (in - 1)."""
    name, kwargs = build
    with torch.device("meta"):
        model = build_model(
            name, num_classes=5, output_stride=output_stride, align_corners=align_corners, **kwargs
        ).eval()
    for size in SIZES:
        calls = _resizes(model, size)
        assert calls, "no resize recorded"
        for src, dst, corners in calls:
            if src == (1, 1):  # image pooling: a constant map, no position to keep
                continue
            assert corners == align_corners
            for a, b in zip(src, dst, strict=True):
                whole = (b - 1) % (a - 1) == 0 if align_corners else b % a == 0
                assert whole, f"{name} at {size}: resize {src} -> {dst} is fractional"


def _sampled_rows(model: torch.nn.Module, size: tuple[int, int]) -> tuple[torch.Tensor, int]:
    """For each image row, the classifier-grid row its logits are interpolated from (the
    classifier's output replaced by a ramp), and that grid's stride."""
    grid: dict[str, int] = {}

    def ramp(module, inputs, out):
        h = out.shape[-2]
        grid["h"] = h
        rows = torch.arange(h, dtype=out.dtype).view(1, 1, h, 1)
        return rows.expand(out.shape).clone()

    handle = model.classifier.register_forward_hook(ramp)
    try:
        with torch.no_grad():
            out = model(torch.randn(1, 3, *size))
    finally:
        handle.remove()
    stride = exact_size(size[0], model.output_stride) // grid["h"]
    return out[0, 0, :, 0], stride


@pytest.mark.parametrize(
    "build",
    [b for b in BUILDS if b[1].get("backbone") not in ("resnet101", "xception65")],
    ids=_ids,
)
def test_the_same_image_to_logit_offset_at_every_row_and_size(build) -> None:
    """The upsampling path's analytic response: with align_corners=False and a whole factor s,
    image row y reads grid row (y + 0.5) / s - 0.5, so s * row - y = (1 - s) / 2 everywhere
    (away from the clamped first and last half-cells), the same at every size."""
    name, kwargs = build
    torch.manual_seed(0)
    model = build_model(name, num_classes=3, output_stride=16, **kwargs).eval()
    offsets = set()
    for size in [(65, 65), (97, 97), (100, 100), (217, 181)]:
        rows, s = _sampled_rows(model, size)
        y = torch.arange(size[0], dtype=rows.dtype)
        inside = (rows > 0) & (rows < rows.max())
        offset = s * rows[inside] - y[inside]
        assert offset.max() - offset.min() < 1e-4, f"{name} at {size}: offset drifts"
        offsets.add(round(offset.mean().item(), 3))
        offsets.add(round((1 - s) / 2, 3))
    assert len(offsets) == 1, offsets


def test_prediction_equals_the_padded_image_cropped() -> None:
    torch.manual_seed(0)
    model = deeplabv3plus(num_classes=4, width_mult=0.25, channels=16).eval()
    x = torch.randn(2, 3, 217, 181)
    padded = torch.zeros(2, 3, 224, 192)
    padded[..., :217, :181] = x
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(padded)[..., :217, :181], rtol=0, atol=0)
        # The unpadded network on the odd size is what drifted; it differs.
        model.pad_input = False
        assert not torch.equal(model(x), model(padded)[..., :217, :181])
