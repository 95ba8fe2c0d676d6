"""The small store most tests generate, and a byte-level view of a store's files."""

from __future__ import annotations

from pathlib import Path

from engine.config import GenerateConfig


def small(**overrides) -> GenerateConfig:
    """3 backgrounds x 2 cars x 2 flips x 4 positions = 48 samples at 32x48, in 3 shards of 16, chunks of 4."""
    base = dict(builtin_backgrounds=3, builtin_foregrounds=2, height=32, width=48, positions=4, shard_size=16,
                chunk_size=4)
    return GenerateConfig(**{**base, **overrides})


def several_objects(**overrides) -> GenerateConfig:
    """:func:`small` with 2 to 4 objects per image, overlapping freely (48 samples, 3 shards of 16)."""
    return small(**{"objects_min": 2, "objects_max": 4, "max_overlap": 1.0, **overrides})


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root``: relative path → bytes."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def disk_full_at_shard(monkeypatch, shard: int):
    """Make ``ZarrWriter.write_shard`` fail with ENOSPC on store shard ``shard``;
    returns the real method (``monkeypatch.setattr`` it back to write again)."""
    from engine.store.zarr_store import ZarrWriter

    real = ZarrWriter.write_shard

    def disk_full(self, index, batch):
        if index == shard:
            raise OSError(28, "No space left on device")
        return real(self, index, batch)

    monkeypatch.setattr(ZarrWriter, "write_shard", disk_full)
    return real
