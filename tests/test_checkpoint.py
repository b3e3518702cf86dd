from pathlib import Path

import pytest
import torch

from atrous import Predictor
from atrous.checkpoint import load_checkpoint, load_model_state, save_checkpoint
from atrous.errors import CheckpointError
from atrous.models import deeplabv3plus


def test_checkpoint_from_a_different_model(tiny_checkpoint: Path):
    other = deeplabv3plus(num_classes=5, width_mult=0.5, channels=16)
    state = load_checkpoint(tiny_checkpoint)
    with pytest.raises(CheckpointError, match="different model.*shape"):
        load_model_state(other, state["model"], tiny_checkpoint)
    with pytest.raises(CheckpointError, match="different model.*missing"):
        load_model_state(other, {}, tiny_checkpoint)


def test_unreadable_and_foreign_files(tmp_path: Path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=r"junk\.pt: not a readable checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"state_dict": {}}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not an atrous checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")


class _Payload:
    def __reduce__(self):
        return (print, ("code ran",))


def test_loading_runs_no_code(tmp_path: Path, capsys):
    # weights_only=True refuses arbitrary pickled callables instead of executing them.
    path = tmp_path / "evil.pt"
    torch.save({"format": "atrous-checkpoint/1", "x": _Payload()}, path)
    with pytest.raises(CheckpointError, match=r"evil\.pt: refused: .*\(print\)"):
        load_checkpoint(path)
    assert "code ran" not in capsys.readouterr().out


def test_round_trip_rebuilds_the_model(tiny_checkpoint: Path, tmp_path: Path):
    state = load_checkpoint(tiny_checkpoint)
    assert state["step"] == 3 and state["classes"][0] == "background"
    copy = save_checkpoint(tmp_path / "copy.pt", state)
    predictor = Predictor.from_checkpoint(copy)
    assert predictor.model.num_classes == 5
    assert predictor.info.classes == tuple(state["classes"])
