"""Accelerate: a scheduler wrapped by ``accelerator.prepare``, bf16 autocast and accumulation."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import mlrsnet

accelerate = pytest.importorskip("accelerate")

BATCHES, BATCH_SIZE = 12, 8


def _reset():
    """Accelerate's singletons, which a Hugging Face Trainer run before leaves configured."""
    accelerate.state.AcceleratorState._reset_state(reset_partial_state=True)
    accelerate.state.GradientState._reset_state()


@pytest.fixture(autouse=True)
def _fresh_state():
    _reset()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"accelerate\..*")
        yield
    _reset()


def batches():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(BATCHES, BATCH_SIZE, 5, generator=g)
    return [(xb, xb.sum(1, keepdim=True).sin()) for xb in x]


def build():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.5)
    return model, optimizer, mlrsnet.MLRSNetLR(optimizer, mlrsnet.MLRSNet())


def with_accelerate(mixed_precision, accumulate):
    accelerator = accelerate.Accelerator(cpu=True, mixed_precision=mixed_precision,
                                         gradient_accumulation_steps=accumulate)  # fmt: skip
    model, optimizer, scheduler = build()
    model, optimizer, prepared = accelerator.prepare(model, optimizer, scheduler)
    assert prepared is not scheduler and prepared.scheduler is scheduler  # a wrapper
    lrs = []
    for x, y in batches():
        with accelerator.accumulate(model):
            loss = nn.functional.mse_loss(model(x), y)
            accelerator.backward(loss)
            scheduler.observe(loss)  # the scheduler built above: the wrapper has no observe
            if accelerator.sync_gradients:
                lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            prepared.step()  # steps the scheduler only after a real optimizer step
            optimizer.zero_grad()
    return lrs, scheduler


def by_hand(mixed_precision, accumulate):
    model, optimizer, scheduler = build()
    lrs = []
    data = batches()
    for start in range(0, len(data), accumulate):
        for x, y in data[start : start + accumulate]:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mixed_precision == "bf16"):
                out = model(x)
            loss = nn.functional.mse_loss(out.float(), y)
            (loss / accumulate).backward()
            scheduler.observe(loss)
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    return lrs, scheduler


@pytest.mark.parametrize(("mixed_precision", "accumulate"), [("no", 1), ("bf16", 3)])
def test_a_prepared_scheduler_gives_the_learning_rates_of_a_hand_written_loop(
    mixed_precision, accumulate
):
    got, scheduler = with_accelerate(mixed_precision, accumulate)
    expected, reference = by_hand(mixed_precision, accumulate)
    assert got == expected and len(got) == BATCHES // accumulate
    assert len(set(got)) == len(got)
    assert scheduler.num_steps == BATCHES // accumulate  # once per optimizer step: the mean
    assert scheduler.get_last_lr() == reference.get_last_lr()
    assert scheduler.observed_count == 0


def test_repeated_steps_of_several_processes_read_the_loss_once():
    # without split_batches a prepared scheduler is stepped once per process after each
    # optimizer step; the first step reads the observed loss, the others keep the lr
    _, _, once = build()
    _, _, repeated = build()
    for loss in [2.0, 1.5, 1.2, 0.9]:
        once.observe(loss)
        once.step()
        repeated.observe(loss)
        for _ in range(4):
            repeated.step()
        assert repeated.get_last_lr() == once.get_last_lr()
    assert repeated.num_steps == once.num_steps == 4
