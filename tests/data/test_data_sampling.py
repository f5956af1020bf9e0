"""Frame-index sampling and equal-length batches."""

from __future__ import annotations

import itertools

import pytest

from vist3a.data import EqualLengthBatchSampler, derive_rng, sample_frame_indices


def test_window_indices_are_strided_runs_inside_the_sequence():
    for seed in range(50):
        idx = sample_frame_indices(40, 9, derive_rng(seed), stride=3)
        assert len(idx) == 9 and idx[0] >= 0 and idx[-1] < 40
        assert all(b - a == 3 for a, b in itertools.pairwise(idx))
    starts = {sample_frame_indices(40, 9, derive_rng(s))[0] for s in range(200)}
    assert starts == set(range(40 - 9 + 1))  # every start is reachable, none beyond


def test_window_with_stride_choices_falls_back_to_a_fitting_stride():
    strides = set()
    for seed in range(60):
        idx = sample_frame_indices(30, 5, derive_rng(seed), stride=(1, 2, 10))
        step = idx[1] - idx[0]
        strides.add(step)
        assert idx[-1] < 30
    # stride 10 needs 41 frames: the largest fitting candidate (2) is used instead
    assert strides == {1, 2}


def test_spread_and_errors():
    assert sample_frame_indices(21, 5, derive_rng(0), mode="spread") == [0, 5, 10, 15, 20]
    assert sample_frame_indices(5, 5, derive_rng(0), stride=4) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="only 4"):
        sample_frame_indices(4, 5, derive_rng(0))
    with pytest.raises(ValueError, match="`mode`"):
        sample_frame_indices(10, 5, derive_rng(0), mode="random")
    with pytest.raises(ValueError, match="`stride`"):
        sample_frame_indices(10, 5, derive_rng(0), stride=0)


def test_same_seed_same_indices():
    a = [sample_frame_indices(100, 13, derive_rng(7, "x", i), stride=(1, 2)) for i in range(10)]
    b = [sample_frame_indices(100, 13, derive_rng(7, "x", i), stride=(1, 2)) for i in range(10)]
    assert a == b and len({tuple(x) for x in a}) > 1


def test_equal_length_batches():
    sampler = EqualLengthBatchSampler(23, batch_size=4, choices=(9, 13, 17, 21), seed=3)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 6
    seen = []
    counts = set()
    for batch in batches:
        assert len({t for _, t in batch}) == 1
        counts.add(batch[0][1])
        seen += [i for i, _ in batch]
    assert sorted(seen) == list(range(23)) and counts <= {9, 13, 17, 21}
    assert list(sampler) == batches  # same epoch, same batches
    sampler.set_epoch(1)
    assert list(sampler) != batches
    assert len(EqualLengthBatchSampler(23, 4, drop_last=True)) == 5
    with pytest.raises(ValueError, match="4n"):
        EqualLengthBatchSampler(10, 2, choices=(8,))
