"""The nanoGPT-style :class:`CharTransformer` of :mod:`mlrsnet.lab.tasks.models`."""

import math

import pytest
import torch
import torch.nn.functional as F

from mlrsnet.lab.tasks.models import CharTransformer

torch.set_num_threads(1)


def gpt(seed=0, **kw):
    torch.manual_seed(seed)
    kw = {"vocab_size": 11, "block_size": 12, "embed_size": 16, "num_heads": 4, **kw}
    return CharTransformer(**kw)


@pytest.mark.parametrize("batch,length", [(3, 12), (1, 1), (2, 5)])
def test_output_shape_and_no_state(batch, length):
    model = gpt()
    tokens = torch.randint(0, 11, (batch, length))
    logits, state = model(tokens)
    assert logits.shape == (batch, length, 11)
    assert state is None
    assert torch.isfinite(logits).all()
    # a state is accepted and ignored
    again, state = model(tokens, state=("anything",))
    assert state is None and torch.equal(again, logits)


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("j", [0, 4, 11])
def test_logits_are_causal(num_layers, j):
    model = gpt(num_layers=num_layers).eval()
    tokens = torch.randint(0, 11, (2, 12), generator=torch.Generator().manual_seed(3))
    changed = tokens.clone()
    changed[:, j] = (tokens[:, j] + 1) % 11
    with torch.no_grad():
        before, _ = model(tokens)
        after, _ = model(changed)
    # earlier positions never see position j: identical up to float rounding of the
    # attention kernels (1e-6 absolute; logits are ~0.1 here)
    torch.testing.assert_close(after[:, :j], before[:, :j], rtol=0.0, atol=1e-6)
    # and position j itself does see it
    assert (after[:, j] - before[:, j]).abs().max() > 1e-3


def test_causal_in_training_mode_with_gradients():
    # the prefix's loss has no gradient wrt later tokens' embeddings
    model = gpt()
    tokens = torch.tensor([[1, 2, 3, 4, 5, 6]])
    logits, _ = model(tokens)
    logits[:, :3].sum().backward()
    grad = model.positions.weight.grad
    assert grad[:3].abs().sum() > 0
    assert torch.equal(grad[3:], torch.zeros_like(grad[3:]))


def test_too_long_or_badly_shaped_input_raises():
    model = gpt(block_size=8)
    model(torch.zeros(1, 8, dtype=torch.long))  # exactly block_size is fine
    with pytest.raises(ValueError, match="8"):
        model(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError):
        model(torch.zeros(8, dtype=torch.long))


@pytest.mark.parametrize(
    "kw",
    [
        {"embed_size": 30, "num_heads": 4},
        {"embed_size": 16, "num_heads": 3},
        {"num_heads": 0},
        {"vocab_size": 0},
        {"block_size": 0},
        {"num_layers": 0},
        {"dropout": 1.0},
        {"dropout": -0.1},
    ],
)
def test_bad_settings_raise(kw):
    with pytest.raises(ValueError):
        gpt(**kw)


def test_heads_not_dividing_width_names_both():
    with pytest.raises(ValueError, match="num_heads=3.*embed_size=16"):
        gpt(embed_size=16, num_heads=3)


def test_decoder_is_tied_to_the_token_embedding():
    model = gpt()
    assert model.decoder.weight is model.tokens.weight
    assert model.decoder.bias is None
    # counted once among the parameters
    params = list(model.parameters())
    assert sum(p is model.tokens.weight for p in params) == 1
    # GPT-2 initialisation N(0, 0.02)
    assert model.tokens.weight.std().item() == pytest.approx(0.02, rel=0.25)
    # a change through one is a change of the other
    with torch.no_grad():
        model.tokens.weight[3].add_(1.0)
    assert torch.equal(model.decoder.weight[3], model.tokens.weight[3])


def test_a_few_adamw_steps_learn_a_repeated_sequence():
    model = gpt(dropout=0.1)
    sequence = torch.tensor([0, 3, 1, 4, 1, 5, 9, 2, 6, 5] * 2)
    inputs, targets = sequence[:12].unsqueeze(0), sequence[1:13].unsqueeze(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    losses = []
    for _ in range(30):
        logits, _ = model(inputs)
        loss = F.cross_entropy(logits.reshape(-1, 11), targets.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    # starts near a uniform guess, ln(11) = 2.4, and must have learnt most of the pattern
    assert losses[0] == pytest.approx(math.log(11), abs=0.3)
    assert losses[-1] < 0.5 * losses[0]  # measured: 2.4 -> 0.4-0.5
