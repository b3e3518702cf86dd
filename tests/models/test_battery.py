"""One battery over every builder in ``MODELS`` and every wrapper: logits at odd input sizes at
each output stride, a non-zero gradient for every trainable parameter from a real loss, the
atrous (hole-algorithm) property of every strided backbone, the output-stride round trip, and
ONNX / TorchScript parity. A new builder or wrapper joins it by being in MODELS / WRAPPERS."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from atrous.errors import AtrousError
from atrous.export import export_onnx, export_torchscript, load_torchscript
from atrous.export._program import export_program
from atrous.models import BACKBONES, DECODERS, MODELS, ModelSpec, build_model
from atrous.models.spec import WRAPPERS
from atrous.models.wrappers import WrappedModel
from atrous.tasks.losses import segmentation_loss
from atrous.tasks.masklab import collate as collate_instances
from atrous.tasks.masklab import encode as encode_instances
from atrous.tasks.masklab import masklab_loss
from atrous.tasks.panoptic_targets import panoptic_loss, panoptic_targets
from atrous.tasks.parts import parts_loss
from atrous.tasks.personlab_targets import encode, personlab_loss

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
NOT_DENSE = ("abc_cnn",)
"""Builders whose models do not map images to pixels (ABC-CNN: images and questions -> answer
logits); tests/test_vqa_model.py runs the battery's properties that apply to them."""
DENSE = [name for name in MODELS if name not in NOT_DENSE]


def small(name: str, **kwargs: object) -> nn.Module:
    """Builder ``name`` with 3 classes, narrowed where it takes a width (every other option at
    its default), so that each builder in MODELS runs here without a hand-kept list."""
    accepted = inspect.signature(MODELS[name]).parameters
    options: dict[str, object] = {"num_classes": 3}
    if "channels" in accepted:
        options["channels"] = 16
    if "thing_classes" in accepted:
        options["thing_classes"] = [1, 2]
    if "num_keypoints" in accepted:  # PersonLab: background / person, on a small backbone
        options.update(num_classes=2, backbone="mobilenetv2", width_mult=0.25, radius=4.0)
    if "num_directions" in accepted:  # MaskLab: a small trunk and small anchors
        options.update(backbone="mobilenetv2", width_mult=0.25, anchor_sizes=(8, 16))
    if "num_parts" in accepted:  # HAZN: a small FCN, few small zoomed regions
        options.update(num_parts=3, backbone="mobilenetv2", width_mult=0.25)
        options.update(max_regions=2, target_size=48.0)
    options.update(kwargs)
    return build_model(name, **options)


# Small settings for the wrappers that take any (a new wrapper with required ones adds them).
WRAPPER_OPTIONS: dict[str, dict[str, object]] = {
    "dense_crf": {"mean": MEAN, "std": STD, "iterations": 2},
    "scale_attention": {"attention_channels": 8},
}


def _wrapped(wrapper: str) -> nn.Module:
    base = small("deeplabv3plus", width_mult=0.25)
    return WRAPPERS[wrapper](base, **WRAPPER_OPTIONS.get(wrapper, {}))


# Every decoder of "Decoders matter" (with and without its residual connection) as a model too.
DECODER_VARIANTS = {
    f"decoder:{d}{'+residual' if r else ''}": {"decoder": d, "decoder_residual": r}
    for d in DECODERS[1:]
    for r in (False, True)
}

# Backbones the builders' defaults leave out, each with the smallest width it takes.
BACKBONE_VARIANTS = {
    "deeplabv3plus:resnet50": ("deeplabv3plus", {"backbone": "resnet50"}),
    "deeplabv3plus:xception65": ("deeplabv3plus", {"backbone": "xception65", "width_mult": 0.25}),
    "deeplabv3:mobilenetv2": ("deeplabv3", {"backbone": "mobilenetv2", "width_mult": 0.25}),
}

NETWORKS: dict[str, Callable[[], nn.Module]] = {
    **{name: (lambda name=name: small(name)) for name in DENSE},
    **{v: (lambda b=b, o=o: small(b, **o)) for v, (b, o) in BACKBONE_VARIANTS.items()},
    **{f"wrapper:{w}": (lambda w=w: _wrapped(w)) for w in WRAPPERS},
    **{
        name: (lambda o=o: small("deeplabv3plus", width_mult=0.25, **o))
        for name, o in DECODER_VARIANTS.items()
    },
}
# Wrappers whose layers do not trace (DT's pixel loop, the CRF's sparse lattice) refuse export.
UNEXPORTABLE = ("domain_transform", "dense_crf")


def _semantic(out: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
    """The semantic logits of a model's eval output (PersonLab's is a dict of fields)."""
    return out["semantic"] if isinstance(out, dict) else out


def _classes(model: nn.Module) -> int:
    return 2 if hasattr(model, "num_keypoints") else 3


def _randomize_bn(model: nn.Module) -> nn.Module:
    """Non-trivial BN statistics, so eval mode is not an identity."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize("wrapper", sorted(WRAPPERS))
def test_each_wrapper_wraps_the_model_it_is_given(wrapper: str) -> None:
    """Every registered wrapper (all of them run in the battery below) puts its layer around the
    model it gets, passes the model's facts through, and is what a spec naming it builds."""
    options = WRAPPER_OPTIONS.get(wrapper, {})
    base = small("deeplabv3plus", width_mult=0.25)
    wrapped = WRAPPERS[wrapper](base, **options)
    assert isinstance(wrapped, WrappedModel) and wrapped.model is base
    assert wrapped.num_classes == 3 and wrapped.output_stride == base.output_stride
    kwargs = {"num_classes": 3, "width_mult": 0.25, "channels": 16}
    built = ModelSpec("deeplabv3plus", kwargs, ((wrapper, options),)).build()
    assert type(built) is type(wrapped) and type(built.model) is type(base)


@pytest.mark.parametrize("output_stride", [8, 16, 32])
@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_logits_at_odd_input_sizes(name: str, output_stride: int) -> None:
    model = NETWORKS[name]().eval()
    if output_stride not in model.output_strides:
        pytest.skip(f"{name} runs at output strides {model.output_strides} only")
    model.set_output_stride(output_stride)
    n = _classes(model)
    assert model.output_stride == output_stride and model.num_classes == n
    with torch.no_grad():
        for size in [(33, 47), (65, 65)]:
            assert _semantic(model(torch.randn(2, 3, *size))).shape == (2, n, *size)


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_every_trainable_parameter_gets_a_gradient(name: str) -> None:
    model = NETWORKS[name]().train()
    # zero-initialised residual units pass no gradient at init by design: open them, so the
    # check below sees the wiring
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d) and not m.weight.any():
            torch.nn.init.ones_(m.weight)
    x = torch.randn(2, 3, 33, 47)
    target = torch.randint(0, 3, (2, 33, 47))
    outputs = model(x)
    if hasattr(model, "num_keypoints"):  # PersonLab: one person's targets, the five losses
        points = torch.rand(17, 3) * torch.tensor([47.0, 33.0, 0.0]) + torch.tensor([0, 0, 2.0])
        mask = torch.zeros(33, 47, dtype=torch.bool)
        mask[5:30, 10:40] = True
        one = encode([{"keypoints": points, "mask": mask}], (33, 47), radius=4.0)
        personlab_loss(outputs, {k: v[None].expand(2, *v.shape) for k, v in one.items()})[
            0
        ].backward()
    elif hasattr(model, "segment_boxes"):  # MaskLab: two instances each, every loss
        masks = torch.zeros(2, 33, 47, dtype=torch.bool)
        masks[0, 4:20, 5:25], masks[1, 15:30, 25:45] = True, True
        boxes = torch.tensor([[5.0, 4, 25, 20], [25, 15, 45, 30]])
        crowd = torch.zeros(2, dtype=torch.bool)
        one = encode_instances(
            {"boxes": boxes, "labels": torch.tensor([1, 2]), "masks": masks, "iscrowd": crowd}
        )
        _, batch = collate_instances([(x[0], one), (x[1], one)])
        masklab_loss(model(x, batch["instances"]), batch)[0].backward()
    elif hasattr(model, "forward_regions"):  # HAZN: parts, two objects, a part each
        masks = torch.stack([target, torch.zeros_like(target), torch.zeros_like(target)], 1)
        masks[:, 1, 4:20, 5:25], masks[:, 1, 15:30, 28:45] = 1, 2
        masks[:, 2, 4:10, 5:25], masks[:, 2, 15:30, 28:35] = 1, 2
        parts_loss(outputs, masks).backward()
    elif isinstance(outputs, dict) and "semantic" in outputs:  # panoptic: semantic, centre, offsets
        instances = torch.randint(0, 3, (2, 33, 47))
        masks = torch.stack([target, instances], dim=1)
        targets = panoptic_targets(masks, model.thing_classes, sigma=2.0)
        panoptic_loss(outputs, targets).backward()
    else:
        segmentation_loss(outputs, target).backward()  # a dict of outputs in training, too
    dead = [
        n
        for n, p in model.named_parameters()
        if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)
    ]
    assert not dead, f"no gradient reaches {dead[:5]}"


# Multi-grid's unit rates (TF reference, detectron2) and VGG LargeFOV's stride-1 pools (v1's
# own design) break the property by construction; every other backbone keeps it.
ATROUS = [name for name in sorted(BACKBONES) if name != "vgg16"]


@pytest.mark.parametrize("stride", [16, 32])
@pytest.mark.parametrize("backbone", ATROUS)
def test_atrous_features_are_the_strided_ones_at_every_other_pixel(
    backbone: str, stride: int
) -> None:
    """With the same weights, features at output stride s/2 sampled at every other pixel equal
    the features at stride s, for inputs of size k*s+1 (deeplab2 keeps the same test)."""
    options = {"width_mult": 0.25} if backbone == "mobilenetv2" else {}
    # float64: the deep backbones amplify float32 rounding (different conv algorithms for the
    # strided and the dilated form) past any tolerance that would still catch a real shift.
    net = _randomize_bn(BACKBONES[backbone](output_stride=stride, **options)).eval().double()
    x = torch.randn(1, 3, 2 * stride + 1, 3 * stride + 1, dtype=torch.float64)
    with torch.no_grad():
        coarse = net(x)["out"]
        net.set_output_stride(stride // 2)
        fine = net(x)["out"]
    assert fine.shape[-2:] == (4 + 1, 6 + 1) and coarse.shape[-2:] == (2 + 1, 3 + 1)
    torch.testing.assert_close(fine[..., ::2, ::2], coarse, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_output_stride_round_trip(name: str) -> None:
    model = _randomize_bn(NETWORKS[name]()).eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(1, 3, 33, 47)
    start = model.output_stride
    other = 16 if start == 8 else 8
    if other not in model.output_strides:
        pytest.skip(f"{name} runs at output strides {model.output_strides} only")
    with torch.no_grad():
        before = model(x)
        model.set_output_stride(other)
        at_other = model(x)
        model.set_output_stride(start)
        after = model(x)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    # The same function again (conv algorithms may differ in the last float bits).
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)
    before, at_other = _semantic(before), _semantic(at_other)
    assert at_other.shape == before.shape and not torch.allclose(at_other, before)


EXPORT_SIZE, OTHER_SIZE = (65, 65), (97, 81)


EXPORTABLE = {
    **{
        name: (lambda name=name: small(name))
        for name in DENSE
        if name not in ("panoptic_deeplab", "personlab", "masklab", "hazn")
    },
    **{n: f for n, f in NETWORKS.items() if n.startswith("decoder:")},
    **{f"wrapper:{w}": (lambda w=w: _wrapped(w)) for w in WRAPPERS if w not in UNEXPORTABLE},
}


@pytest.mark.parametrize("name", sorted(EXPORTABLE))
def test_onnx_and_torchscript_match_eager(name: str, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    model = _randomize_bn(EXPORTABLE[name]()).eval()
    # the legacy exporter over every builder (about 3 s each); the dynamo exporter, the default
    # with onnxscript, takes about 25 s a model and has its own parity tests at several sizes on
    # representative builders (tests/export/test_deploy_exports.py)
    path = export_onnx(
        model, tmp_path / "m.onnx", height=65, width=65, dynamic=True, exporter="legacy"
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    traced, _ = load_torchscript(export_torchscript(model, tmp_path / "m.pt"))
    for size in (EXPORT_SIZE, OTHER_SIZE):
        x = torch.randn(1, 3, *size)
        with torch.no_grad():
            eager = model(x).numpy()
            scripted = traced(x).numpy()
        (onnx_out,) = session.run(None, {"image": x.numpy()})
        assert onnx_out.shape == eager.shape == (1, 3, *size)
        # Relative to the logits' scale: untrained deep ResNets reach logits in the thousands.
        tolerance = 1e-3 * max(1.0, float(np.abs(eager).max()) / 100)
        assert np.abs(onnx_out - eager).max() < tolerance, "ONNX"
        assert np.abs(scripted - eager).max() < tolerance, "TorchScript"


@pytest.mark.parametrize("name", sorted(EXPORTABLE))
def test_pt2_matches_eager(name: str) -> None:
    model = _randomize_bn(EXPORTABLE[name]()).eval()
    program = export_program(model, height=65, width=65).module()
    for size in (EXPORT_SIZE, OTHER_SIZE, (50, 77)):
        x = torch.randn(2, 3, *size)
        with torch.no_grad():
            eager = model(x)
            tolerance = 1e-3 * max(1.0, float(eager.abs().max()) / 100)
            assert (program(x) - eager).abs().max().item() < tolerance


@pytest.mark.parametrize(
    "wrapper", [*UNEXPORTABLE, "panoptic_deeplab", "personlab", "masklab", "hazn"]
)
def test_wrappers_refuse_export_clearly(wrapper: str, tmp_path: Path) -> None:
    model = (small(wrapper) if wrapper in MODELS else _wrapped(wrapper)).eval()
    with pytest.raises(AtrousError, match="cannot be exported"):
        export_onnx(model, tmp_path / "m.onnx", height=33, width=33)
    with pytest.raises(AtrousError, match="cannot be exported"):
        export_torchscript(model, tmp_path / "m.pt")
    with pytest.raises(AtrousError, match="cannot be exported"):
        export_program(model)


@pytest.mark.parametrize("name", sorted(DENSE))
def test_set_output_stride_matches_a_fresh_build(name: str) -> None:
    """Re-pointing a model at another output stride gives the model built at that stride with
    the same weights (backbone strides become rates, head rates scale)."""
    model = _randomize_bn(small(name)).eval()
    other = 16 if model.output_stride == 8 else 8
    if other not in model.output_strides:
        pytest.skip(f"{name} runs at output strides {model.output_strides} only")
    fresh = small(name, output_stride=other).eval()
    fresh.load_state_dict(model.state_dict())
    model.set_output_stride(other)
    x = torch.randn(1, 3, 49, 49)
    with torch.no_grad():
        torch.testing.assert_close(model(x), fresh(x), rtol=1e-4, atol=1e-4)
    assert model.output_stride == other
    if hasattr(getattr(model, "head", None), "rates"):
        assert model.head.rates == fresh.head.rates
