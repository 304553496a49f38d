"""Tests for mlrsnet.lab.tasks.models: shapes, gradients, parameter counts, errors."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest
import torch
from torch import nn

from mlrsnet.lab.tasks import models
from mlrsnet.lab.tasks.models import (
    LSTMLanguageModel,
    count_parameters,
    mlp,
    mobilenet_v2,
    parameter_table,
    resnet,
    resnet18,
    shufflenet_v2,
    small_cnn,
    wide_resnet,
)

NUM_CLASSES = 7  # not 10, so a hard-coded class count would show up

# name -> factory(in_channels, num_classes); widths reduced where the full model is slow.
IMAGE_MODELS = {
    "resnet18": lambda c, k: resnet18(num_classes=k, in_channels=c),
    "resnet_1111_w16": lambda c, k: resnet(k, c, blocks=(1, 1, 1, 1), width=16),
    "wrn_16_2": lambda c, k: wide_resnet(16, 2, num_classes=k, in_channels=c, dropout=0.3),
    "mobilenet_v2": lambda c, k: mobilenet_v2(num_classes=k, in_channels=c),
    "mobilenet_v2_x0.5": lambda c, k: mobilenet_v2(num_classes=k, in_channels=c, width_mult=0.5),
    "shufflenet_v2": lambda c, k: shufflenet_v2(num_classes=k, in_channels=c),
    "shufflenet_v2_x0.5": lambda c, k: shufflenet_v2(num_classes=k, in_channels=c, net_size=0.5),
    "small_cnn": lambda c, k: small_cnn(num_classes=k, in_channels=c, width=8),
}

SHAPES = {"mnist": (2, 1, 28, 28), "cifar": (2, 3, 32, 32), "digits": (2, 1, 8, 8)}


def _build(name: str, shape: tuple[int, ...]) -> nn.Module:
    channels = shape[1]
    if name == "mlp":
        features = channels * shape[2] * shape[3]
        return mlp(features, NUM_CLASSES, hidden=(32, 16), dropout=0.1)
    return IMAGE_MODELS[name](channels, NUM_CLASSES)


def _check_forward_backward(model: nn.Module, x: torch.Tensor) -> None:
    model.train()
    logits = model(x)
    assert logits.shape == (x.shape[0], NUM_CLASSES)
    assert torch.isfinite(logits).all()
    logits.logsumexp(dim=1).sum().backward()  # depends on every logit
    for name, p in model.named_parameters():
        assert p.grad is not None, f"no gradient for {name}"
        assert torch.isfinite(p.grad).all(), f"non-finite gradient for {name}"


@pytest.mark.parametrize("shape", ["mnist", "cifar"])
@pytest.mark.parametrize("name", [*IMAGE_MODELS, "mlp"])
def test_image_model_forward_backward(name: str, shape: str) -> None:
    torch.manual_seed(0)
    size = SHAPES[shape]
    _check_forward_backward(_build(name, size), torch.randn(size))


@pytest.mark.parametrize("name", ["small_cnn", "mlp"])
def test_digits_models_accept_8x8(name: str) -> None:
    torch.manual_seed(0)
    size = SHAPES["digits"]
    _check_forward_backward(_build(name, size), torch.randn(size))


def test_small_cnn_default_width_on_digits() -> None:
    _check_forward_backward(small_cnn(NUM_CLASSES), torch.randn(2, 1, 8, 8))


def test_mlp_accepts_flat_input_and_rejects_wrong_size() -> None:
    net = mlp(64, NUM_CLASSES, hidden=())
    assert net(torch.randn(2, 64)).shape == (2, NUM_CLASSES)
    assert count_parameters(net) == 64 * NUM_CLASSES + NUM_CLASSES
    with pytest.raises(ValueError, match="64 features"):
        net(torch.randn(2, 1, 28, 28))


def test_eval_mode_is_deterministic() -> None:
    net = wide_resnet(16, 1, num_classes=NUM_CLASSES, dropout=0.5).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(net(x), net(x))


# ----------------------------------------------------------------- parameter counts

# Computed once from the implementation; the 3-channel 10-class ones match pytorch-cifar's
# ResNet18 / MobileNetV2 / ShuffleNetV2 and the reference WRN-28-10 (36.48 M).
PARAM_COUNTS = {
    "resnet18": (lambda: resnet18(), 11_173_962),
    "resnet18_1ch": (lambda: resnet18(in_channels=1), 11_172_810),
    "resnet_1111_w16_1ch": (lambda: resnet(10, 1, blocks=(1, 1, 1, 1), width=16), 308_538),
    "resnet_1111_w16": (lambda: resnet(10, 3, blocks=(1, 1, 1, 1), width=16), 308_826),
    "wrn_28_10": (lambda: wide_resnet(28, 10), 36_479_194),
    "wrn_16_2": (lambda: wide_resnet(16, 2), 691_674),
    "mobilenet_v2": (lambda: mobilenet_v2(), 2_296_922),
    "mobilenet_v2_1ch": (lambda: mobilenet_v2(in_channels=1), 2_296_346),
    "shufflenet_v2_0.5": (lambda: shufflenet_v2(net_size=0.5), 352_042),
    "shufflenet_v2_1": (lambda: shufflenet_v2(net_size=1), 1_263_854),
    "shufflenet_v2_1.5": (lambda: shufflenet_v2(net_size=1.5), 2_488_874),
    "shufflenet_v2_2": (lambda: shufflenet_v2(net_size=2), 5_338_026),
    "small_cnn_1ch": (lambda: small_cnn(), 56_554),
    "small_cnn_3ch": (lambda: small_cnn(in_channels=3), 57_130),
    "mlp_784": (lambda: mlp(784, 10), 235_146),
    "mlp_64": (lambda: mlp(64, 10), 50_826),
}


@pytest.mark.parametrize("name", list(PARAM_COUNTS))
def test_parameter_counts(name: str) -> None:
    factory, expected = PARAM_COUNTS[name]
    assert count_parameters(factory()) == expected


def test_resnet_defaults_are_resnet18() -> None:
    assert count_parameters(resnet()) == count_parameters(resnet18())


def test_count_parameters_trainable_only_and_shared() -> None:
    net = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 2))
    net[1].weight.requires_grad_(False)
    assert count_parameters(net) == 8 + 6
    assert count_parameters(net, trainable_only=True) == 8 + 2


# ----------------------------------------------------------------- LSTM language model


@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_lstm_lm_carried_hidden_state(num_layers: int) -> None:
    torch.manual_seed(0)
    vocab, batch, steps = 50, 2, 5
    lm = LSTMLanguageModel(vocab, embed_size=16, hidden_size=16, num_layers=num_layers)
    lm.train()
    hidden = lm.init_hidden(batch)
    assert all(h.shape == (num_layers, batch, 16) for h in hidden)
    data = torch.randint(vocab, (batch, 3 * steps + 1))
    for start in range(0, 3 * steps, steps):
        hidden = tuple(h.detach() for h in hidden)
        lm.zero_grad()
        tokens, targets = data[:, start : start + steps], data[:, start + 1 : start + steps + 1]
        logits, hidden = lm(tokens, hidden)
        assert logits.shape == (batch, steps, vocab)
        loss = nn.functional.cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1))
        loss.backward()
        for name, p in lm.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert isinstance(hidden, tuple) and len(hidden) == 2
    assert all(h.shape == (num_layers, batch, 16) for h in hidden)


def test_lstm_lm_split_sequence_matches_full_sequence() -> None:
    torch.manual_seed(0)
    lm = LSTMLanguageModel(30, embed_size=8, hidden_size=8, num_layers=2).eval()
    tokens = torch.randint(30, (3, 8))
    with torch.no_grad():
        full, _ = lm(tokens)
        first, hidden = lm(tokens[:, :4])
        second, _ = lm(tokens[:, 4:], hidden)
    torch.testing.assert_close(torch.cat([first, second], 1), full)


def test_lstm_lm_tied_weights_share_storage() -> None:
    lm = LSTMLanguageModel(40, embed_size=12, hidden_size=12, tie_weights=True)
    assert lm.decoder.weight is lm.encoder.weight
    assert lm.decoder.weight.data_ptr() == lm.encoder.weight.data_ptr()
    untied = LSTMLanguageModel(40, embed_size=12, hidden_size=12, tie_weights=False)
    assert count_parameters(untied) - count_parameters(lm) == 40 * 12


def test_lstm_lm_untied_different_sizes() -> None:
    lm = LSTMLanguageModel(40, embed_size=6, hidden_size=10, num_layers=1, tie_weights=False)
    assert lm.decoder.weight.data_ptr() != lm.encoder.weight.data_ptr()
    logits, (h, c) = lm(torch.randint(40, (2, 3)))
    assert logits.shape == (2, 3, 40) and h.shape == c.shape == (1, 2, 10)
    logits.sum().backward()
    assert lm.encoder.weight.grad is not None and lm.decoder.weight.grad is not None


def test_lstm_lm_char_level_vocab() -> None:
    lm = LSTMLanguageModel(65, embed_size=32, hidden_size=32, num_layers=2, dropout=0.0)
    logits, _ = lm(torch.randint(65, (2, 7)))
    assert logits.shape == (2, 7, 65)


def test_lstm_lm_init() -> None:
    lm = LSTMLanguageModel(100, embed_size=20, hidden_size=20, tie_weights=False)
    assert lm.encoder.weight.abs().max() <= 0.1
    assert lm.decoder.weight.abs().max() <= 0.1
    assert torch.count_nonzero(lm.decoder.bias) == 0
    h, c = lm.init_hidden(4)
    assert h.shape == c.shape == (2, 4, 20) and not h.any() and not c.any()
    # Default paper-sized model: 2 layers of 200 units, tied.
    assert count_parameters(LSTMLanguageModel(10_000)) == 2_653_200


# ----------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (lambda: resnet(num_classes=0), "num_classes"),
        (lambda: resnet(in_channels=-1), "in_channels"),
        (lambda: resnet(width=0), "width"),
        (lambda: resnet(blocks=(2, 2, 2)), "blocks"),
        (lambda: resnet(blocks=(2, 0, 2, 2)), "blocks"),
        (lambda: resnet(blocks=2), "blocks"),
        (lambda: resnet18(num_classes=0), "num_classes"),
        (lambda: wide_resnet(depth=27), "depth"),
        (lambda: wide_resnet(widen_factor=0), "widen_factor"),
        (lambda: wide_resnet(dropout=1.0), "dropout"),
        (lambda: mobilenet_v2(width_mult=0), "width_mult"),
        (lambda: mobilenet_v2(num_classes=-3), "num_classes"),
        (lambda: shufflenet_v2(net_size=3), "net_size"),
        (lambda: shufflenet_v2(in_channels=0), "in_channels"),
        (lambda: small_cnn(width=0), "width"),
        (lambda: mlp(0, 10), "in_features"),
        (lambda: mlp(10, 0), "num_classes"),
        (lambda: mlp(10, 10, hidden=(16, 0)), "hidden"),
        (lambda: mlp(10, 10, hidden=16), "hidden"),
        (lambda: mlp(10, 10, dropout=-0.1), "dropout"),
        (lambda: LSTMLanguageModel(0), "vocab_size"),
        (lambda: LSTMLanguageModel(10, embed_size=0, tie_weights=False), "embed_size"),
        (lambda: LSTMLanguageModel(10, hidden_size=-1, tie_weights=False), "hidden_size"),
        (lambda: LSTMLanguageModel(10, num_layers=0), "num_layers"),
        (lambda: LSTMLanguageModel(10, num_layers=4), "num_layers"),
        (lambda: LSTMLanguageModel(10, dropout=1.5), "dropout"),
    ],
)
def test_bad_arguments_raise_value_error(factory, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        factory()


def test_tie_weights_size_mismatch_message() -> None:
    with pytest.raises(ValueError, match="embed_size == hidden_size"):
        LSTMLanguageModel(10, embed_size=8, hidden_size=16, tie_weights=True)


def test_docstring_examples() -> None:
    result = doctest.testmod(models, extraglobs={"torch": torch, "nn": nn})
    assert result.failed == 0 and result.attempted > 0


def test_docs_parameter_table_is_current() -> None:
    doc = (Path(__file__).resolve().parents[3] / "docs" / "models.md").read_text()
    begin, end = "<!-- BEGIN parameter table -->\n", "\n<!-- END parameter table -->"
    embedded = doc[doc.index(begin) + len(begin) : doc.index(end)]
    assert embedded == parameter_table(), "regenerate with: python -m mlrsnet.lab.tasks.models"
