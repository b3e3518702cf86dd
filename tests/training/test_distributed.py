"""Data-parallel training: two Gloo processes on CPU, on one "node" or on two, against one process
with their global batch."""

import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torch
import yaml

from atrous.checkpoint import load_checkpoint
from atrous.config import to_dict
from atrous.training import train
from atrous.training.distributed import WorldInfo, all_reduce_sum, init_distributed
from atrous.training.sampler import StepSampler
from tests.conftest import tiny_config

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _take(sampler: StepSampler, count: int) -> list[tuple[int, int]]:
    items = iter(sampler)
    return [next(items) for _ in range(count)]


@pytest.mark.parametrize("start", [0, 12])
def test_ranks_split_every_global_batch(start: int):
    # 3 ranks x batch 2 cover exactly the stream one process reads with batch 6.
    whole = _take(StepSampler(10, 7, start), 30)
    shares = [
        _take(StepSampler(10, 7, start, rank=r, world_size=3, batch_size=2), 10) for r in range(3)
    ]
    rebuilt = [s[i : i + 2] for i in range(0, 10, 2) for s in shares]
    assert [pair for chunk in rebuilt for pair in chunk] == whole


def test_one_process_needs_no_process_group(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    world, device = init_distributed(torch.device("cpu"))
    assert world == WorldInfo() and world.is_main and not world.distributed
    assert device == torch.device("cpu")
    value = torch.ones(3)
    assert all_reduce_sum(value, world, device) is value


@pytest.mark.parametrize("steps, accumulate", [(3, 1), (2, 2)])
def test_two_gloo_processes_match_one_process_with_their_global_batch(
    tiny_data: Path, tmp_path: Path, steps: int, accumulate: int
):
    # freeze_bn: without SyncBatchNorm (none on CPU/Gloo) each process would normalise with
    # the statistics of its own half batch; frozen BN makes both runs the same computation.
    common = (
        f"train.steps={steps}",
        f"train.accumulate={accumulate}",  # > 1: DDP skips the all-reduce until the last
        "train.freeze_bn=true",
        "train.checkpoint_every=2",
        # fp32: bf16 autocast rounds a batch of 1 and a batch of 2 differently
        "train.amp=none",
    )
    single = train(
        tiny_config(tiny_data, tmp_path / "one", *common, "train.batch_size=2"), progress=False
    )

    recipe = _half_batch_recipe(tiny_data, tmp_path, "two", *common)
    command = [
        *TORCHRUN,
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        *TRAIN,
        str(recipe),
    ]
    done = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=120)
    assert done.stdout.count("mIoU") == 1, done.stderr[-3000:]  # rank 0 alone prints the table
    # A rank that aborts after the run has finished, in Gloo's C++ teardown ("terminate called
    # without an active exception"; once in several CI runs, torch 2.14 on 2 cores: Gloo's
    # worker threads at interpreter exit, as pytorch/pytorch#179291 describes) is not this
    # library's failure; anything else is. What the run wrote is checked below either way.
    teardown = "terminate called without an active exception" in done.stderr
    assert done.returncode == 0 or teardown, done.stdout[-3000:] + done.stderr[-3000:]
    _assert_same_as_one_process(tmp_path / "two", single, steps)


def test_two_nodes_with_c10d_rendezvous_match_one_process(tiny_data: Path, tmp_path: Path):
    # Two torchrun agents, each one "node" of one process, meet at a c10d rendezvous on this
    # machine, as on a cluster (docs/distributed.md); no node rank or master address is given.
    steps = 3
    common = ("train.steps=3", "train.freeze_bn=true", "train.checkpoint_every=2", "train.amp=none")
    single = train(
        tiny_config(tiny_data, tmp_path / "one", *common, "train.batch_size=2"), progress=False
    )

    recipe = _half_batch_recipe(tiny_data, tmp_path, "nodes", *common)
    command = [
        *TORCHRUN,
        "--nnodes=2",
        "--nproc-per-node=1",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{_free_port()}",
        f"--rdzv-id=atrous-test-{uuid.uuid4().hex[:8]}",
        *TRAIN,
        str(recipe),
    ]
    logs = [tmp_path / f"node{i}.log" for i in range(2)]
    nodes: list[subprocess.Popen] = []
    try:
        for log in logs:
            with log.open("w") as sink:  # the child keeps its own copy of the descriptor
                nodes.append(
                    subprocess.Popen(
                        command,
                        env=_env(),
                        stdout=sink,
                        stderr=subprocess.STDOUT,
                        text=True,
                        start_new_session=True,
                    )
                )
        codes = [node.wait(timeout=120) for node in nodes]
    finally:
        _stop(nodes)
    outputs = [log.read_text() for log in logs]
    assert codes == [0, 0], "\n".join(out[-3000:] for out in outputs)
    # One node holds rank 0, which alone prints the table and writes into the shared out_dir.
    assert sorted(out.count("mIoU") for out in outputs) == [0, 1]
    _assert_same_as_one_process(tmp_path / "nodes", single, steps)


TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
TRAIN = ["-m", "atrous", "train", "--config"]


def _stop(agents: list[subprocess.Popen]) -> None:
    """End the torchrun agents still running: SIGTERM first, on which an agent stops its
    workers (they run in sessions of their own), then SIGKILL to the agent's group."""
    for agent in agents:
        if agent.poll() is None:
            agent.terminate()
    for agent in agents:
        try:
            agent.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(agent.pid, signal.SIGKILL)
            agent.wait()


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }


def _half_batch_recipe(tiny_data: Path, tmp_path: Path, name: str, *common: str) -> Path:
    """The tiny recipe with batch 1 per process, out_dir ``tmp_path / name``, as a YAML file."""
    cfg = tiny_config(tiny_data, tmp_path / name, *common, "train.batch_size=1")
    recipe = tmp_path / f"{name}.yaml"
    recipe.write_text(yaml.safe_dump(to_dict(cfg)))
    return recipe


def _assert_same_as_one_process(out: Path, single: dict, steps: int) -> None:
    """``out`` holds rank 0's files of a 2-process run equal to ``single`` (global batch)."""
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint.pt",
        "metrics.json",
        "predictions.png",  # image | ground truth | prediction of rank 0's first val images
        "train_log.jsonl",
    ]
    a, b = load_checkpoint(single["checkpoint"]), load_checkpoint(out / "checkpoint.pt")
    assert b["step"] == steps and a.keys() == b.keys()
    assert not any(key.startswith("module.") for key in b["model"])
    assert a["model"].keys() == b["model"].keys()
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, atol=1e-6, rtol=1e-5, msg=key)

    records = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [*range(1, steps + 1), steps]
    # The logged loss is the mean over every pixel of the global batch, as in one process.
    assert [r["loss"] for r in records[:steps]] == pytest.approx(single["losses"], rel=1e-5)
    # Each rank evaluates part of the val set; the summed confusion matrix covers all of it.
    metrics = json.loads((out / "metrics.json").read_text())
    assert records[-1]["eval"] == metrics_without_extras(metrics)
    assert metrics["num_pixels"] == single["metrics"]["num_pixels"]
    assert metrics["miou"] == pytest.approx(single["metrics"]["miou"], abs=1e-6)


def metrics_without_extras(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k not in ("classes", "split", "step")}
