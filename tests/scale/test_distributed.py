"""Training under ``torchrun``: batches dealt to the processes, one bundle written by rank 0, and a model
as good as one trained in a single process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nadkit.models import distributed
from nadkit.models.distributed import DataParallel, Launch, SingleProcess
from nadkit.training.fit import train_model
from tests.scale.conftest import simulated_day

#: a small autoencoder that trains in seconds
SETTINGS = {"epochs": 8, "batch_size": 128, "hidden": [32], "bottleneck": 8, "patience": 3, "device": "cpu"}


def test_launch_is_read_from_the_torchrun_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.launch() is None and distributed.is_primary()
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed.launch() is None
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.launch() == Launch(rank=3, local_rank=1, world_size=4)
    assert not distributed.is_primary()
    monkeypatch.setenv("RANK", "0")
    assert distributed.is_primary()


def test_each_rank_takes_its_rows_of_every_batch_and_its_share_of_validation() -> None:
    import torch

    from nadkit.models.trainer import Batch

    ranks = [DataParallel(Launch(rank=r, local_rank=r, world_size=3), torch.device("cpu")) for r in range(3)]
    batches = [
        Batch(x=torch.arange(14.0).reshape(7, 2), y=torch.arange(7), extra={"target": torch.arange(7) * 10}),
        Batch(x=torch.ones(2, 2), mask=torch.ones(2, dtype=torch.bool)),
    ]
    parts = [list(rank.split(batches)) for rank in ranks]
    assert all(len(p) == len(batches) for p in parts)  # one step per batch everywhere
    assert [p[0].y.tolist() for p in parts] == [[0, 1], [2, 3], [4, 5, 6]]
    assert [p[0].extra["target"].tolist() for p in parts] == [[0, 10], [20, 30], [40, 50, 60]]
    assert torch.equal(torch.cat([p[0].x for p in parts]), batches[0].x)
    assert all(torch.equal(p[1].x, batches[1].x) for p in parts)  # fewer rows than ranks: whole
    items = list(range(7))
    assert [list(rank.shard(items)) for rank in ranks] == [[0, 3, 6], [1, 4], [2, 5]]
    single = SingleProcess()
    assert list(single.split(batches)) == batches and list(single.shard(items)) == items
    assert single.sum(1.5, 3) == (1.5, 3) and single.from_primary(2.0) == (2.0,)


@pytest.mark.slow
def test_two_process_training_matches_one_process(tmp_path: Path) -> None:
    data = tmp_path / "train.parquet"
    simulated_day(0, counters=True).write_parquet(data)
    settings = tmp_path / "ae.json"
    settings.write_text(json.dumps(SETTINGS))
    single = train_model(data, tmp_path / "single", model="ae", config=SETTINGS)

    folder = tmp_path / "runs"
    folder.mkdir()
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "OMP_NUM_THREADS": "1"}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    command += ["-m", "nadkit", "train", str(data), "model", "--model", "ae", "--config", str(settings)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=folder, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    # one bundle, written by rank 0; rank 1 printed nothing
    assert [p.name for p in folder.iterdir()] == ["model"]
    assert result.stdout.count("ae trained") == 1, result.stdout
    metrics = json.loads((folder / "model" / "metrics.json").read_text())
    history = metrics["history"]
    assert history["epochs_run"] == len(history["train_loss"]) == len(history["validation_loss"])
    assert metrics["train_rows"] == single.train_rows
    auc_one = single.bundle.metrics["holdout"]["roc_auc"]
    auc_two = metrics["holdout"]["roc_auc"]
    assert auc_two > 0.8
    assert abs(auc_two - auc_one) <= 0.02, (auc_one, auc_two)
