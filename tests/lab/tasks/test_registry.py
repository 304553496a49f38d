"""Task registry: entries, splits/noise acceptance, deterministic loaders, evaluate, models."""

from __future__ import annotations

import importlib.util
import math
import time
from pathlib import Path

import pytest
import torch
from torch import nn

import mlrsnet.lab.tasks as tasks
from mlrsnet.lab.tasks import ImageBatchLoader, ImageTask, TextTask
from mlrsnet.lab.tasks.augment import Augmentation
from mlrsnet.lab.tasks.splits import class_counts

REQUIRED = {
    "fmnist-resnet",
    "fmnist-mobilenetv2",
    "fmnist-shufflenetv2",
    "fmnist-cnn",
    "fmnist-mlp",
    "digits-mlp",
    "digits-cnn",
    "ptb-lstm",
    "ptb-lstm3",
    "shakespeare-lstm",
    "cifar10-resnet18",
    "cifar10-wrn28-10",
    "cifar100-resnet18",
    "cifar100-wrn28-10",
    "svhn-resnet18",
}
#: ``shared/data`` beside the repository checkout (PTB, Tiny Shakespeare).
SHARED_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
HAVE_MODELS = importlib.util.find_spec("mlrsnet.lab.tasks.models") is not None


def _dummy_classifier(in_features: int = 64, classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Flatten(), nn.Linear(in_features, 32), nn.Dropout(0.5), nn.Linear(32, classes)
    )


class _UniformLM(nn.Module):
    """Zero logits: every token has probability 1/V, so perplexity is exactly V."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, tokens, hidden=None):
        steps = 0 if hidden is None else hidden
        logits = torch.zeros(*tokens.shape, self.vocab) * self.bias
        return logits, steps + 1


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small tensors on a shared 2-core machine: one intra-op thread is faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits() -> ImageTask:
    return tasks.get("digits-mlp", seed=0)


def test_names_and_unknown_name() -> None:
    assert REQUIRED <= set(tasks.names())
    assert tasks.names() == sorted(tasks.names())
    with pytest.raises(ValueError, match="unknown task 'imagenet-vit'") as info:
        tasks.get("imagenet-vit")
    for name in ("fmnist-resnet", "ptb-lstm", "cifar10-wrn28-10"):
        assert name in str(info.value)


def test_missing_data_raises_with_howto(tmp_path: Path) -> None:
    assert not tasks.available("cifar10-resnet18", data_dir=tmp_path)
    assert tasks.available(data_dir=tmp_path) == ["digits-cnn", "digits-mlp"]
    with pytest.raises(ValueError, match="unknown task"):
        tasks.available("nope")
    with pytest.raises(FileNotFoundError, match="download=True"):
        tasks.get("cifar10-resnet18", data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        tasks.get("fmnist-mlp", data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="ptb"):
        tasks.get("ptb-lstm", data_dir=tmp_path)


def test_invalid_options() -> None:
    for kwargs in (
        {"train_fraction": 0.0},
        {"train_fraction": 1.5},
        {"noise_rate": 0.2},
        {"noise": "gaussian", "noise_rate": 0.2},
        {"noise": "uniform", "noise_rate": 1.2},
        {"seed": -1},
        {"num_meta": 5_000},
    ):
        with pytest.raises(ValueError):
            tasks.get("digits-mlp", **kwargs)


def test_digits_task_attributes(digits: ImageTask) -> None:
    assert isinstance(digits, tasks.Task) and digits.modality == "image"
    assert (digits.num_classes, digits.metric, digits.grad_clip) == (10, "accuracy", None)
    assert digits.epochs > 0 and digits.batch_size > 0 and digits.lr > 0
    assert (digits.num_train, digits.num_meta) == (1_097, 200)
    assert class_counts(digits.meta_labels, 10).tolist() == [20] * 10
    assert not set(digits.train_indices.tolist()) & set(digits.meta_indices.tolist())
    assert digits.input_shape == (1, 8, 8)
    assert digits.model_kwargs["in_features"] == 64
    assert "tensor" not in repr(digits)  # no data dumps in the repr


def test_train_loader_is_deterministic_and_resumable(digits: ImageTask) -> None:
    loader = digits.train_loader(100, epoch=3)
    assert len(loader) == loader.batches_per_epoch == 11  # ceil(1097 / 100)
    full = list(loader)
    assert len(full) == 11 and full[-1][0].shape == (97, 1, 8, 8)
    again = list(digits.train_loader(100, epoch=3))
    assert all(
        torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        for a, b in zip(full, again, strict=True)
    )
    tail = digits.train_loader(100, epoch=3, start=7)
    assert len(tail) == 4
    for (x, y), (fx, fy) in zip(tail, full[7:], strict=True):
        assert torch.equal(x, fx) and torch.equal(y, fy)
    other = list(digits.train_loader(100, epoch=4))
    assert not torch.equal(other[0][1], full[0][1])
    x, y = full[0]
    assert x.dtype == torch.float32 and y.dtype == torch.long and x.device.type == "cpu"
    # one epoch visits every training sample exactly once
    seen = torch.cat([y for _, y in full])
    assert torch.equal(torch.sort(seen).values, torch.sort(digits.train_labels).values)
    with pytest.raises(ValueError, match="start"):
        digits.train_loader(100, start=12)


def test_loader_results_do_not_depend_on_chunking(digits: ImageTask) -> None:
    def batches(chunk_size: int):
        return list(
            ImageBatchLoader(
                digits.data.train_images,
                digits.train_indices,
                digits.train_labels,
                batch_size=64,
                normalization=digits.normalization,
                augmentation=Augmentation(crop_padding=1, hflip=True),
                seed=7,
                epoch=2,
                chunk_size=chunk_size,
            )
        )

    one, many = batches(1), batches(10_000)
    assert all(
        torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(one, many, strict=True)
    )


def test_meta_loader_is_endless_deterministic_and_resumable(digits: ImageTask) -> None:
    meta = digits.meta_loader(64, seed=1)
    batches = [next(meta) for _ in range(10)]  # 200 // 64 = 3 per pass: crosses passes
    assert all(x.shape == (64, 1, 8, 8) for x, _ in batches)
    again = digits.meta_loader(64, seed=1)
    assert all(torch.equal(next(again)[0], x) for x, _ in batches)
    resumed = digits.meta_loader(64, seed=1, start=4)
    assert all(torch.equal(next(resumed)[1], y) for _, y in batches[4:])
    meta_set = set(digits.meta_labels.tolist())
    assert set(torch.cat([y for _, y in batches]).tolist()) <= meta_set
    assert next(digits.meta_loader(1_000))[0].shape[0] == 200  # clipped to the meta-set size


def test_no_meta_set() -> None:
    task = tasks.get("digits-mlp", num_meta=0)
    assert (task.num_train, task.num_meta) == (1_297, 0)
    with pytest.raises(ValueError, match="no meta set"):
        task.meta_loader(10)


@pytest.mark.skipif(not HAVE_MODELS, reason="mlrsnet.lab.tasks.models is not available yet")
def test_build_model_seed_is_reproducible_and_leaves_the_global_rng(digits: ImageTask) -> None:
    state = torch.random.get_rng_state()
    a, b = digits.build_model(seed=3), digits.build_model(seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    c = digits.build_model(seed=4)
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters(), strict=True))
    assert next(digits.build_model(device="meta").parameters()).device.type == "meta"


def test_evaluate_restores_modes_and_uses_no_grad(digits: ImageTask) -> None:
    torch.manual_seed(0)
    model = _dummy_classifier()
    model.train()
    model[2].eval()  # a mixed state must come back exactly
    result = digits.evaluate(model, batch_size=128)
    keys = {"loss", "metric", "soft_error", "sharp_error"}
    assert set(result) == keys and 0.0 <= result["metric"] <= 1.0
    assert model.training and not model[2].training and model[1].training
    assert all(p.grad is None for p in model.parameters())
    again = digits.evaluate(model.eval(), batch_size=128)
    assert again == result  # deterministic in eval mode: the same batches give the same numbers
    # another batch size sums the per-example losses in another order: equal up to rounding
    # (measured 1.3e-8 relative on two CPUs)
    smaller = digits.evaluate(model.eval(), batch_size=64)
    assert smaller["metric"] == result["metric"]
    assert smaller["loss"] == pytest.approx(result["loss"], rel=1e-6)
    assert not model.training
    meta = digits.evaluate(model, split="meta")
    assert set(meta) == keys
    with pytest.raises(ValueError, match="split"):
        digits.evaluate(model, split="train")


def test_evaluate_on_parts_of_a_split_covers_it_disjointly(digits: ImageTask) -> None:
    """``part=(i, n)``: contiguous disjoint parts whose example-weighted losses and
    accuracies make the whole split's; a bad part is named."""
    from mlrsnet.lab.tasks.types import split_part

    assert torch.equal(torch.cat([split_part(torch.arange(11), (i, 3)) for i in range(3)]),
                       torch.arange(11))  # fmt: skip
    torch.manual_seed(1)
    model = _dummy_classifier().eval()
    whole = digits.evaluate(model, split="meta")
    halves = [digits.evaluate(model, split="meta", part=(i, 2)) for i in range(2)]
    size = len(digits.meta_indices)
    weights = [size // 2 / size, (size - size // 2) / size]
    for key in ("loss", "metric", "soft_error", "sharp_error"):
        mixed = sum(w * h[key] for w, h in zip(weights, halves, strict=True))
        assert mixed == pytest.approx(whole[key], rel=1e-6)
    assert halves[0] != halves[1]
    for bad in [(2, 2), (-1, 2), (0, 0), (0, True), (0, size + 1)]:
        with pytest.raises(ValueError, match="part"):
            digits.evaluate(model, split="meta", part=bad)


def test_evaluate_soft_error_is_the_mean_probability_off_the_true_class(
    digits: ImageTask,
) -> None:
    from mlrsnet.lab.tasks.types import SHARP_TEMPERATURE

    class Leaning(nn.Module):  # every image: logit log(3) on class 0, 0 elsewhere
        def forward(self, x):
            logits = torch.zeros(x.shape[0], 10)
            logits[:, 0] = math.log(3.0)
            return logits

    result = digits.evaluate(Leaning(), split="meta")
    share = float((digits.meta_labels == 0).double().mean())  # p(true) 3/12 there, 1/12 elsewhere
    assert result["soft_error"] == pytest.approx(1 - (share * 3 + (1 - share)) / 12, rel=1e-6)
    assert result["metric"] == pytest.approx(share)
    # the sharp error: the logits over 1/4, so log(3) becomes log(81): p(true) 81/90 or 1/90
    assert SHARP_TEMPERATURE == 0.25
    assert result["sharp_error"] == pytest.approx(1 - (share * 81 + (1 - share)) / 90, rel=1e-6)


def test_evaluate_accuracy_of_a_perfect_model(digits: ImageTask) -> None:
    class Oracle(nn.Module):
        def forward(self, x):  # look the labels up by image content
            keys = x.flatten(1)
            hits = (keys[:, None, :] == test_x[None]).all(-1).float().argmax(1)
            return nn.functional.one_hot(test_y[hits], 10).float() * 50

    test_x = digits.normalization(digits.data.test_images).flatten(1)
    test_y = digits.data.test_labels
    result = digits.evaluate(Oracle(), batch_size=100)
    assert result["metric"] == 1.0 and result["loss"] < 1e-6


def test_train_fraction_and_noise_on_digits() -> None:
    task = tasks.get("digits-cnn", train_fraction=0.3, noise="pairflip", noise_rate=0.2, seed=4)
    assert task.num_train == pytest.approx(0.3 * 1_097, abs=10)
    clean = task.clean_train_labels
    changed = task.train_labels != clean
    assert torch.equal(task.train_labels[changed], (clean[changed] + 1) % 10)
    assert task.realised_noise_rate == pytest.approx(float(changed.double().mean()))


# ----------------------------------------------------------------------------- Fashion-MNIST


@pytest.mark.parametrize(("kind", "rate"), [("uniform", 0.4), ("pairflip", 0.2)])
def test_fashion_mnist_noise_acceptance(fashion_mnist_dir: Path, kind: str, rate: float) -> None:
    task = tasks.get("fmnist-mlp", data_dir=fashion_mnist_dir, noise=kind, noise_rate=rate)
    raw = task.data
    assert (task.num_train, task.num_meta) == (59_000, 1_000)
    assert class_counts(task.meta_labels, 10).tolist() == [100] * 10
    assert abs(task.realised_noise_rate - rate) <= 0.01
    changed = task.train_labels != raw.train_labels[task.train_indices]
    assert task.realised_noise_rate == pytest.approx(float(changed.double().mean()))
    # meta and test stay clean; the cached raw data is never modified
    assert torch.equal(task.meta_labels, raw.train_labels[task.meta_indices])
    assert class_counts(raw.train_labels, 10).tolist() == [6_000] * 10
    assert class_counts(raw.test_labels, 10).tolist() == [1_000] * 10
    _, meta_y = next(task.meta_loader(1_000))
    assert torch.equal(torch.sort(meta_y).values, torch.sort(task.meta_labels).values)
    clean = tasks.get("fmnist-mlp", data_dir=fashion_mnist_dir)
    assert torch.equal(clean.meta_indices, task.meta_indices)  # same seed, same meta set
    assert clean.realised_noise_rate == 0.0
    assert torch.equal(clean.train_labels, raw.train_labels[clean.train_indices])


def test_fashion_mnist_fraction_is_class_balanced(fashion_mnist_dir: Path) -> None:
    task = tasks.get("fmnist-cnn", data_dir=fashion_mnist_dir, train_fraction=0.1, seed=2)
    assert class_counts(task.train_labels, 10).tolist() == [590] * 10
    assert not set(task.train_indices.tolist()) & set(task.meta_indices.tolist())


def test_fashion_mnist_epoch_iteration_time(fashion_mnist_dir: Path) -> None:
    """Prints the time of one augmented epoch at batch 128 (a figure, not an assertion)."""
    task = tasks.get("fmnist-resnet", data_dir=fashion_mnist_dir)
    loader = task.train_loader(128, epoch=0)
    start = time.perf_counter()
    count = sum(len(y) for _, y in loader)
    elapsed = time.perf_counter() - start
    assert count == 59_000 and len(loader) == 461
    print(f"\nFashion-MNIST epoch, batch 128, crop+flip, no model: {elapsed:.3f} s")


# ----------------------------------------------------------------------------- text


@pytest.fixture(scope="module")
def ptb(shared_data: Path) -> TextTask:
    return tasks.get("ptb-lstm", data_dir=shared_data)


def test_ptb_task(ptb: TextTask) -> None:
    assert (ptb.modality, ptb.metric, ptb.num_classes) == ("text", "perplexity", 10_000)
    assert ptb.grad_clip == 0.25 and ptb.bptt == 35
    assert ptb.model_kwargs["num_layers"] == 2 and ptb.model_kwargs["tie_weights"]
    loader = ptb.train_loader(20)
    assert len(loader) == math.ceil((929_589 // 20 - 1) / 35)
    x, y = next(iter(loader))
    assert x.shape == y.shape == (20, 35) and x.dtype == torch.long
    assert torch.equal(x[:, 1:], y[:, :-1])  # targets are the inputs shifted by one
    windows = list(ptb.train_loader(20, start=len(loader) - 2))
    assert len(windows) == 2 and windows[-1][0].shape[1] <= 35
    assert torch.equal(windows[0][0], loader.window(len(loader) - 2)[0])
    meta = ptb.meta_loader(10)
    mx, my = next(meta)
    assert mx.shape == (10, 35)
    assert (
        tasks.get("ptb-lstm3", data_dir=ptb.corpus.files[0].parent).model_kwargs["num_layers"] == 3
    )


def test_text_evaluate_gives_exact_perplexity(tmp_path: Path) -> None:
    folder = tmp_path / "ptb"
    folder.mkdir()
    words = [f"w{i}" for i in range(50)]
    for split, lines in (("train", 40), ("valid", 10), ("test", 12)):
        body = "\n".join(" ".join(words[(i * 7 + j) % 50] for j in range(9)) for i in range(lines))
        (folder / f"{split}.txt").write_text(body + "\n")
    task = tasks.get("ptb-lstm", data_dir=tmp_path)
    assert task.num_classes == 51  # 50 words + <eos>
    model = _UniformLM(task.vocab_size).train()
    result = task.evaluate(model, batch_size=4)
    assert result["loss"] == pytest.approx(math.log(51), rel=1e-6)
    assert result["metric"] == pytest.approx(51, rel=1e-5)
    assert model.training
    assert task.evaluate(model, split="valid")["metric"] == pytest.approx(51, rel=1e-5)
    assert task.evaluate(model, split="valid", part=(1, 2))["metric"] == pytest.approx(51, rel=1e-5)
    outputs = model(torch.zeros(2, 3, dtype=torch.long))
    loss = task.loss_fn(outputs, torch.zeros(2, 3, dtype=torch.long))
    assert loss.dim() == 0 and loss.item() == pytest.approx(math.log(51))


def test_text_options(shared_data: Path) -> None:
    with pytest.raises(ValueError, match="validation split"):
        tasks.get("ptb-lstm", data_dir=shared_data, noise="uniform", noise_rate=0.1)
    with pytest.raises(ValueError, match="validation split"):
        tasks.get("ptb-lstm", data_dir=shared_data, num_meta=100)
    small = tasks.get("shakespeare-lstm", data_dir=shared_data, train_fraction=0.1)
    assert small.num_classes == 65 and len(small.train_stream) == 100_385


# ----------------------------------------------------------------------------- every entry


def _data_dir(name: str, shared: Path | None, tiny: dict) -> Path | None:
    dataset = tasks.spec(name).dataset
    if dataset in ("ptb", "tinyshakespeare"):
        return shared
    if dataset in ("cifar10", "cifar100", "svhn"):
        return tiny["root"]
    return None


@pytest.mark.skipif(not HAVE_MODELS, reason="mlrsnet.lab.tasks.models is not available yet")
@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if "wrn" in n else n for n in sorted(REQUIRED)],
)
def test_entry_builds_and_trains_one_batch(name: str, tiny_image_root: dict) -> None:
    shared = SHARED_DATA if SHARED_DATA.is_dir() else None
    data_dir = _data_dir(name, shared, tiny_image_root)
    if not tasks.available(name, data_dir=data_dir):
        pytest.skip(f"data for {name} not present")
    is_tiny = data_dir is not None and data_dir == tiny_image_root["root"]
    task = tasks.get(name, data_dir=data_dir, **({"num_meta": 10} if is_tiny else {}))
    model = task.build_model(seed=0)
    model.train()
    inputs, targets = next(iter(task.train_loader(4, epoch=0)))
    outputs = model(inputs) if task.modality == "image" else model(inputs, None)
    loss = task.loss_fn(outputs, targets)
    loss.backward()
    assert loss.dim() == 0 and torch.isfinite(loss)
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads)
    logits = outputs if task.modality == "image" else outputs[0]
    assert logits.shape[-1] == task.num_classes
