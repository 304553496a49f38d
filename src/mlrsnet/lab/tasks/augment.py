"""Batch-level augmentation and normalisation in plain PyTorch.

Everything works on whole ``[B, C, H, W]`` batches on the batch's own device, vectorised (no
Python loop over samples). Random numbers are drawn on the CPU from a :class:`torch.Generator`
and moved to the batch's device, so a seed gives the same augmentation on every device.

Per-dataset settings live in :data:`DATASET_TRANSFORMS`: mean/std for normalisation, the
random-crop padding and whether horizontal flips make sense (CIFAR and Fashion-MNIST: yes;
digits and SVHN: no, a mirrored digit is a different symbol).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "DATASET_TRANSFORMS",
    "Augmentation",
    "Normalization",
    "normalize",
    "random_crop",
    "random_hflip",
]


def _check_batch(x: Tensor) -> None:
    if not isinstance(x, Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"expected a [B, C, H, W] batch, got {shape}")


def _draw(
    b: int, padding: int, flip_p: float | None, generator: torch.Generator | None
) -> tuple[Tensor | None, Tensor | None]:
    """Crop offsets ``[2, B]`` then flip coins ``[B]``, in that order (CPU)."""
    offsets = None
    if padding > 0:
        offsets = torch.randint(0, 2 * padding + 1, (2, b), generator=generator)
    flips = None
    if flip_p is not None:
        flips = torch.rand(b, generator=generator) < flip_p
    return offsets, flips


def _crop_flip(
    x: Tensor, padding: int, offsets: Tensor | None, flips: Tensor | None, fill: float = 0
) -> Tensor:
    """Crop (after padding) and mirror a batch: one gather along rows, one along columns.

    The gather indices are broadcast views (``expand``), so no index tensor of the batch's
    size is materialised.
    """
    b, c, h, w = x.shape
    dev = x.device
    if offsets is not None:
        offsets = offsets.to(dev)
        x = F.pad(x, (padding, padding, padding, padding), value=fill)
        rows = offsets[0][:, None] + torch.arange(h, device=dev)  # [B, H]
        x = x.gather(2, rows.view(b, 1, h, 1).expand(b, c, h, x.shape[3]))
        cols = offsets[1][:, None] + torch.arange(w, device=dev)  # [B, W]
    else:
        cols = torch.arange(w, device=dev).expand(b, w)
    if flips is not None:
        cols = torch.where(flips.to(dev)[:, None], cols.flip(1), cols)
    return x.gather(3, cols.view(b, 1, 1, w).expand(b, c, h, w))


def random_crop(
    x: Tensor, padding: int, *, generator: torch.Generator | None = None, fill: float = 0
) -> Tensor:
    """Pad every image by ``padding`` pixels and crop back to ``H x W`` at a random offset.

    Each sample gets its own offset (uniform in ``[0, 2 * padding]`` on both axes), as
    torchvision's ``RandomCrop(size, padding)``, but for a whole batch at once (one gather).

    Args:
        x: Batch ``[B, C, H, W]`` of any dtype, on any device.
        padding: Padding on each side; ``0`` returns ``x`` unchanged.
        generator: CPU generator for the offsets (default: the global RNG).
        fill: Constant used for the padding (0 = black for uint8 pixels).

    Returns:
        A new tensor with the shape, dtype and device of ``x``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> random_crop(torch.ones(2, 1, 4, 4), 1, generator=g).shape
        torch.Size([2, 1, 4, 4])
    """
    _check_batch(x)
    if padding < 0:
        raise ValueError(f"padding must be non-negative, got {padding}")
    if padding == 0:
        return x
    offsets, _ = _draw(x.shape[0], padding, None, generator)
    return _crop_flip(x, padding, offsets, None, fill)


def random_hflip(x: Tensor, *, generator: torch.Generator | None = None, p: float = 0.5) -> Tensor:
    """Mirror each image left-right independently with probability ``p``.

    Args:
        x: Batch ``[B, C, H, W]`` on any device.
        generator: CPU generator for the coin flips (default: the global RNG).
        p: Flip probability.

    Returns:
        A new tensor with the shape, dtype and device of ``x``.

    Example:
        >>> x = torch.arange(3.0).view(1, 1, 1, 3)
        >>> random_hflip(x, p=1.0).flatten().tolist()
        [2.0, 1.0, 0.0]
    """
    _check_batch(x)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p}")
    flips = (torch.rand(x.shape[0], generator=generator) < p).to(x.device)
    return torch.where(flips[:, None, None, None], x.flip(-1), x)


def normalize(
    x: Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    scale: float = 255.0,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Convert raw pixels to float and standardise per channel: ``(x / scale - mean) / std``.

    Args:
        x: Batch ``[B, C, H, W]`` (typically uint8) on any device.
        mean: Per-channel means of ``x / scale`` (length ``C`` or 1).
        std: Per-channel standard deviations of ``x / scale``.
        scale: Maximum raw pixel value (255 for 8-bit images, 16 for scikit-learn digits).
        dtype: Floating dtype of the result.

    Returns:
        Float tensor on the device of ``x``.

    Example:
        >>> x = torch.full((1, 1, 1, 1), 255, dtype=torch.uint8)
        >>> round(normalize(x, [0.5], [0.5]).item(), 6)
        1.0
    """
    _check_batch(x)
    mean_t = torch.as_tensor(mean, dtype=torch.float64).view(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float64).view(1, -1, 1, 1)
    if mean_t.shape[1] not in (1, x.shape[1]) or std_t.shape[1] not in (1, x.shape[1]):
        raise ValueError(f"mean/std need 1 or {x.shape[1]} entries")
    # (x / scale - mean) / std == x * a + b, computed in two passes over the batch.
    a = (1.0 / (scale * std_t)).to(dtype=dtype, device=x.device)
    b = (-mean_t / std_t).to(dtype=dtype, device=x.device)
    return torch.addcmul(b, x.to(dtype), a)


@dataclass(frozen=True)
class Normalization:
    """Per-dataset normalisation constants; calling it applies :func:`normalize`.

    Attributes:
        mean: Per-channel means of ``pixels / scale``.
        std: Per-channel standard deviations of ``pixels / scale``.
        scale: Maximum raw pixel value.

    Example:
        >>> Normalization((0.5,), (0.5,))(torch.zeros(1, 1, 2, 2, dtype=torch.uint8)).mean()
        tensor(-1.)
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    scale: float = 255.0

    def __call__(self, x: Tensor) -> Tensor:
        """Normalise a batch (see :func:`normalize`)."""
        return normalize(x, self.mean, self.std, scale=self.scale)


@dataclass(frozen=True)
class Augmentation:
    """Training augmentation: random crop with padding, then optional horizontal flip.

    Attributes:
        crop_padding: Padding of the random crop (0 disables it).
        hflip: Whether to mirror half of the images.

    Example:
        >>> aug = Augmentation(crop_padding=4, hflip=True)
        >>> aug(torch.zeros(8, 3, 32, 32), generator=torch.Generator().manual_seed(0)).shape
        torch.Size([8, 3, 32, 32])
    """

    crop_padding: int = 0
    hflip: bool = False

    @property
    def enabled(self) -> bool:
        """Whether the augmentation changes anything."""
        return self.crop_padding > 0 or self.hflip

    def sample(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> tuple[Tensor | None, Tensor | None]:
        """Draw the random parameters of a batch: crop offsets ``[2, B]``, flip mask ``[B]``.

        Offsets are drawn first, then the flip coins, exactly as :func:`random_crop` followed
        by :func:`random_hflip` would draw them from the same generator.
        """
        return _draw(batch_size, self.crop_padding, 0.5 if self.hflip else None, generator)

    def apply(self, x: Tensor, params: tuple[Tensor | None, Tensor | None]) -> Tensor:
        """Apply parameters from :meth:`sample` (possibly several batches' concatenated)."""
        _check_batch(x)
        if not self.enabled:
            return x
        return _crop_flip(x, self.crop_padding, *params)

    def __call__(self, x: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Augment a batch; equal to ``random_crop`` then ``random_hflip`` with ``generator``.

        Both are fused into one gather over the flattened images.
        """
        _check_batch(x)
        if not self.enabled:
            return x
        return self.apply(x, self.sample(x.shape[0], generator))


#: ``dataset -> (Normalization, Augmentation)``. Means/stds are those of the training images
#: (Fashion-MNIST and digits measured here; CIFAR/SVHN the usual published figures).
DATASET_TRANSFORMS: dict[str, tuple[Normalization, Augmentation]] = {
    "fashion-mnist": (Normalization((0.2860,), (0.3530,)), Augmentation(2, True)),
    "digits": (Normalization((0.3053,), (0.3760,), scale=16.0), Augmentation(0, False)),
    "cifar10": (
        Normalization((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
        Augmentation(4, True),
    ),
    "cifar100": (
        Normalization((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
        Augmentation(4, True),
    ),
    "svhn": (
        Normalization((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
        Augmentation(4, False),
    ),
}
