"""Seeded splits of labelled data: meta set, training-size subsets, label noise, BPTT batches.

All functions are pure: they take label / token tensors and return new index or label tensors;
nothing is modified in place. Randomness comes from a :class:`torch.Generator` seeded with
:func:`derive_seed`, so every result is a deterministic function of its arguments (and is the
same on every machine, since it is drawn on the CPU).

Conventions (see ``docs/tasks.md``):

* **Meta set** (:func:`meta_split`): ``num_meta`` samples held out of the training split,
  class-balanced (``num_meta // C`` per class, the remainder spread one each over randomly
  chosen classes), disjoint from the training samples that remain.
* **Subsets** (:func:`stratified_subset`): ``round(fraction * n_c)`` samples of every class
  ``c``, so the class proportions are kept.
* **Uniform (symmetric) noise** (:func:`corrupt_labels` with ``kind="uniform"``): every label
  independently, with probability ``rate``, is replaced by a *different* class drawn uniformly
  from the other ``C - 1`` classes. The realised noise rate (fraction of wrong labels) is
  therefore ``rate`` in expectation. (Meta-Weight-Net's code draws from all ``C`` classes,
  which gives ``rate * (C - 1) / C`` wrong labels; pass ``rate * C / (C - 1)`` to match it.)
* **Pair-flip noise** (``kind="pairflip"``): every label independently, with probability
  ``rate``, becomes ``(c + 1) mod C``.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from mlrsnet.checks import number

__all__ = [
    "NOISE_KINDS",
    "batchify",
    "class_counts",
    "corrupt_labels",
    "derive_seed",
    "meta_split",
    "noise_transition_matrix",
    "stratified_subset",
    "take_per_class",
]

#: Canonical label-noise kinds accepted by :func:`corrupt_labels` (aliases are mapped onto them).
NOISE_KINDS = ("uniform", "pairflip")
_NOISE_ALIASES = {
    "uniform": "uniform",
    "symmetric": "uniform",
    "pairflip": "pairflip",
    "pair-flip": "pairflip",
    "pair_flip": "pairflip",
    "pair": "pairflip",
}


def derive_seed(seed: int, *keys: int | str) -> int:
    """Derive an independent 63-bit seed from a base seed and a path of keys.

    Uses :class:`numpy.random.SeedSequence`, so nearby inputs give unrelated streams
    (``derive_seed(0, "train", 1)`` and ``derive_seed(1, "train", 0)`` do not collide).

    Args:
        seed: Base seed (any non-negative integer).
        *keys: Integers or strings naming the purpose, e.g. ``"augment", epoch, batch``.

    Returns:
        An integer in ``[0, 2**63)`` suitable for :meth:`torch.Generator.manual_seed`.

    Example:
        >>> derive_seed(0, "meta") == derive_seed(0, "meta")
        True
        >>> derive_seed(0, "meta") != derive_seed(0, "noise")
        True
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    words = [int(seed)]
    for key in keys:
        if isinstance(key, str):
            words.append(zlib.crc32(key.encode("utf-8")))
        elif isinstance(key, int | np.integer) and not isinstance(key, bool) and key >= 0:
            words.append(int(key))
        else:
            raise ValueError(f"seed keys must be strings or non-negative integers, got {key!r}")
    state = np.random.SeedSequence(words).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


def _generator(seed: int, *keys: int | str) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(seed, *keys))


def _check_labels(labels: Tensor) -> Tensor:
    if not isinstance(labels, Tensor) or labels.dim() != 1:
        raise ValueError("labels must be a 1-D tensor of class indices")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"labels must have an integer dtype, got {labels.dtype}")
    if labels.numel() and int(labels.min()) < 0:
        raise ValueError("labels must be non-negative class indices")
    return labels.detach().to("cpu", torch.long)


def class_counts(labels: Tensor, num_classes: int | None = None) -> Tensor:
    """Number of samples of every class (a per-class histogram).

    Args:
        labels: 1-D integer tensor of class indices.
        num_classes: Length of the result; defaults to ``labels.max() + 1``.

    Returns:
        ``LongTensor[num_classes]``.

    Example:
        >>> class_counts(torch.tensor([0, 2, 2]), 4).tolist()
        [1, 0, 2, 0]
    """
    labels = _check_labels(labels)
    return torch.bincount(labels, minlength=num_classes or 0)


def take_per_class(labels: Tensor, counts: Sequence[int] | Tensor, *, seed: int) -> Tensor:
    """Pick ``counts[c]`` random samples of every class ``c``, without replacement.

    Args:
        labels: 1-D integer tensor of class indices.
        counts: Samples wanted per class (length ``>= labels.max() + 1``).
        seed: Seed for the choice.

    Returns:
        Sorted ``LongTensor`` of the chosen indices into ``labels``.

    Raises:
        ValueError: If a class has fewer samples than requested.

    Example:
        >>> take_per_class(torch.tensor([0, 0, 1, 1, 1]), [1, 2], seed=0).numel()
        3
    """
    labels = _check_labels(labels)
    counts = torch.as_tensor(counts, dtype=torch.long).flatten()
    available = torch.bincount(labels, minlength=counts.numel())
    if available.numel() > counts.numel():
        raise ValueError(
            f"counts has {counts.numel()} entries but labels contain class {available.numel() - 1}"
        )
    if bool((counts < 0).any()):
        raise ValueError("counts must be non-negative")
    short = (counts > available).nonzero().flatten().tolist()
    if short:
        c = short[0]
        raise ValueError(
            f"class {c} has only {int(available[c])} samples, {int(counts[c])} requested"
        )
    n = labels.numel()
    perm = torch.randperm(n, generator=_generator(seed, "take_per_class"))
    order = torch.argsort(labels[perm], stable=True)
    grouped = perm[order]  # grouped by class, random order within each class
    sorted_labels = labels[grouped]
    starts = torch.cumsum(available, 0) - available
    rank = torch.arange(n) - starts[sorted_labels]
    chosen = grouped[rank < counts[sorted_labels]]
    return torch.sort(chosen).values


def meta_split(
    labels: Tensor, num_meta: int, *, seed: int, num_classes: int | None = None
) -> tuple[Tensor, Tensor]:
    """Hold out a class-balanced meta set, as in the MLR-SNet / Meta-Weight-Net papers.

    ``num_meta // C`` samples of every class go to the meta set; the remaining
    ``num_meta % C`` are one extra sample for that many classes, chosen at random.

    Args:
        labels: Clean training labels, 1-D integer tensor.
        num_meta: Meta-set size (the paper uses 1,000 = 100 per class on CIFAR-10).
        seed: Seed of the split.
        num_classes: Number of classes ``C``; defaults to ``labels.max() + 1``.

    Returns:
        ``(train_indices, meta_indices)``: sorted, disjoint ``LongTensor`` s whose union is
        ``range(len(labels))``.

    Raises:
        ValueError: If ``num_meta`` is negative, too large, or a class has too few samples.

    Example:
        >>> labels = torch.arange(100) % 10
        >>> train, meta = meta_split(labels, 20, seed=0)
        >>> len(train), len(meta), labels[meta].bincount().tolist()
        (80, 20, [2, 2, 2, 2, 2, 2, 2, 2, 2, 2])
    """
    labels = _check_labels(labels)
    if num_classes is None:
        num_classes = int(labels.max()) + 1 if labels.numel() else 0
    if isinstance(num_meta, bool) or not isinstance(num_meta, int) or num_meta < 0:
        raise ValueError(f"num_meta must be a non-negative integer, got {num_meta!r}")
    if num_meta > labels.numel():
        raise ValueError(f"num_meta={num_meta} exceeds the {labels.numel()} training samples")
    if num_meta and num_classes < 1:
        raise ValueError("cannot draw a meta set from an empty label set")
    counts = torch.full((num_classes,), num_meta // max(num_classes, 1), dtype=torch.long)
    extra = num_meta - int(counts.sum())
    if extra:
        lucky = torch.randperm(num_classes, generator=_generator(seed, "meta_extra"))[:extra]
        counts[lucky] += 1
    meta = take_per_class(labels, counts, seed=derive_seed(seed, "meta"))
    mask = torch.ones(labels.numel(), dtype=torch.bool)
    mask[meta] = False
    return mask.nonzero().flatten(), meta


def stratified_subset(labels: Tensor, fraction: float, *, seed: int) -> Tensor:
    """Class-balanced random subset keeping ``round(fraction * n_c)`` samples of class ``c``.

    Args:
        labels: 1-D integer tensor of class indices.
        fraction: Fraction in ``(0, 1]`` to keep (e.g. 0.1, 0.3). Every class present keeps at
            least one sample.
        seed: Seed of the choice.

    Returns:
        Sorted ``LongTensor`` of indices into ``labels``.

    Raises:
        ValueError: If ``fraction`` is outside ``(0, 1]``.

    Example:
        >>> labels = torch.arange(1000) % 10
        >>> stratified_subset(labels, 0.1, seed=0).numel()
        100
    """
    labels = _check_labels(labels)
    fraction = float(fraction)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if fraction == 1.0:
        return torch.arange(labels.numel())
    available = torch.bincount(labels)
    counts = torch.round(available.double() * fraction).long()
    counts = torch.where(available > 0, counts.clamp(min=1), counts)
    return take_per_class(labels, counts, seed=derive_seed(seed, "subset"))


def _noise_kind(kind: str) -> str:
    key = str(kind).lower()
    if key not in _NOISE_ALIASES:
        raise ValueError(f"unknown noise kind {kind!r}; expected one of {list(NOISE_KINDS)}")
    return _NOISE_ALIASES[key]


def corrupt_labels(
    labels: Tensor, num_classes: int, *, kind: str, rate: float, seed: int
) -> tuple[Tensor, float]:
    """Inject uniform or pair-flip label noise (the paper's noisy-label setting).

    Each label is independently corrupted with probability ``rate``:

    * ``"uniform"`` (alias ``"symmetric"``): replaced by a different class drawn uniformly
      from the other ``num_classes - 1`` classes;
    * ``"pairflip"`` (aliases ``"pair"``, ``"pair-flip"``): ``c -> (c + 1) mod num_classes``.

    Args:
        labels: Clean labels, 1-D integer tensor (not modified).
        num_classes: Number of classes ``C >= 2``.
        kind: Noise kind, see above.
        rate: Corruption probability in ``[0, 1]``.
        seed: Seed of the corruption.

    Returns:
        ``(noisy_labels, realised_rate)``: a new ``LongTensor`` and the fraction of labels that
        differ from the clean ones (``rate`` in expectation).

    Raises:
        ValueError: On an unknown kind, a rate outside ``[0, 1]``, ``num_classes < 2`` or labels
            out of range.

    Example:
        >>> clean = torch.arange(1000) % 10
        >>> noisy, realised = corrupt_labels(clean, 10, kind="pairflip", rate=0.2, seed=0)
        >>> bool(((noisy == clean) | (noisy == (clean + 1) % 10)).all())
        True
    """
    labels = _check_labels(labels)
    kind = _noise_kind(kind)
    rate = number("noise rate", rate, 0.0, 1.0)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if labels.numel() and int(labels.max()) >= num_classes:
        raise ValueError(f"label {int(labels.max())} out of range for {num_classes} classes")
    if labels.numel() == 0 or rate == 0.0:
        return labels.clone(), 0.0
    gen = _generator(seed, "noise", kind)
    flip = torch.rand(labels.numel(), generator=gen) < rate
    if kind == "uniform":
        offset = torch.randint(1, num_classes, (labels.numel(),), generator=gen)
    else:
        offset = torch.ones_like(labels)
    noisy = torch.where(flip, (labels + offset) % num_classes, labels)
    realised = float((noisy != labels).double().mean())
    return noisy, realised


def noise_transition_matrix(kind: str, rate: float, num_classes: int) -> Tensor:
    """Expected label transition matrix ``T[i, j] = P(noisy = j | clean = i)``.

    Args:
        kind: ``"uniform"`` or ``"pairflip"`` (same aliases as :func:`corrupt_labels`).
        rate: Corruption probability.
        num_classes: Number of classes ``C >= 2``.

    Returns:
        ``DoubleTensor[C, C]`` whose rows sum to one.

    Example:
        >>> noise_transition_matrix("pairflip", 0.2, 3)[0].tolist()
        [0.8, 0.2, 0.0]
    """
    kind = _noise_kind(kind)
    rate = number("noise rate", rate, 0.0, 1.0)
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    eye = torch.eye(num_classes, dtype=torch.float64)
    if kind == "uniform":
        off = (1.0 - eye) * (rate / (num_classes - 1))
    else:
        off = torch.roll(eye, shifts=1, dims=1) * rate
    return eye * (1.0 - rate) + off


def batchify(stream: Tensor, batch_size: int) -> Tensor:
    """Cut a 1-D token stream into ``batch_size`` contiguous columns (``word_language_model``).

    The stream is trimmed to a multiple of ``batch_size`` (the tail is dropped) and reshaped so
    that row ``b`` holds the ``b``-th contiguous chunk: BPTT windows are then ``data[:, i:i+T]``
    with targets ``data[:, i+1:i+1+T]``.

    Args:
        stream: 1-D ``LongTensor`` of token ids (stays on its device).
        batch_size: Number of parallel streams ``B``.

    Returns:
        ``LongTensor[B, len(stream) // B]`` (a view of ``stream``).

    Raises:
        ValueError: If the stream has fewer than ``2 * batch_size`` tokens.

    Example:
        >>> batchify(torch.arange(10), 3).tolist()
        [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    """
    if stream.dim() != 1:
        raise ValueError(f"stream must be 1-D, got shape {tuple(stream.shape)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    length = stream.numel() // batch_size
    if length < 2:
        raise ValueError(
            f"a stream of {stream.numel()} tokens is too short for batch_size={batch_size}"
        )
    return stream[: length * batch_size].view(batch_size, length)
