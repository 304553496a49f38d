"""The task types: what a task is (data splits, model, loss, metric, defaults) and how its
model is called, trained and evaluated.

:class:`ImageTask` and :class:`TextTask` differ in how a batch reaches the model
(:meth:`Task.model_inputs`), what is carried from one batch to the next
(:meth:`Task.next_carry`: a language model's hidden state) and how they are evaluated; a run
loop calls these and never asks which kind of task it has.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .augment import Augmentation, Normalization
from .datasets import ImageDataset, TextCorpus
from .loaders import BPTTLoader, ImageBatchLoader, MetaStream
from .splits import batchify, derive_seed

__all__ = ["SHARP_TEMPERATURE", "Device", "ImageTask", "Task", "TextTask", "call_model"]

Device = torch.device | str
#: The temperature of :meth:`ImageTask.evaluate`'s ``sharp_error``: the logits are divided by
#: it, so a margin of one logit over the next class gives the true class p ≈ 0.98.
SHARP_TEMPERATURE = 0.25


def call_model(model: nn.Module | Any, inputs: Any) -> Any:
    """``model(*inputs)`` for a tuple of inputs, else ``model(inputs)``."""
    return model(*inputs) if isinstance(inputs, tuple) else model(inputs)


def _detach(x: Any) -> Any:
    if isinstance(x, Tensor):
        return x.detach()
    if isinstance(x, tuple):
        return tuple(_detach(t) for t in x)
    return x


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
        optimizer: The optimizer the task trains with by default, ``"sgd"`` or ``"adamw"``
            (used by the schedules that accept an ``optimizer`` option).
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
    optimizer: str = "sgd"
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
            >>> from mlrsnet.lab.tasks import get
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

    #: Whether the model is a language model (its loss is per token over a vocabulary).
    language_model = False

    def loss_fn(self, outputs: Any, targets: Tensor) -> Tensor:
        """Mean cross-entropy of a batch (scalar tensor)."""
        raise NotImplementedError

    def model_inputs(self, inputs: Tensor, carry: Any = None) -> Any:
        """What the model is called with for a batch's ``inputs`` (see :func:`call_model`).

        Args:
            inputs: The batch's inputs from a loader.
            carry: What :meth:`next_carry` returned for the previous batch of the epoch
                (``None`` at its start).
        """
        return inputs

    def next_carry(self, outputs: Any) -> Any:
        """What the next batch of the epoch carries over from this batch's ``outputs``."""
        return None

    def batch(self, inputs: Tensor, targets: Tensor, carry: Any = None) -> tuple[Any, Tensor]:
        """``(model inputs, targets)``: a batch as :class:`~mlrsnet.MetaTrainer` takes it."""
        return self.model_inputs(inputs, carry), targets

    @torch.no_grad()
    def mean_train_loss(
        self, model: nn.Module, *, batch_size: int, device: Device, max_batches: int, seed: int
    ) -> float:
        """Mean training loss of ``model`` (eval mode, no augmentation) on the first batches.

        The authors compute the scale rule's ``L₀`` on the whole training set; a few batches
        estimate it (``max_batches``). The model's modes are restored afterwards.
        """
        was_training = model.training
        model.eval()
        try:
            loader = self.train_loader(batch_size, epoch=0, seed=seed, device=device, augment=False)
            total, count, carry = 0.0, 0, None
            for i, (inputs, targets) in enumerate(loader):
                if i >= max_batches:
                    break
                outputs = call_model(model, self.model_inputs(inputs, carry))
                carry = self.next_carry(outputs)
                total += float(self.loss_fn(outputs, targets))
                count += 1
            return total / max(count, 1)
        finally:
            model.train(was_training)

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


def split_part(values: Tensor, part: tuple[int, int]) -> Tensor:
    """The ``i``-th of ``n`` contiguous parts of ``values`` (``part = (i, n)``).

    Example:
        >>> split_part(torch.arange(10), (1, 2))
        tensor([5, 6, 7, 8, 9])
    """
    index, count = part
    if isinstance(count, bool) or not isinstance(count, int) or count < 1 or not (
            isinstance(index, int) and 0 <= index < count):  # fmt: skip
        raise ValueError(f"part must be (i, n) with 0 <= i < n, got {part!r}")
    size = values.shape[0]
    piece = values[index * size // count : (index + 1) * size // count]
    if piece.shape[0] == 0:
        raise ValueError(f"part {part!r} of a split of {size} is empty")
    return piece


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
            >>> from mlrsnet.lab.tasks import get
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
            >>> from mlrsnet.lab.tasks import get
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

        return MetaStream(make_pass, self.num_meta // batch_size, start)

    @torch.no_grad()
    def evaluate(
        self,
        model: nn.Module,
        *,
        device: Device | None = None,
        batch_size: int | None = None,
        split: str = "test",
        part: tuple[int, int] | None = None,
    ) -> dict[str, float]:
        """Mean cross-entropy and accuracy on the test set (or the meta set).

        Runs without gradients in eval mode and restores every module's previous mode.

        Args:
            model: Classifier returning logits.
            device: Device to evaluate on (default: the model's).
            batch_size: Evaluation batch size (default :attr:`eval_batch_size`).
            split: ``"test"`` or ``"meta"``.
            part: ``(i, n)``: only the ``i``-th of ``n`` contiguous, disjoint parts of the
                split (two held-out sets from one: e.g. a schedule's input and its score).

        Returns:
            ``{"loss": mean cross-entropy, "metric": accuracy in [0, 1], "soft_error": mean of
            1 − the probability given to the true class, "sharp_error": the same of the logits
            over :data:`SHARP_TEMPERATURE`}``. The soft error is the expected error of sampling
            a prediction: in [0, 1] like the error, smooth in the weights, but it also scores
            confidence (a model that predicts the right class with p = 0.6 counts 0.4). The
            sharp error counts an example by how near its logits are to the decision
            boundary: a right one more than about one logit clear counts ~0, as in the error,
            however confident the model.
        """
        device = _model_device(model) if device is None else torch.device(device)
        if split == "test":
            images, labels = self.data.test_images, self.data.test_labels
            indices = torch.arange(labels.numel())
        elif split == "meta":
            images, indices, labels = self.data.train_images, self.meta_indices, self.meta_labels
        else:
            raise ValueError(f"split must be 'test' or 'meta', got {split!r}")
        if part is not None:
            indices, labels = (split_part(t, part) for t in (indices, labels))
        loader = ImageBatchLoader(
            self._on("test_images" if split == "test" else "images", images, device),
            indices.to(device),
            labels.to(device),
            batch_size=batch_size or self.eval_batch_size,
            normalization=self.normalization,
            shuffle=False,
        )
        loss_sum, correct, count, soft_sum, sharp_sum = 0.0, 0, 0, 0.0, 0.0
        with _EvalMode(model):
            for x, y in loader:
                logits = model(x)
                losses = F.cross_entropy(logits, y, reduction="none")
                loss_sum += float(losses.sum())
                soft_sum += float((1.0 - torch.exp(-losses)).sum())  # exp(-CE) = p(true class)
                sharp = F.cross_entropy(logits.double() / SHARP_TEMPERATURE, y, reduction="none")
                sharp_sum += float((1.0 - torch.exp(-sharp)).sum())
                correct += int((logits.argmax(dim=1) == y).sum())
                count += y.numel()
        return {"loss": loss_sum / count, "metric": correct / count,
                "soft_error": soft_sum / count, "sharp_error": sharp_sum / count}  # fmt: skip


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

    language_model = True

    @property
    def vocab_size(self) -> int:
        """Vocabulary size (same as :attr:`num_classes`)."""
        return self.corpus.vocab_size

    def model_inputs(self, inputs: Tensor, carry: Any = None) -> Any:
        """``(tokens, hidden)``: the state carried from the previous window."""
        return (inputs, carry)

    def next_carry(self, outputs: Any) -> Any:
        """The model's hidden state after this window, detached (truncated BPTT)."""
        return _detach(outputs[1])

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
        augment: bool = False,
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
            augment: Ignored: text has no augmentation (kept for interface parity).

        Returns:
            A :class:`BPTTLoader` of ``(tokens[B, T], targets[B, T])``.
        """
        del epoch, seed, augment
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

        return MetaStream(make_pass, n, start)

    @torch.no_grad()
    def evaluate(
        self,
        model: nn.Module,
        *,
        device: Device | None = None,
        batch_size: int | None = None,
        split: str = "test",
        part: tuple[int, int] | None = None,
    ) -> dict[str, float]:
        """Mean token loss and perplexity ``exp(loss)`` on the test (or validation) stream.

        The hidden state is carried across consecutive windows, as in ``word_language_model``.
        Runs without gradients in eval mode and restores every module's previous mode.

        Args:
            model: ``model(tokens, hidden) -> (logits, hidden)``.
            device: Device to evaluate on (default: the model's).
            batch_size: Parallel streams (default :attr:`eval_batch_size`).
            split: ``"test"``, or ``"valid"`` / ``"meta"`` for the validation stream.
            part: ``(i, n)``: only the ``i``-th of ``n`` contiguous, disjoint parts of the
                stream.

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
        if part is not None:
            key, stream = f"{key}:{part[0]}/{part[1]}", split_part(stream, part)
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
