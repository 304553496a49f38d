"""MLRSNetPlusLR under DDP (gloo, 2 CPU processes): ranks reading different losses agree."""

import math
import os
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mlrsnet.plus import MLRSNetPlusLR, PlusNet

pytestmark = pytest.mark.skipif(
    not dist.is_available() or sys.platform == "win32", reason="needs torch.distributed with gloo"
)

WORLD = 2
STEPS = 30
TOTAL = 40


def rank_losses(rank: int) -> list[float]:
    """Each rank's own training losses: different scales and noise, one NaN on rank 1."""
    g = torch.Generator().manual_seed(100 + rank)
    losses = ((3.0 + rank) * torch.exp(-torch.linspace(0, 3, STEPS, dtype=torch.float64))
              + 0.3 * torch.rand(STEPS, generator=g, dtype=torch.float64)).tolist()  # fmt: skip
    if rank == 1:
        losses[12] = math.nan  # the mean over ranks is NaN: every rank skips that step
    return losses


def setup():
    torch.manual_seed(0)
    net = PlusNet(hidden=8)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3.0)  # strong loss weights: a different loss gives a different rate
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD([{"params": [model.weight], "lr": 0.2},
                                 {"params": [model.bias], "lr": 0.02}])  # fmt: skip
    return optimizer, net


def run(losses_per_step, torch_order: bool):
    """Rates for each step; ``losses_per_step[t]`` is a list of losses observed in step t."""
    optimizer, net = setup()
    scheduler = MLRSNetPlusLR(optimizer, net, total_steps=TOTAL)
    rates = []
    for losses in losses_per_step:
        if torch_order:
            for loss in losses:
                scheduler.observe(loss)
            scheduler.step()
        else:
            scheduler.step(torch.tensor(losses[0], dtype=torch.float64))
        rates.append(scheduler.get_last_lr())
    return {"rates": torch.tensor(rates, dtype=torch.float64),
            "num_nonfinite": scheduler.num_nonfinite, "count": scheduler.loss_state.count}  # fmt: skip


def worker(rank, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        torch.set_num_threads(1)
        losses = rank_losses(rank)
        result = {
            "paper": run([[v] for v in losses], torch_order=False),
            # torch's order, two observed losses per step on each rank
            "torch": run([[v, 0.5 * v] for v in losses], torch_order=True),
        }
        torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_ranks_with_different_losses_get_identical_rates(tmp_path):
    # fork: the children inherit the imported torch (spawn re-imports it: ~10 s more here)
    mp.start_processes(
        worker,
        args=(str(tmp_path / "init"), str(tmp_path)),
        nprocs=WORLD,
        join=True,
        start_method="fork",
    )
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    per_rank = [rank_losses(r) for r in range(WORLD)]
    mean = [sum(v) / WORLD for v in zip(*per_rank, strict=True)]
    for order in ("paper", "torch"):
        a, b = ranks[0][order], ranks[1][order]
        # identical on every rank: the all-reduced loss is the same number everywhere and the
        # host arithmetic after it is deterministic (otherwise DDP replicas drift apart)
        assert torch.equal(a["rates"], b["rates"]), order
        assert a["num_nonfinite"] == b["num_nonfinite"] == 1
        assert a["count"] == b["count"] == STEPS - 1
    # the loss read is the mean over ranks: a single process fed the mean gives the same rates
    # (another process: compared to 1e-12, though the arithmetic is the same)
    single = run([[v] for v in mean], torch_order=False)
    torch.testing.assert_close(ranks[0]["paper"]["rates"], single["rates"], rtol=0, atol=1e-12)
    single_torch = run([[v, 0.5 * v] for v in mean], torch_order=True)
    torch.testing.assert_close(
        ranks[0]["torch"]["rates"], single_torch["rates"], rtol=0, atol=1e-12
    )
    # and it is not what either rank alone would have set
    for r in range(WORLD):
        alone = run([[v] for v in per_rank[r]], torch_order=False)["rates"]
        assert (alone - single["rates"]).abs().max() > 1e-4
