"""Stores at fsspec URLs: parsing, clear errors, and generate writing through
fsspec (``memory://``, no network) to the bytes of a local store."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import fsspec
import numpy as np
import pytest
import zarr

from engine.compose.generate import generate
from engine.config import RunOptions
from engine.distributed import Ranks
from engine.errors import ConfigError, StoreError
from engine.store.location import locate, working_folder
from engine.store.zarr_store import ZarrWriter, inspect_store
from tests.small_stores import small, tree


def remote_tree(url: str) -> dict[str, bytes]:
    fs, root = fsspec.core.url_to_fs(url)
    return {p[len(root) + 1 :]: fs.cat_file(p) for p in sorted(fs.find(root))}


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("local") / "s.zarr"
    generate(small(), out)
    return out


@pytest.fixture
def url(request: pytest.FixtureRequest) -> str:
    where = f"memory://fgbg-tests/{request.node.name}/s.zarr"
    yield where
    fs, root = fsspec.core.url_to_fs(where)
    if fs.exists(root):
        fs.rm(root, recursive=True)


def test_locate() -> None:
    assert locate("data/s.zarr").local == Path("data/s.zarr")
    assert locate("file:///tmp/s.zarr").local == Path("/tmp/s.zarr")
    where = locate("memory://b/s.zarr/")
    assert where.remote and where.url == "memory://b/s.zarr" and where.local is None
    with pytest.raises(StoreError, match="unsupported URL scheme 'nope'"):
        locate("nope://b/s.zarr")


@pytest.mark.skipif(importlib.util.find_spec("s3fs") is not None, reason="s3fs is installed")
def test_a_missing_filesystem_package_is_one_line() -> None:
    with pytest.raises(StoreError, match=r"s3:// filesystem is not installed \(.*s3fs"):
        locate("s3://bucket/s.zarr")


def test_generate_to_a_url_gives_the_local_bytes(local: Path, url: str, tmp_path: Path) -> None:
    report = generate(small(), url, RunOptions(work_dir=str(tmp_path / "work")))
    assert report.path == url and report.samples_written == 48
    assert remote_tree(url) == tree(local)
    assert not working_folder(url, tmp_path / "work").exists()  # deleted once the URL holds it all
    info = inspect_store(url)
    assert info.complete and info.shards_done == 3 and info.n_files == len(tree(local))
    assert info.arrays["images"]["shape"] == (48, 32, 48, 3)
    group = zarr.open_group(url, mode="r")  # plain zarr reads it
    np.testing.assert_array_equal(group["depth"][:], zarr.open_group(local, mode="r")["depth"][:])


def test_an_interrupted_url_store_resumes_to_the_same_bytes(
    local: Path, url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = str(tmp_path / "work")
    original = ZarrWriter.write_shard

    def fail_on_shard_1(self, index, batch):
        if index == 1:
            raise StoreError("disk full (test)")
        original(self, index, batch)

    monkeypatch.setattr(ZarrWriter, "write_shard", fail_on_shard_1)
    with pytest.raises(StoreError, match="disk full"):
        generate(small(), url, RunOptions(work_dir=work, writer_threads=1))
    info = inspect_store(url)  # the URL says how far it got, and never claims more
    assert not info.complete and info.shards_done == 1
    with pytest.raises(StoreError, match="exists: use --overwrite"):
        generate(small(), url, RunOptions(work_dir=work))
    monkeypatch.setattr(ZarrWriter, "write_shard", original)
    with pytest.raises(StoreError, match="needs the working copy"):
        generate(small(), url, RunOptions(resume=True, work_dir=str(tmp_path / "elsewhere")))
    fs, root = fsspec.core.url_to_fs(url)
    fs.rm(f"{root}/masks/zarr.json")  # as if the first copy had been cut short
    generate(small(), url, RunOptions(resume=True, work_dir=work))
    assert remote_tree(url) == tree(local)
    generate(small(), url, RunOptions(overwrite=True, work_dir=work))
    assert remote_tree(url) == tree(local)


def test_several_ranks_need_a_shared_folder(url: str) -> None:
    with pytest.raises(ConfigError, match="not to a URL"):
        generate(small(), url, ranks=Ranks(rank=0, world=2))


def test_a_several_objects_store_at_a_url_has_the_local_bytes(url: str, tmp_path: Path) -> None:
    """The per-object results (written shard by shard into shared chunks) are copied too."""
    config = small(objects_max=3, max_overlap=0.8)
    generate(config, tmp_path / "local.zarr")
    generate(config, url, RunOptions(work_dir=str(tmp_path / "work")))
    assert remote_tree(url) == tree(tmp_path / "local.zarr")
    assert zarr.open_group(url, mode="r")["meta/objects/visible_pixels"][:].sum() > 0
