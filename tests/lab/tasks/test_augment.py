"""Batch augmentation and normalisation (vectorised, seeded, device-following)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mlrsnet.lab.tasks.augment import (
    DATASET_TRANSFORMS,
    Augmentation,
    Normalization,
    normalize,
    random_crop,
    random_hflip,
)


def _batch(b: int = 16, c: int = 3, h: int = 8, w: int = 10) -> torch.Tensor:
    return torch.randint(0, 256, (b, c, h, w), dtype=torch.uint8, generator=_gen(9))


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("padding", [1, 2, 4])
def test_random_crop_matches_a_per_sample_reference(padding: int) -> None:
    x = _batch()
    out = random_crop(x, padding, generator=_gen(0))
    offsets = torch.randint(0, 2 * padding + 1, (2, len(x)), generator=_gen(0))
    padded = F.pad(x, (padding,) * 4)
    h, w = x.shape[2:]
    ref = torch.stack(
        [padded[i, :, oy : oy + h, ox : ox + w] for i, (oy, ox) in enumerate(offsets.T.tolist())]
    )
    assert out.dtype == torch.uint8 and out.shape == x.shape
    assert torch.equal(out, ref)


def test_random_crop_is_seeded_and_varies_per_sample() -> None:
    x = _batch(b=64)
    a, b = random_crop(x, 4, generator=_gen(1)), random_crop(x, 4, generator=_gen(1))
    assert torch.equal(a, b)
    assert not torch.equal(a, random_crop(x, 4, generator=_gen(2)))
    assert random_crop(x, 0) is x
    with pytest.raises(ValueError):
        random_crop(x, -1)
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        random_crop(x[0], 2)


def test_random_hflip() -> None:
    x = _batch()
    assert torch.equal(random_hflip(x, p=1.0), x.flip(-1))
    assert torch.equal(random_hflip(x, p=0.0), x)
    out = random_hflip(x, generator=_gen(3))
    mask = torch.rand(len(x), generator=_gen(3)) < 0.5
    assert torch.equal(out[mask], x[mask].flip(-1)) and torch.equal(out[~mask], x[~mask])
    assert 0 < int(mask.sum()) < len(x)


def test_augmentation_equals_crop_then_flip_and_concatenates() -> None:
    x = _batch(b=12)
    aug = Augmentation(crop_padding=2, hflip=True)
    g = _gen(5)
    sequential = random_hflip(random_crop(x, 2, generator=g), generator=g)
    assert torch.equal(aug(x, generator=_gen(5)), sequential)
    # parameters of two batches drawn separately, applied to their concatenation in one go
    p1, p2 = aug.sample(5, _gen(10)), aug.sample(7, _gen(11))
    joint = aug.apply(x, (torch.cat([p1[0], p2[0]], 1), torch.cat([p1[1], p2[1]])))
    assert torch.equal(joint[:5], aug(x[:5], generator=_gen(10)))
    assert torch.equal(joint[5:], aug(x[5:], generator=_gen(11)))
    assert Augmentation()(x) is x and not Augmentation().enabled


def test_flip_only_where_it_makes_sense() -> None:
    assert DATASET_TRANSFORMS["cifar10"][1].hflip and DATASET_TRANSFORMS["fashion-mnist"][1].hflip
    assert not DATASET_TRANSFORMS["svhn"][1].hflip and not DATASET_TRANSFORMS["digits"][1].hflip


def test_normalize_values_and_dtype() -> None:
    x = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 3, 1, 1)
    out = normalize(x, [0.0, 0.1, 0.5], [1.0, 0.1, 0.25])
    assert out.dtype == torch.float32
    assert torch.allclose(out.flatten(), torch.tensor([0.0, 1.0, 2.0]), atol=1e-6)
    digits = Normalization((0.25,), (0.5,), scale=16.0)
    assert digits(torch.full((1, 1, 1, 1), 16, dtype=torch.uint8)).item() == pytest.approx(1.5)
    with pytest.raises(ValueError, match="entries"):
        normalize(x, [0.1, 0.2], [1.0, 1.0])


def test_ops_follow_the_tensor_device() -> None:
    x = _batch().to("meta")  # shape-only device: nothing may silently move to the CPU
    assert random_crop(x, 2).device.type == "meta"
    assert random_hflip(x).device.type == "meta"
    assert normalize(x, [0.5], [0.5]).device.type == "meta"


def test_fashion_mnist_constants_match_the_data(fashion_mnist_dir: Path) -> None:
    from mlrsnet.lab.tasks.datasets import load_fashion_mnist

    images = load_fashion_mnist(fashion_mnist_dir).train_images
    out = DATASET_TRANSFORMS["fashion-mnist"][0](images[:20_000])
    assert abs(out.mean().item()) < 0.02 and abs(out.std().item() - 1) < 0.02
