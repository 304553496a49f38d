"""Meta-train MLR-SNet+ (issue 11) by antithetic ES over whole runs, on Ray; resumable.

    python tools/meta_train_plus.py --out runs/plus                 # the shipped network's run
    python tools/meta_train_plus.py --quick --out /tmp/plus-quick   # a few minutes, as a test

``--base user`` meta-trains the network on the rate a user types (the task's default) instead
of the probe's; ``--init v6`` starts from a shipped network (or a file) instead of the default shape;
``--prior WSD_JSON`` meta-trains a residual network that corrects a fitted WSD family, and
``--prior-shape W C P`` one that corrects a given warmup-stable-decay shape (``0.02 0.98 1``:
linear to zero); ``--validation`` gives the network a validation loss at every epoch end; and
``--peak 1 --base user`` meta-trains under the user-rate contract (the user's rate is the peak);
``--objective error`` scores each run by its final validation error instead of its loss, and
``--objective soft-error`` by its soft error (the mean of 1 - p(true class): smooth, bounded),
and ``--objective sharp-error`` by the soft error of the logits over 0.25 (it does not reward
confidence, which the soft error does under label noise).
``--early-stop-unit RISE THRESHOLD WEIGHT`` starts the network with a response that lowers
the rate once the validation loss has risen above its best (ES may keep or undo it).

Rerun the same command to resume after an interruption; ``OUT/history.jsonl`` has one line
per ES iteration and ``OUT/plus.safetensors`` (with its manifest) is the network.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--quick", action="store_true", help="digits tasks, 3 iterations of 2 pairs"
    )
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--pairs", type=int, default=None)
    parser.add_argument("--sigma", type=float, default=0.05)
    parser.add_argument("--hidden", type=int, default=16, help="hidden units of the network")
    parser.add_argument("--meta-lr", type=float, default=0.01)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--min-steps", type=int, default=None,
                        help="draw every run's length log-uniformly in [MIN, MAX] steps "
                             "instead of each task family's own range")  # fmt: skip
    parser.add_argument("--passes", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                        help="draw runs by passes over the data too (larger training fractions: "
                             "tasksets.META_TRAINING_BY_PASSES), passes log-uniform in [LOW, HIGH]")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--family", choices=("plus", "wsd"), default="plus",
                        help="the network, or the parametric WSD family (the bar it must clear)")  # fmt: skip
    parser.add_argument(
        "--no-shaping",
        action="store_true",
        help="use the raw antithetic differences (no median scaling, no clip)",
    )
    parser.add_argument("--base", choices=("probe", "user"), default="probe",
                        help="the base rate the network scales: the probe's, or the task's default")  # fmt: skip
    parser.add_argument(
        "--init", default=None, help="start from this network (a shipped name or a file)"
    )
    parser.add_argument("--init-peaks", default=None, metavar="WSD_JSON",
                        help="start the network's scales at this fitted WSD family's peaks "
                             "(the wsd.json of a --family wsd run)")  # fmt: skip
    parser.add_argument("--prior", default=None, metavar="WSD_JSON",
                        help="meta-train a residual network: this fitted WSD family (the wsd.json "
                             "of a --family wsd run) times a bounded correction that starts at 1")  # fmt: skip
    parser.add_argument("--prior-shape", type=float, nargs=3, default=None,
                        metavar=("WARMUP", "COOLDOWN", "POWER"),
                        help="meta-train a residual network correcting this warmup-stable-decay "
                             "shape at 1x the base rate (0.02 0.98 1: linear to zero)")  # fmt: skip
    parser.add_argument("--validation", action="store_true",
                        help="a network that reads a validation loss: half the meta split is "
                             "given to it at every epoch end, the other half scores the run")  # fmt: skip
    parser.add_argument("--objective", choices=("loss", "error", "soft-error", "sharp-error"),
                        default="loss",
                        help="score each run by the log of its final validation loss, error, "
                             "soft error (1 - p(true class)), or sharp error (the same of the "
                             "logits / 0.25); classification; text is scored by loss")  # fmt: skip
    parser.add_argument("--early-stop-unit", type=float, nargs=3, default=None,
                        metavar=("RISE", "THRESHOLD", "WEIGHT"),
                        help="start with two of the network's least-used hidden units rewired "
                             "to lower the rate once the validation loss rises above its best "
                             "by about THRESHOLD/RISE in log (needs --validation; e.g. 10 2 -2)")  # fmt: skip
    parser.add_argument("--limit", type=float, default=2.0,
                        help="the residual correction's bound: within [1/LIMIT, LIMIT]")  # fmt: skip
    parser.add_argument(
        "--task-set",
        choices=("convergence",),
        default=None,
        help="draw from the tasks trained to their plateau "
        "(META_TRAINING_CONVERGENCE; needs --passes)",
    )
    parser.add_argument(
        "--peak",
        type=float,
        default=None,
        help="bound every run's rate at this multiple of its base rate (1: the "
        "base rate is the peak, the user-rate contract)",
    )
    parser.add_argument(
        "--monitor-schedule",
        default="wsd",
        help="the hand schedule the monitor scores the network against",
    )
    parser.add_argument("--monitor-every", type=int, default=10,
                        help="score the network against WSD on fixed instances this often")  # fmt: skip
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--address", default=None, help="a Ray cluster to join")
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from mlrsnet.lab.plus_training import ESConfig, meta_train

    quick = (
        {"iterations": 3, "pairs": 2, "max_steps": 80, "monitor_instances": 2} if args.quick else {}
    )
    config = ESConfig(
        out=str(args.out),
        iterations=args.iterations or quick.get("iterations", 200),
        pairs=args.pairs or quick.get("pairs", 8),
        sigma=args.sigma,
        meta_lr=args.meta_lr,
        hidden=args.hidden,
        max_steps=args.max_steps or quick.get("max_steps", 600),
        min_steps=args.min_steps,
        passes=tuple(args.passes) if args.passes else None,
        seed=args.seed,
        quick=args.quick,
        monitor_every=args.monitor_every,
        monitor_instances=quick.get("monitor_instances", 6),
        monitor_schedule=args.monitor_schedule,
        family=args.family,
        shaping=not args.no_shaping,
        base=args.base,
        init=args.init,
        init_peaks=args.init_peaks,
        prior=args.prior,
        limit=args.limit,
        task_set=args.task_set,
        peak=args.peak,
        validation=args.validation,
        prior_shape=tuple(args.prior_shape) if args.prior_shape else None,
        objective=args.objective,
        early_stop_unit=tuple(args.early_stop_unit) if args.early_stop_unit else None,
    )

    def report(record: dict) -> None:
        monitor = ""
        if "monitor_log_ratio" in record:
            monitor = (f", vs {record['monitor_schedule']} on the monitor tasks: log ratio {record['monitor_log_ratio']:+.4f}"
                       f" ({record['monitor_wins']} better)")  # fmt: skip
        print(f"iteration {record['iteration']}: log val {args.objective} {record['objective_pairs']:.4f}, "
              f"mean |f+ - f-| {record['mean_abs_difference']:.3g}, |g| {record['grad_norm']:.3g}, "
              f"{record['seconds']:.1f} s{monitor}", flush=True)  # fmt: skip

    path = meta_train(config, workers=args.workers, address=args.address,
                      data_dir=args.data_dir, on_iteration=report,
                      command="python " + shlex.join(["tools/meta_train_plus.py", *(argv or sys.argv[1:])]))  # fmt: skip
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
