"""Copy a finished meta-training run into the package as a shipped schedule network.

    python tools/ship_pretrained.py RUN_DIR NAME

Writes ``src/mlrsnet/pretrained/NAME.safetensors`` and ``NAME.json``: the run's snapshots
and manifest (task, epochs, seed, the exact command, source-task metrics, versions), plus
the first 50 learning rates of the meta-training run (``lr_trace_head``), which
``tests/test_pretrained.py`` reproduces by re-running the manifest's command.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mlrsnet import hub

ROOT = Path(__file__).resolve().parents[1]
HEAD = 50


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("name")
    args = parser.parse_args(argv)
    summary = json.loads((args.run_dir / "summary.json").read_text())
    if not summary.get("completed"):
        print(f"{args.run_dir}: the run has not completed", file=sys.stderr)
        return 2
    bundle = hub.load_schedule(args.run_dir / "schedule.safetensors")
    rows = (args.run_dir / "lr.csv").read_text().splitlines()[1 : HEAD + 1]
    records = [
        json.loads(line) for line in (args.run_dir / "metrics.jsonl").read_text().splitlines()
    ]
    manifest = {
        **bundle.manifest,
        "name": args.name,
        "source_task": summary["task"],
        "metrics": {
            "final_test_metric": summary["final_test_metric"],
            "best_test_metric": summary["best_test_metric"],
            "metric": summary["metric"],
            "per_epoch": [
                {k: r[k] for k in ("epoch", "train_loss", "test_loss", "test_metric")}
                for r in records
            ],
        },
        "num_meta_steps": summary.get("num_meta_steps"),
        "wall_seconds": summary["wall_seconds"],
        "lr_trace_head": [float(row.split(",")[1]) for row in rows],
    }
    target = ROOT / "src" / "mlrsnet" / "pretrained" / f"{args.name}.safetensors"
    nets = dict(zip(bundle.snapshots, bundle.nets, strict=True))
    hub.save_schedule(target, nets, manifest, fractions=bundle.fractions)
    print(f"shipped {target} ({', '.join(bundle.snapshots)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
