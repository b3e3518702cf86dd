"""Task evaluators reduce their counts across processes: two Gloo ranks, each scoring its shard
of the validation set, give exactly what one process scoring all of it gives."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import Subset

from atrous.data import build_dataset, make_synthetic_dataset
from atrous.evaluation import accumulate
from atrous.inference import Predictor
from atrous.models import panoptic_deeplab
from atrous.tasks import PanopticTask, SemanticTask


def _evaluator(task, data: Path, rank: int, world: int):
    torch.manual_seed(0)  # the same weights in every process
    model = panoptic_deeplab(
        backbone="mobilenetv2", num_classes=5, thing_classes=(1, 2, 3, 4), width_mult=0.25
    ).eval()
    predictor = Predictor(model)
    val = build_dataset("panoptic_folder", data, "val")
    evaluator = task.evaluator(predictor, val.num_classes)
    shard = Subset(val, range(rank, len(val), world))
    accumulate(predictor, shard, {"m": evaluator}, task=task, progress=False)
    return evaluator


def _counts(evaluator) -> dict[str, torch.Tensor]:
    pq, pc = evaluator.panoptic.pq, evaluator.panoptic.pc
    return {
        "confusion": evaluator.semantic.matrix.matrix.clone(),
        "iou": pq.iou.clone(), "tp": pq.tp.clone(), "fn": pq.fn.clone(), "fp": pq.fp.clone(),
        "covered": pc.covered.clone(), "area": pc.area.clone(),
    }  # fmt: skip


def _rank(rank: int, world: int, store: str, data: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        evaluator = _evaluator(PanopticTask(), Path(data), rank, world)
        evaluator.all_reduce(torch.device("cpu"))
        if rank == 0:
            torch.save(_counts(evaluator), out)
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_reduce_panoptic_counts_to_the_one_process_counts(tmp_path: Path):
    data = make_synthetic_dataset(
        tmp_path / "data", num_train=1, num_val=5, size_range=(48, 64), panoptic=True
    )
    out = tmp_path / "counts.pt"
    mp.spawn(_rank, args=(2, str(tmp_path / "store"), str(data), str(out)), nprocs=2)
    reduced = torch.load(out, weights_only=True)
    whole = _counts(_evaluator(PanopticTask(), data, 0, 1))
    half = _counts(_evaluator(PanopticTask(), data, 0, 2))
    assert int(whole["fn"].sum() + whole["tp"].sum()) > 0  # ground-truth segments were counted
    assert not torch.equal(half["area"], whole["area"])  # one rank alone sees less
    for key, value in whole.items():
        torch.testing.assert_close(reduced[key], value, rtol=1e-12, atol=1e-12, msg=key)


def test_merge_of_two_shards_equals_the_whole(tmp_path: Path):
    data = make_synthetic_dataset(
        tmp_path / "data", num_train=1, num_val=4, size_range=(48, 64), panoptic=True
    )
    for task in (PanopticTask(), SemanticTask()):
        if isinstance(task, SemanticTask):  # the semantic evaluator on panoptic data's classes
            task.split_target = PanopticTask().split_target  # type: ignore[method-assign]
        a, b = _evaluator(task, data, 0, 2), _evaluator(task, data, 1, 2)
        whole = _evaluator(task, data, 0, 1)
        merged, expected = a.merge(b).compute(), whole.compute()
        for result in (merged, expected):
            result.get("panoptic", {}).pop("seconds_per_image", None)  # timings differ
        assert merged == expected
