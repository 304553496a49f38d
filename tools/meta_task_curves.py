"""Learning curves of MLR-SNet+ meta-training tasks: where does each reach its plateau?

    python tools/meta_task_curves.py                       # the default instances, 2 seeds
    python tools/meta_task_curves.py --passes 8 32 96 --seeds 0 1 2

Trains each instance with cosine at the user's rate (:func:`mlrsnet.lab.plus_training.user_lr`)
for every number of passes over its training split, as MLR-SNet+ meta-training trains it
(:func:`mlrsnet.lab.plus_training.evaluate`, the validation half of the meta split scoring
it), and prints the final validation loss and accuracy (perplexity for text). A meta-training
that means to see convergence needs ``--passes`` that reach past where these stop improving.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: ``(task, training fraction, optimizer, label-noise rate)``: one of each kind of
#: :data:`mlrsnet.lab.benchmark.tasksets.META_TRAINING_CONVERGENCE`.
INSTANCES = (
    ("fmnist-mlp", 0.1, "sgd", 0.0),
    ("fmnist-mlp", 0.1, "sgd", 0.4),
    ("fmnist-mlp", 0.1, "adamw", 0.0),
    ("digits-cnn", 1.0, "sgd", 0.2),
    ("digits-mlp", 1.0, "adamw", 0.4),
    ("shakespeare-lstm-tiny", 0.05, "adamw", 0.0),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--passes", type=float, nargs="+", default=[8, 16, 32, 64, 96])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--only", action="append", default=None, metavar="TASK",
                        help="only the instances of this task (repeatable)")  # fmt: skip
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    args = parser.parse_args(argv)
    instances = [i for i in INSTANCES if args.only is None or i[0] in args.only]
    if not instances:
        parser.error(f"--only {args.only}: none of the instances' tasks "
                     f"({sorted({i[0] for i in INSTANCES})})")  # fmt: skip
    from tqdm import tqdm

    from mlrsnet.lab.plus_training import evaluate, steps_per_pass, user_lr

    jobs = list(itertools.product(instances, args.passes, args.seeds))
    results: dict[tuple, list[dict]] = {}
    for (task, fraction, optimizer, noise), passes, seed in tqdm(jobs, desc="runs"):
        instance = {"task": task, "train_fraction": fraction, "optimizer": optimizer,
                    "noise_rate": noise, "seed": seed,
                    "steps": round(passes * steps_per_pass(task, fraction, args.data_dir))}  # fmt: skip
        run = evaluate(instance, None, base_lr=user_lr(instance), schedule="cosine",
                       data_dir=args.data_dir, validation=True)  # fmt: skip
        results.setdefault((task, fraction, optimizer, noise, passes), []).append(run)
    print(f"cosine at the user's rate; mean over seeds {args.seeds} (min–max)")
    print("| task | fraction | optimizer | noise | passes | steps | val loss | val metric |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for (task, fraction, optimizer, noise, passes), runs in results.items():
        text = task.startswith("shakespeare")
        metrics = [r["val_metric"] if text else 100 * r["val_metric"] for r in runs]
        losses = [r["val_loss"] for r in runs]
        steps = round(passes * steps_per_pass(task, fraction, args.data_dir))
        print(f"| {task} | {fraction:g} | {optimizer} | {noise:.0%} | {passes:g} | {steps} | "
              f"{statistics.mean(losses):.3f} | {statistics.mean(metrics):.2f} "
              f"({min(metrics):.2f}–{max(metrics):.2f}) |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
