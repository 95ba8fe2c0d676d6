"""Training under torchrun: DistributedDataParallel with Gloo on the CPU, the
global batch split across ranks, rank 0 alone writing, resume with another rank count."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.compose.generate import generate
from engine.config import GenerateConfig
from engine.distributed import Ranks
from engine.errors import ConfigError
from engine.learn.checkpoint import load_checkpoint
from engine.learn.data import BatchSampler
from engine.learn.epochs import EpochPlan
from engine.learn.train import TrainConfig, check_ranks, rank_rows, train

ROOT = Path(__file__).resolve().parents[3]
WORKER = Path(__file__).with_name("ddp_worker.py")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 backgrounds x 2 cars x 2 flips x 4 positions = 48 samples at 64x64."""
    out = tmp_path_factory.mktemp("ddp") / "s.zarr"
    generate(GenerateConfig(builtin_backgrounds=3, builtin_foregrounds=2, height=64, width=64, positions=4,
                            shard_size=16), out)
    return out


def fields(store: Path, out: Path, **overrides) -> dict:
    base = dict(data=str(store), out=str(out), height=64, width=64, batch=8, steps=4, val_fraction=0.34,
                eval_every=2, checkpoint_every=2, eval_samples=8, device="cpu", loader="torch")
    return {**base, **overrides}


def torchrun(nproc: int, config: dict, reports: Path, port: int) -> None:
    reports.mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--master-port", str(port),
           str(WORKER), json.dumps(config), str(reports)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]


def test_ranks_split_the_global_batch_like_the_epoch_plan() -> None:
    rows = BatchSampler(40, 8, seed=3)(2)
    parts = [rank_rows(rows, Ranks(rank=r, world=2, group_rank=r, group_size=2)) for r in range(2)]
    assert sorted(np.concatenate(parts)) == sorted(rows) and all(len(p) == 4 for p in parts)
    # the DALI loader's plan: the union of the ranks' batch i is one process's batch i
    one = EpochPlan(40, 8, seed=3)
    ranked = [EpochPlan(40, 4, seed=3, shard_id=r, num_shards=2, drop_last=True) for r in range(2)]
    for i in range(5):
        assert sorted(np.concatenate([p.rows(0, i)[0] for p in ranked])) == sorted(one.rows(0, i)[0])


def test_drop_last_gives_every_rank_the_same_number_of_batches() -> None:
    plans = [EpochPlan(17, 4, seed=0, shard_id=r, num_shards=2, drop_last=True) for r in range(2)]
    assert [p.batches_per_epoch() for p in plans] == [2, 2]
    assert sorted(np.concatenate([p.positions() for p in plans])) == list(range(16))


def test_what_ranks_cannot_do_is_refused(store: Path, tmp_path: Path) -> None:
    two = Ranks(rank=0, world=2, group_rank=0, group_size=2)
    with pytest.raises(ConfigError, match="multiple of the 2 ranks"):
        check_ranks(TrainConfig(**fields(store, tmp_path, batch=7)), two)
    with pytest.raises(ConfigError, match="--cache device"):
        check_ranks(TrainConfig(**fields(store, tmp_path, cache="device")), two)
    with pytest.raises(ConfigError, match="--shard is for generate"):
        check_ranks(TrainConfig(**fields(store, tmp_path)), Ranks(rank=0, world=2))


@pytest.mark.slow
def test_two_gloo_ranks_stay_in_sync_and_resume_on_one(store: Path, tmp_path: Path) -> None:
    out, reports = tmp_path / "run", tmp_path / "reports"
    torchrun(2, fields(store, out), reports, port=29571)  # rank 1 fails if it writes into `out`
    r0, r1 = (json.loads((reports / f"rank-{r}.json").read_text()) for r in range(2))
    assert r0["digest"] == r1["digest"] != 0  # parameters identical on both ranks
    assert r0["steps"] == r1["steps"] == 4 and len(r0["rates"]) == 2
    assert r0["metrics"] == ["constant", "model"] and r1["metrics"] == []  # rank 0 alone evaluates and reports
    assert sorted(p.name for p in out.iterdir()) == ["coarse.pt", "coarse_log.csv", "coarse_metrics.json"]
    with open(out / "coarse_log.csv") as f:
        assert [int(float(r["step"])) for r in csv.DictReader(f)] == [1, 2, 3, 4]
    # the same run resumed by one process: the data order is a function of the step, not of the ranks
    report = train(TrainConfig(**fields(store, out, steps=6)), resume=True)
    assert report.steps_run == 2 and load_checkpoint(out / "coarse.pt")["step"] == 6


@pytest.mark.gpu
def test_two_nccl_ranks_on_two_gpus_stay_in_sync(store: Path, tmp_path: Path) -> None:
    import torch

    if torch.cuda.device_count() < 2:
        pytest.skip("needs two GPUs")
    out, reports = tmp_path / "run", tmp_path / "reports"
    torchrun(2, fields(store, out, device="cuda", loader="dali", _backend="nccl"), reports, port=29572)
    r0, r1 = (json.loads((reports / f"rank-{r}.json").read_text()) for r in range(2))
    assert r0["digest"] == r1["digest"] != 0 and r0["steps"] == r1["steps"] == 4
