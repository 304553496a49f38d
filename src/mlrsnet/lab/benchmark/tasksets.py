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

from dataclasses import dataclass, replace

__all__ = [
    "CONVERGENCE", "HELD_OUT", "LENGTH_METHODS", "META_TRAINING", "META_TRAINING_BY_PASSES",
    "META_TRAINING_CONVERGENCE", "QUICK", "QUICK_CONVERGENCE", "SUITES", "MetaTask", "Target",
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
        augment: Whether the training images are augmented (the task's augmentation).
        warmup: Warmup fraction of every hand-designed shape (nanoGPT-style training).
        extras: The paper's cheaper baselines, run at their defaults on this target only.
        seconds: Estimated seconds of one run on one core of this machine (for ``--plan``).
        tuned_at: Another target whose tuned learning rate this one reuses instead of running
            its own grid (the length variants reuse 1x's: tuned once, then the length changed).
        note: Why the size was chosen.
        profile: Which rows it runs: ``"short"`` (the short-horizon suite: every shipped
            MLR-SNet+ network with its ablations and fitted families) or ``"convergence"`` (the
            suite at convergence: the learning-rate-free anchors, the faithful networks and the
            recommended MLR-SNet+ network; :func:`mlrsnet.lab.benchmark.plan.defaults_methods`).
        methods: Only these methods' defaults, probe and learned runs (the tuned tier runs as
            always); ``None``: every method of the profile, ``()``: the tuned tier only.
        check_seeds: A learning-curve check (twice another target's length): the tuned tier
            only, on these seeds instead of every evaluation seed.
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
    augment: bool = True
    warmup: float = 0.0
    extras: tuple[str, ...] = ()
    seconds: float = 10.0
    tuned_at: str | None = None
    note: str = ""
    profile: str = "short"
    methods: tuple[str, ...] | None = None
    check_seeds: tuple[int, ...] | None = None

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

#: The tasks MLR-SNet+ is meta-trained on to see convergence (``tools/meta_train_plus.py
#: --task-set convergence``, drawn by passes): models of 50k–235k parameters (the digits MLP
#: and CNN, the Fashion-MNIST MLP 784-256-128-10 on 5–20 % of its data) and a small character
#: LSTM, SGD-momentum and AdamW, uniform label noise 0–60 % on the images (the validation
#: split that scores a run stays clean). Disjoint from both benchmarks' targets (the
#: convergence suite's MLP is 784-512-256-10, its CNN two-conv 16-32).
META_TRAINING_CONVERGENCE: tuple[MetaTask, ...] = (
    MetaTask("digits-mlp", (0.5, 1.0)),
    MetaTask("digits-cnn", (0.5, 1.0)),
    MetaTask("fmnist-mlp", (0.05, 0.1, 0.2)),
    MetaTask("shakespeare-lstm-tiny", (0.02, 0.05, 0.1), noise_rates=(0.0,)),
)

_SGD_EXTRAS = ("fixed", "multistep", "exponential", "sgdr", "adam", "hd", "rtho", "l4")
_NOISY = "10 % of the training split for 16 epochs (736 steps): long enough to fit noise"
_HALF = "half the training split (29,500 images), so that 1x is 2 epochs of 230 steps"

#: The suites by name (filled below).
SUITES: dict[str, tuple[Target, ...]] = {}

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

_CNN = "the whole training split (57,000 images after the validation split)"
# The clean image targets train without augmentation, as MLPs and small CNNs are trained: with
# the task's random crop and flip they were still improving at twice their length (the records
# of commit 1ba9fc7), without it the same lengths are at their plateau
# (``benchmarks/plateau_pilot.py --augment off``: cosine at the default rate, 2x changes the
# test accuracy by -0.09 to +0.00 points)
_PLAIN = "without augmentation"
_AUGMENTED = "with the task's crop and flip it gained"
#: What the length variants of the convergence suite run besides the tuned tier: the best
#: defaults rows of the short-horizon suite, the learning-rate-free anchors, the faithful and
#: the recommended MLR-SNet+ network (``"mlrsnet-plus"``: whichever it is, in each of its
#: modes and with its loss inputs at 0; the fitted family it is measured against is not run
#: here).
LENGTH_METHODS: tuple[str, ...] = (
    "cosine", "wsd", "schedulefree-sgd", "prodigy", "mlrsnet:fmnist-resnet", "mlrsnet-plus",
)  # fmt: skip

#: The benchmark at convergence: models of the size users train on one core, trained until
#: the best tuned baseline's metric stops improving (each target's ``-2x-check`` twin runs the
#: tuned tier at twice the length to show it); whole training sets except where the point is
#: the data (10 %, label noise) and the text targets, whose whole text does not flatten within
#: minutes a run on one core (10 % of it does by 16 epochs). Every test set is whole.
CONVERGENCE: tuple[Target, ...] = (
    Target("conv-fmnist-mlp-sgd", "optimizer", "fmnist-mlp-wide", 40, 0.05, augment=False,
           profile="convergence", seconds=100,
           note="MLP 784-512-256-10 (0.54M parameters), the whole training split, 40 epochs, "
                f"{_PLAIN} (at 20 epochs it gained 0.37 points at 40; {_AUGMENTED} 0.36 at 80)"),
    Target("conv-fmnist-mlp-adamw", "optimizer", "fmnist-mlp-wide-adamw", 20, 1e-3,
           optimizer="adamw", augment=False, profile="convergence", seconds=55,
           note="the same MLP with AdamW 1e-3 (weight decay 0.01), 20 epochs, "
                f"{_PLAIN} ({_AUGMENTED} 0.93 points at 80 epochs against 40)"),
    Target("conv-fmnist-cnn-1x", "training length", "fmnist-cnn2", 10, 0.05, augment=False,
           profile="convergence", seconds=93,
           note=f"two-conv CNN (0.11M parameters), {_CNN}, 10 epochs, {_PLAIN} (at 5 epochs "
                f"it gained 0.82 points at 10; {_AUGMENTED} 0.76 at 20)"),
    Target("conv-fmnist-cnn-0.5x", "training length", "fmnist-cnn2", 5, 0.05, augment=False,
           profile="convergence", seconds=47, tuned_at="conv-fmnist-cnn-1x",
           methods=LENGTH_METHODS, note="the CNN at half the length (5 epochs)"),
    Target("conv-fmnist-cnn-2x", "training length", "fmnist-cnn2", 20, 0.05, augment=False,
           profile="convergence", seconds=198, tuned_at="conv-fmnist-cnn-1x",
           methods=LENGTH_METHODS,
           note="the CNN at twice the length (20 epochs): also 1x's learning-curve check"),
    Target("conv-fmnist-cnn-10pct", "dataset size", "fmnist-cnn2", 50, 0.05,
           train_fraction=0.1, augment=False, profile="convergence", seconds=50,
           note="10 % of the training split (5,700 images) for 50 epochs (2,250 steps), "
                f"{_PLAIN} ({_AUGMENTED} 0.57 points at 100)"),
    Target("conv-fmnist-cnn-uniform40", "label noise", "fmnist-cnn2", 40, 0.05,
           train_fraction=0.1, noise="uniform", noise_rate=0.4, augment=False,
           profile="convergence", seconds=55,
           note="10 % of the training split (5,700 images) under 40 % uniform noise, without "
                "augmentation (with it, 120 epochs fit 65 % of the noisy labels), 40 epochs "
                "(1,800 steps): it memorises them, and the test accuracy falls from its peak"),
    Target("conv-shakespeare-gpt", "data modality", "shakespeare-gpt", 16, 1e-3,
           optimizer="adamw", warmup=0.05, train_fraction=0.1, profile="convergence",
           seconds=100,
           note="4-layer GPT 96 wide (0.46M parameters), 10 % of the training text (on the "
                "whole text its validation loss still fell after 3 epochs, ~170 s a run), "
                "16 epochs, 5 % linear warmup as nanoGPT"),
    Target("conv-shakespeare-lstm", "data modality", "shakespeare-lstm-256", 16, 20.0,
           train_fraction=0.1, profile="convergence", seconds=53,
           note="1-layer LSTM 256 (0.54M parameters), 10 % of the training text, 16 epochs, "
                "SGD 20 clipped at 0.25"),
)  # fmt: skip


def _checks(suite: tuple[Target, ...]) -> tuple[Target, ...]:
    """The learning-curve checks of ``suite``: each target without a longer twin, at twice its
    length, tuned tier only, on two seeds."""
    epochs = {t.name: t.epochs for t in suite}
    longer = {t.tuned_at for t in suite if t.tuned_at and t.epochs > epochs[t.tuned_at]}
    return tuple(
        replace(t, name=f"{t.name}-2x-check", axis="learning curve", epochs=2 * t.epochs,
                seconds=2 * t.seconds, tuned_at=t.name, methods=(), check_seeds=(0, 1),
                note=f"{t.name} at twice its length: is it at its plateau?")
        for t in suite
        if t.tuned_at is None and t.name not in longer
    )  # fmt: skip


CONVERGENCE = CONVERGENCE + _checks(CONVERGENCE)

#: A suite small enough for CI: digits tasks, which are meta-training tasks — so the quick
#: suite checks the machinery and is never transfer evidence.
QUICK: tuple[Target, ...] = (
    Target("quick-digits-mlp", "quick", "digits-mlp", 2, 0.1, extras=("fixed",), seconds=1),
    Target("quick-digits-mlp-adamw", "quick", "digits-mlp", 2, 1e-3, optimizer="adamw",
           noise="uniform", noise_rate=0.4, seconds=1),
)  # fmt: skip

#: The convergence suite's machinery at CI size (digits: meta-training tasks, never evidence):
#: every row of the profile on one target, a length variant and a learning-curve check.
QUICK_CONVERGENCE: tuple[Target, ...] = (
    Target("quick-conv-digits-mlp", "quick", "digits-mlp", 2, 0.1, profile="convergence",
           seconds=1),
    Target("quick-conv-digits-mlp-0.5x", "quick", "digits-mlp", 1, 0.1, profile="convergence",
           seconds=1, tuned_at="quick-conv-digits-mlp", methods=("cosine", "mlrsnet-plus")),
)  # fmt: skip
QUICK_CONVERGENCE = QUICK_CONVERGENCE + _checks(QUICK_CONVERGENCE)
SUITES.update(convergence=CONVERGENCE, heldout=HELD_OUT, quick=QUICK,
              **{"quick-convergence": QUICK_CONVERGENCE})  # fmt: skip


def targets(suite: str) -> tuple[Target, ...]:
    """The targets of ``suite``: ``"convergence"``, ``"heldout"`` (the short-horizon suite),
    ``"quick"`` or ``"quick-convergence"``.

    Raises:
        ValueError: For another name.
    """
    if suite not in SUITES:
        raise ValueError(f"suite must be one of {', '.join(map(repr, SUITES))}, got {suite!r}")
    return SUITES[suite]


def overlap(meta: tuple[MetaTask, ...], held_out: tuple[Target, ...]) -> list[str]:
    """Held-out targets that are also meta-training tasks (same task name): must be empty."""
    names = {m.task for m in meta}
    return [t.name for t in held_out if t.task in names]
