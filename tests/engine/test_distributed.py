"""Ranks: discovery, shard assignment, and generate split across processes
(``--shard i/n`` and torchrun with Gloo) giving the single process's bytes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.compose.generate import generate
from engine.config import RunOptions
from engine.distributed import Ranks, assigned_shards, discover, parse_shard, pin_local_gpu
from engine.errors import ConfigError, StoreError
from engine.store.progress import marker_dir, objects_path
from engine.store.zarr_store import inspect_store, read_attrs
from tests.small_stores import small, tree

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("single") / "s.zarr"
    generate(small(), out)
    return out


# -- discovery and assignment -------------------------------------------------------


def test_parse_shard() -> None:
    assert parse_shard("0/1") == (0, 1)
    assert parse_shard("3/4") == (3, 4)
    for bad in ("4/4", "-1/2", "1", "a/b", "1/0", "1/2/3", ""):
        with pytest.raises(ConfigError, match="--shard"):
            parse_shard(bad)


def test_discover_from_torchrun_and_shard() -> None:
    assert discover(None, {}) == Ranks()
    r = discover(None, {"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (r.rank, r.world, r.local_rank, r.in_group, r.leader) == (1, 4, 1, True, False)
    r = discover("2/3", {})  # a SLURM array job: its own group of one
    assert (r.rank, r.world, r.in_group, r.leader, r.shared) == (2, 3, False, True, True)
    r = discover("1/2", {"RANK": "2", "WORLD_SIZE": "4", "LOCAL_RANK": "2"})  # torchrun inside an array job
    assert (r.rank, r.world) == (6, 8)
    with pytest.raises(ConfigError, match="RANK"):
        discover(None, {"RANK": "4", "WORLD_SIZE": "4"})
    with pytest.raises(ConfigError, match="integers"):
        discover(None, {"RANK": "x"})


@pytest.mark.parametrize("n_shards, world", [(1, 1), (7, 2), (3, 4), (196, 8)])
def test_assignment_covers_every_shard_once(n_shards: int, world: int) -> None:
    parts = [assigned_shards(n_shards, Ranks(rank=r, world=world)) for r in range(world)]
    assert sorted(k for p in parts for k in p) == list(range(n_shards))
    assert all(k % world == r for r, p in enumerate(parts) for k in p)  # the documented rule
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_local_rank_picks_its_gpu() -> None:
    env: dict[str, str] = {}
    pin_local_gpu(Ranks(rank=3, world=4, local_rank=3, group_rank=3, group_size=4), env)
    assert env["CUDA_VISIBLE_DEVICES"] == "3"
    env = {"CUDA_VISIBLE_DEVICES": "4,5,6,7"}
    pin_local_gpu(Ranks(rank=1, world=4, local_rank=1, group_rank=1, group_size=4), env)
    assert env["CUDA_VISIBLE_DEVICES"] == "5"
    env = {"CUDA_VISIBLE_DEVICES": "0"}
    pin_local_gpu(Ranks(rank=1, world=2, local_rank=1, group_rank=1, group_size=2), env)
    assert env["CUDA_VISIBLE_DEVICES"] == ""  # no GPU of its own: none, never rank 0's
    env = {}
    pin_local_gpu(Ranks(), env)  # one process: untouched
    assert env == {}


# -- generate split across processes --------------------------------------------------


def test_shard_jobs_give_the_single_process_bytes(single: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.zarr"
    first = generate(small(), out, ranks=discover("0/2", {}))
    assert (first.samples_written, first.complete) == (32, False)  # shards 0 and 2 (k mod 2 == 0)
    attrs = read_attrs(out)
    assert attrs["progress"] == {"shards_done": [0, 2], "complete": False}  # markers count as done
    assert read_attrs(out, markers=False)["progress"]["shards_done"] == []
    info = inspect_store(out)
    assert (info.complete, info.shards_done, info.samples_done) == (False, 2, 32)
    second = generate(small(), out, ranks=discover("1/2", {}))  # joins the store, finds it complete
    assert (second.samples_written, second.complete) == (16, True)
    assert not marker_dir(out).exists()
    assert tree(out) == tree(single)


def test_resume_after_a_missing_rank_is_byte_identical(single: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.zarr"
    generate(small(), out, ranks=discover("1/2", {}))  # rank 0 died before writing anything
    report = generate(small(), out, RunOptions(resume=True))  # one process completes it
    assert report.samples_written == 32
    assert tree(out) == tree(single)


def test_shard_jobs_refuse_overwrite_and_other_settings(tmp_path: Path) -> None:
    out = tmp_path / "s.zarr"
    with pytest.raises(ConfigError, match="--overwrite with --shard"):
        generate(small(), out, RunOptions(overwrite=True), ranks=discover("0/2", {}))
    generate(small(), out, ranks=discover("0/2", {}))
    with pytest.raises(StoreError, match="different settings"):
        generate(small(seed=1), out, ranks=discover("1/2", {}))


# -- several objects per image: per-object results travel in side files -------------------


def objects_config():
    return small(objects_min=1, objects_max=3, max_overlap=0.6, occlusion="background")


@pytest.fixture(scope="module")
def objects_single(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("objects") / "o.zarr"
    generate(objects_config(), out)
    return out


def test_shard_jobs_of_several_objects_give_the_single_process_bytes(objects_single: Path, tmp_path: Path) -> None:
    out = tmp_path / "o.zarr"
    first = generate(objects_config(), out, ranks=discover("0/2", {}))
    assert not first.complete
    # the shared flat arrays are untouched: each shard's rows wait in a side file next to its marker
    assert sorted(p.name for p in marker_dir(out).iterdir()) == [
        "objects-0000000.npz", "objects-0000002.npz", "shard-0000000.json", "shard-0000002.json"]
    assert not (out / "meta" / "objects" / "box" / "c").exists()
    assert generate(objects_config(), out, ranks=discover("1/2", {})).complete
    assert not marker_dir(out).exists()
    assert tree(out) == tree(objects_single)


def test_several_objects_resume_from_ranks_and_a_lost_side_file(objects_single: Path, tmp_path: Path) -> None:
    out = tmp_path / "o.zarr"
    generate(objects_config(), out, ranks=discover("0/2", {}))  # shards 0 and 2 by a rank
    objects_path(out, 2).unlink()  # its results lost: the shard counts as damaged
    report = generate(objects_config(), out, RunOptions(resume=True))  # one process completes it
    assert (report.samples_written, report.complete) == (32, True)  # shards 1 and 2
    assert tree(out) == tree(objects_single)


def test_a_lost_side_file_stops_the_completion_and_resume_repairs_it(objects_single: Path, tmp_path: Path) -> None:
    out = tmp_path / "o.zarr"
    generate(objects_config(), out, ranks=discover("1/2", {}))
    objects_path(out, 1).unlink()
    with pytest.raises(StoreError, match="per-object results of shard 1"):
        generate(objects_config(), out, ranks=discover("0/2", {}))  # the last job folds them in
    assert not read_attrs(out, markers=False)["progress"]["complete"]
    report = generate(objects_config(), out, RunOptions(resume=True), ranks=discover("1/2", {}))
    assert (report.samples_written, report.complete) == (16, True)
    assert tree(out) == tree(objects_single)


def _torchrun(nproc: int, *args: str, port: int) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--master-port", str(port),
           str(ROOT / "cli.py"), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


CLI_SMALL = ["--builtin-backgrounds", "3", "--builtin-foregrounds", "2", "--size", "32", "--width", "48",
             "--positions", "4", "--shard-size", "16", "--chunk-size", "4", "--device", "cpu", "-q"]


def test_torchrun_two_ranks_give_the_single_process_bytes(single: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.zarr"
    done = _torchrun(2, "generate", *CLI_SMALL, "--out", str(out), port=29561)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 ranks together: 48 samples" in done.stdout
    assert done.stdout.count("store complete") == 1  # rank 0 speaks for the group
    assert tree(out) == tree(single)


def test_torchrun_resumes_a_store_a_dead_rank_left_incomplete(single: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.zarr"
    generate(small(), out, ranks=discover("0/2", {}))  # as if rank 1 of a 2-rank run died at once
    done = _torchrun(2, "generate", *CLI_SMALL, "--out", str(out), "--resume", port=29562)
    assert done.returncode == 0, done.stderr[-2000:]
    assert tree(out) == tree(single)


def test_torchrun_two_ranks_of_several_objects_give_the_single_process_bytes(objects_single: Path,
                                                                              tmp_path: Path) -> None:
    out = tmp_path / "t.zarr"
    done = _torchrun(2, "generate", *CLI_SMALL, "--objects-per-image", "1", "3", "--max-overlap", "0.6",
                     "--occlusion", "background", "--out", str(out), port=29564)
    assert done.returncode == 0, done.stderr[-2000:]
    assert tree(out) == tree(objects_single)


def _child_with_rank(parent: int, rank: int) -> int | None:
    """The pid of torchrun's worker with ``RANK=rank`` (Linux /proc), or ``None`` yet."""
    try:
        children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    except OSError:
        return None
    for pid in children:
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in env:
            return int(pid)
    return None


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc to find a rank's process")
@pytest.mark.parametrize("extra, port", [((), 29563), (("--objects-per-image", "1", "3", "--max-overlap", "0.6"), 29565)],
                         ids=["one-object", "several-objects"])
def test_kill_9_of_one_rank_then_resume_is_byte_identical(tmp_path: Path, extra: tuple[str, ...], port: int) -> None:
    args = ["--builtin-backgrounds", "6", "--builtin-foregrounds", "6", "--size", "64", "--positions", "20",
            "--shard-size", "32", "--device", "cpu", "-q", *extra]
    killed, clean = tmp_path / "killed.zarr", tmp_path / "clean.zarr"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(port),
           str(ROOT / "cli.py"), "generate", *args, "--out", str(killed)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, victim = time.time() + 120, None
    while time.time() < deadline and proc.poll() is None:
        if len(list(marker_dir(killed).glob("shard-*.json"))) >= 3:  # both ranks under way
            victim = _child_with_rank(proc.pid, 1)
            if victim is not None:
                os.kill(victim, signal.SIGKILL)
                break
        time.sleep(0.01)
    proc.wait(timeout=120)
    assert victim is not None and proc.returncode != 0, "the run ended before rank 1 could be killed"
    info = inspect_store(killed)
    assert not info.complete and 3 <= info.shards_done < 45
    if extra:  # every done shard's per-object results wait in a side file (a killed shard's may be there too)
        assert len(list(marker_dir(killed).glob("objects-*.npz"))) >= info.shards_done
    subprocess.run([sys.executable, str(ROOT / "cli.py"), "generate", *args, "--out", str(killed), "--resume"],
                   cwd=ROOT, env=env, check=True, capture_output=True)
    subprocess.run([sys.executable, str(ROOT / "cli.py"), "generate", *args, "--out", str(clean)],
                   cwd=ROOT, env=env, check=True, capture_output=True)
    assert inspect_store(killed).complete
    assert tree(killed) == tree(clean)
