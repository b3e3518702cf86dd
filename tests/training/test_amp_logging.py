"""Mixed precision (bf16 on CPU, fp16 + GradScaler on CUDA) and the step/eval logs."""

import json
import math
import sys
import types
from pathlib import Path

import pytest
import torch

from atrous.checkpoint import load_checkpoint
from atrous.errors import ConfigError
from atrous.training import train
from tests.conftest import tiny_config, train_killed_after_first_checkpoint


def _log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


def test_bf16_on_cpu_trains(tiny_data: Path, tmp_path: Path):
    cfg = tiny_config(tiny_data, tmp_path, "train.steps=8", "train.amp=bf16", "data.val_split=null")
    losses = train(cfg, progress=False)["losses"]
    assert len(losses) == 8 and all(math.isfinite(x) for x in losses)
    assert min(losses[-3:]) < losses[0]
    # bf16 really ran: the same run in fp32 computes other losses (rounding), from step 0 on
    fp32 = tiny_config(
        tiny_data, tmp_path / "fp32", "train.steps=2", "train.amp=none", "data.val_split=null"
    )
    reference = train(fp32, progress=False)["losses"]
    assert losses[0] != pytest.approx(reference[0], rel=1e-6, abs=0)
    assert losses[0] == pytest.approx(reference[0], rel=0.05)  # rounded, not another model


def test_fp16_on_cpu_is_a_config_error(tiny_data: Path, tmp_path: Path):
    cfg = tiny_config(tiny_data, tmp_path, "train.steps=1", "train.amp=fp16", "train.device=cpu")
    with pytest.raises(ConfigError, match=r"train\.amp = 'fp16' needs a CUDA device.*bf16"):
        train(cfg, progress=False)
    cfg = tiny_config(tiny_data, tmp_path, "train.steps=1", "train.amp=fp8")
    with pytest.raises(ConfigError, match="expected one of auto, none, bf16, fp16"):
        train(cfg, progress=False)
    assert not (tmp_path / "checkpoint.pt").exists()


def test_log_has_a_line_per_step_and_the_evaluation(tiny_data: Path, tmp_path: Path):
    result = train(tiny_config(tiny_data, tmp_path, "train.steps=3"), progress=False)
    records = _log(tmp_path)
    assert [r["step"] for r in records] == [1, 2, 3, 3]
    assert [r["loss"] for r in records[:3]] == result["losses"]
    assert records[0]["lr"] == pytest.approx(0.02)
    assert records[2]["lr"] < records[1]["lr"] < records[0]["lr"]  # poly decay
    # Throughput: batch 2 per step, so images/s is 2 / (seconds per step).
    for r in records[:3]:
        assert r["s_per_step"] > 0 and r["images_per_s"] == pytest.approx(2 / r["s_per_step"])
    assert records[-1]["split"] == "val"
    assert records[-1]["eval"]["miou"] == pytest.approx(result["metrics"]["miou"])
    assert not (tmp_path / "tensorboard").exists()  # no tensorboard package: skipped


def test_log_every_and_tensorboard_scalars(tiny_data: Path, tmp_path: Path, monkeypatch):
    scalars: list[tuple[str, float, int]] = []

    class FakeWriter:  # stands in for torch.utils.tensorboard.SummaryWriter
        def __init__(self, log_dir: str, purge_step=None) -> None:
            assert Path(log_dir) == tmp_path / "tensorboard"

        def add_scalar(self, name: str, value: float, step: int) -> None:
            scalars.append((name, value, step))

        def close(self) -> None:
            scalars.append(("closed", 0.0, 0))

    fake = types.ModuleType("torch.utils.tensorboard")
    fake.SummaryWriter = FakeWriter  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    train(tiny_config(tiny_data, tmp_path, "train.steps=5", "train.log_every=2"), progress=False)
    assert [r["step"] for r in _log(tmp_path)] == [2, 4, 5, 5]
    names = [(name, step) for name, _, step in scalars]
    assert names == [
        *[(name, step) for step in (2, 4, 5) for name in ("loss", "lr")],
        ("val/miou", 5),  # the validation curve's last point
        ("closed", 0),
    ]


def test_bf16_resume_continues_exactly(tiny_data: Path, tmp_path: Path, monkeypatch):
    common = (
        "train.steps=4",
        "train.checkpoint_every=2",
        "train.amp=bf16",
        "data.val_split=null",
    )
    straight = train(tiny_config(tiny_data, tmp_path / "a", *common), progress=False)
    cfg = tiny_config(tiny_data, tmp_path / "b", *common)
    train_killed_after_first_checkpoint(cfg, monkeypatch)
    resumed = train(cfg, resume=True, progress=False)
    assert resumed["losses"] == straight["losses"][2:]
    a, b = load_checkpoint(straight["checkpoint"]), load_checkpoint(resumed["checkpoint"])
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key

    # The resumed log holds each step once, as the uninterrupted one does (timings aside).
    def steps(log):
        return [
            {k: v for k, v in r.items() if k not in ("images_per_s", "s_per_step")} for r in log
        ]

    assert steps(_log(tmp_path / "b")) == steps(_log(tmp_path / "a"))


@pytest.mark.gpu
def test_fp16_loss_scale_is_checkpointed_and_restored(tiny_data: Path, tmp_path: Path, monkeypatch):
    common = (
        "train.steps=4",
        "train.checkpoint_every=2",
        "train.amp=fp16",
        "train.device=cuda",
        "data.val_split=null",
    )
    straight = train(tiny_config(tiny_data, tmp_path / "a", *common), progress=False)
    assert load_checkpoint(straight["checkpoint"])["scaler"]["scale"] > 0
    cfg = tiny_config(tiny_data, tmp_path / "b", *common)
    train_killed_after_first_checkpoint(cfg, monkeypatch)
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["scaler"]
    resumed = train(cfg, resume=True, progress=False)
    assert resumed["losses"] == pytest.approx(straight["losses"][2:], rel=1e-3)
    a, b = load_checkpoint(straight["checkpoint"]), load_checkpoint(resumed["checkpoint"])
    assert a["scaler"] == b["scaler"]


def test_amp_auto_picks_what_the_hardware_runs(monkeypatch):
    import atrous.training.optim as optim

    cpu = torch.device("cpu")
    monkeypatch.setattr(optim, "bf16_autocast_supported", lambda device: False)
    assert optim.resolve_amp("auto", cpu) == "none"  # no AVX512-BF16 / AMX: fp32
    monkeypatch.setattr(optim, "bf16_autocast_supported", lambda device: True)
    assert optim.resolve_amp("auto", cpu) == "bf16"
    assert optim.resolve_amp("none", cpu) == "none"  # an explicit choice stays
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert optim.resolve_amp("auto", torch.device("cuda")) == "fp16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert optim.resolve_amp("auto", torch.device("cuda")) == "bf16"


def test_amp_auto_without_bf16_trains_in_fp32(tiny_data: Path, tmp_path: Path, monkeypatch):
    import atrous.training.optim as optim

    seen = []
    real = optim.autocast
    monkeypatch.setattr(optim, "bf16_autocast_supported", lambda device: False)

    def recording(amp, device):
        seen.append(amp)
        return real(amp, device)

    import atrous.training.loop as loop

    monkeypatch.setattr(loop, "autocast", recording)
    cfg = tiny_config(tiny_data, tmp_path, "train.steps=2", "data.val_split=null")
    assert cfg.train.amp == "auto"  # the default
    train(cfg, progress=False)
    assert seen == ["none", "none"]
