"""Task registry: dataset + splits + model + loss + metric + default hyper-parameters.

:func:`get` turns a registry name into a ready :class:`Task`::

    task = mlrsnet.lab.tasks.get("fmnist-resnet", seed=0, noise="uniform", noise_rate=0.4)
    model = task.build_model()
    for epoch in range(task.epochs):
        for inputs, targets in task.train_loader(task.batch_size, epoch=epoch, device="cpu"):
            loss = task.loss_fn(model(inputs), targets)
            ...
    task.evaluate(model)  # {"loss": ..., "metric": ...}

Text tasks (``modality == "text"``) yield ``inputs`` as a ``LongTensor[B, T]`` of tokens; the
caller carries the LSTM state between consecutive windows: ``outputs = model(tokens, hidden)``,
``hidden = detach(outputs[1])``, ``loss = task.loss_fn(outputs, targets)``.

Loaders are deterministic: an image epoch depends only on ``(seed, epoch)`` (shuffle order and
augmentation), and ``start=k`` yields exactly the batches ``k, k+1, ...`` that a full pass would,
so training can resume mid-epoch. Text epochs walk the stream in order (BPTT).
"""

from __future__ import annotations

import importlib
import logging
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, overload

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .augment import DATASET_TRANSFORMS, Augmentation, Normalization
from .datasets import ImageDataset, TextCorpus, is_available, load
from .splits import batchify, corrupt_labels, derive_seed, meta_split, stratified_subset

__all__ = [
    "BPTTLoader",
    "ImageBatchLoader",
    "ImageTask",
    "Task",
    "TaskSpec",
    "TextTask",
    "available",
    "get",
    "names",
    "register",
    "spec",
]

logger = logging.getLogger(__name__)

Device = torch.device | str


# ----------------------------------------------------------------------------- loaders


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
        _check_positive("batch_size", batch_size)
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
        _check_positive("chunk_size", chunk_size)
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
        >>> loader = BPTTLoader(batchify(torch.arange(20), 2), bptt=4)
        >>> x, y = next(iter(loader))
        >>> x.tolist(), y.tolist(), len(loader)
        ([[0, 1, 2, 3], [10, 11, 12, 13]], [[1, 2, 3, 4], [11, 12, 13, 14]], 3)
    """

    def __init__(self, data: Tensor, *, bptt: int, start: int = 0) -> None:
        _check_positive("bptt", bptt)
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


class _MetaStream:
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

    def __iter__(self) -> _MetaStream:
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


def _check_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


# ----------------------------------------------------------------------------- tasks


@dataclass(kw_only=True, eq=False)
class Task:
    """A ready experiment: data splits, model factory, loss, metric and default settings.

    Attributes:
        name: Registry name.
        modality: ``"image"`` or ``"text"``.
        num_classes: Classes (image) or vocabulary size (text): the output width, as used by
            the paper's scale rule.
        metric: ``"accuracy"`` (fraction in ``[0, 1]``, higher is better) or ``"perplexity"``
            (lower is better).
        epochs: Default number of epochs.
        batch_size: Default training batch size.
        lr: A sensible SGD learning rate for fixed-schedule baselines.
        momentum: SGD momentum for baselines.
        weight_decay: Weight decay for baselines.
        grad_clip: Gradient-norm clip (0.25 for language models as in the paper) or ``None``.
        seed: Seed the splits were drawn with; the default loader seed.
        dataset: Dataset name.
        model_name: Factory in :mod:`mlrsnet.lab.tasks.models`.
        model_kwargs: Keyword arguments of the factory.
    """

    name: str
    modality: str
    num_classes: int
    metric: str
    epochs: int
    batch_size: int
    lr: float
    momentum: float
    weight_decay: float
    grad_clip: float | None
    seed: int
    dataset: str
    model_name: str
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    _device_cache: dict[tuple[str, str], Tensor] = field(
        default_factory=dict, init=False, repr=False
    )

    def build_model(self, *, seed: int | None = None, device: Device | None = None) -> nn.Module:
        """Build a fresh model (imports :mod:`mlrsnet.lab.tasks.models` lazily).

        Args:
            seed: If given, the initialisation is drawn from ``torch.manual_seed(seed)`` inside
                a forked RNG (the global RNG is left untouched); otherwise from the global RNG.
            device: Move the model there.

        Returns:
            The model.

        Example:
            >>> get("digits-mlp").build_model(seed=0)(torch.zeros(2, 1, 8, 8)).shape
            torch.Size([2, 10])
        """
        models = importlib.import_module("mlrsnet.lab.tasks.models")
        factory = getattr(models, self.model_name)
        if seed is None:
            model = factory(**self.model_kwargs)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = factory(**self.model_kwargs)
        return model if device is None else model.to(device)

    def loss_fn(self, outputs: Any, targets: Tensor) -> Tensor:
        """Mean cross-entropy of a batch (scalar tensor)."""
        raise NotImplementedError

    def train_loader(self, batch_size: int | None = None, **kwargs: Any) -> Any:
        """One epoch of training batches; see the subclasses."""
        raise NotImplementedError

    def meta_loader(self, batch_size: int | None = None, **kwargs: Any) -> Iterator[Any]:
        """Endless iterator of meta batches; see the subclasses."""
        raise NotImplementedError

    def evaluate(self, model: nn.Module, **kwargs: Any) -> dict[str, float]:
        """Loss and metric on a held-out split; see the subclasses."""
        raise NotImplementedError

    def _on(self, key: str, tensor: Tensor, device: Device) -> Tensor:
        dev = torch.device(device)
        if tensor.device == dev:
            return tensor
        cache_key = (key, str(dev))
        if cache_key not in self._device_cache:
            self._device_cache[cache_key] = tensor.to(dev)
        return self._device_cache[cache_key]


def _model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


class _EvalMode:
    """Put a model in eval mode and restore every submodule's previous mode afterwards."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.modes: list[tuple[nn.Module, bool]] = []

    def __enter__(self) -> None:
        self.modes = [(m, m.training) for m in self.model.modules()]
        self.model.eval()

    def __exit__(self, *exc: object) -> None:
        for module, mode in self.modes:
            module.training = mode


@dataclass(kw_only=True, eq=False)
class ImageTask(Task):
    """Image classification task (see :class:`Task` for the shared attributes).

    Attributes:
        data: The raw dataset (shared, cached; do not modify).
        train_indices: Indices into ``data.train_images`` of the training split (meta set
            removed, subset applied).
        train_labels: Labels of the training split, with label noise if requested.
        meta_indices: Indices into ``data.train_images`` of the clean, class-balanced meta set.
        normalization: Pixel normalisation.
        augmentation: Training augmentation.
        noise: ``None``, ``"uniform"`` or ``"pairflip"``.
        noise_rate: Requested noise rate.
        realised_noise_rate: Fraction of training labels actually changed.
        train_fraction: Fraction of the (post-meta) training split kept.
        eval_batch_size: Default batch size of :meth:`evaluate`.
    """

    data: ImageDataset = field(repr=False)
    train_indices: Tensor = field(repr=False)
    train_labels: Tensor = field(repr=False)
    meta_indices: Tensor = field(repr=False)
    normalization: Normalization
    augmentation: Augmentation
    noise: str | None = None
    noise_rate: float = 0.0
    realised_noise_rate: float = 0.0
    train_fraction: float = 1.0
    eval_batch_size: int = 500

    @property
    def num_train(self) -> int:
        """Training-split size."""
        return self.train_indices.numel()

    @property
    def num_meta(self) -> int:
        """Meta-set size."""
        return self.meta_indices.numel()

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one input."""
        return self.data.image_shape

    @property
    def clean_train_labels(self) -> Tensor:
        """True labels of the training split."""
        return self.data.train_labels[self.train_indices]

    @property
    def meta_labels(self) -> Tensor:
        """Labels of the meta set (always clean)."""
        return self.data.train_labels[self.meta_indices]

    def loss_fn(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """Mean cross-entropy of logits ``[B, C]`` against targets ``[B]``."""
        return F.cross_entropy(outputs, targets)

    def train_loader(
        self,
        batch_size: int | None = None,
        *,
        epoch: int = 0,
        seed: int | None = None,
        device: Device = "cpu",
        start: int = 0,
        augment: bool = True,
    ) -> ImageBatchLoader:
        """Shuffled, augmented training batches for one epoch.

        Args:
            batch_size: Batch size (default :attr:`batch_size`).
            epoch: Epoch number; with ``seed`` it fixes order and augmentation.
            seed: Loader seed (default: the task's seed).
            device: Where the batches (and a cached copy of the images) live.
            start: First batch index, to resume mid-epoch.
            augment: Apply the dataset's augmentation.

        Returns:
            An :class:`ImageBatchLoader`; ``len()`` is the number of batches it yields.

        Example:
            >>> task = get("digits-mlp")
            >>> x, y = next(iter(task.train_loader(32, epoch=0)))
            >>> tuple(x.shape), tuple(y.shape)
            ((32, 1, 8, 8), (32,))
        """
        return ImageBatchLoader(
            self._on("images", self.data.train_images, device),
            self._on("train_indices", self.train_indices, device),
            self._on("train_labels", self.train_labels, device),
            batch_size=batch_size or self.batch_size,
            normalization=self.normalization,
            augmentation=self.augmentation if augment else None,
            seed=derive_seed(self.seed if seed is None else seed, "train"),
            epoch=epoch,
            start=start,
        )

    def meta_loader(
        self,
        batch_size: int | None = None,
        *,
        seed: int | None = None,
        device: Device = "cpu",
        start: int = 0,
        augment: bool = True,
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Endless iterator of meta batches (clean, class-balanced meta set).

        Each pass over the meta set is reshuffled (pass ``p`` seeded by ``(seed, p)``) and, as
        in Meta-Weight-Net's code, augmented like the training data. Batches have exactly
        ``min(batch_size, num_meta)`` samples (a pass drops its incomplete last batch).

        Args:
            batch_size: Meta batch size (default :attr:`batch_size`).
            seed: Seed (default: the task's seed).
            device: Device of the batches.
            start: Number of meta batches already consumed (to resume).
            augment: Apply the training augmentation.

        Returns:
            An endless iterator of ``(inputs, targets)``.

        Example:
            >>> meta = get("digits-mlp").meta_loader(50)
            >>> next(meta)[0].shape
            torch.Size([50, 1, 8, 8])
        """
        if self.num_meta == 0:
            raise ValueError(f"task {self.name} has no meta set (it was built with num_meta=0)")
        batch_size = min(batch_size or self.batch_size, self.num_meta)
        images = self._on("images", self.data.train_images, device)
        indices = self._on("meta_indices", self.meta_indices, device)
        labels = self._on("meta_labels", self.meta_labels, device)
        base = derive_seed(self.seed if seed is None else seed, "meta_loader")

        def make_pass(p: int, first: int) -> Iterator[tuple[Tensor, Tensor]]:
            return iter(
                ImageBatchLoader(
                    images,
                    indices,
                    labels,
                    batch_size=batch_size,
                    normalization=self.normalization,
                    augmentation=self.augmentation if augment else None,
                    seed=base,
                    epoch=p,
                    start=first,
                    drop_last=True,
                )
            )

        return _MetaStream(make_pass, self.num_meta // batch_size, start)

    @torch.no_grad()
    def evaluate(
        self,
        model: nn.Module,
        *,
        device: Device | None = None,
        batch_size: int | None = None,
        split: str = "test",
    ) -> dict[str, float]:
        """Mean cross-entropy and accuracy on the test set (or the meta set).

        Runs without gradients in eval mode and restores every module's previous mode.

        Args:
            model: Classifier returning logits.
            device: Device to evaluate on (default: the model's).
            batch_size: Evaluation batch size (default :attr:`eval_batch_size`).
            split: ``"test"`` or ``"meta"``.

        Returns:
            ``{"loss": mean cross-entropy, "metric": accuracy in [0, 1]}``.
        """
        device = _model_device(model) if device is None else torch.device(device)
        if split == "test":
            images, labels = self.data.test_images, self.data.test_labels
            indices = torch.arange(labels.numel())
        elif split == "meta":
            images, indices, labels = self.data.train_images, self.meta_indices, self.meta_labels
        else:
            raise ValueError(f"split must be 'test' or 'meta', got {split!r}")
        loader = ImageBatchLoader(
            self._on("test_images" if split == "test" else "images", images, device),
            indices.to(device),
            labels.to(device),
            batch_size=batch_size or self.eval_batch_size,
            normalization=self.normalization,
            shuffle=False,
        )
        loss_sum, correct, count = 0.0, 0, 0
        with _EvalMode(model):
            for x, y in loader:
                logits = model(x)
                loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
                correct += int((logits.argmax(dim=1) == y).sum())
                count += y.numel()
        return {"loss": loss_sum / count, "metric": correct / count}


@dataclass(kw_only=True, eq=False)
class TextTask(Task):
    """Language-modelling task (see :class:`Task`); the validation split is the meta data.

    Attributes:
        corpus: The tokenised corpus (shared, cached).
        train_stream: Training token ids (a prefix of ``corpus.train`` if ``train_fraction``
            is below one).
        bptt: Truncated-BPTT window length (35 as in the paper).
        train_fraction: Fraction of the training stream kept.
        eval_batch_size: Default batch size (parallel streams) of :meth:`evaluate`.
    """

    corpus: TextCorpus = field(repr=False)
    train_stream: Tensor = field(repr=False)
    bptt: int = 35
    train_fraction: float = 1.0
    eval_batch_size: int = 10

    @property
    def vocab_size(self) -> int:
        """Vocabulary size (same as :attr:`num_classes`)."""
        return self.corpus.vocab_size

    def loss_fn(self, outputs: Any, targets: Tensor) -> Tensor:
        """Mean token cross-entropy; ``outputs`` is the model's ``(logits, hidden)``."""
        logits = outputs[0] if isinstance(outputs, tuple | list) else outputs
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))

    def _batched(self, key: str, stream: Tensor, batch_size: int, device: Device) -> Tensor:
        return batchify(self._on(key, stream, device), batch_size)

    def train_loader(
        self,
        batch_size: int | None = None,
        *,
        epoch: int = 0,
        seed: int | None = None,
        device: Device = "cpu",
        start: int = 0,
    ) -> BPTTLoader:
        """One epoch of BPTT windows over the training stream, in order.

        ``epoch`` and ``seed`` are accepted for a uniform interface; language-model epochs
        always walk the stream in order. Inputs are ``LongTensor[B, T]`` tokens: call
        ``model(tokens, hidden)`` with the state carried from the previous window (``None``
        at ``start``), detached between windows.

        Args:
            batch_size: Number of parallel streams ``B`` (default :attr:`batch_size`).
            epoch: Ignored (kept for interface parity).
            seed: Ignored (kept for interface parity).
            device: Device of the batches.
            start: First window, to resume mid-epoch.

        Returns:
            A :class:`BPTTLoader` of ``(tokens[B, T], targets[B, T])``.
        """
        del epoch, seed
        data = self._batched("train", self.train_stream, batch_size or self.batch_size, device)
        return BPTTLoader(data, bptt=self.bptt, start=start)

    def meta_loader(
        self,
        batch_size: int | None = None,
        *,
        seed: int | None = None,
        device: Device = "cpu",
        start: int = 0,
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Endless iterator of validation BPTT windows (the meta data for language models).

        Cycles through the validation windows in order, starting at a window chosen from
        ``seed``. Start each meta window with a fresh (``None``) hidden state or carry one.

        Args:
            batch_size: Parallel streams (default :attr:`batch_size`).
            seed: Seed of the starting window (default: the task's seed).
            device: Device of the batches.
            start: Number of meta batches already consumed (to resume).

        Returns:
            An endless iterator of ``(tokens[B, T], targets[B, T])``.
        """
        data = self._batched("valid", self.corpus.valid, batch_size or self.batch_size, device)
        loader = BPTTLoader(data, bptt=self.bptt)
        n = loader.batches_per_epoch
        offset = derive_seed(self.seed if seed is None else seed, "meta_loader") % n

        def make_pass(p: int, first: int) -> Iterator[tuple[Tensor, Tensor]]:
            return (loader.window((offset + i) % n) for i in range(first, n))

        return _MetaStream(make_pass, n, start)

    @torch.no_grad()
    def evaluate(
        self,
        model: nn.Module,
        *,
        device: Device | None = None,
        batch_size: int | None = None,
        split: str = "test",
    ) -> dict[str, float]:
        """Mean token loss and perplexity ``exp(loss)`` on the test (or validation) stream.

        The hidden state is carried across consecutive windows, as in ``word_language_model``.
        Runs without gradients in eval mode and restores every module's previous mode.

        Args:
            model: ``model(tokens, hidden) -> (logits, hidden)``.
            device: Device to evaluate on (default: the model's).
            batch_size: Parallel streams (default :attr:`eval_batch_size`).
            split: ``"test"``, or ``"valid"`` / ``"meta"`` for the validation stream.

        Returns:
            ``{"loss": mean token cross-entropy, "metric": perplexity}``.
        """
        device = _model_device(model) if device is None else torch.device(device)
        if split == "test":
            key, stream = "test", self.corpus.test
        elif split in ("valid", "meta"):
            key, stream = "valid", self.corpus.valid
        else:
            raise ValueError(f"split must be 'test', 'valid' or 'meta', got {split!r}")
        data = self._batched(key, stream, batch_size or self.eval_batch_size, device)
        loss_sum, count, hidden = 0.0, 0, None
        with _EvalMode(model):
            for tokens, targets in BPTTLoader(data, bptt=self.bptt):
                logits, hidden = model(tokens, hidden)
                loss_sum += float(
                    F.cross_entropy(
                        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum"
                    )
                )
                count += targets.numel()
        loss = loss_sum / count
        return {"loss": loss, "metric": math.exp(min(loss, 700.0))}


# ----------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class TaskSpec:
    """Registry entry: which data, which model and the default hyper-parameters.

    Attributes:
        name: Registry name.
        dataset: Key of :data:`mlrsnet.lab.tasks.datasets.DATASETS`.
        model: Factory name in :mod:`mlrsnet.lab.tasks.models`.
        model_kwargs: Factory arguments besides the data-determined ones (``num_classes`` /
            ``in_channels``, ``in_features`` for ``mlp``, ``vocab_size`` for language models).
        epochs: Default epochs.
        batch_size: Default batch size.
        lr: Baseline SGD learning rate.
        momentum: Baseline SGD momentum.
        weight_decay: Baseline weight decay.
        grad_clip: Gradient-norm clip or ``None``.
        num_meta: Default meta-set size (image tasks).
        bptt: BPTT window (text tasks).
        description: One line for listings.
    """

    name: str
    dataset: str
    model: str
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    epochs: int = 30
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    grad_clip: float | None = None
    num_meta: int = 1000
    bptt: int = 35
    description: str = ""

    @property
    def modality(self) -> str:
        """``"text"`` for language-modelling datasets, else ``"image"``."""
        return "text" if self.dataset in ("ptb", "tinyshakespeare") else "image"


_REGISTRY: dict[str, TaskSpec] = {}


def register(task_spec: TaskSpec, *, overwrite: bool = False) -> None:
    """Add a :class:`TaskSpec` to the registry.

    Args:
        task_spec: The entry.
        overwrite: Replace an existing entry of the same name.

    Raises:
        ValueError: If the name is taken and ``overwrite`` is false.

    Example:
        >>> register(TaskSpec("digits-linear", "digits", "mlp", {"hidden": ()}), overwrite=True)
        >>> "digits-linear" in names()
        True
    """
    if task_spec.name in _REGISTRY and not overwrite:
        raise ValueError(f"task {task_spec.name!r} is already registered")
    _REGISTRY[task_spec.name] = task_spec


def names() -> list[str]:
    """Sorted names of all registered tasks.

    Example:
        >>> "fmnist-resnet" in names()
        True
    """
    return sorted(_REGISTRY)


def spec(name: str) -> TaskSpec:
    """The :class:`TaskSpec` of ``name``.

    Raises:
        ValueError: For an unknown name, listing the known ones.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(names())}")
    return _REGISTRY[name]


@overload
def available(name: str, *, data_dir: str | os.PathLike[str] | None = None) -> bool: ...


@overload
def available(
    name: None = None, *, data_dir: str | os.PathLike[str] | None = None
) -> list[str]: ...


def available(
    name: str | None = None, *, data_dir: str | os.PathLike[str] | None = None
) -> bool | list[str]:
    """Whether the data of task ``name`` is present (no download needed).

    Args:
        name: A registry name; ``None`` lists every task whose data is present instead.
        data_dir: Data root, as for :func:`get`.

    Returns:
        ``bool`` for one name; the sorted list of available task names for ``name=None``.

    Example:
        >>> available("digits-mlp")
        True
        >>> "digits-cnn" in available()
        True
    """
    if name is None:
        return [n for n in names() if is_available(_REGISTRY[n].dataset, data_dir)]
    return is_available(spec(name).dataset, data_dir)


def _image_model_kwargs(task_spec: TaskSpec, data: ImageDataset) -> dict[str, Any]:
    c, h, w = data.image_shape
    if task_spec.model == "mlp":
        return {"in_features": c * h * w, "num_classes": data.num_classes}
    return {"num_classes": data.num_classes, "in_channels": c}


def get(
    name: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    train_fraction: float = 1.0,
    noise: str | None = None,
    noise_rate: float = 0.0,
    num_meta: int | None = None,
    download: bool = False,
    **model_kwargs: Any,
) -> Task:
    """Build the task ``name`` with its data splits.

    Image tasks: a class-balanced meta set of ``num_meta`` images is held out of the training
    split (seeded by ``seed``), then the remaining training split is subsampled to
    ``train_fraction`` (class-balanced) and its labels corrupted with ``noise`` at
    ``noise_rate``. The meta and test sets stay clean. Text tasks: the validation split is the
    meta data; ``train_fraction`` keeps a prefix of the training stream.

    Args:
        name: Registry name (see :func:`names`).
        data_dir: Data root (see :mod:`mlrsnet.lab.tasks.datasets` for the search order).
        seed: Seed of the meta split, subset and noise, and default loader seed.
        train_fraction: Fraction in ``(0, 1]`` of the training split kept.
        noise: ``None``, ``"uniform"`` (alias ``"symmetric"``) or ``"pairflip"``.
        noise_rate: Corruption probability (see :func:`~mlrsnet.lab.tasks.splits.corrupt_labels`).
        num_meta: Meta-set size (default per task: 1,000; 200 for digits).
        download: Download missing image data (MD5-verified) instead of failing.
        **model_kwargs: Override the model factory's arguments (e.g. ``width=32``).

    Returns:
        An :class:`ImageTask` or :class:`TextTask`.

    Raises:
        ValueError: For an unknown name (listing the known ones) or invalid options.
        FileNotFoundError: If the task's data files are missing (saying how to get them).

    Example:
        >>> task = get("digits-mlp", noise="pairflip", noise_rate=0.2)
        >>> task.num_train, task.num_meta, task.metric
        (1097, 200, 'accuracy')
    """
    task_spec = spec(name)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    train_fraction = float(train_fraction)
    if not 0.0 < train_fraction <= 1.0:
        raise ValueError(f"train_fraction must be in (0, 1], got {train_fraction}")
    if noise is None and noise_rate:
        raise ValueError("noise_rate was given without a noise kind ('uniform' or 'pairflip')")
    common = dict(
        name=name,
        epochs=task_spec.epochs,
        batch_size=task_spec.batch_size,
        lr=task_spec.lr,
        momentum=task_spec.momentum,
        weight_decay=task_spec.weight_decay,
        grad_clip=task_spec.grad_clip,
        seed=seed,
        dataset=task_spec.dataset,
        model_name=task_spec.model,
    )
    data = load(task_spec.dataset, data_dir, download=download)
    if isinstance(data, TextCorpus):
        if noise is not None or num_meta is not None:
            raise ValueError(
                f"{name} is a language-modelling task: its meta data is the validation split "
                "and label noise does not apply (noise/num_meta must be left unset)"
            )
        stream = data.train
        if train_fraction < 1.0:
            stream = stream[: max(2 * task_spec.batch_size, int(stream.numel() * train_fraction))]
        kwargs = {"vocab_size": data.vocab_size, **task_spec.model_kwargs, **model_kwargs}
        return TextTask(
            modality="text",
            num_classes=data.vocab_size,
            metric="perplexity",
            model_kwargs=kwargs,
            corpus=data,
            train_stream=stream,
            bptt=task_spec.bptt,
            train_fraction=train_fraction,
            **common,
        )

    num_meta = task_spec.num_meta if num_meta is None else num_meta
    train_idx, meta_idx = meta_split(
        data.train_labels, num_meta, seed=derive_seed(seed, "meta"), num_classes=data.num_classes
    )
    if train_fraction < 1.0:
        keep = stratified_subset(
            data.train_labels[train_idx], train_fraction, seed=derive_seed(seed, "subset")
        )
        train_idx = train_idx[keep]
    labels = data.train_labels[train_idx]
    realised = 0.0
    if noise is not None:
        labels, realised = corrupt_labels(
            labels,
            data.num_classes,
            kind=noise,
            rate=noise_rate,
            seed=derive_seed(seed, "noise"),
        )
    normalization, augmentation = DATASET_TRANSFORMS[data.name]
    kwargs = {**_image_model_kwargs(task_spec, data), **task_spec.model_kwargs, **model_kwargs}
    logger.info(
        "task %s: %d train / %d meta / %d test, noise=%s realised %.4f",
        name,
        train_idx.numel(),
        meta_idx.numel(),
        data.test_labels.numel(),
        noise,
        realised,
    )
    return ImageTask(
        modality="image",
        num_classes=data.num_classes,
        metric="accuracy",
        model_kwargs=kwargs,
        data=data,
        train_indices=train_idx,
        train_labels=labels,
        meta_indices=meta_idx,
        normalization=normalization,
        augmentation=augmentation,
        noise=noise,
        noise_rate=float(noise_rate),
        realised_noise_rate=realised,
        train_fraction=train_fraction,
        **common,
    )


# ----------------------------------------------------------------------------- entries

_RESNET18 = {"blocks": (2, 2, 2, 2), "width": 64}
_WRN28_10 = {"depth": 28, "widen_factor": 10}
_LM = {"embed_size": 200, "hidden_size": 200, "dropout": 0.2, "tie_weights": True}
_LM_BASE = {"epochs": 40, "batch_size": 20, "lr": 20.0, "momentum": 0.0, "weight_decay": 0.0}

for _spec in (
    TaskSpec(
        "fmnist-resnet",
        "fashion-mnist",
        "resnet",
        {"blocks": (1, 1, 1, 1), "width": 16},
        description="Fashion-MNIST, small CIFAR-style ResNet (CPU stand-in for CIFAR/ResNet-18)",
    ),
    TaskSpec(
        "fmnist-mobilenetv2",
        "fashion-mnist",
        "mobilenet_v2",
        {"width_mult": 0.5},
        description="Fashion-MNIST, MobileNetV2 (width 0.5)",
    ),
    TaskSpec(
        "fmnist-shufflenetv2",
        "fashion-mnist",
        "shufflenet_v2",
        {"net_size": 0.5},
        description="Fashion-MNIST, ShuffleNetV2 (net_size 0.5)",
    ),
    TaskSpec("fmnist-cnn", "fashion-mnist", "small_cnn", lr=0.05, description="Fashion-MNIST, CNN"),
    TaskSpec(
        "fmnist-mlp",
        "fashion-mnist",
        "mlp",
        lr=0.05,
        weight_decay=1e-4,
        description="Fashion-MNIST, MLP 784-256-128-10",
    ),
    TaskSpec(
        "digits-mlp",
        "digits",
        "mlp",
        epochs=50,
        batch_size=64,
        lr=0.05,
        weight_decay=1e-4,
        num_meta=200,
        description="scikit-learn digits, MLP 64-256-128-10 (seconds on a CPU)",
    ),
    TaskSpec(
        "digits-cnn",
        "digits",
        "small_cnn",
        epochs=50,
        batch_size=64,
        lr=0.05,
        num_meta=200,
        description="scikit-learn digits, small CNN",
    ),
    TaskSpec(
        "ptb-lstm",
        "ptb",
        "LSTMLanguageModel",
        {**_LM, "num_layers": 2},
        grad_clip=0.25,
        **_LM_BASE,
        description="Penn Treebank word level, 2-layer LSTM 200 hidden, tied",
    ),
    TaskSpec(
        "ptb-lstm3",
        "ptb",
        "LSTMLanguageModel",
        {**_LM, "num_layers": 3},
        grad_clip=0.25,
        **_LM_BASE,
        description="Penn Treebank word level, 3-layer LSTM 200 hidden, tied",
    ),
    TaskSpec(
        "shakespeare-lstm",
        "tinyshakespeare",
        "LSTMLanguageModel",
        {"embed_size": 256, "hidden_size": 256, "num_layers": 2, "dropout": 0.2},
        epochs=20,
        batch_size=32,
        lr=20.0,
        momentum=0.0,
        weight_decay=0.0,
        grad_clip=0.25,
        description="Tiny Shakespeare character level, 2-layer LSTM 256 hidden, tied",
    ),
    TaskSpec(
        "cifar10-resnet18",
        "cifar10",
        "resnet",
        _RESNET18,
        epochs=200,
        description="CIFAR-10, ResNet-18 (paper setting)",
    ),
    TaskSpec(
        "cifar10-wrn28-10",
        "cifar10",
        "wide_resnet",
        _WRN28_10,
        epochs=200,
        description="CIFAR-10, WRN-28-10 (paper setting)",
    ),
    TaskSpec(
        "cifar100-resnet18",
        "cifar100",
        "resnet",
        _RESNET18,
        epochs=200,
        description="CIFAR-100, ResNet-18 (paper setting)",
    ),
    TaskSpec(
        "cifar100-wrn28-10",
        "cifar100",
        "wide_resnet",
        _WRN28_10,
        epochs=200,
        description="CIFAR-100, WRN-28-10 (paper setting)",
    ),
    TaskSpec(
        "svhn-resnet18",
        "svhn",
        "resnet",
        _RESNET18,
        epochs=50,
        lr=0.05,
        description="SVHN (train split), ResNet-18",
    ),
):
    register(_spec)
del _spec
