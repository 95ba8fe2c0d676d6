"""The split by background: drawn among the backgrounds the used samples hold,
one rule for train, evaluate, export and online compositing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.compose.generate import generate
from engine.errors import StoreError
from engine.splits import held_out_among, held_out_backgrounds
from engine.store.export import ExportConfig, export_store
from tests.small_stores import small


def old_rule(n: int, fraction: float, seed: int) -> np.ndarray:
    """The rule of before: among all ``n`` backgrounds of the inputs."""
    n_val = min(n - 1, max(1, round(fraction * n)))
    return np.sort(np.random.default_rng([seed, 0x5E1]).permutation(n)[:n_val])


@pytest.mark.parametrize("n", [2, 3, 10, 100])
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_every_background_held_gives_the_split_of_before(n: int, seed: int) -> None:
    bg = np.repeat(np.arange(n), 3)  # samples holding every background (a complete grid store)
    np.testing.assert_array_equal(held_out_among(bg, 0.1, seed), old_rule(n, 0.1, seed))
    np.testing.assert_array_equal(held_out_backgrounds(n, 0.34, seed), old_rule(n, 0.34, seed))


def test_held_out_backgrounds_are_among_those_held() -> None:
    bg = np.array([40, 41, 40, 45, 41, 45, 47])  # a --limit prefix of a 100-background plan
    for seed in range(20):
        held = held_out_among(bg, 0.1, seed)
        assert len(held) == 1 and set(held) <= {40, 41, 45, 47}


def test_one_background_is_refused() -> None:
    with pytest.raises(ValueError, match="at least two backgrounds"):
        held_out_among(np.zeros(5, np.int64), 0.1, 0)


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 backgrounds, but ``--limit 4`` holds backgrounds 0 and 1 only (foreground runs fastest);
    split seed 2 held out background 2 under the rule of before: an empty val split."""
    out = tmp_path_factory.mktemp("split") / "l.zarr"
    generate(small(limit=4, shard_size=4), out)
    return out


def test_a_limited_store_has_both_splits_and_export_agrees(limited: Path, tmp_path: Path) -> None:
    from engine.learn.data import split_indices

    np.testing.assert_array_equal(old_rule(3, 0.34, 2), [2])  # the case that failed before
    train, held = split_indices(limited, "train", 0.34, 2)
    val, held_val = split_indices(limited, "val", 0.34, 2)
    np.testing.assert_array_equal(held, held_val)
    assert len(train) and len(val) and len(train) + len(val) == 4
    assert set(held) <= {0, 1}
    out = tmp_path / "val"
    report = export_store(ExportConfig(store=str(limited), out=str(out), kind="folders", split="val",
                                       val_fraction=0.34, split_seed=2))
    assert report.samples == len(val)


def test_recorded_backgrounds_win(limited: Path) -> None:
    from engine.learn.data import split_indices

    index, held = split_indices(limited, "val", 0.34, 2, val_backgrounds=np.array([1]))
    np.testing.assert_array_equal(held, [1])
    np.testing.assert_array_equal(index, [2, 3])  # samples 2 and 3 stand on background 1


def test_one_background_store_says_what_to_do(tmp_path: Path) -> None:
    from engine.learn.data import split_indices

    out = tmp_path / "one.zarr"
    generate(small(limit=2, shard_size=2, chunk_size=2), out)  # both cars on background 0
    with pytest.raises(StoreError, match=r"hold 1 background.*a larger --limit \(at least 3"):
        split_indices(out, "val", 0.1, 0)
    with pytest.raises(StoreError, match=r"a larger --limit"):
        export_store(ExportConfig(store=str(out), out=str(tmp_path / "e"), kind="folders", split="val"))


def test_online_split_uses_the_same_rule() -> None:
    from engine.compose.online import OnlineSamples

    samples = OnlineSamples(small(limit=4), device="cpu")
    index, held = samples.split_indices("val", 0.34, 2)
    np.testing.assert_array_equal(held, held_out_among(samples.bg_index(np.arange(4)), 0.34, 2))
    assert len(index) == 2
