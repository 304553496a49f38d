"""Where does a convergence target reach its plateau, with and without augmentation?

    python benchmarks/plateau_pilot.py --targets conv-fmnist-mlp-sgd conv-fmnist-cnn-1x
    python benchmarks/plateau_pilot.py --targets conv-fmnist-cnn-10pct --seeds 1000 1001 --workers 2

A pilot for choosing a target of the benchmark at convergence (:data:`mlrsnet.lab.benchmark.
tasksets.CONVERGENCE`) before its grid runs: cosine at the target's default rate, at its length
and at twice it, with the task's augmentation and without, on seeds apart from the suite's
(1000 and up), each run as the suite runs it (one thread, final-step test, validation split).
It prints the final validation and test accuracy of each and their change at twice the length,
so a length or an augmentation setting is chosen on the validation split and the suite's own
learning-curve check (its ``-2x-check`` targets) confirms it on the test set.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def one_run(job: tuple[str, str, int, bool, int, str, str | None]) -> dict[str, Any]:
    """Train one pilot run (``suite, target, epochs, augment, seed, folder, data_dir``) as the
    suite trains its cosine · defaults row (:func:`mlrsnet.lab.benchmark.execute.run_training`)."""
    from dataclasses import replace

    from mlrsnet.lab.benchmark.execute import run_training
    from mlrsnet.lab.benchmark.plan import RunSpec
    from mlrsnet.lab.benchmark.tasksets import targets

    suite, name, epochs, augment, seed, folder, data_dir = job
    target = replace({t.name: t for t in targets(suite)}[name], epochs=epochs, augment=augment)
    spec = RunSpec(name, "cosine", "defaults", seed, target.lr)
    record = run_training(target, spec, out=folder, data_dir=data_dir)
    return {"target": name, "epochs": epochs, "augment": augment, "seed": seed,
            "val": record["final_val_metric"], "test": record["final_test_metric"]}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    from mlrsnet.lab.benchmark.tasksets import targets

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", nargs="+", required=True, metavar="TARGET")
    parser.add_argument("--suite", default="convergence",
                        help="the suite of the targets (quick-convergence: digits, for tests)")  # fmt: skip
    parser.add_argument("--epochs", type=int, default=None,
                        help="this length and twice it (default: each target's own)")  # fmt: skip
    parser.add_argument("--seeds", type=int, nargs="+", default=[1000, 1001])
    parser.add_argument("--augment", choices=("both", "on", "off"), default="both")
    parser.add_argument("--workers", type=int, default=2, help="processes (one thread each)")
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    args = parser.parse_args(argv)
    known = {t.name: t for t in targets(args.suite)}
    unknown = [t for t in args.targets if t not in known]
    if unknown:
        parser.error(f"unknown targets {unknown}; the {args.suite} suite's: {sorted(known)}")
    epochs = {name: args.epochs or known[name].epochs for name in args.targets}
    augments = {"both": (True, False), "on": (True,), "off": (False,)}[args.augment]
    with tempfile.TemporaryDirectory() as scratch:
        jobs = [(args.suite, name, factor * epochs[name], augment, seed,
                 str(Path(scratch) / f"{name}-{factor}-{augment}-{seed}"), args.data_dir)
                for name, augment, factor, seed in
                itertools.product(args.targets, augments, (1, 2), args.seeds)]  # fmt: skip
        with ProcessPoolExecutor(args.workers) as pool:
            results = list(pool.map(one_run, jobs))
    print(f"cosine at each target's default rate, seeds {args.seeds}: mean final accuracy "
          "(validation / test) at the target's length and at twice it")  # fmt: skip
    print("| target | augment | epochs | val | test | 2x epochs | val | test | 2x − 1x test |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, augment in itertools.product(args.targets, augments):
        rows = {f: [r for r in results if (r["target"], r["augment"]) == (name, augment)
                    and r["epochs"] == f * epochs[name]] for f in (1, 2)}  # fmt: skip
        mean = {
            (f, k): statistics.mean(r[k] for r in rows[f]) for f in (1, 2) for k in ("val", "test")
        }
        print(f"| `{name}` | {'yes' if augment else 'no'} | {epochs[name]} "
              f"| {mean[1, 'val']:.2f} | {mean[1, 'test']:.2f} | {2 * epochs[name]} "
              f"| {mean[2, 'val']:.2f} | {mean[2, 'test']:.2f} "
              f"| {mean[2, 'test'] - mean[1, 'test']:+.2f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
