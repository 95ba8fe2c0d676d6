"""Shard files written with O_DIRECT: the same bytes as the usual write, and the usual write where it is refused."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest

import engine.store.zarr_store as zs

needs_direct = pytest.mark.skipif(not hasattr(os, "O_DIRECT"), reason="no O_DIRECT on this platform")


def parts_of(sizes: list[int], seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in sizes]


@needs_direct
@pytest.mark.parametrize("sizes", [[0], [1], [4095], [4096], [4097], [3, 0, 5000, 1],
                                   [zs._DIRECT_STAGE - 10, 30, 4096], [zs._DIRECT_STAGE * 2 + 7]])
def test_direct_write_gives_the_file_the_usual_write_gives(tmp_path: Path, sizes: list[int]) -> None:
    parts = parts_of(sizes)
    if not zs._write_direct(tmp_path / "probe", [b"x"]):
        pytest.skip("this filesystem refuses O_DIRECT")
    zs.atomic_write(tmp_path / "direct", parts, direct=True)
    zs.atomic_write(tmp_path / "usual", parts)
    assert (tmp_path / "direct").read_bytes() == (tmp_path / "usual").read_bytes() == b"".join(parts)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["direct", "probe", "usual"]  # no .partial left


@needs_direct
def test_direct_write_is_the_one_used_for_shards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A shard file is opened with O_DIRECT (where the filesystem takes it), other files are not."""
    flags: list[int] = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda path, flag, *a: flags.append(flag) or real_open(path, flag, *a))
    zs.atomic_write(tmp_path / "shard", parts_of([10_000]), direct=True)
    zs.atomic_write(tmp_path / "meta", parts_of([10]))
    opened = [f for f in flags if f & os.O_CREAT]
    assert len(opened) == 2 and opened[0] & os.O_DIRECT and not opened[1] & os.O_DIRECT


@pytest.mark.parametrize("where", ["open", "write"])
def test_refused_direct_io_falls_back_to_the_usual_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         where: str) -> None:
    """tmpfs and some network filesystems refuse O_DIRECT (EINVAL at open or at the first write)."""
    monkeypatch.setattr(os, "O_DIRECT", 0o40000, raising=False)
    real_open, real_write = os.open, os.write
    direct_fds: set[int] = set()

    def refusing_open(path, flag, *args):
        if where == "open" and flag & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        fd = real_open(path, flag & ~os.O_DIRECT, *args)
        if flag & os.O_DIRECT:
            direct_fds.add(fd)
        return fd

    def refusing_write(fd, data):
        if fd in direct_fds:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, data)

    monkeypatch.setattr(os, "open", refusing_open)
    monkeypatch.setattr(os, "write", refusing_write)
    parts = parts_of([5000, 123])
    zs.atomic_write(tmp_path / "f", parts, direct=True)
    assert (tmp_path / "f").read_bytes() == b"".join(parts)
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_a_full_disk_is_an_error_not_a_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "O_DIRECT", getattr(os, "O_DIRECT", 0o40000), raising=False)
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda path, flag, *a: real_open(path, flag & ~os.O_DIRECT, *a))

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(OSError, match="No space left"):
        zs.atomic_write(tmp_path / "f", parts_of([100]), direct=True)
    assert list(tmp_path.iterdir()) == []
