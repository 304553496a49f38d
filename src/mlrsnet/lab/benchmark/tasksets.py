"""The two declared task sets of the benchmark.

*Meta-training tasks* (:data:`META_TRAINING`) are small, fast tasks a learned schedule may be
trained on; they are never reported as transfer evidence. *Held-out targets*
(:data:`HELD_OUT`) are what the benchmark reports: each has a test set big enough that its
test metric resolves about 0.1 points (10,000 Fashion-MNIST test images: 0.01 points per
image) or 1 % perplexity. Training sets are subsampled and runs kept short so that the whole
suite fits about six hours of this 2-core machine; test sets stay whole.

Example:
    >>> sorted({t.axis for t in HELD_OUT})[:3]
    ['architecture', 'data modality', 'dataset size']
    >>> overlap(META_TRAINING, HELD_OUT), overlap(META_TRAINING_BY_PASSES, HELD_OUT)
    ([], [])
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "HELD_OUT", "META_TRAINING", "META_TRAINING_BY_PASSES", "QUICK", "MetaTask", "Target",
    "overlap", "targets",
]  # fmt: skip


@dataclass(frozen=True)
class MetaTask:
    """A family of meta-training tasks: one task, drawn with these variations.

    Attributes:
        task: Registry name (:func:`mlrsnet.lab.tasks.names`).
        train_fractions: The training-set fractions it is drawn at.
        optimizers: ``"sgd"`` (momentum 0.9 unless the task says otherwise) and/or ``"adamw"``.
        noise_rates: Uniform label-noise rates it is drawn with (0 to 0.6; image tasks).
        steps: The range of run lengths in optimizer steps (MLR-SNet+ meta-training draws
            lengths log-uniformly in it, capped by its ``max_steps``).
    """

    task: str
    train_fractions: tuple[float, ...]
    optimizers: tuple[str, ...] = ("sgd", "adamw")
    noise_rates: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6)
    steps: tuple[int, int] = (30, 600)


@dataclass(frozen=True)
class Target:
    """One held-out target.

    Attributes:
        name: Target name in the records and the report.
        axis: What it varies (training length, dataset size, label noise, ...).
        task: Registry name.
        epochs: Epochs of the run.
        lr: The *defaults* tier's learning rate: the literature default for the optimizer and
            model (SGD-momentum 0.1 for CNNs, 20 for clipped LSTM language models, AdamW 1e-3).
        optimizer: ``"sgd"`` or ``"adamw"``.
        train_fraction: Fraction of the training split kept (the test set stays whole).
        noise, noise_rate: Label noise of the training split (the validation and test sets
            stay clean).
        warmup: Warmup fraction of every hand-designed shape (nanoGPT-style training).
        extras: The paper's cheaper baselines, run at their defaults on this target only.
        seconds: Estimated seconds of one run on one core of this machine (for ``--plan``).
        tuned_at: Another target whose tuned learning rate this one reuses instead of running
            its own grid (the length variants reuse 1x's: tuned once, then the length changed).
        note: Why the size was chosen.
    """

    name: str
    axis: str
    task: str
    epochs: int
    lr: float
    optimizer: str = "sgd"
    train_fraction: float = 1.0
    noise: str | None = None
    noise_rate: float = 0.0
    warmup: float = 0.0
    extras: tuple[str, ...] = ()
    seconds: float = 10.0
    tuned_at: str | None = None
    note: str = ""

    @property
    def noisy(self) -> bool:
        """Whether the training labels are corrupted."""
        return self.noise is not None


#: The tasks a learned schedule may be meta-trained on (never reported as transfer evidence).
META_TRAINING: tuple[MetaTask, ...] = (
    MetaTask("digits-mlp", (0.5, 1.0)),
    MetaTask("digits-cnn", (0.5, 1.0)),
    MetaTask("fmnist-mlp", (0.02, 0.05)),
    MetaTask("shakespeare-lstm-tiny", (0.02, 0.05), noise_rates=(0.0,)),
)

#: The same tasks at larger training fractions, for meta-training runs drawn by *passes over
#: the data* as well as by length (``tools/meta_train_plus.py --passes``): at the held-out
#: targets' lengths (115-1,840 steps) the fractions above are 20-230 passes over a few
#: thousand noisy images, while the targets make 1-16. The Fashion-MNIST MLP with AdamW stops
#: at 10 % of the data (a tenth of the ``fmnist-mlp-adamw`` target's), so that no run is that
#: target again; with SGD it goes to half.
META_TRAINING_BY_PASSES: tuple[MetaTask, ...] = (
    MetaTask("digits-mlp", (0.5, 1.0)),
    MetaTask("digits-cnn", (0.5, 1.0)),
    MetaTask("fmnist-mlp", (0.02, 0.05, 0.1, 0.2, 0.5), optimizers=("sgd",)),
    MetaTask("fmnist-mlp", (0.02, 0.05, 0.1), optimizers=("adamw",)),
    MetaTask("shakespeare-lstm-tiny", (0.02, 0.05, 0.1, 0.2), noise_rates=(0.0,)),
)

_SGD_EXTRAS = ("fixed", "multistep", "exponential", "sgdr", "adam", "hd", "rtho", "l4")
_NOISY = "10 % of the training split for 16 epochs (736 steps): long enough to fit noise"
_HALF = "half the training split (29,500 images), so that 1x is 2 epochs of 230 steps"

#: The held-out targets: the only runs reported as transfer evidence.
HELD_OUT: tuple[Target, ...] = (
    Target("fmnist-cnn-0.5x", "training length", "fmnist-cnn-small", 1, 0.1,
           train_fraction=0.5, extras=_SGD_EXTRAS, seconds=6, tuned_at="fmnist-cnn-1x",
           note=_HALF),
    Target("fmnist-cnn-1x", "training length", "fmnist-cnn-small", 2, 0.1,
           train_fraction=0.5, extras=_SGD_EXTRAS, seconds=11, note=_HALF),
    Target("fmnist-cnn-4x", "training length", "fmnist-cnn-small", 8, 0.1,
           train_fraction=0.5, seconds=42, tuned_at="fmnist-cnn-1x", note=_HALF),
    Target("fmnist-cnn-10pct", "dataset size", "fmnist-cnn-small", 10, 0.1,
           train_fraction=0.1, seconds=14,
           note="10 % of the training split (5,900 images) for as many steps as 1x"),
    Target("fmnist-cnn-uniform40", "label noise", "fmnist-cnn-small", 16, 0.1,
           train_fraction=0.1, noise="uniform", noise_rate=0.4, seconds=23, note=_NOISY),
    Target("fmnist-cnn-pairflip20", "label noise", "fmnist-cnn-small", 16, 0.1,
           train_fraction=0.1, noise="pairflip", noise_rate=0.2, seconds=23, note=_NOISY),
    Target("fmnist-resnet-short", "architecture", "fmnist-resnet", 3, 0.1,
           train_fraction=0.1, seconds=36,
           note="the shipped networks' source model on 10 % of the data for 3 epochs "
                "(138 steps): its steps cost 9x the small CNN's"),
    Target("fmnist-mlp-adamw", "optimizer", "fmnist-mlp-adamw", 3, 1e-3, optimizer="adamw",
           seconds=7, note="the whole training split, 3 epochs"),
    Target("shakespeare-char-lstm", "data modality", "shakespeare-char-lstm", 2, 20.0,
           train_fraction=0.5, extras=("fixed", "plateau", "adam", "hd", "l4"), seconds=16,
           note="half of the training text (about 500k characters), 2 epochs of 245 steps"),
    Target("shakespeare-char-transformer", "data modality", "shakespeare-char-transformer",
           2, 1e-3, optimizer="adamw", train_fraction=0.5, warmup=0.05, seconds=19,
           note="half of the training text, 2 epochs, 5 % linear warmup as nanoGPT"),
    Target("ptb-lstm-short", "data modality", "ptb-lstm", 2, 20.0, train_fraction=0.05,
           seconds=45, note="5 % of the Penn Treebank training text, 2 epochs of 66 steps: "
                            "its 10k-word softmax makes each step cost 9x the small CNN's"),
)  # fmt: skip

#: A suite small enough for CI: digits tasks, which are meta-training tasks — so the quick
#: suite checks the machinery and is never transfer evidence.
QUICK: tuple[Target, ...] = (
    Target("quick-digits-mlp", "quick", "digits-mlp", 2, 0.1, extras=("fixed",), seconds=1),
    Target("quick-digits-mlp-adamw", "quick", "digits-mlp", 2, 1e-3, optimizer="adamw",
           noise="uniform", noise_rate=0.4, seconds=1),
)  # fmt: skip


def targets(suite: str) -> tuple[Target, ...]:
    """The targets of ``suite``: ``"heldout"`` or ``"quick"``.

    Raises:
        ValueError: For another name.
    """
    if suite == "heldout":
        return HELD_OUT
    if suite == "quick":
        return QUICK
    raise ValueError(f"suite must be 'heldout' or 'quick', got {suite!r}")


def overlap(meta: tuple[MetaTask, ...], held_out: tuple[Target, ...]) -> list[str]:
    """Held-out targets that are also meta-training tasks (same task name): must be empty."""
    names = {m.task for m in meta}
    return [t.name for t in held_out if t.task in names]
