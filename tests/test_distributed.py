"""DDP with the gloo backend and 2 processes: identical schedules on all ranks, equal to one process."""

import os
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import mlrsnet

pytestmark = pytest.mark.skipif(
    not dist.is_available() or sys.platform == "win32", reason="needs torch.distributed with gloo"
)

WORLD = 2
STEPS = 8


def data():
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(16, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (16,), generator=g))
               for _ in range(STEPS)]  # fmt: skip
    meta = (
        torch.randn(16, 6, generator=g, dtype=torch.float64),
        torch.randint(0, 3, (16,), generator=g),
    )
    return batches, meta


def setup():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    net = mlrsnet.MLRSNet().double()
    return model, net


def train(model, net, batches, meta, shard=None):
    """Meta-train for STEPS steps; ``shard(x)`` picks this rank's part of a batch."""
    shard = shard or (lambda t: t)
    inner = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.3, momentum=0.9, weight_decay=5e-4)
    scheduler = mlrsnet.MLRSNetLR(optimizer, net)
    trainer = mlrsnet.MetaTrainer(model, optimizer, scheduler, torch.optim.Adam(net.parameters(), lr=1e-2),
                                  nn.functional.cross_entropy, meta_interval=2)  # fmt: skip
    lrs = []
    for x, y in batches:
        stats = trainer.step((shard(x), shard(y)), meta_batch=(shard(meta[0]), shard(meta[1])))
        lrs.append(stats["lr"])
    return {
        "lrs": torch.tensor(lrs, dtype=torch.float64),
        "net": {k: v.detach().clone() for k, v in net.state_dict().items()},
        "model": {k: v.detach().clone() for k, v in inner.state_dict().items()},
        "meta_steps": trainer.num_meta_steps,
    }


def worker(rank, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        torch.set_num_threads(1)
        model, net = setup()
        ddp = nn.parallel.DistributedDataParallel(model)
        batches, meta = data()
        per_rank = 16 // WORLD
        result = train(
            ddp, net, batches, meta, shard=lambda t: t[rank * per_rank : (rank + 1) * per_rank]
        )
        torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_ranks_agree_and_match_one_process_on_the_whole_batch(tmp_path):
    mp.spawn(worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    # every rank sets the identical learning rate each step and holds the identical network
    assert torch.equal(ranks[0]["lrs"], ranks[1]["lrs"])
    for key in ranks[0]["net"]:
        assert torch.equal(ranks[0]["net"][key], ranks[1]["net"][key]), key
    assert ranks[0]["meta_steps"] == STEPS // 2
    # and it is the single-process run on the concatenated batches, to float tolerance
    model, net = setup()
    batches, meta = data()
    single = train(model, net, batches, meta)
    torch.testing.assert_close(ranks[0]["lrs"], single["lrs"], rtol=1e-10, atol=1e-12)
    for key in single["net"]:
        torch.testing.assert_close(ranks[0]["net"][key], single["net"][key], rtol=1e-8, atol=1e-10)
    for key in single["model"]:
        torch.testing.assert_close(
            ranks[0]["model"][key], single["model"][key], rtol=1e-8, atol=1e-10
        )
    assert not torch.equal(single["net"]["head.weight"], setup()[1].state_dict()["head.weight"])
