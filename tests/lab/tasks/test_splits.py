"""Meta split, class-balanced subsets, label noise and batchify."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlrsnet.lab.tasks.splits import (
    batchify,
    class_counts,
    corrupt_labels,
    derive_seed,
    meta_split,
    noise_transition_matrix,
    stratified_subset,
    take_per_class,
)

LABELS = torch.arange(5_000) % 10  # 500 per class


def test_derive_seed_is_deterministic_and_separates_purposes() -> None:
    assert derive_seed(0, "meta") == derive_seed(0, "meta")
    seeds = {derive_seed(s, k, e) for s in range(3) for k in ("a", "b") for e in range(3)}
    assert len(seeds) == 18
    assert all(0 <= s < 2**63 for s in seeds)
    with pytest.raises(ValueError):
        derive_seed(-1)
    with pytest.raises(ValueError):
        derive_seed(0, 1.5)  # type: ignore[arg-type]


def test_meta_split_is_balanced_disjoint_and_complete() -> None:
    train, meta = meta_split(LABELS, 1_000, seed=0)
    assert class_counts(LABELS[meta], 10).tolist() == [100] * 10
    assert len(train) == 4_000
    assert not set(train.tolist()) & set(meta.tolist())
    assert sorted(train.tolist() + meta.tolist()) == list(range(5_000))
    again_train, again_meta = meta_split(LABELS, 1_000, seed=0)
    assert torch.equal(meta, again_meta) and torch.equal(train, again_train)
    assert not torch.equal(meta, meta_split(LABELS, 1_000, seed=1)[1])


def test_meta_split_spreads_the_remainder_one_per_class() -> None:
    _, meta = meta_split(LABELS, 15, seed=3)
    counts = class_counts(LABELS[meta], 10)
    assert counts.sum() == 15 and set(counts.tolist()) == {1, 2}


def test_meta_split_errors() -> None:
    with pytest.raises(ValueError, match="only"):
        meta_split(torch.tensor([0, 0, 0, 1]), 4, seed=0)  # class 1 has one sample
    with pytest.raises(ValueError, match="exceeds"):
        meta_split(LABELS[:10], 11, seed=0)
    with pytest.raises(ValueError):
        meta_split(LABELS, -1, seed=0)
    with pytest.raises(ValueError, match="integer dtype"):
        meta_split(LABELS.float(), 10, seed=0)


@settings(max_examples=40, deadline=None)
@given(
    counts=st.lists(st.integers(min_value=3, max_value=12), min_size=2, max_size=6),
    per_class=st.integers(min_value=0, max_value=3),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_meta_split_properties(counts: list[int], per_class: int, seed: int) -> None:
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(1))]
    num_meta = per_class * len(counts)
    train, meta = meta_split(labels, num_meta, seed=seed)
    assert class_counts(labels[meta], len(counts)).tolist() == [per_class] * len(counts)
    assert len(train) + len(meta) == len(labels)
    assert not set(train.tolist()) & set(meta.tolist())


def test_take_per_class_respects_counts() -> None:
    idx = take_per_class(LABELS, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], seed=0)
    assert class_counts(LABELS[idx], 10).tolist() == list(range(10))
    assert torch.equal(idx, torch.sort(idx).values)


def test_stratified_subset_keeps_class_proportions() -> None:
    labels = torch.cat([torch.zeros(300), torch.ones(100), torch.full((50,), 2)]).long()
    idx = stratified_subset(labels, 0.1, seed=0)
    assert class_counts(labels[idx]).tolist() == [30, 10, 5]
    assert torch.equal(idx, stratified_subset(labels, 0.1, seed=0))
    assert len(stratified_subset(labels, 0.3, seed=0)) == 135
    assert len(stratified_subset(labels, 1.0, seed=0)) == 450
    assert class_counts(labels[stratified_subset(labels, 0.001, seed=0)]).tolist() == [1, 1, 1]
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError):
            stratified_subset(labels, bad, seed=0)


def test_uniform_noise_flips_to_a_different_class_at_the_requested_rate() -> None:
    labels = torch.arange(100_000) % 10
    noisy, realised = corrupt_labels(labels, 10, kind="uniform", rate=0.4, seed=0)
    changed = noisy != labels
    assert realised == pytest.approx(float(changed.double().mean()))
    assert abs(realised - 0.4) < 0.01
    # the new class is uniform over the 9 others: each (clean, noisy) pair ~ 0.4 / 9
    empirical = torch.zeros(10, 10)
    empirical.index_put_((labels, noisy), torch.ones(len(labels)), accumulate=True)
    empirical /= empirical.sum(1, keepdim=True)
    expected = noise_transition_matrix("uniform", 0.4, 10).float()
    assert torch.allclose(empirical, expected, atol=0.015)
    assert torch.equal(labels, torch.arange(100_000) % 10)  # input untouched


def test_pairflip_noise_moves_to_the_next_class() -> None:
    labels = torch.arange(100_000) % 10
    noisy, realised = corrupt_labels(labels, 10, kind="pairflip", rate=0.2, seed=0)
    changed = noisy != labels
    assert torch.equal(noisy[changed], (labels[changed] + 1) % 10)
    assert abs(realised - 0.2) < 0.01
    assert noise_transition_matrix("pair", 0.2, 3).tolist()[2] == [0.2, 0.0, 0.8]


def test_noise_edge_cases_and_errors() -> None:
    labels = torch.arange(1_000) % 10
    same, rate = corrupt_labels(labels, 10, kind="uniform", rate=0.0, seed=0)
    assert torch.equal(same, labels) and rate == 0.0
    _, rate = corrupt_labels(labels, 10, kind="symmetric", rate=1.0, seed=0)
    assert rate == 1.0
    a, _ = corrupt_labels(labels, 10, kind="uniform", rate=0.3, seed=5)
    b, _ = corrupt_labels(labels, 10, kind="uniform", rate=0.3, seed=5)
    c, _ = corrupt_labels(labels, 10, kind="uniform", rate=0.3, seed=6)
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(ValueError, match="unknown noise kind"):
        corrupt_labels(labels, 10, kind="gaussian", rate=0.1, seed=0)
    with pytest.raises(ValueError, match="rate"):
        corrupt_labels(labels, 10, kind="uniform", rate=1.5, seed=0)
    with pytest.raises(ValueError, match="out of range"):
        corrupt_labels(labels, 5, kind="uniform", rate=0.1, seed=0)
    with pytest.raises(ValueError, match="num_classes"):
        corrupt_labels(labels * 0, 1, kind="uniform", rate=0.1, seed=0)


def test_transition_matrix_rows_sum_to_one() -> None:
    for kind in ("uniform", "pairflip"):
        t = noise_transition_matrix(kind, 0.37, 7)
        assert torch.allclose(t.sum(1), torch.ones(7, dtype=torch.float64))


def test_batchify_layout() -> None:
    data = batchify(torch.arange(23), 4)
    assert data.shape == (4, 5)
    assert data[1].tolist() == [5, 6, 7, 8, 9]  # row b is the b-th contiguous chunk
    with pytest.raises(ValueError, match="too short"):
        batchify(torch.arange(5), 4)
    with pytest.raises(ValueError):
        batchify(torch.zeros(2, 3, dtype=torch.long), 1)
