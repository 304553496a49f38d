"""Re-run recorded transfer runs and check that they reproduce their final metrics exactly.

The transfer suite's records (``benchmarks/results/transfer/results.jsonl``) hold each run's
target, method, learning rate and seed, and its final and best test metric. This script
rebuilds each chosen run's ``mlrsnet train`` command (the CPU suite ran single-threaded
processes, so ``--threads 1``), runs it in a fresh folder and compares the metrics with the
record, exactly. It guards refactorings: the default selection mixes MLR-SNet transfer, a
network meta-trained on the target itself, hypergradient optimizers (SGD-HD, RTHO, L4),
Schedule-Free, Prodigy, torch schedulers and text runs.

    python benchmarks/reproduce.py                 # the default selection (~7 minutes)
    python benchmarks/reproduce.py --runs ID [ID ...] --out /tmp/repro

Exit status 0 when every run reproduced, 1 otherwise. Bit-exactness holds on the CPU the
records were made on, with the same torch build; another CPU (or ``ATEN_CPU_CAPABILITY``)
may change the last bits and so, rarely, a metric.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from mlrsnet import jsonio

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "transfer" / "results.jsonl"
SHARED_DATA = Path(os.environ.get("MLRSNET_SHARED", ROOT.parent / "shared")) / "data"
#: The command line installed beside this Python.
MLRSNET = str(Path(sys.executable).with_name("mlrsnet"))

#: The default selection: 17 runs over every method family and both modalities.
DEFAULT_RUNS = [
    "digits-mlp--mlrsnet-fmnist-resnet--s0",
    "digits-cnn--mlrsnet-fmnist-resnet-every100--s1",
    "digits-cnn-uniform40--mlrsnet-self--s0",
    "digits-mlp--hd-x1--s2",
    "digits-mlp--rtho-x3--s2",
    "digits-mlp--l4-x0.333--s2",
    "digits-mlp--schedulefree-sgd-x0.333--s2",
    "digits-cnn-pairflip20--schedulefree-adamw-x1--s1",
    "digits-mlp--prodigy-x3--s2",
    "digits-cnn-25pct--onecycle-x1--s0",
    "digits-cnn-0.5x--multistep-x3--s1",
    "digits-mlp--cosine-x1--s2",
    "digits-mlp--adamw-x0.333--s2",
    "digits-mlp--exponential-x1--s0",
    "digits-mlp--sgdr-x3--s2",
    "shakespeare-lstm-10pct--plateau-x0.333--s1",
    "shakespeare-lstm-10pct--mlrsnet-ptb-lstm--s1",
]

#: Settings of the CPU suite's targets that are not in the records.
TARGET_SETTINGS: dict[str, list[str]] = {
    "digits-cnn-25pct": ["--train-fraction", "0.25"],
    "digits-cnn-uniform40": ["--noise", "uniform", "--noise-rate", "0.4"],
    "digits-cnn-pairflip20": ["--noise", "pairflip", "--noise-rate", "0.2"],
    "shakespeare-lstm-10pct": ["--train-fraction", "0.1"],
}
#: The self-meta-trained network of the noisy targets: meta updates every 2 steps.
SELF_META_INTERVAL = 2


def read_records(path: Path = RESULTS) -> dict[str, dict[str, Any]]:
    """The recorded runs by run id (the last record of an id wins)."""
    records: dict[str, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            records[record["run_id"]] = record
    return records


def commands(record: dict[str, Any], out: Path) -> list[list[str]]:
    """The ``mlrsnet`` commands that make the recorded run (a meta-training first for 'self')."""
    common = ["--seed", str(record["seed"]), "--epochs", str(record["epochs"]), "--threads", "1",
              "--quiet", *TARGET_SETTINGS.get(record["target"], [])]  # fmt: skip
    if record["task"].startswith(("shakespeare", "ptb")):
        common += ["--data-dir", str(SHARED_DATA)]
    steps: list[list[str]] = []
    schedule = record["method"]
    if schedule == "mlrsnet:self":
        source = out / "self-meta"
        epochs = record["epochs"]
        save = sorted({1, max(1, epochs // 2), epochs})
        steps.append(["meta-train", "--task", record["task"], "--out", str(source),
                      "--meta-interval", str(SELF_META_INTERVAL),
                      "--save-epochs", ",".join(map(str, save)), *common])  # fmt: skip
        schedule = f"mlrsnet:{source / 'schedule.safetensors'}"
    train = ["train", "--task", record["task"], "--schedule", schedule, "--out", str(out / "run"),
             *common]  # fmt: skip
    if record["lr"] is not None:
        train += ["--lr", repr(record["lr"])]
    steps.append(train)
    return [[MLRSNET, *step] for step in steps]


def reproduce(record: dict[str, Any], out: Path) -> dict[str, Any]:
    """Run the recorded run again in ``out``; its summary's metrics next to the record's."""
    with open(out / "output.log", "w") as log:
        for command in commands(record, out):
            subprocess.run(command, check=True, cwd=out, stdout=log, stderr=subprocess.STDOUT)
    summary = json.loads((out / "run" / "summary.json").read_text())
    return {
        "run_id": record["run_id"],
        "recorded": [record["final_test_metric"], record["best_test_metric"]],
        "rerun": [summary["final_test_metric"], summary["best_test_metric"]],
        "command": shlex.join(["mlrsnet", *commands(record, out)[-1][1:]]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="+", default=DEFAULT_RUNS, help="run ids to reproduce")
    parser.add_argument("--out", help="keep the run folders here (default: a temporary folder)")
    parser.add_argument("--json", help="also write the comparison to this file")
    parser.add_argument(
        "--expect",
        help="compare with the reruns in this file too (a --json of an earlier version's run)",
    )
    args = parser.parse_args(argv)
    records = read_records()
    expected = {}
    if args.expect:
        expected = {
            row["run_id"]: row["rerun"] for row in json.loads(Path(args.expect).read_text())
        }
    missing = [r for r in args.runs if r not in records]
    if missing:
        parser.error(f"no record for {', '.join(missing)}")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(args.out or tmp)
        rows = []
        for run_id in args.runs:
            folder = base / run_id
            folder.mkdir(parents=True, exist_ok=True)
            row = reproduce(records[run_id], folder)
            row["exact"] = row["recorded"] == row["rerun"]
            line = (f"{'same' if row['exact'] else 'DIFFERS'}  {run_id}: recorded "
                    f"{row['recorded']}, rerun {row['rerun']}")  # fmt: skip
            if run_id in expected:
                row["expected"] = expected[run_id]
                row["exact_expected"] = row["expected"] == row["rerun"]
                line += f"; {'same as' if row['exact_expected'] else 'DIFFERS from'} --expect"
            rows.append(row)
            print(line, flush=True)
    same = sum(r["exact"] for r in rows)
    print(
        f"{same} of {len(rows)} runs reproduced their recorded final and best test metric exactly"
    )
    compared = [r for r in rows if "expected" in r]
    if compared:
        print(f"{sum(r['exact_expected'] for r in compared)} of {len(compared)} runs gave exactly "
              f"the metrics of {args.expect}")  # fmt: skip
    if args.json:
        Path(args.json).write_text(jsonio.dumps(rows, indent=2) + "\n")
    ok = all(r["exact_expected"] for r in compared) if compared else same == len(rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
