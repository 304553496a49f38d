"""Meta-train a schedule network with DDP on several processes (CPU/gloo or CUDA/nccl).

    torchrun --nproc_per_node 2 examples/ddp_meta_train.py --epochs 5

Each rank trains on its shard of every batch and meta batch. ``MLRSNetLR`` reads the
mean training loss over ranks (one small all-reduce a step), so every rank sets the
same learning rate; ``MetaTrainer`` averages the meta-gradient over ranks, so the
schedule network stays identical everywhere. Rank 0 saves it.
"""

import argparse
import os

import torch
import torch.distributed as dist
from torch import nn

import mlrsnet
from mlrsnet.lab import tasks


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", default="digits-mlp")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64, help="global batch size")
    parser.add_argument("--meta-interval", type=int, default=2)
    parser.add_argument("--out", default="ddp-schedule.safetensors")
    args = parser.parse_args()

    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = (
        torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if cuda else torch.device("cpu")
    )
    if cuda:
        torch.cuda.set_device(device)
    if args.batch_size % world:
        raise SystemExit(f"--batch-size {args.batch_size} must be divisible by the {world} ranks")
    shard = args.batch_size // world

    task = tasks.get(args.task, seed=0)
    model = nn.parallel.DistributedDataParallel(task.build_model(seed=0, device=device))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = mlrsnet.MLRSNet()  # identical on every rank
    initial = task.evaluate(model.module, device=device)["loss"]
    gamma = mlrsnet.paper_gamma(initial, task.num_classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=gamma, weight_decay=5e-4)
    scheduler = mlrsnet.MLRSNetLR(optimizer, net)
    meta_optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-4)
    trainer = mlrsnet.MetaTrainer(model, optimizer, scheduler, meta_optimizer, task.loss_fn,
                                  meta_interval=args.meta_interval)  # fmt: skip
    meta = task.meta_loader(args.batch_size, seed=0, device=device)

    def my_part(batch):
        x, y = batch
        return x[rank * shard : (rank + 1) * shard], y[rank * shard : (rank + 1) * shard]

    for epoch in range(args.epochs):
        # every rank walks the same global batches and takes its shard of each
        for batch in task.train_loader(args.batch_size, epoch=epoch, seed=0, device=device):
            if batch[1].numel() < args.batch_size:
                continue  # keep shards equal
            stats = trainer.step(my_part(batch), meta_batch=lambda: my_part(next(meta)))
        result = task.evaluate(model.module, device=device)
        if rank == 0:
            print(
                f"epoch {epoch + 1}: lr {stats['lr']:.4f}  test accuracy {100 * result['metric']:.2f}%",
                flush=True,
            )
    if rank == 0:
        mlrsnet.save_schedule(
            args.out, {f"epoch_{args.epochs}": net}, {"task": args.task, "world_size": world}
        )
        print(f"saved {args.out}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
