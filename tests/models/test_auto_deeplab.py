"""Auto-DeepLab's found network: the TF reference path and cell, the paper's parameter counts,
the cell wiring, ScheduledDropPath and architecture files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from atrous.models import auto_deeplab
from atrous.models.auto_deeplab.network import FOUND_INPUTS, FOUND_OPERATIONS, FOUND_PATH, DropPath
from atrous.models.progress import set_training_progress


@pytest.mark.parametrize(("size", "paper"), [("S", 10.15e6), ("M", 21.62e6), ("L", 44.42e6)])
def test_parameter_counts_within_5_percent_of_table_2(size, paper):
    model = auto_deeplab(size=size, num_classes=19)  # Cityscapes, as Table 2
    count = sum(p.numel() for p in model.parameters())
    assert abs(count - paper) / paper < 0.05
    assert abs(count - paper) / paper < 0.001  # in fact within 0.1%


def test_the_found_path_widths_and_strides():
    model = auto_deeplab(size="S", num_classes=3).eval()
    net = model.backbone
    assert net.path == FOUND_PATH == (0, 0, 0, 1, 2, 1, 2, 2, 3, 3, 2, 1)
    assert net.output_stride == 8 and net.max_stride == 32 and net.low_level_cell == 2
    # a cell at level l has 5 blocks of F * 2**l filters
    assert [c.out_channels for c in net.cells] == [5 * 20 * 2**lv for lv in FOUND_PATH]
    sizes = []
    hooks = [c.register_forward_hook(lambda m, i, o: sizes.append(o.shape[-1])) for c in net.cells]
    with torch.no_grad():
        features = net(torch.randn(1, 3, 128, 128))
    for h in hooks:
        h.remove()
    assert sizes == [128 // (4 * 2**lv) for lv in FOUND_PATH]
    assert features["os4"].shape == (1, 100, 32, 32) and features["out"].shape == (1, 200, 16, 16)
    assert features["out"].min() >= 0  # the ReLU after the last cell
    with torch.no_grad():
        assert model(torch.randn(1, 3, 97, 113)).shape == (1, 3, 97, 113)  # padded to 128 x 128


def test_cell_blocks_follow_the_genotype():
    cell = auto_deeplab(size="S", num_classes=3).backbone.cells[0]
    assert [op.name for op in cell.ops] == list(FOUND_OPERATIONS)
    assert cell.inputs == FOUND_INPUTS
    # b0 = atrous5x5(h1) + sep3x3(h0): the atrous op is a full 5x5 conv at rate 2
    atrous = cell.ops[0].body[1]
    assert atrous.kernel_size == (5, 5) and atrous.dilation == (2, 2) and atrous.groups == 1
    separable = cell.ops[1].body
    assert separable[1].groups == separable[1].in_channels and len(separable) == 8  # twice
    # a downsampling cell strides only the ops that read the cell's inputs
    down = auto_deeplab(size="S", num_classes=3).backbone.cells[3]
    assert [op.stride for op in down.ops] == [2 if s < 2 else 1 for s in FOUND_INPUTS]


def test_scheduled_drop_path():
    model = auto_deeplab(size="S", num_classes=3, drop_path_keep_prob=0.6)
    net = model.backbone
    keeps = [cell.ops[0].drop.keep for cell in net.cells]
    assert keeps[-1] == pytest.approx(0.6) and keeps[0] == pytest.approx(1 - 0.4 / 12)
    drop = DropPath()
    drop.keep, drop.progress = 0.5, 1.0
    torch.manual_seed(0)
    x = torch.ones(4000, 1, 1, 1)
    y = drop.train()(x)
    assert set(y.unique().tolist()) <= {0.0, 2.0} and abs(y.mean().item() - 1) < 0.06
    drop.progress = 0.0  # at the start of training nothing is dropped
    assert torch.equal(drop(x), x)
    assert torch.equal(drop.eval()(x), x)
    net.set_drop_path_progress(0.5)
    assert net.cells[5].ops[3].drop.progress == 0.5
    # the training loop reaches it through the hook the network registered, not by name
    set_training_progress(model, 0.25)
    assert {op.drop.progress for cell in net.cells for op in cell.ops} == {0.25}


def test_architecture_files_and_errors(tmp_path: Path):
    arch = {"path": [0, 1, 1, 2], "cell": {"operations": ["skip_connect", "max_pool_3x3"],
                                            "inputs": [0, 1]}}  # fmt: skip
    path = tmp_path / "found.json"
    path.write_text(json.dumps(arch))
    model = auto_deeplab(num_classes=3, architecture=str(path), filters=8).eval()
    assert model.backbone.path == (0, 1, 1, 2) and model.output_stride == 16
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 3, 64, 64)
    bad = {**arch, "path": [0, 2]}
    with pytest.raises(ValueError, match="more than one level"):
        auto_deeplab(num_classes=3, architecture=bad)
    bad = {**arch, "cell": {"operations": ["conv_7x7", "none"], "inputs": [0, 1]}}
    with pytest.raises(ValueError, match="unknown operation 'conv_7x7'"):
        auto_deeplab(num_classes=3, architecture=bad)
    bad = {**arch, "cell": {"operations": ["none", "none"], "inputs": [0, 2]}}
    with pytest.raises(ValueError, match="reads hidden state 2"):
        auto_deeplab(num_classes=3, architecture=bad)
    with pytest.raises(ValueError, match="output stride"):
        model.set_output_stride(8)
