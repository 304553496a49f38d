"""Deterministic, resumable batch loaders: image batches with augmentation, BPTT windows, and
the endless stream of meta batches.

An image epoch depends only on ``(seed, epoch)`` (shuffle order and augmentation), and
``start=k`` yields exactly the batches ``k, k+1, ...`` that a full pass would, so training can
resume mid-epoch. Text epochs walk the stream in order (BPTT).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor

from mlrsnet.checks import positive_int

from .augment import Augmentation, Normalization
from .splits import derive_seed

__all__ = ["BPTTLoader", "ImageBatchLoader", "MetaStream"]


class ImageBatchLoader:
    """One epoch of image batches, deterministic given ``(seed, epoch)``.

    The shuffle order comes from a generator seeded with ``derive_seed(seed, "order", epoch)``,
    the augmentation of batch ``b`` from ``derive_seed(seed, "augment", epoch, b)``, so starting
    at ``start=k`` reproduces the tail of a full pass exactly.

    ``len(loader)`` is the number of batches this loader will yield (``batches_per_epoch -
    start``). Batches are ``(float inputs [B, C, H, W], int64 targets [B])`` on the device of
    ``images``.

    Args:
        images: ``uint8[N, C, H, W]`` pool of images (already on the target device).
        indices: ``int64[n]`` indices into ``images`` making up this split (same device).
        labels: ``int64[n]`` labels aligned with ``indices`` (same device).
        batch_size: Samples per batch.
        normalization: Converts uint8 pixels to standardised floats.
        augmentation: Applied to uint8 batches before normalising (``None``: none).
        seed: Loader seed.
        epoch: Epoch number (changes order and augmentation).
        start: First batch index to yield.
        shuffle: Shuffle the order (``False``: index order, e.g. for evaluation).
        drop_last: Drop a final incomplete batch.
        chunk_size: About this many samples are prepared per tensor operation (whole batches;
            at least one). Only speed and memory depend on it, never the batches.

    Example:
        >>> x = torch.zeros(10, 1, 4, 4, dtype=torch.uint8)
        >>> loader = ImageBatchLoader(x, torch.arange(10), torch.zeros(10, dtype=torch.long),
        ...                           batch_size=4, normalization=Normalization((0.5,), (0.5,)))
        >>> len(loader), [tuple(b[0].shape) for b in loader][-1]
        (3, (2, 1, 4, 4))
    """

    def __init__(
        self,
        images: Tensor,
        indices: Tensor,
        labels: Tensor,
        *,
        batch_size: int,
        normalization: Normalization,
        augmentation: Augmentation | None = None,
        seed: int = 0,
        epoch: int = 0,
        start: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
        chunk_size: int = 4096,
    ) -> None:
        positive_int("batch_size", batch_size)
        if indices.shape != labels.shape or indices.dim() != 1:
            raise ValueError("indices and labels must be 1-D tensors of the same length")
        self.images, self.indices, self.labels = images, indices, labels
        self.batch_size = batch_size
        self.normalization = normalization
        self.augmentation = augmentation
        self.seed, self.epoch = seed, epoch
        self.shuffle, self.drop_last = shuffle, drop_last
        n = indices.numel()
        self.batches_per_epoch = n // batch_size if drop_last else math.ceil(n / batch_size)
        if not 0 <= start <= self.batches_per_epoch:
            raise ValueError(f"start must be in [0, {self.batches_per_epoch}], got {start}")
        self.start = start
        positive_int("chunk_size", chunk_size)
        self.chunk = max(1, chunk_size // batch_size)

    def __len__(self) -> int:
        return self.batches_per_epoch - self.start

    def order(self) -> Tensor:
        """Positions into ``indices`` in the order of this epoch (on the CPU)."""
        n = self.indices.numel()
        if not self.shuffle:
            return torch.arange(n)
        gen = torch.Generator().manual_seed(derive_seed(self.seed, "order", self.epoch))
        return torch.randperm(n, generator=gen)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        order = self.order().to(self.indices.device)
        augment = self.augmentation is not None and self.augmentation.enabled
        bs = self.batch_size
        # Several batches are gathered, augmented and normalised together (fewer, larger
        # tensor ops); batch b's randomness still comes from its own generator, so the result
        # is identical to processing batch by batch and independent of ``start``.
        for first in range(self.start, self.batches_per_epoch, self.chunk):
            last = min(first + self.chunk, self.batches_per_epoch)
            pos = order[first * bs : last * bs]
            x = self.images[self.indices[pos]]
            if augment:
                x = self.augmentation.apply(x, self._params(first, last, pos.numel()))  # type: ignore[union-attr]
            x = self.normalization(x)
            y = self.labels[pos]
            for k in range(last - first):
                yield x[k * bs : (k + 1) * bs], y[k * bs : (k + 1) * bs]

    def _params(self, first: int, last: int, total: int) -> tuple[Tensor | None, Tensor | None]:
        offsets, flips = [], []
        for b in range(first, last):
            size = min(self.batch_size, total - (b - first) * self.batch_size)
            gen = torch.Generator().manual_seed(derive_seed(self.seed, "augment", self.epoch, b))
            o, f = self.augmentation.sample(size, gen)  # type: ignore[union-attr]
            offsets.append(o)
            flips.append(f)
        return (
            None if offsets[0] is None else torch.cat(offsets, dim=1),
            None if flips[0] is None else torch.cat(flips),
        )


class BPTTLoader:
    """Truncated-BPTT windows over a batchified token stream, in order.

    Window ``i`` is ``inputs = data[:, i*T : i*T + T]``, ``targets`` the same shifted by one
    token; the last window may be shorter. The hidden state is not handled here: the caller
    passes the state returned by the model for window ``i`` into window ``i + 1``.

    Args:
        data: ``int64[B, L]`` from :func:`~mlrsnet.lab.tasks.splits.batchify`.
        bptt: Window length ``T`` (35 in the paper).
        start: First window to yield (to resume mid-epoch).

    Example:
        >>> from mlrsnet.lab.tasks.splits import batchify
        >>> loader = BPTTLoader(batchify(torch.arange(20), 2), bptt=4)
        >>> x, y = next(iter(loader))
        >>> x.tolist(), y.tolist(), len(loader)
        ([[0, 1, 2, 3], [10, 11, 12, 13]], [[1, 2, 3, 4], [11, 12, 13, 14]], 3)
    """

    def __init__(self, data: Tensor, *, bptt: int, start: int = 0) -> None:
        positive_int("bptt", bptt)
        if data.dim() != 2 or data.shape[1] < 2:
            raise ValueError(f"data must be [B, L] with L >= 2, got {tuple(data.shape)}")
        self.data, self.bptt = data, bptt
        self.batches_per_epoch = math.ceil((data.shape[1] - 1) / bptt)
        if not 0 <= start <= self.batches_per_epoch:
            raise ValueError(f"start must be in [0, {self.batches_per_epoch}], got {start}")
        self.start = start

    def __len__(self) -> int:
        return self.batches_per_epoch - self.start

    def window(self, i: int) -> tuple[Tensor, Tensor]:
        """The ``i``-th ``(inputs, targets)`` window."""
        pos = i * self.bptt
        length = min(self.bptt, self.data.shape[1] - 1 - pos)
        return self.data[:, pos : pos + length], self.data[:, pos + 1 : pos + 1 + length]

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for i in range(self.start, self.batches_per_epoch):
            yield self.window(i)


class MetaStream:
    """Endless iterator over passes ``0, 1, 2, ...`` of a per-pass batch source."""

    def __init__(self, make_pass: Callable[[int, int], Iterator[Any]], per_pass: int, start: int):
        if per_pass < 1:
            raise ValueError("the meta data yields no batch at this batch size")
        if start < 0:
            raise ValueError(f"start must be non-negative, got {start}")
        self._make_pass, self.per_pass = make_pass, per_pass
        self.served = start
        self._it = make_pass(start // per_pass, start % per_pass)
        self._pass = start // per_pass

    def __iter__(self) -> MetaStream:
        return self

    def __next__(self) -> Any:
        try:
            batch = next(self._it)
        except StopIteration:
            self._pass += 1
            self._it = self._make_pass(self._pass, 0)
            batch = next(self._it)
        self.served += 1
        return batch
