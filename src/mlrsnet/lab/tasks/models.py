"""Standard models for the MLR-SNet experiments, in plain PyTorch.

Image classifiers (all accept ``[B, 1, 28, 28]`` and ``[B, 3, 32, 32]`` input; they use a
3x3 stride-1 stem and adaptive average pooling, so the spatial size only has to survive the
network's down-sampling):

* :func:`resnet` / :func:`resnet18` -- the CIFAR ResNet of Kuang Liu's ``pytorch-cifar``.
* :func:`wide_resnet` -- pre-activation Wide ResNet (Zagoruyko & Komodakis, 2016).
* :func:`mobilenet_v2` -- CIFAR MobileNetV2 of ``pytorch-cifar``.
* :func:`shufflenet_v2` -- CIFAR ShuffleNetV2 of ``pytorch-cifar``.
* :func:`small_cnn` and :func:`mlp` -- small CPU-scale models, also fine on ``[B, 1, 8, 8]``
  (scikit-learn digits).

Language model: :class:`LSTMLanguageModel`, the LSTM of PyTorch's ``word_language_model``
example (used for Penn Treebank in the MLR-SNet paper), returning logits.

Parameter counts for the documented configurations are listed in ``docs/models.md``;
``python -m mlrsnet.lab.tasks.models`` prints them (:func:`parameter_table`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlrsnet.checks import number, positive_int

__all__ = [
    "CharTransformer",
    "LSTMLanguageModel",
    "count_parameters",
    "mlp",
    "mobilenet_v2",
    "parameter_table",
    "resnet",
    "resnet18",
    "shufflenet_v2",
    "small_cnn",
    "two_conv_cnn",
    "wide_resnet",
]


# --------------------------------------------------------------------------- helpers


def _init_cnn(module: nn.Module) -> None:
    """Standard CNN init: Kaiming-normal convs (fan_out, ReLU), BN = (1, 0), zero linear bias."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of (unique) parameter elements of ``model``.

    Shared parameters (e.g. tied embedding/decoder weights) are counted once.

    Args:
        model: Any module.
        trainable_only: Count only parameters with ``requires_grad=True``.

    Returns:
        The total number of scalar parameters.

    Example:
        >>> count_parameters(nn.Linear(3, 2))
        8
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


# --------------------------------------------------------------------------- ResNet


class _BasicBlock(nn.Module):
    """ResNet basic block (post-activation), as in ``pytorch-cifar``."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR-style ResNet with basic blocks; see :func:`resnet`."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        blocks: Sequence[int] = (2, 2, 2, 2),
        width: int = 64,
    ) -> None:
        super().__init__()
        num_classes = positive_int("num_classes", num_classes)
        in_channels = positive_int("in_channels", in_channels)
        width = positive_int("width", width)
        if not isinstance(blocks, Sequence):
            raise ValueError(f"blocks must be a sequence of 4 positive integers, got {blocks!r}")
        blocks = tuple(blocks)
        if len(blocks) != 4:
            raise ValueError(f"blocks must have length 4 (one entry per stage), got {blocks!r}")
        blocks = tuple(positive_int("blocks entries", b) for b in blocks)
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        in_planes = width
        stages = []
        for i, (n, stride) in enumerate(zip(blocks, (1, 2, 2, 2), strict=True)):
            planes = width * 2**i
            layers = []
            for s in [stride] + [1] * (n - 1):
                layers.append(_BasicBlock(in_planes, planes, s))
                in_planes = planes
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(in_planes, num_classes)
        _init_cnn(self)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.linear(torch.flatten(self.pool(out), 1))


def resnet(
    num_classes: int = 10,
    in_channels: int = 3,
    blocks: Sequence[int] = (2, 2, 2, 2),
    width: int = 64,
) -> nn.Module:
    """CIFAR ResNet of Kuang Liu's ``pytorch-cifar`` (BasicBlock, no max-pool).

    3x3 stride-1 stem conv with ``width`` channels, four stages of basic blocks with
    ``width, 2*width, 4*width, 8*width`` channels and strides ``1, 2, 2, 2``, global average
    pooling and a linear classifier.

    Args:
        num_classes: Number of output logits.
        in_channels: Input image channels (1 for MNIST-like, 3 for CIFAR).
        blocks: Number of basic blocks in each of the 4 stages.
        width: Channels of the stem and the first stage.

    Returns:
        The model; ``resnet()`` is ResNet-18 (11,173,962 parameters for 10 classes).

    Raises:
        ValueError: On non-positive sizes or ``blocks`` of length other than 4.

    Example:
        >>> net = resnet(num_classes=10, in_channels=1, blocks=(1, 1, 1, 1), width=16)
        >>> net(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """
    return ResNet(num_classes=num_classes, in_channels=in_channels, blocks=blocks, width=width)


def resnet18(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """ResNet-18 of ``pytorch-cifar``: ``resnet(blocks=(2, 2, 2, 2), width=64)``.

    Args:
        num_classes: Number of output logits.
        in_channels: Input image channels.

    Returns:
        The model (11,173,962 parameters for 10 classes and 3 input channels).

    Example:
        >>> count_parameters(resnet18())
        11173962
    """
    return resnet(num_classes=num_classes, in_channels=in_channels, blocks=(2, 2, 2, 2), width=64)


# --------------------------------------------------------------------------- Wide ResNet


class _WideBasic(nn.Module):
    """Pre-activation wide basic block (BN-ReLU-conv x2), as in the WRN reference code."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=False)
        self.dropout = dropout
        self.equal_in_out = in_planes == out_planes and stride == 1
        self.shortcut: nn.Module | None = None
        if not self.equal_in_out:
            self.shortcut = nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        pre = F.relu(self.bn1(x))
        out = F.relu(self.bn2(self.conv1(pre)))
        if self.dropout > 0:
            out = F.dropout(out, p=self.dropout, training=self.training)
        out = self.conv2(out)
        # Like the reference code, a projection shortcut sees the pre-activated input.
        residual = x if self.shortcut is None else self.shortcut(pre)
        return out + residual


class WideResNet(nn.Module):
    """Pre-activation Wide ResNet; see :func:`wide_resnet`."""

    def __init__(
        self,
        depth: int = 28,
        widen_factor: int = 10,
        num_classes: int = 10,
        in_channels: int = 3,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        depth = positive_int("depth", depth)
        widen_factor = positive_int("widen_factor", widen_factor)
        num_classes = positive_int("num_classes", num_classes)
        in_channels = positive_int("in_channels", in_channels)
        dropout = number("dropout", dropout, 0.0, 1.0, high_open=True)
        if depth < 10 or (depth - 4) % 6 != 0:
            raise ValueError(f"depth must be 6n+4 with n >= 1 (e.g. 16, 22, 28), got {depth}")
        n = (depth - 4) // 6
        channels = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(in_channels, channels[0], 3, stride=1, padding=1, bias=False)
        stages = []
        in_planes = channels[0]
        for out_planes, stride in zip(channels[1:], (1, 2, 2), strict=True):
            layers = []
            for s in [stride] + [1] * (n - 1):
                layers.append(_WideBasic(in_planes, out_planes, s, dropout))
                in_planes = out_planes
            stages.append(nn.Sequential(*layers))
        self.block1, self.block2, self.block3 = stages
        self.bn = nn.BatchNorm2d(in_planes)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)
        _init_cnn(self)

    def forward(self, x: Tensor) -> Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = F.relu(self.bn(out))
        return self.fc(torch.flatten(self.pool(out), 1))


def wide_resnet(
    depth: int = 28,
    widen_factor: int = 10,
    num_classes: int = 10,
    in_channels: int = 3,
    dropout: float = 0.0,
) -> nn.Module:
    """Wide ResNet WRN-``depth``-``widen_factor`` (Zagoruyko & Komodakis, 2016).

    Pre-activation basic blocks, stage widths ``16k, 32k, 64k`` with strides ``1, 2, 2``,
    ``(depth - 4) / 6`` blocks per stage, optional dropout between the two convolutions.

    Args:
        depth: Total depth, ``6n + 4`` (16, 22, 28, 40, ...).
        widen_factor: Width multiplier ``k``.
        num_classes: Number of output logits.
        in_channels: Input image channels.
        dropout: Dropout probability inside each block, in ``[0, 1)``.

    Returns:
        The model; WRN-28-10 has 36,479,194 parameters for 10 classes.

    Raises:
        ValueError: On non-positive sizes, a depth not of the form ``6n + 4`` or a dropout
            outside ``[0, 1)``.

    Example:
        >>> net = wide_resnet(depth=16, widen_factor=2)
        >>> net(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """
    return WideResNet(depth, widen_factor, num_classes, in_channels, dropout)


# --------------------------------------------------------------------------- MobileNetV2


def _make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to a multiple of ``divisor``, not going below 90% of it."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


class _InvertedResidual(nn.Module):
    """MobileNetV2 block (expand 1x1 - depthwise 3x3 - linear 1x1), as in ``pytorch-cifar``."""

    def __init__(self, in_planes: int, out_planes: int, expansion: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        planes = expansion * in_planes
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, padding=1, groups=planes, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.shortcut: nn.Module = nn.Sequential()
        if stride == 1 and in_planes != out_planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, out_planes, 1, bias=False), nn.BatchNorm2d(out_planes)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return out + self.shortcut(x) if self.stride == 1 else out


class MobileNetV2(nn.Module):
    """CIFAR MobileNetV2; see :func:`mobilenet_v2`."""

    # (expansion, out_planes, num_blocks, stride); stride 2 -> 1 in the 2nd row for CIFAR.
    cfg = (
        (1, 16, 1, 1),
        (6, 24, 2, 1),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    )

    def __init__(
        self, num_classes: int = 10, in_channels: int = 3, width_mult: float = 1.0
    ) -> None:
        super().__init__()
        num_classes = positive_int("num_classes", num_classes)
        in_channels = positive_int("in_channels", in_channels)
        if (
            isinstance(width_mult, bool)
            or not isinstance(width_mult, (int, float))
            or not math.isfinite(width_mult)
            or width_mult <= 0
        ):
            raise ValueError(f"width_mult must be a positive number, got {width_mult!r}")
        stem = _make_divisible(32 * width_mult)
        last = _make_divisible(1280 * max(1.0, width_mult))
        self.conv1 = nn.Conv2d(in_channels, stem, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        layers = []
        in_planes = stem
        for expansion, out, n, stride in self.cfg:
            out_planes = _make_divisible(out * width_mult)
            for s in [stride] + [1] * (n - 1):
                layers.append(_InvertedResidual(in_planes, out_planes, expansion, s))
                in_planes = out_planes
        self.layers = nn.Sequential(*layers)
        self.conv2 = nn.Conv2d(in_planes, last, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(last)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(last, num_classes)
        _init_cnn(self)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layers(out)
        out = F.relu(self.bn2(self.conv2(out)))
        return self.linear(torch.flatten(self.pool(out), 1))


def mobilenet_v2(num_classes: int = 10, in_channels: int = 3, width_mult: float = 1.0) -> nn.Module:
    """CIFAR MobileNetV2 of ``pytorch-cifar``.

    Stride 1 in the stem and in the second block group (the two changes ``pytorch-cifar`` makes
    for 32x32 input), 1x1-conv shortcuts where a stride-1 block changes width. Channel counts
    are scaled by ``width_mult`` and rounded to multiples of 8 (the head keeps at least 1280).

    Args:
        num_classes: Number of output logits.
        in_channels: Input image channels.
        width_mult: Channel multiplier (> 0).

    Returns:
        The model (2,296,922 parameters for 10 classes at ``width_mult=1``).

    Raises:
        ValueError: On non-positive sizes.

    Example:
        >>> net = mobilenet_v2(width_mult=0.5)
        >>> net(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """
    return MobileNetV2(num_classes=num_classes, in_channels=in_channels, width_mult=width_mult)


# --------------------------------------------------------------------------- ShuffleNetV2


def _channel_shuffle(x: Tensor, groups: int = 2) -> Tensor:
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class _ShuffleBasic(nn.Module):
    """ShuffleNetV2 stride-1 unit: split channels, transform one half, concat, shuffle."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.split = channels // 2
        c = channels - self.split
        self.conv1 = nn.Conv2d(c, c, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, stride=1, padding=1, groups=c, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.conv3 = nn.Conv2d(c, c, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c)

    def forward(self, x: Tensor) -> Tensor:
        x1, x2 = x[:, : self.split], x[:, self.split :]
        out = F.relu(self.bn1(self.conv1(x2)))
        out = self.bn2(self.conv2(out))
        out = F.relu(self.bn3(self.conv3(out)))
        return _channel_shuffle(torch.cat([x1, out], 1))


class _ShuffleDown(nn.Module):
    """ShuffleNetV2 stride-2 unit: two branches, each producing half the output channels."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        mid = out_channels // 2
        # left branch
        self.conv1 = nn.Conv2d(
            in_channels, in_channels, 3, stride=2, padding=1, groups=in_channels, bias=False
        )
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv2 = nn.Conv2d(in_channels, mid, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        # right branch
        self.conv3 = nn.Conv2d(in_channels, mid, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv4 = nn.Conv2d(mid, mid, 3, stride=2, padding=1, groups=mid, bias=False)
        self.bn4 = nn.BatchNorm2d(mid)
        self.conv5 = nn.Conv2d(mid, mid, 1, bias=False)
        self.bn5 = nn.BatchNorm2d(mid)

    def forward(self, x: Tensor) -> Tensor:
        out1 = self.bn1(self.conv1(x))
        out1 = F.relu(self.bn2(self.conv2(out1)))
        out2 = F.relu(self.bn3(self.conv3(x)))
        out2 = self.bn4(self.conv4(out2))
        out2 = F.relu(self.bn5(self.conv5(out2)))
        return _channel_shuffle(torch.cat([out1, out2], 1))


_SHUFFLENET_CONFIGS: dict[float, tuple[tuple[int, int, int, int], tuple[int, int, int]]] = {
    0.5: ((48, 96, 192, 1024), (3, 7, 3)),
    1.0: ((116, 232, 464, 1024), (3, 7, 3)),
    1.5: ((176, 352, 704, 1024), (3, 7, 3)),
    2.0: ((224, 488, 976, 2048), (3, 7, 3)),
}


class ShuffleNetV2(nn.Module):
    """CIFAR ShuffleNetV2; see :func:`shufflenet_v2`."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, net_size: float = 1.0) -> None:
        super().__init__()
        num_classes = positive_int("num_classes", num_classes)
        in_channels = positive_int("in_channels", in_channels)
        if isinstance(net_size, bool) or net_size not in _SHUFFLENET_CONFIGS:
            raise ValueError(
                f"net_size must be one of {sorted(_SHUFFLENET_CONFIGS)}, got {net_size!r}"
            )
        out_channels, num_blocks = _SHUFFLENET_CONFIGS[float(net_size)]
        self.conv1 = nn.Conv2d(in_channels, 24, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        in_planes = 24
        stages = []
        for out, n in zip(out_channels[:3], num_blocks, strict=True):
            # pytorch-cifar: one down-sampling unit followed by n stride-1 units.
            layers: list[nn.Module] = [_ShuffleDown(in_planes, out)]
            layers += [_ShuffleBasic(out) for _ in range(n)]
            stages.append(nn.Sequential(*layers))
            in_planes = out
        self.layer1, self.layer2, self.layer3 = stages
        self.conv2 = nn.Conv2d(in_planes, out_channels[3], 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels[3])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(out_channels[3], num_classes)
        _init_cnn(self)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.relu(self.bn2(self.conv2(out)))
        return self.linear(torch.flatten(self.pool(out), 1))


def shufflenet_v2(num_classes: int = 10, in_channels: int = 3, net_size: float = 1.0) -> nn.Module:
    """CIFAR ShuffleNetV2 of ``pytorch-cifar`` (3x3 stride-1 stem, no max-pool).

    Three stages (down-sampling unit + 3/7/3 basic units) and a 1x1 head conv; channel widths
    are those of the ShuffleNetV2 paper for the given ``net_size``.

    Args:
        num_classes: Number of output logits.
        in_channels: Input image channels.
        net_size: Width setting, one of ``0.5, 1, 1.5, 2``.

    Returns:
        The model (1,263,854 parameters for 10 classes at ``net_size=1``).

    Raises:
        ValueError: On non-positive sizes or an unknown ``net_size``.

    Example:
        >>> net = shufflenet_v2(in_channels=1, net_size=0.5)
        >>> net(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """
    return ShuffleNetV2(num_classes=num_classes, in_channels=in_channels, net_size=net_size)


# --------------------------------------------------------------------------- small models


class SmallCNN(nn.Module):
    """Three-conv CNN; see :func:`small_cnn`."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 32) -> None:
        super().__init__()
        num_classes = positive_int("num_classes", num_classes)
        in_channels = positive_int("in_channels", in_channels)
        width = positive_int("width", width)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(inplace=True),
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(inplace=True),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(2 * width, num_classes)
        _init_cnn(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(torch.flatten(self.pool(self.features(x)), 1))


def small_cnn(num_classes: int = 10, in_channels: int = 1, width: int = 32) -> nn.Module:
    """Small CPU-scale CNN: three 3x3 conv-BN-ReLU layers, global average pool, linear.

    Channels ``width, 2*width, 2*width`` with strides ``1, 2, 2``; works on any input of at
    least 1x1 pixels, including the 8x8 scikit-learn digits.

    Args:
        num_classes: Number of output logits.
        in_channels: Input image channels.
        width: Channels of the first conv layer.

    Returns:
        The model (56,554 parameters for 10 classes, 1 input channel, ``width=32``).

    Raises:
        ValueError: On non-positive sizes.

    Example:
        >>> small_cnn()(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """
    return SmallCNN(num_classes=num_classes, in_channels=in_channels, width=width)


class TwoConvCNN(nn.Module):
    """Two conv-ReLU-max-pool stages and a two-layer classifier; see :func:`two_conv_cnn`."""

    def __init__(
        self, num_classes: int = 10, in_channels: int = 1, width: int = 16, hidden: int = 64,
        image_size: int = 28,
    ) -> None:  # fmt: skip
        super().__init__()
        num_classes = positive_int("num_classes", num_classes)
        in_channels = positive_int("in_channels", in_channels)
        width = positive_int("width", width)
        hidden = positive_int("hidden", hidden)
        image_size = positive_int("image_size", image_size)
        if image_size % 4:
            raise ValueError(f"image_size must be a multiple of 4, got {image_size}")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(2 * width * (image_size // 4) ** 2, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )
        _init_cnn(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


def two_conv_cnn(
    num_classes: int = 10, in_channels: int = 1, width: int = 16, hidden: int = 64,
    image_size: int = 28,
) -> nn.Module:  # fmt: skip
    """The CNN of a first PyTorch tutorial: two 3x3 conv-ReLU-max-pool stages (``width`` and
    ``2 * width`` channels), then a hidden layer of ``hidden`` units and the logits.

    Args:
        num_classes: Number of output logits.
        in_channels: Input image channels.
        width: Channels of the first conv layer.
        hidden: Units of the hidden linear layer.
        image_size: Side of the (square) input images, a multiple of 4.

    Returns:
        The model (105,866 parameters for 10 classes on 1x28x28 images at the defaults).

    Raises:
        ValueError: On non-positive sizes or an image size that is no multiple of 4.

    Example:
        >>> model = two_conv_cnn()
        >>> model(torch.zeros(2, 1, 28, 28)).shape, count_parameters(model)
        (torch.Size([2, 10]), 105866)
    """
    return TwoConvCNN(num_classes, in_channels, width, hidden, image_size)


class MLP(nn.Module):
    """Fully connected ReLU network on flattened input; see :func:`mlp`."""

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        hidden: Sequence[int] = (256, 128),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_features = positive_int("in_features", in_features)
        num_classes = positive_int("num_classes", num_classes)
        dropout = number("dropout", dropout, 0.0, 1.0, high_open=True)
        if not isinstance(hidden, Sequence):
            raise ValueError(f"hidden must be a sequence of positive integers, got {hidden!r}")
        hidden = tuple(positive_int("hidden entries", h) for h in hidden)
        layers: list[nn.Module] = [nn.Flatten()]
        width = self.in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        features = x[0].numel() if x.dim() > 1 else x.numel()
        if features != self.in_features:
            raise ValueError(
                f"mlp expects {self.in_features} features per sample, got input of shape "
                f"{tuple(x.shape)} ({features} features)"
            )
        return self.net(x)


def mlp(
    in_features: int,
    num_classes: int,
    hidden: Sequence[int] = (256, 128),
    dropout: float = 0.0,
) -> nn.Module:
    """Multi-layer perceptron that flattens its input (``[B, ...] -> [B, in_features]``).

    Args:
        in_features: Features per sample after flattening (784 for 1x28x28, 3072 for
            3x32x32, 64 for 1x8x8).
        num_classes: Number of output logits.
        hidden: Hidden layer widths; ``()`` gives multinomial logistic regression.
        dropout: Dropout after each hidden ReLU, in ``[0, 1)``.

    Returns:
        The model (235,146 parameters for ``mlp(784, 10)``).

    Raises:
        ValueError: On non-positive sizes or a dropout outside ``[0, 1)``.

    Example:
        >>> mlp(64, 10)(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """
    return MLP(in_features=in_features, num_classes=num_classes, hidden=hidden, dropout=dropout)


# --------------------------------------------------------------------------- language model


class LSTMLanguageModel(nn.Module):
    """LSTM language model of PyTorch's ``word_language_model`` example, returning logits.

    Embedding -> dropout -> ``num_layers``-layer LSTM (batch first, dropout between layers) ->
    dropout -> linear decoder. Embedding and decoder weights are initialised uniform in
    ``[-0.1, 0.1]``, the decoder bias at zero, the LSTM keeps PyTorch's default init, exactly
    as in the example (the paper's Penn Treebank model). Works for word- and character-level
    vocabularies alike.

    Args:
        vocab_size: Number of tokens.
        embed_size: Embedding dimension.
        hidden_size: LSTM hidden size.
        num_layers: Number of LSTM layers, 1 to 3.
        dropout: Dropout probability on embeddings, between LSTM layers and on outputs.
        tie_weights: Share the decoder weight with the embedding (Press & Wolf, 2017); needs
            ``embed_size == hidden_size``.

    Raises:
        ValueError: On non-positive sizes, ``num_layers`` outside 1..3, a dropout outside
            ``[0, 1)``, or ``tie_weights`` with ``embed_size != hidden_size``.

    Example:
        >>> lm = LSTMLanguageModel(vocab_size=65, embed_size=16, hidden_size=16)
        >>> logits, hidden = lm(torch.zeros(2, 5, dtype=torch.long))
        >>> logits.shape, hidden[0].shape
        (torch.Size([2, 5, 65]), torch.Size([2, 2, 16]))
    """

    def __init__(
        self,
        vocab_size: int,
        embed_size: int = 200,
        hidden_size: int = 200,
        num_layers: int = 2,
        dropout: float = 0.2,
        tie_weights: bool = True,
    ) -> None:
        super().__init__()
        vocab_size = positive_int("vocab_size", vocab_size)
        embed_size = positive_int("embed_size", embed_size)
        hidden_size = positive_int("hidden_size", hidden_size)
        num_layers = positive_int("num_layers", num_layers)
        if num_layers > 3:
            raise ValueError(f"num_layers must be between 1 and 3, got {num_layers}")
        dropout = number("dropout", dropout, 0.0, 1.0, high_open=True)
        if tie_weights and embed_size != hidden_size:
            raise ValueError(
                "tie_weights=True requires embed_size == hidden_size, got "
                f"embed_size={embed_size} and hidden_size={hidden_size}"
            )
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.tie_weights = tie_weights
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(vocab_size, embed_size)
        self.rnn = nn.LSTM(
            embed_size,
            hidden_size,
            num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.decoder = nn.Linear(hidden_size, vocab_size)
        if tie_weights:
            self.decoder.weight = self.encoder.weight
        self.init_weights()

    def init_weights(self) -> None:
        """Uniform(-0.1, 0.1) embedding/decoder weights, zero decoder bias."""
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        if not self.tie_weights:
            nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    def init_hidden(
        self, batch_size: int, device: torch.device | str | None = None
    ) -> tuple[Tensor, Tensor]:
        """Zero initial state ``(h, c)``, each ``[num_layers, batch_size, hidden_size]``.

        Args:
            batch_size: Batch size.
            device: Device of the state; defaults to the model's device.

        Returns:
            The tuple ``(h, c)``.
        """
        batch_size = positive_int("batch_size", batch_size)
        weight = self.decoder.bias
        shape = (self.num_layers, batch_size, self.hidden_size)
        device = weight.device if device is None else device
        return (
            torch.zeros(shape, dtype=weight.dtype, device=device),
            torch.zeros(shape, dtype=weight.dtype, device=device),
        )

    def forward(
        self, tokens: Tensor, hidden: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """Logits for every position.

        Args:
            tokens: Token ids, ``LongTensor[B, T]``.
            hidden: Previous ``(h, c)`` state (each ``[num_layers, B, hidden_size]``), or
                ``None`` for zeros. Detach it between truncated-BPTT segments.

        Returns:
            ``(logits[B, T, vocab_size], (h, c))``.
        """
        if tokens.dim() != 2:
            raise ValueError(f"tokens must have shape [B, T], got {tuple(tokens.shape)}")
        emb = self.drop(self.encoder(tokens))
        output, hidden = self.rnn(emb, hidden)
        return self.decoder(self.drop(output)), hidden


class _CausalBlock(nn.Module):
    """Pre-norm Transformer block: causal self-attention and a 4x GELU MLP, residual."""

    def __init__(self, embed_size: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(embed_size)
        self.attn = nn.MultiheadAttention(embed_size, num_heads, dropout=dropout, batch_first=True)
        self.ln2 = nn.LayerNorm(embed_size)
        self.mlp = nn.Sequential(
            nn.Linear(embed_size, 4 * embed_size),
            nn.GELU(),
            nn.Linear(4 * embed_size, embed_size),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        h = self.ln1(x)
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


class CharTransformer(nn.Module):
    """A small GPT (nanoGPT's layout) for character-level language modelling.

    Token and learned position embeddings -> ``num_layers`` pre-norm causal blocks ->
    LayerNorm -> a decoder tied to the token embedding. Normal(0, 0.02) initialisation as
    GPT-2. ``forward(tokens, state=None)`` returns ``(logits, None)``: the same call as
    :class:`LSTMLanguageModel`, with no state carried between windows (the context is the
    window, ``block_size`` tokens at most).

    Args:
        vocab_size: Number of tokens.
        block_size: Longest window (positions).
        embed_size: Model width.
        num_layers: Transformer blocks.
        num_heads: Attention heads (must divide ``embed_size``).
        dropout: Dropout in attention and MLP, in ``[0, 1)``.

    Raises:
        ValueError: On non-positive sizes, heads that do not divide the width, or a dropout
            outside ``[0, 1)``.

    Example:
        >>> gpt = CharTransformer(vocab_size=65, block_size=16, embed_size=32, num_heads=4)
        >>> logits, state = gpt(torch.zeros(2, 16, dtype=torch.long))
        >>> logits.shape, state
        (torch.Size([2, 16, 65]), None)
    """

    def __init__(
        self,
        vocab_size: int,
        block_size: int = 64,
        embed_size: int = 64,
        num_layers: int = 2,
        num_heads: int = 4,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.vocab_size = positive_int("vocab_size", vocab_size)
        self.block_size = positive_int("block_size", block_size)
        embed_size = positive_int("embed_size", embed_size)
        num_layers = positive_int("num_layers", num_layers)
        num_heads = positive_int("num_heads", num_heads)
        dropout = number("dropout", dropout, 0.0, 1.0, high_open=True)
        if embed_size % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide embed_size={embed_size}")
        self.tokens = nn.Embedding(vocab_size, embed_size)
        self.positions = nn.Embedding(block_size, embed_size)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            _CausalBlock(embed_size, num_heads, dropout) for _ in range(num_layers)
        )
        self.ln = nn.LayerNorm(embed_size)
        self.decoder = nn.Linear(embed_size, vocab_size, bias=False)
        self.decoder.weight = self.tokens.weight
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, 0.0, 0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, tokens: Tensor, state: object = None) -> tuple[Tensor, None]:
        """Logits for every position; ``state`` is accepted and ignored (no recurrence).

        Args:
            tokens: Token ids, ``LongTensor[B, T]`` with ``T <= block_size``.
            state: Ignored.

        Returns:
            ``(logits[B, T, vocab_size], None)``.
        """
        del state
        if tokens.dim() != 2 or tokens.shape[1] > self.block_size:
            raise ValueError(
                f"tokens must have shape [B, T] with T <= {self.block_size}, "
                f"got {tuple(tokens.shape)}"
            )
        length = tokens.shape[1]
        mask = torch.ones(length, length, dtype=torch.bool, device=tokens.device).triu(1)
        x = self.drop(self.tokens(tokens) + self.positions.weight[:length])
        for block in self.blocks:
            x = block(x, mask)
        return self.decoder(self.ln(x)), None


# --------------------------------------------------------------------------- parameter table


def parameter_table() -> str:
    """Markdown tables of parameter counts for the documented configurations (10 classes).

    This is what ``python -m mlrsnet.lab.tasks.models`` prints; ``docs/models.md`` embeds it.

    Returns:
        Two Markdown tables (image models with 3 and 1 input channels; MLPs and LMs).
    """
    image_rows = [
        ("ResNet-18 (pytorch-cifar)", "resnet18(in_channels=C)", lambda c: resnet18(10, c)),
        (
            "ResNet-10, width 16 (CPU Fashion-MNIST)",
            "resnet(10, C, blocks=(1, 1, 1, 1), width=16)",
            lambda c: resnet(10, c, blocks=(1, 1, 1, 1), width=16),
        ),
        ("WRN-28-10", "wide_resnet(28, 10, in_channels=C)", lambda c: wide_resnet(28, 10, 10, c)),
        ("WRN-16-2", "wide_resnet(16, 2, in_channels=C)", lambda c: wide_resnet(16, 2, 10, c)),
        ("MobileNetV2 (CIFAR)", "mobilenet_v2(in_channels=C)", lambda c: mobilenet_v2(10, c)),
        (
            "MobileNetV2 x0.5",
            "mobilenet_v2(in_channels=C, width_mult=0.5)",
            lambda c: mobilenet_v2(10, c, 0.5),
        ),
        *[
            (
                f"ShuffleNetV2 {s}x (CIFAR)",
                f"shufflenet_v2(in_channels=C, net_size={s})",
                lambda c, s=s: shufflenet_v2(10, c, s),
            )
            for s in (0.5, 1, 1.5, 2)
        ],
        ("Small CNN", "small_cnn(in_channels=C)", lambda c: small_cnn(10, c)),
    ]
    lines = [
        "| Model | Call (`num_classes=10`) | 3 channels | 1 channel |",
        "|---|---|---:|---:|",
    ]
    # Models are built on the meta device: no memory, no init cost, same parameter counts.
    with torch.device("meta"):
        for name, call, make in image_rows:
            n3, n1 = count_parameters(make(3)), count_parameters(make(1))
            lines.append(f"| {name} | `{call}` | {n3:,} | {n1:,} |")
    lines += ["", "| Model | Call | Parameters |", "|---|---|---:|"]
    other_rows = [
        ("MLP, digits 1x8x8", "mlp(64, 10)", lambda: mlp(64, 10)),
        ("MLP, 1x28x28", "mlp(784, 10)", lambda: mlp(784, 10)),
        ("MLP, 3x32x32", "mlp(3072, 10)", lambda: mlp(3072, 10)),
        ("LSTM LM, PTB word (tied)", "LSTMLanguageModel(10000)", lambda: LSTMLanguageModel(10000)),
        (
            "LSTM LM, PTB word medium (untied)",
            "LSTMLanguageModel(10000, 650, 650, tie_weights=False)",
            lambda: LSTMLanguageModel(10000, 650, 650, tie_weights=False),
        ),
        (
            "LSTM LM, char (65 symbols)",
            "LSTMLanguageModel(65, 128, 128)",
            lambda: LSTMLanguageModel(65, 128, 128),
        ),
    ]
    with torch.device("meta"):
        for name, call, make in other_rows:
            lines.append(f"| {name} | `{call}` | {count_parameters(make()):,} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(parameter_table())
