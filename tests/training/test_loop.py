import warnings
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from atrous.checkpoint import load_checkpoint
from atrous.data import SegmentationFolder, eval_transforms
from atrous.errors import AtrousError, CheckpointError
from atrous.models import build_model
from atrous.training import poly_lr, train
from tests.conftest import tiny_config, train_killed_after_first_checkpoint


def _fixed_batch(data: Path) -> tuple[torch.Tensor, torch.Tensor]:
    dataset = SegmentationFolder(data, "train", transforms=eval_transforms())
    items = [dataset[i] for i in range(2)]
    crop = min(min(img.shape[-2:]) for img, _ in items)
    images = torch.stack([img[:, :crop, :crop] for img, _ in items])
    masks = torch.stack([mask[:crop, :crop] for _, mask in items])
    return images, masks


def test_training_lowers_the_loss(tiny_data: Path, tmp_path: Path):
    cfg = tiny_config(tiny_data, tmp_path, "train.steps=40", "data.val_split=null")
    images, masks = _fixed_batch(tiny_data)
    torch.manual_seed(cfg.train.seed)
    spec_kwargs = {**cfg.model.builder_kwargs(), "num_classes": 5}
    initial = build_model(cfg.model.name, **spec_kwargs).eval()
    result = train(cfg, progress=False)
    trained = build_model(cfg.model.name, **spec_kwargs).eval()
    trained.load_state_dict(load_checkpoint(result["checkpoint"])["model"])
    with torch.no_grad():
        before = F.cross_entropy(initial(images), masks, ignore_index=255).item()
        after = F.cross_entropy(trained(images), masks, ignore_index=255).item()
    assert after < 0.7 * before
    assert len(result["losses"]) == 40
    assert sum(result["losses"][-10:]) < sum(result["losses"][:10])


def test_resume_continues_exactly(tiny_data: Path, tmp_path: Path, monkeypatch):
    common = ("train.steps=6", "train.checkpoint_every=3", "data.val_split=null")
    straight = train(tiny_config(tiny_data, tmp_path / "a", *common), progress=False)

    # Kill the second run right after its step-3 checkpoint, then resume it.
    cfg = tiny_config(tiny_data, tmp_path / "b", *common)
    train_killed_after_first_checkpoint(cfg, monkeypatch)
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["step"] == 3
    resumed = train(cfg, resume=True, progress=False)

    assert resumed["losses"] == straight["losses"][3:]
    a, b = load_checkpoint(straight["checkpoint"]), load_checkpoint(resumed["checkpoint"])
    assert a["step"] == b["step"] == 6
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] == 6


def test_resume_with_workers_matches_no_workers(tiny_data: Path, tmp_path: Path):
    # Augmentations are seeded per sample, so loader workers do not change the data.
    common = ("train.steps=3", "data.val_split=null")
    zero = train(tiny_config(tiny_data, tmp_path / "w0", *common), progress=False)
    two = train(
        tiny_config(tiny_data, tmp_path / "w2", *common, "data.num_workers=2"), progress=False
    )
    assert zero["losses"] == two["losses"]


def test_final_evaluation_writes_metrics(tiny_data: Path, tmp_path: Path):
    result = train(tiny_config(tiny_data, tmp_path, "train.steps=2"), progress=False)
    assert (tmp_path / "metrics.json").is_file()
    assert set(result["metrics"]) >= {"miou", "iou", "pixel_accuracy", "mean_accuracy", "fw_iou"}
    assert len(result["metrics"]["iou"]) == 5


def test_nan_loss_stops_with_the_step(tiny_data: Path, tmp_path: Path):
    cfg = tiny_config(tiny_data, tmp_path, "train.steps=5", "train.lr=1e30")
    with pytest.raises(AtrousError, match="at step"):
        train(cfg, progress=False)


def test_poly_lr():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
    sched = poly_lr(opt, 10, 0.9)
    lrs = []
    for _ in range(10):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.01)
    assert lrs[5] == pytest.approx(0.01 * 0.5**0.9)
    assert sched.get_last_lr()[0] == 0.0


def test_resume_into_a_different_model_is_refused(tiny_data: Path, tmp_path: Path):
    common = ("train.steps=1", "data.val_split=null")
    train(tiny_config(tiny_data, tmp_path, *common), progress=False)
    wider = tiny_config(tiny_data, tmp_path, *common, "model.channels=24", "train.steps=2")
    with pytest.raises(CheckpointError, match=r"checkpoint\.pt: checkpoint is from a different"):
        train(wider, resume=True, progress=False)


def test_batch_size_one_trains(tiny_data: Path, tmp_path: Path):
    # The image-pooling branch has BN over one value per channel with a batch of one.
    cfg = tiny_config(
        tiny_data, tmp_path, "train.steps=2", "train.batch_size=1", "data.val_split=null"
    )
    assert len(train(cfg, progress=False)["losses"]) == 2


def test_freeze_bn_keeps_running_statistics(tiny_data: Path, tmp_path: Path):
    cfg = tiny_config(
        tiny_data, tmp_path, "train.steps=3", "train.freeze_bn=true", "data.val_split=null"
    )
    torch.manual_seed(cfg.train.seed)
    initial = build_model(cfg.model.name, **cfg.model.builder_kwargs(), num_classes=5)
    weights = load_checkpoint(train(cfg, progress=False)["checkpoint"])["model"]
    bn_keys = [k for k in weights if "running_" in k or k.endswith("num_batches_tracked")]
    assert bn_keys
    for key, value in initial.state_dict().items():
        if key in bn_keys or key.replace("running_mean", "weight") in bn_keys:
            assert torch.equal(weights[key], value), key
    conv = "backbone.features.0.0.weight"
    assert not torch.equal(weights[conv], initial.state_dict()[conv])  # the rest trains


def test_precise_bn_averages_the_final_weights_statistics(
    tiny_data: Path, tmp_path: Path, monkeypatch
):
    common = ("train.steps=3", "data.val_split=null")
    plain_cfg = tiny_config(tiny_data, tmp_path / "a", *common)
    plain = load_checkpoint(train(plain_cfg, progress=False)["checkpoint"])
    fed: list[torch.Tensor] = []
    update_bn = torch.optim.swa_utils.update_bn

    def recording(images, model):
        update_bn((fed.append(x) or x for x in images), model)

    monkeypatch.setattr(torch.optim.swa_utils, "update_bn", recording)
    cfg = tiny_config(tiny_data, tmp_path / "b", *common, "train.precise_bn=4")
    precise = load_checkpoint(train(cfg, progress=False)["checkpoint"])
    assert len(fed) == 4
    for key, value in plain["model"].items():  # the same training; only BN statistics differ
        if "running_" in key or key.endswith("num_batches_tracked"):
            continue
        assert torch.equal(value, precise["model"][key]), key
    stem = "backbone.features.0.1"  # the stem conv's BN: its input is that conv's output
    assert precise["model"][f"{stem}.num_batches_tracked"] == 4
    model = build_model(cfg.model.name, **cfg.model.builder_kwargs(), num_classes=5)
    model.load_state_dict(precise["model"])
    conv = model.backbone.features[0][0]
    with torch.no_grad():
        means = [conv(x).mean((0, 2, 3)) for x in fed]
        variances = [conv(x).transpose(0, 1).flatten(1).var(1) for x in fed]
    # The plain average of the per-batch statistics, not an exponential one.
    torch.testing.assert_close(precise["model"][f"{stem}.running_mean"], sum(means) / 4)
    torch.testing.assert_close(precise["model"][f"{stem}.running_var"], sum(variances) / 4)
    assert not torch.allclose(plain["model"][f"{stem}.running_mean"], sum(means) / 4)


def test_accumulation_and_clipping_resume_exactly(tiny_data: Path, tmp_path: Path, monkeypatch):
    extra = (
        "train.steps=4",
        "train.accumulate=2",
        "train.clip_grad_norm=1.0",
        "train.top_k_percent=0.5",
        "train.hard_mining_steps=2",
        "train.warmup_steps=2",
        "train.head_lr_mult=10",
        "train.checkpoint_every=2",
        "data.val_split=null",
    )
    straight = train(tiny_config(tiny_data, tmp_path / "a", *extra), progress=False)
    train_killed_after_first_checkpoint(tiny_config(tiny_data, tmp_path / "b", *extra), monkeypatch)
    resumed = train(tiny_config(tiny_data, tmp_path / "b", *extra), resume=True, progress=False)
    assert len(straight["losses"]) == 4
    assert resumed["losses"] == straight["losses"][2:]


def test_param_groups_and_warmup():
    from atrous.training.optim import param_groups

    model = build_model("deeplabv3plus", num_classes=3, width_mult=0.25, channels=8)
    groups = param_groups(model, 0.01, 1e-4, head_lr_mult=10)
    assert [g["lr"] for g in groups] == [0.01, 0.01, 0.1, 0.1]
    assert [g["weight_decay"] for g in groups] == [1e-4, 0.0, 1e-4, 0.0]
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = poly_lr(opt, 100, 0.9, warmup_steps=4)
    lrs = []
    for _ in range(6):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs[:4] == pytest.approx([(s + 1) / 4 * (1 - s / 100) ** 0.9 for s in range(4)])
    assert lrs[5] == pytest.approx((1 - 5 / 100) ** 0.9)


def test_checkpoint_spec_does_not_download_again(tiny_data: Path, tmp_path: Path, monkeypatch):
    import atrous.models.convert.weights as weights

    fetched = []

    def fake(name, tag):
        import torchvision

        fetched.append(name)
        return torchvision.models.mobilenet_v2(weights=None)

    monkeypatch.setattr(weights, "_fetch_torchvision", fake)
    cfg = tiny_config(
        tiny_data,
        tmp_path,
        "train.steps=1",
        "data.val_split=null",
        "model.width_mult=1.0",
        "model.backbone_weights=imagenet",
    )
    state = load_checkpoint(train(cfg, progress=False)["checkpoint"])
    assert fetched == ["mobilenet_v2"]
    assert state["model_spec"]["kwargs"]["backbone_weights"] is None
    from atrous import Predictor

    Predictor.from_checkpoint(tmp_path / "checkpoint.pt")
    assert fetched == ["mobilenet_v2"]  # rebuilding for inference fetched nothing more


def test_training_warns_when_aspp_rates_reach_past_the_crop(tiny_data: Path, tmp_path: Path):
    steps = ("train.steps=1", "data.val_split=null")
    with pytest.warns(UserWarning, match=r"ASPP rates \[6, 12, 18\] reach past the 3x3 features"):
        train(tiny_config(tiny_data, tmp_path / "paper", *steps), progress=False)
    fitting = tiny_config(tiny_data, tmp_path / "fit", *steps, "model.atrous_rates=[1, 2, 2]")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(fitting, progress=False)
    assert not [w for w in caught if "reach past" in str(w.message)]
