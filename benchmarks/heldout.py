"""The held-out transfer benchmark: every target, three learning-rate tiers, 5 seeds, on Ray.

    python benchmarks/heldout.py --plan              # the jobs and their estimated cost
    python benchmarks/heldout.py --suite convergence --plan   # the suite at convergence
    python benchmarks/heldout.py                     # run (or resume) the whole suite
    python benchmarks/heldout.py --only ptb-lstm-short --only fmnist-cnn-1x   # some targets
    python benchmarks/heldout.py --method mlrsnet-plus:v6    # one method's runs (and probes)
    python benchmarks/heldout.py --address auto      # the same suite on a running Ray cluster
    python benchmarks/heldout.py --report            # BENCHMARKS.md and figures from the records
    python benchmarks/heldout.py --quick --out /tmp/quick   # the CI-sized suite, then its report

Records are one JSON line per finished job in ``OUT/records.jsonl`` (committed); run folders
live in ``OUT/runs`` (not committed) and resume from their checkpoints, so the suite can be
stopped at any time and continued by the same command. The task sets and the protocol are in
``mlrsnet.lab.benchmark`` and described in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "heldout"
SUITE_OUT = {"heldout": DEFAULT_OUT, "convergence": ROOT / "benchmarks" / "results" / "convergence"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plan", action="store_true", help="list the jobs and their cost")
    parser.add_argument("--suite", choices=("heldout", "convergence"), default="heldout",
                        help="the short-horizon held-out suite (default) or the suite at "
                             "convergence")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="the CI-sized suite (2 seeds)")
    parser.add_argument("--report", action="store_true", help="write the report from the records")
    parser.add_argument("--only", action="append", default=[], metavar="TARGET",
                        help="run only these targets (repeatable)")  # fmt: skip
    parser.add_argument("--method", action="append", default=None, metavar="METHOD",
                        help="run only this method's jobs, e.g. mlrsnet-plus:v7 (repeatable; "
                             "never the tuned tier)")  # fmt: skip
    parser.add_argument("--workers", type=int, default=2, help="local Ray CPUs (default 2)")
    parser.add_argument("--address", default=None, help="a Ray cluster to join")
    parser.add_argument("--out", type=Path, default=None, help=f"default {DEFAULT_OUT}")
    parser.add_argument("--data-dir", default=str(SHARED / "data"), help="root of the text data")
    parser.add_argument("--reference", default=str(SHARED / "reference"),
                        help="the authors' reference folder (their released networks)")  # fmt: skip
    parser.add_argument("--markdown", type=Path, default=None,
                        help="the page --report writes (default BENCHMARKS.md; quick: OUT/report.md)")  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from mlrsnet.lab.benchmark import plan as planning
    from mlrsnet.lab.benchmark import tasksets

    quick_name = "quick" if args.suite == "heldout" else "quick-convergence"
    suite = tasksets.targets(quick_name if args.quick else args.suite)
    known = {t.name for t in suite}
    unknown = sorted(set(args.only) - known)
    if unknown:
        parser.error(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    targets = [t for t in suite if not args.only or t.name in args.only]
    results = ROOT / "benchmarks" / "results"
    out = args.out or (results / quick_name if args.quick else SUITE_OUT[args.suite])
    seeds = (0, 1) if args.quick else planning.EVAL_SEEDS

    if args.method is not None:
        try:
            planning.pick(*planning.plan(targets, seeds), args.method)
        except ValueError as err:
            parser.error(str(err))
    if args.plan:
        return print_plan(targets, seeds, out, args.method)
    if not args.report:
        run(targets, seeds, out, args)
    if args.report or args.quick:
        from mlrsnet.lab.benchmark import report

        markdown = args.markdown or (out / "report.md" if args.quick else ROOT / "BENCHMARKS.md")
        figures = out / "figures" if args.quick else ROOT / "docs" / "benchmarks" / args.suite
        # the convergence suite leads the page: its section goes before the short-horizon one
        before = (
            "## The held-out transfer benchmark: short-horizon and undertrained (the earlier suite)"
            if args.suite == "convergence"
            else None
        )
        written = report.write(out, targets, markdown, figures_out=figures, quick=args.quick,
                               suite=args.suite, insert_before=before)  # fmt: skip
        print(f"wrote {written}")
    return 0


def print_plan(targets: list, seeds: tuple[int, ...], out: Path, methods: list | None) -> int:
    from mlrsnet.lab.benchmark import plan as planning
    from mlrsnet.lab.benchmark.execute import Records, tuned_factor

    runs, probes = planning.plan(targets, seeds)
    if methods is not None:  # as the run picks them: these methods' runs and their probes
        runs, probes = planning.pick(runs, probes, methods)
    records = Records(out / "records.jsonl")
    done = records.ids()
    print(f"{'target':32} {'jobs':>5} {'done':>5} {'hours':>6}  size")
    total = left = 0.0
    for target in targets:
        jobs = [r for r in runs if r.target == target.name]
        jobs += [p for p in probes if p.target == target.name]
        ids = [getattr(j, "run_id", None) or j.probe_id for j in jobs]
        seconds = sum(planning.estimated_seconds(target, j) for j in jobs)
        if methods is None:  # the tuned tier: its runs are known once its grid has finished
            for method in planning.TUNED:
                factor = tuned_factor(records.rows, target.tuned_at or target.name, method)
                for seed in target.check_seeds or seeds:
                    ids.append(None if factor is None else
                               planning.tuned_run(target, method, factor, seed).run_id)  # fmt: skip
                    seconds += target.seconds
        finished = sum(i in done for i in ids)
        share = 1 - finished / max(len(ids), 1)
        total += seconds
        left += seconds * share
        print(f"{target.name:32} {len(ids):5d} {finished:5d} {seconds / 3600:6.2f}  "
              f"{target.note}")  # fmt: skip
    tiers = Counter(r.tier for r in runs)
    tuned_runs = (
        0
        if methods is not None
        else sum(len(planning.TUNED) * len(t.check_seeds or seeds) for t in targets)
    )
    print(f"\n{len(runs)} runs ({', '.join(f'{k} {v}' for k, v in sorted(tiers.items()))}), "
          f"{len(probes)} probes, up to {tuned_runs} tuned "
          "runs (fewer where the tuned rate is the default)")  # fmt: skip
    print(
        f"estimated run time: {total / 3600:.2f} h summed over runs "
        f"({total / 3600 / 2:.2f} h of wall time with 2 workers); left: {left / 3600:.2f} h"
    )
    return 0


def run(targets: list, seeds: tuple[int, ...], out: Path, args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from mlrsnet.lab.benchmark.execute import execute

    bar = tqdm(desc="held-out suite", unit="job", dynamic_ncols=True)
    started = time.time()

    def progress(row: dict, done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        value = row.get("final_test_metric", row.get("lr"))
        bar.set_postfix_str(f"{row['id']} -> {value:.4g}" if value is not None else row["id"])
        bar.refresh()

    execute(targets, out=out, workers=args.workers, address=args.address,
            data_dir=args.data_dir, reference=args.reference, seeds=seeds,
            on_record=progress, methods=args.method)  # fmt: skip
    bar.close()
    print(f"suite finished in {time.time() - started:.0f} s; records in {out / 'records.jsonl'}")


if __name__ == "__main__":
    sys.exit(main())
