"""The loss-driven mechanism both schedulers share, and its non-blocking (lagged) loss reading.

The lagged path's logic runs here on CPU, where a loss is held instead of copied to pinned
memory; ``benchmarks/gpu_nosync.py`` runs it on a GPU under ``set_sync_debug_mode("error")``.
"""

from __future__ import annotations

import io
import json
import math

import pytest
import torch

import mlrsnet
from mlrsnet.lossdriven import LaggedLosses, LossDrivenLR, check_loss
from mlrsnet.plus import MLRSNetPlusLR, PlusNet

TOTAL = 40


def losses(n: int = TOTAL, seed: int = 0) -> list:
    """Falling noisy losses as float32 tensors, one NaN and one Python float among them."""
    g = torch.Generator().manual_seed(seed)
    values = (2.0 * torch.exp(-torch.arange(n) / 15) + 0.1 * torch.rand(n, generator=g)).float()
    out: list = list(values)
    out[7] = torch.tensor(math.nan)
    out[11] = float(out[11])
    return out


def plus_net(seed: int = 0) -> PlusNet:
    torch.manual_seed(seed)
    net = PlusNet(hidden=8)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3.0)
    return net


NETS = {"mlrsnet": mlrsnet.MLRSNet(), "plus": plus_net()}


def make(kind: str, lag: int, *, groups: int = 1, fast: bool = True) -> LossDrivenLR:
    model = torch.nn.Linear(3, 2)
    params = [{"params": [model.weight]}, {"params": [model.bias], "lr": 0.05}][:groups]
    optimizer = torch.optim.SGD(params, lr=0.1)
    if kind == "mlrsnet":
        return mlrsnet.MLRSNetLR(optimizer, NETS["mlrsnet"], loss_lag=lag, fast=fast)
    return MLRSNetPlusLR(optimizer, NETS["plus"], total_steps=TOTAL, loss_lag=lag)


def run(scheduler: LossDrivenLR, values: list, torch_order: bool = False) -> list:
    rates = []
    for loss in values:
        if torch_order:
            scheduler.observe(loss)
            scheduler.step()
        else:
            scheduler.step(loss)
        rates.append(scheduler.get_last_lr())
    return rates


# ------------------------------------------------------------------------- LaggedLosses


def test_lagged_losses_come_back_lag_pushes_later_as_floats():
    lagged = LaggedLosses(3)
    got = [lagged.push(v) for v in (torch.tensor(1.5), 2.0, torch.tensor([[3.0]]), 4, 5.0)]
    assert got == [None, None, None, 1.5, 2.0]
    assert all(isinstance(v, float) for v in got[3:])
    assert lagged.waiting() == [3.0, 4.0, 5.0]
    lagged.restore([7.0])
    assert [lagged.push(8.0) for _ in range(3)] == [None, None, 7.0]
    assert lagged.num_waits == 0  # nothing to wait for off a GPU


def test_a_lagged_float32_loss_reads_as_its_exact_value():
    value = torch.tensor(0.1, dtype=torch.float32)
    lagged = LaggedLosses(1)
    lagged.push(value)
    assert lagged.push(0.0) == value.item()  # float32 to float64 is exact


@pytest.mark.parametrize("lag", [0, -1, 1.0, True, None])
def test_a_bad_lag_is_refused(lag):
    with pytest.raises(ValueError, match="lag"):
        LaggedLosses(lag)
    for kind in NETS:
        with pytest.raises(ValueError, match="loss_lag"):
            make(kind, lag if lag != 0 else -2)


def test_check_loss_names_the_scheduler_and_method():
    with pytest.raises(TypeError, match=r"MyLR\.observe\(loss\).*str"):
        check_loss("1.0", "observe", "MyLR")
    with pytest.raises(ValueError, match="scalar"):
        check_loss(torch.ones(3), "step", "MyLR")


# ----------------------------------------------------------- the lagged rates, exactly


@pytest.mark.parametrize("kind", sorted(NETS))
@pytest.mark.parametrize("lag", [1, 2])
@pytest.mark.parametrize("torch_order", [False, True])
def test_lagged_rates_are_the_reference_rates_lag_steps_later(kind, lag, torch_order):
    values = losses()
    reference = make(kind, 0, groups=2)
    initial = reference.get_last_lr()
    expected = [initial] * lag + run(reference, values, torch_order)[:-lag]
    lagged = make(kind, lag, groups=2)
    assert lagged.get_last_lr() == initial
    assert run(lagged, values, torch_order) == expected
    assert lagged.num_lag_waits == 0


@pytest.mark.parametrize("kind", sorted(NETS))
def test_lagged_accumulated_losses_are_the_mean_the_reference_reads(kind):
    chunks = [[1.9, torch.tensor(2.1)], [torch.tensor(1.7)], [1.5, 1.4, torch.tensor(1.6)]] * 4
    reference, lagged = make(kind, 0), make(kind, 1)
    expected, got = [reference.get_last_lr()], []
    for chunk in chunks:
        for scheduler in (reference, lagged):
            for loss in chunk:
                scheduler.observe(loss)
            scheduler.step()
        expected.append(reference.get_last_lr())
        got.append(lagged.get_last_lr())
    assert got == expected[:-1]


def test_mlrsnet_lagged_torch_path_matches_the_numpy_path_to_float32_rounding():
    values = losses()
    fast = run(make("mlrsnet", 1), values)
    torch_path = make("mlrsnet", 1, fast=False)
    slow = run(torch_path, values)
    assert torch_path.num_nonfinite == 1
    # the net in float32
    assert [r[0] for r in slow] == pytest.approx([r[0] for r in fast], rel=1e-6)


@pytest.mark.parametrize("kind", sorted(NETS))
def test_a_lagged_non_finite_loss_is_skipped_when_it_is_read(kind):
    values = [torch.tensor(1.0), torch.tensor(math.inf), torch.tensor(0.9), torch.tensor(0.8)]
    scheduler = make(kind, 1)
    rates = run(scheduler, values)
    assert scheduler.num_nonfinite == 1
    assert rates[2] == rates[1]  # the inf, read at step 2, kept the rate
    assert all(math.isfinite(r[0]) and r[0] > 0 for r in rates)


# ---------------------------------------------------------------------------- resume


def save_and_load(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("kind", sorted(NETS))
@pytest.mark.parametrize("torch_order", [False, True])
def test_a_lagged_run_resumes_with_its_waiting_losses(kind, torch_order):
    values = losses()
    expected = run(make(kind, 2), values, torch_order)
    first = make(kind, 2)
    got = run(first, values[:20], torch_order)
    state = save_and_load(first.state_dict())
    if kind == "plus":
        json.dumps(state)  # MLRSNet+'s state stays plain numbers
        assert state["_lagged_losses"] == [float(values[18]), float(values[19])]
    else:
        assert state["lagged_losses"].tolist() == [float(values[18]), float(values[19])]
    resumed = make(kind, 2)
    resumed.load_state_dict(state)
    got += run(resumed, values[20:], torch_order)
    assert got == expected


@pytest.mark.parametrize("kind", sorted(NETS))
def test_more_lagged_losses_than_the_lag_are_refused(kind):
    scheduler = make(kind, 2)
    run(scheduler, losses()[:5])
    state = scheduler.state_dict()
    key = "_lagged_losses" if kind == "plus" else "lagged_losses"
    state[key] = [1.0, 2.0, 3.0] if kind == "plus" else torch.tensor([1.0, 2.0, 3.0])
    before = scheduler.get_last_lr()
    with pytest.raises(ValueError, match="lagged"):
        make(kind, 2).load_state_dict(state)
    state[key] = [1.0] if kind == "plus" else torch.tensor([1.0])
    with pytest.raises(ValueError, match="lagged"):
        make(kind, 0).load_state_dict(state)  # saved with a lag, loaded without one
    assert scheduler.get_last_lr() == before


def test_an_unlagged_state_loads_into_a_lagged_scheduler_with_nothing_waiting():
    values = losses()
    first = make("mlrsnet", 0)
    run(first, values[:10])
    state = first.state_dict()
    del state["lagged_losses"]  # as saved before the key existed
    resumed = make("mlrsnet", 1)
    resumed.load_state_dict(state)
    rates = run(resumed, values[10:12])
    assert rates[0] == first.get_last_lr()  # nothing was waiting: the rate stays one step
