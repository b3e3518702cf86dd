"""Auto-DeepLab's search: every operation at every stride transition, the supernet's trellis and
beta normalisation, decoding hand-built alpha/beta, and ``atrous search`` end to end followed by
training the decoded architecture."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from atrous.cli import main
from atrous.config import load_config
from atrous.models import auto_deeplab
from atrous.models.auto_deeplab.network import OPERATIONS, _Op, load_architecture
from atrous.models.auto_deeplab.search import (
    AutoDeepLabSupernet,
    decode_cell,
    edges_per_cell,
    nodes,
    viterbi,
)
from atrous.training import train


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("name", OPERATIONS)
def test_every_operation_shape_and_gradient(name: str, stride: int):
    op = _Op(name, 8, stride).train()
    x = torch.randn(2, 8, 16, 16, requires_grad=True)
    y = op(x)
    assert y.shape == (2, 8, 16 // stride, 16 // stride)
    y.square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in op.parameters())


def test_the_trellis_and_beta_normalisation():
    assert edges_per_cell() == 20
    assert nodes(12)[:3] == [[0, 1], [0, 1, 2], [0, 1, 2, 3]] and nodes(12)[-1] == [0, 1, 2, 3]
    model = AutoDeepLabSupernet(3, layers=4, filters=1)
    assert model.alpha.shape == (20, 8) and model.beta.shape == (4, 4, 3)
    weights = model.transition_weights()
    # each source node's outgoing transitions sum to 1; the stem (layer 0) reaches OS4 and OS8
    assert torch.allclose(weights[0, 0], torch.tensor([0.0, 0.5, 0.5]), atol=1e-3)
    assert torch.allclose(
        weights[2].sum(-1), torch.tensor([1.0, 1, 1, 0]), atol=1e-6
    )  # no OS32 yet
    assert torch.allclose(weights[3].sum(-1), torch.ones(4), atol=1e-6)
    assert weights[3, 0, 0] == 0 and weights[3, 3, 2] == 0  # nothing above OS4 or below OS32
    x = torch.randn(2, 3, 64, 64)
    out = model(x)
    assert out.shape == (2, 3, 64, 64)
    out.mean().backward()
    assert model.alpha.grad.abs().sum() > 0 and model.beta.grad.abs().sum() > 0


def test_decoding_hand_built_alpha_and_beta():
    # beta: favour down at layers 0-2, same at 3, up at 4-5 -> path 1, 2, 3, 3, 2, 1
    layers = 6
    beta = torch.zeros(layers, 4, 3)
    for layer, k in enumerate([2, 2, 2, 1, 0, 0]):
        beta[layer, :, k] = 5.0
    model = AutoDeepLabSupernet(3, layers=layers, filters=1)
    with torch.no_grad():
        model.beta.copy_(beta)
    assert viterbi(model.transition_weights()) == [1, 2, 3, 3, 2, 1]
    # alpha: block b takes inputs (b, b+1) with op index b+1 (never 'none', which is strongest)
    alpha = torch.zeros(20, 8)
    alpha[:, OPERATIONS.index("none")] = 9.0
    edge = 0
    for b in range(5):
        for source in range(2 + b):
            if source in (b, b + 1):
                alpha[edge, b] = 4.0 + source
            edge += 1
    cell = decode_cell(alpha)
    assert cell["inputs"] == [0, 1, 1, 2, 2, 3, 3, 4, 4, 5]
    assert cell["operations"] == [OPERATIONS[b] for b in range(5) for _ in range(2)]
    arch = load_architecture({"path": [1, 2, 3, 3, 2, 1], "cell": cell})
    assert arch["path"] == [1, 2, 3, 3, 2, 1]


def test_atrous_search_end_to_end_then_train_the_found_network(tiny_data: Path, tmp_path: Path):
    out = tmp_path / "search"
    args = [
        "search", "--config", "configs/synthetic/auto_deeplab_search.yaml", "--set",
        f"data.root={tiny_data}", "data.crop_size=32", f"train.out_dir={out}",
        "search.layers=4", "search.filters=1", "search.steps=4", "search.arch_start=0.5",
    ]  # fmt: skip
    assert main(args) == 0
    arch = json.loads((out / "architecture.json").read_text())
    assert len(arch["path"]) == 4 and len(arch["cell"]["operations"]) == 10
    assert (out / "search_path.png").is_file()
    log = [json.loads(line) for line in (out / "search_log.jsonl").read_text().splitlines()]
    assert [r["arch_loss"] is None for r in log] == [True, True, False, False]
    # the same seed searches the same way
    again = tmp_path / "again"
    assert main([*args[:-5], f"train.out_dir={again}", *args[-4:]]) == 0
    assert json.loads((again / "architecture.json").read_text()) == arch
    assert (again / "search_log.jsonl").read_text() == (out / "search_log.jsonl").read_text()
    # the decoded architecture trains from a recipe (model.architecture)
    cfg = load_config(None, [
        f"data.root={tiny_data}", "data.crop_size=48", "data.num_workers=0", "data.val_split=null",
        "model.name=auto_deeplab", f"model.architecture={out / 'architecture.json'}",
        "model.filters=2", "model.channels=16", "train.batch_size=2", "train.lr=0.02",
        "train.steps=12", f"train.out_dir={tmp_path / 'train'}",
    ])  # fmt: skip
    losses = train(cfg, progress=False)["losses"]
    assert sum(losses[-4:]) < sum(losses[:4])
    model = auto_deeplab(num_classes=5, architecture=str(out / "architecture.json"), filters=2)
    assert list(model.backbone.path) == arch["path"]
