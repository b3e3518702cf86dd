"""Training loses nothing and says so: no new run over another run's files, a checkpoint only
of a finite model, Ctrl+C that saves at a step's end, bad values refused before any work, and a
worker's error as one line."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import pytest
import torch

import atrous.training.loop as loop
from atrous.checkpoint import load_checkpoint
from atrous.cli import main
from atrous.config import load_config, to_dict
from atrous.errors import AtrousError, ConfigError, DataError
from atrous.training import train
from atrous.training.guard import check_device
from atrous.training.setup import _worker_message
from tests.conftest import tiny_config


def test_a_new_run_never_replaces_a_finished_one(tiny_data: Path, tmp_path: Path):
    cfg = tiny_config(tiny_data, tmp_path, "train.steps=2", "data.val_split=null")
    train(cfg, progress=False)
    before = (tmp_path / "checkpoint.pt").read_bytes()
    with pytest.raises(ConfigError, match=r"already holds a run \(checkpoint.pt.*--resume"):
        train(tiny_config(tiny_data, tmp_path, "train.steps=4"), progress=False)
    assert (tmp_path / "checkpoint.pt").read_bytes() == before  # untouched
    # resume: auto continues it; with no checkpoint it starts a new run
    cfg = tiny_config(tiny_data, tmp_path, "train.steps=3", "train.resume=auto")
    assert (
        train(cfg, progress=False)["losses"]
        and load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 3
    )
    fresh = tiny_config(tiny_data, tmp_path / "new", "train.steps=1", "train.resume=auto")
    assert len(train(fresh, progress=False)["losses"]) == 1
    with pytest.raises(ConfigError, match="nothing to resume"):
        train(tiny_config(tiny_data, tmp_path / "none", "train.steps=1"), resume=True)


def test_the_cli_refuses_in_one_line(tiny_data: Path, tmp_path: Path, capsys):
    cfg = tiny_config(tiny_data, tmp_path, "train.steps=1", "data.val_split=null")
    recipe = tmp_path / "r.yaml"
    import yaml

    recipe.write_text(yaml.safe_dump(to_dict(cfg)))
    assert main(["train", "--config", str(recipe)]) == 0
    capsys.readouterr()
    assert main(["train", "--config", str(recipe)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds a run" in err[0]


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.checkpoint_every=0", "train.checkpoint_every = 0: must be 1 or more"),
        ("train.lr=-1", "train.lr = -1.0: must be a positive number"),
        ("train.steps=0", "train.steps = 0: must be 1 or more"),
        ("train.batch_size=0", "train.batch_size = 0: must be 1 or more"),
        ("data.scale_range=[2.0, 0.5]", "data.scale_range = [2.0, 0.5]: must be [low, high]"),
        ("train.resume=maybe", "train.resume = 'maybe': must be true, false or auto"),
    ],
)
def test_bad_values_are_refused_where_they_enter(override: str, message: str):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert message in str(err.value)


def test_a_device_that_is_not_there_is_one_line(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="torch sees no CUDA device here; use auto or cpu"):
        check_device("cuda")
    with pytest.raises(ConfigError, match="is not a device"):
        check_device("gpu")
    assert check_device("auto") == torch.device("cpu")


def test_a_diverged_run_keeps_its_last_good_checkpoint(
    tiny_data: Path, tmp_path: Path, monkeypatch
):
    # checkpoint_every 2 and log_every 3: the NaN check runs before every checkpoint, not only
    # when a step is logged
    cfg = tiny_config(
        tiny_data, tmp_path, "train.steps=6", "train.checkpoint_every=2", "train.log_every=3",
        "data.val_split=null", "train.amp=none",
    )  # fmt: skip
    step = loop._train_step
    calls = []

    def poisoned(run, stream, index):
        calls.append(index)
        loss = step(run, stream, index)
        if index == 2:  # the third step: poison the weights as a diverging update would
            with torch.no_grad():
                next(run.model.parameters()).fill_(float("nan"))
            return loss * float("nan")
        return loss

    monkeypatch.setattr(loop, "_train_step", poisoned)
    with pytest.raises(AtrousError, match=r"became nan at step 2.*last good checkpoint"):
        train(cfg, progress=False)
    saved = load_checkpoint(tmp_path / "checkpoint.pt")
    assert saved["step"] == 2
    assert all(bool(v.isfinite().all()) for v in saved["model"].values() if v.is_floating_point())


def test_infinite_batchnorm_statistics_stop_the_run(tiny_data: Path, tmp_path: Path, monkeypatch):
    cfg = tiny_config(tiny_data, tmp_path, "train.steps=2", "data.val_split=null")
    step = loop._train_step

    def blown(run, stream, index):
        loss = step(run, stream, index)
        bn = next(m for m in run.model.modules() if isinstance(m, torch.nn.BatchNorm2d))
        bn.running_var.fill_(float("inf"))  # what train.lr=1e6 did, with a finite loss
        return loss

    monkeypatch.setattr(loop, "_train_step", blown)
    with pytest.raises(AtrousError, match=r"running_var holds NaN or Inf"):
        train(cfg, progress=False)
    assert not (tmp_path / "checkpoint.pt").exists()


@pytest.mark.skipif(os.name != "posix", reason="SIGINT by os.kill")
def test_ctrl_c_stops_at_the_step_end_saves_and_resumes_exactly(
    tiny_data: Path, tmp_path: Path, monkeypatch
):
    common = ("train.steps=6", "train.checkpoint_every=100", "data.val_split=null")
    step = loop._train_step

    def interrupted(run, stream, index):
        loss = step(run, stream, index)
        if index == 1:  # Ctrl+C during the second step
            threading.Thread(target=os.kill, args=(os.getpid(), signal.SIGINT)).start()
            threading.Event().wait(0.2)
        return loss

    monkeypatch.setattr(loop, "_train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(tiny_data, tmp_path / "a", *common), progress=False)
    monkeypatch.undo()  # the resumed and the whole run take the real step
    stopped = load_checkpoint(tmp_path / "a" / "checkpoint.pt")["step"]
    assert stopped in (2, 3)  # the end of the step the signal arrived in
    resumed = train(tiny_config(tiny_data, tmp_path / "a", *common), resume=True, progress=False)
    whole = train(tiny_config(tiny_data, tmp_path / "b", *common), progress=False)
    assert resumed["losses"] == whole["losses"][stopped:]
    a = load_checkpoint(tmp_path / "a" / "checkpoint.pt")["model"]
    b = load_checkpoint(tmp_path / "b" / "checkpoint.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_worker_error_reaches_the_user_as_its_own_line(tiny_data: Path, tmp_path: Path, capsys):
    wrapped = (
        "Caught DataError in DataLoader worker process 0.\nOriginal Traceback (most recent call "
        'last):\n  File "x.py", line 1, in f\natrous.errors.DataError: /data/a.png: truncated'
    )
    assert _worker_message(wrapped) == "/data/a.png: truncated"
    assert _worker_message("/data/a.png: truncated") == "/data/a.png: truncated"
    data = tmp_path / "data"
    import shutil

    shutil.copytree(tiny_data, data)
    first = sorted((data / "images").iterdir())[0]
    first.write_bytes(b"not an image")
    cfg = tiny_config(data, tmp_path / "run", "train.steps=8", "data.num_workers=1",
                      "data.val_split=null")  # fmt: skip
    with pytest.raises(DataError) as err:
        train(cfg, progress=False)
    assert "Traceback" not in str(err.value) and first.name in str(err.value)
    json.dumps(str(err.value))


def test_a_folder_with_a_log_and_no_checkpoint_says_so(tiny_data: Path, tmp_path: Path):
    (tmp_path / "train_log.jsonl").write_text('{"step": 1, "loss": NaN}\n')
    with pytest.raises(ConfigError, match="left no checkpoint .*train_log.jsonl.*resume: auto"):
        train(tiny_config(tiny_data, tmp_path, "train.steps=1"), progress=False)
    cfg = tiny_config(tiny_data, tmp_path, "train.steps=1", "train.resume=auto")
    assert len(train(cfg, progress=False)["losses"]) == 1  # auto starts over


def test_resume_auto_continues_a_killed_run_bit_for_bit(
    tiny_data: Path, tmp_path: Path, monkeypatch
):
    from tests.conftest import train_killed_after_first_checkpoint

    common = ("train.steps=4", "train.checkpoint_every=2", "train.resume=auto")
    whole = train(tiny_config(tiny_data, tmp_path / "a", *common), progress=False)
    cfg = tiny_config(tiny_data, tmp_path / "b", *common)
    train_killed_after_first_checkpoint(cfg, monkeypatch)
    again = train(cfg, progress=False)  # the same command, as a restarted job runs it
    assert again["losses"] == whole["losses"][2:]
    a = load_checkpoint(tmp_path / "a" / "checkpoint.pt")["model"]
    b = load_checkpoint(tmp_path / "b" / "checkpoint.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
