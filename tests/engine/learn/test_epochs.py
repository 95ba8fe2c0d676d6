"""The batch/augmentation contract shared by every loader."""

from __future__ import annotations

import numpy as np
import pytest

from engine.learn.epochs import EpochPlan, augmentation


@pytest.mark.parametrize("n, batch, ranks, drop_last", [(10, 3, 1, False), (10, 3, 1, True), (11, 4, 2, False),
                                                         (7, 2, 3, True)])
def test_ranks_cover_the_split_once_per_epoch(n: int, batch: int, ranks: int, drop_last: bool) -> None:
    seen = []
    for rank in range(ranks):
        plan = EpochPlan(n, batch, seed=5, shard_id=rank, num_shards=ranks, drop_last=drop_last)
        for i in range(plan.batches_per_epoch()):
            rows, _ = plan.rows(2, i)
            assert len(rows) == batch or (not drop_last and i == plan.batches_per_epoch() - 1)
            seen.extend(rows.tolist())
    if drop_last:
        assert len(set(seen)) == len(seen) and set(seen) <= set(range(n))
    else:
        assert sorted(seen) == list(range(n))


def test_epochs_differ_and_repeat_with_the_seed() -> None:
    a, b = EpochPlan(50, 50, seed=1), EpochPlan(50, 50, seed=1)
    assert np.array_equal(a.rows(0, 0)[0], b.rows(0, 0)[0])
    assert not np.array_equal(a.rows(0, 0)[0], a.rows(1, 0)[0])
    assert a.locate(3) == (3, 0) and EpochPlan(10, 3, 0).locate(5) == (1, 1)


def test_augmentation_is_per_position() -> None:
    flip, gain = augmentation(3, 1, np.arange(100))
    sub_flip, sub_gain = augmentation(3, 1, np.array([7, 42]))
    assert np.array_equal(sub_flip, flip[[7, 42]]) and np.array_equal(sub_gain, gain[[7, 42]])
    assert 20 < flip.sum() < 80 and gain.min() >= 0.64 - 1e-6 and gain.max() <= 1.44 + 1e-6


def test_bad_plans_are_refused() -> None:
    with pytest.raises(ValueError, match="shard_id"):
        EpochPlan(10, 2, 0, shard_id=2, num_shards=2)
    with pytest.raises(IndexError):
        EpochPlan(10, 3, 0).rows(0, 4)
    with pytest.raises(ValueError, match="cannot fill one batch"):
        EpochPlan(3, 4, 0, drop_last=True).locate(0)


def test_unshuffled_plans_read_the_split_in_order() -> None:
    """shuffle=False (evaluation): every epoch is the split in order, ranks interleaved, the last batch partial."""
    plan = EpochPlan(10, 4, seed=3, shuffle=False)
    for epoch in (0, 5):
        assert [plan.rows(epoch, i)[0].tolist() for i in range(plan.batches_per_epoch())] == [
            [0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    rank1 = EpochPlan(10, 4, seed=3, shard_id=1, num_shards=2, shuffle=False)
    assert rank1.rows(0, 0)[0].tolist() == [1, 3, 5, 7] and rank1.rows(0, 1)[0].tolist() == [9]
