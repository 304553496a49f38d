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

import logging
import os
from dataclasses import dataclass, field
from typing import Any, overload

from .augment import DATASET_TRANSFORMS
from .datasets import ImageDataset, TextCorpus, is_available, load
from .splits import corrupt_labels, derive_seed, meta_split, stratified_subset
from .types import ImageTask, Task, TextTask

__all__ = ["TaskSpec", "available", "get", "names", "register", "spec"]

logger = logging.getLogger(__name__)


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
        modality: ``"image"`` (classification) or ``"text"`` (language modelling); the
            dataset must be of that kind.
        optimizer: ``"sgd"`` or ``"adamw"``: what the task trains with by default.
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
    modality: str = "image"
    optimizer: str = "sgd"


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
    train_fraction = _checked_variant(seed, train_fraction, noise, noise_rate)
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
        optimizer=task_spec.optimizer,
    )
    data = load(task_spec.dataset, data_dir, download=download)
    if isinstance(data, TextCorpus) != (task_spec.modality == "text"):
        raise ValueError(
            f"task {name!r} is declared {task_spec.modality!r} but its dataset "
            f"{task_spec.dataset!r} is {'text' if isinstance(data, TextCorpus) else 'images'}"
        )
    if isinstance(data, TextCorpus):
        if noise is not None or num_meta is not None:
            raise ValueError(
                f"{name} is a language-modelling task: its meta data is the validation split "
                "and label noise does not apply (noise/num_meta must be left unset)"
            )
        return _text_task(task_spec, data, train_fraction, model_kwargs, common)
    return _image_task(
        task_spec, data, train_fraction, noise, noise_rate, num_meta, model_kwargs, common
    )


def _checked_variant(
    seed: int, train_fraction: float, noise: str | None, noise_rate: float
) -> float:
    """Check :func:`get`'s seed and variant; returns ``train_fraction`` as a float.

    Raises:
        ValueError: Naming the bad argument.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    train_fraction = float(train_fraction)
    if not 0.0 < train_fraction <= 1.0:
        raise ValueError(f"train_fraction must be in (0, 1], got {train_fraction}")
    if noise is None and noise_rate:
        raise ValueError("noise_rate was given without a noise kind ('uniform' or 'pairflip')")
    return train_fraction


def _text_task(
    task_spec: TaskSpec,
    data: TextCorpus,
    train_fraction: float,
    model_kwargs: dict[str, Any],
    common: dict[str, Any],
) -> TextTask:
    """A language-modelling task: its training stream cut to ``train_fraction`` (a prefix)."""
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


def _image_task(
    task_spec: TaskSpec,
    data: ImageDataset,
    train_fraction: float,
    noise: str | None,
    noise_rate: float,
    num_meta: int | None,
    model_kwargs: dict[str, Any],
    common: dict[str, Any],
) -> ImageTask:
    """A classification task: its meta set held out, its training split subsampled to
    ``train_fraction`` and its labels corrupted (the seeds derived from ``common["seed"]``)."""
    seed = common["seed"]
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
        common["name"],
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
        "fmnist-cnn-small",
        "fashion-mnist",
        "small_cnn",
        {"width": 8},
        epochs=2,
        description="Fashion-MNIST, small CNN (width 8, 3,778 parameters), SGD 0.1",
    ),
    TaskSpec(
        "fmnist-mlp-adamw",
        "fashion-mnist",
        "mlp",
        epochs=3,
        lr=1e-3,
        weight_decay=0.01,
        optimizer="adamw",
        description="Fashion-MNIST, MLP 784-256-128-10, AdamW 1e-3",
    ),
    TaskSpec(
        "shakespeare-char-lstm",
        "tinyshakespeare",
        "LSTMLanguageModel",
        {"embed_size": 128, "hidden_size": 128, "num_layers": 1, "dropout": 0.1},
        epochs=2,
        batch_size=32,
        lr=20.0,
        momentum=0.0,
        weight_decay=0.0,
        grad_clip=0.25,
        bptt=64,
        modality="text",
        description="Tiny Shakespeare character level, 1-layer LSTM 128, tied, SGD 20",
    ),
    TaskSpec(
        "shakespeare-char-transformer",
        "tinyshakespeare",
        "CharTransformer",
        {"block_size": 64, "embed_size": 64, "num_layers": 2, "num_heads": 4},
        epochs=2,
        batch_size=32,
        lr=1e-3,
        momentum=0.9,
        weight_decay=0.1,
        grad_clip=1.0,
        bptt=64,
        modality="text",
        optimizer="adamw",
        description="Tiny Shakespeare character level, 2-layer GPT 64 wide, AdamW 1e-3 (nanoGPT)",
    ),
    TaskSpec(
        "shakespeare-lstm-tiny",
        "tinyshakespeare",
        "LSTMLanguageModel",
        {"embed_size": 64, "hidden_size": 64, "num_layers": 1, "dropout": 0.0},
        epochs=2,
        batch_size=16,
        lr=20.0,
        momentum=0.0,
        weight_decay=0.0,
        grad_clip=0.25,
        modality="text",
        description="Tiny Shakespeare character level, 1-layer LSTM 64, tied, SGD 20 (meta-training)",
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
        modality="text",
        **_LM_BASE,
        description="Penn Treebank word level, 2-layer LSTM 200 hidden, tied",
    ),
    TaskSpec(
        "ptb-lstm3",
        "ptb",
        "LSTMLanguageModel",
        {**_LM, "num_layers": 3},
        grad_clip=0.25,
        modality="text",
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
        modality="text",
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
    # -- the benchmark at convergence (tasksets.CONVERGENCE): sizes users train, to a plateau
    TaskSpec(
        "fmnist-mlp-wide",
        "fashion-mnist",
        "mlp",
        {"hidden": (512, 256)},
        epochs=20,
        lr=0.05,
        description="Fashion-MNIST, MLP 784-512-256-10 (535,818 parameters), SGD 0.05",
    ),
    TaskSpec(
        "fmnist-mlp-wide-adamw",
        "fashion-mnist",
        "mlp",
        {"hidden": (512, 256)},
        epochs=20,
        lr=1e-3,
        weight_decay=0.01,
        optimizer="adamw",
        description="Fashion-MNIST, MLP 784-512-256-10 (535,818 parameters), AdamW 1e-3",
    ),
    TaskSpec(
        "fmnist-cnn2",
        "fashion-mnist",
        "two_conv_cnn",
        epochs=12,
        lr=0.05,
        description="Fashion-MNIST, two-conv CNN 16-32 + 64 hidden (105,866 parameters), SGD 0.05",
    ),
    TaskSpec(
        "shakespeare-gpt",
        "tinyshakespeare",
        "CharTransformer",
        {"block_size": 64, "embed_size": 96, "num_layers": 4, "num_heads": 4, "dropout": 0.1},
        epochs=3,
        batch_size=32,
        lr=1e-3,
        weight_decay=0.1,
        grad_clip=1.0,
        bptt=64,
        modality="text",
        optimizer="adamw",
        description="Tiny Shakespeare character level, 4-layer GPT 96 wide (459,936 "
        "parameters), AdamW 1e-3",
    ),
    TaskSpec(
        "shakespeare-lstm-256",
        "tinyshakespeare",
        "LSTMLanguageModel",
        {"embed_size": 256, "hidden_size": 256, "num_layers": 1, "dropout": 0.1},
        epochs=3,
        batch_size=32,
        lr=20.0,
        momentum=0.0,
        weight_decay=0.0,
        grad_clip=0.25,
        bptt=64,
        modality="text",
        description="Tiny Shakespeare character level, 1-layer LSTM 256, tied (543,041 "
        "parameters), SGD 20, clipped",
    ),
):
    register(_spec)
del _spec
