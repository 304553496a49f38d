"""What a schedule network actually outputs: the factor it settles to, per snapshot.

The authors' released checkpoints (meta-training epochs 1, 100, 200) settle to almost
constant outputs of about 0.728, 0.036 and 0.018 on their recorded loss trace — a
three-step schedule once the paper's transfer protocol switches them in at 0, 1/3 and 2/3
of a run. This prints the same characterisation for any schedule file or shipped network:
the output after 300 steps at a constant loss, for several loss levels, and (when the
reference trace is present) the last output on the authors' 600-step trace.

    python benchmarks/network_outputs.py fmnist-resnet ptb-lstm
    python benchmarks/network_outputs.py ../shared/reference/official-checkpoints/mlr_snet_100.pth
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from mlrsnet import hub

TRACE = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "official_trace.json"
LEVELS = (0.05, 0.2, 0.5, 1.0, 2.0)


@torch.no_grad()
def settle(net: torch.nn.Module, losses: list[float]) -> float:
    state = None
    factor = torch.tensor(float("nan"))
    for loss in losses:
        factor, state = net(torch.tensor(loss, dtype=torch.float64), state)
    return float(factor)


def characterise(spec: str) -> list[dict]:
    bundle = hub.resolve(spec)
    trace = json.loads(TRACE.read_text())["losses"] if TRACE.is_file() else None
    rows = []
    for name, net in zip(bundle.snapshots, bundle.nets, strict=True):
        net = net.double()
        row = {"source": spec, "snapshot": name}
        for level in LEVELS:
            row[f"loss={level}"] = settle(net, [level] * 300)
        if trace is not None:
            row["authors' trace"] = settle(net, trace)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "networks", nargs="+", help="shipped names or schedule files (.safetensors, .pth)"
    )
    args = parser.parse_args(argv)
    rows = [row for spec in args.networks for row in characterise(spec)]
    columns = [k for k in rows[0] if k not in ("source", "snapshot")]
    print("| network | snapshot | " + " | ".join(columns) + " |")
    print("|---|---|" + "---:|" * len(columns))
    for row in rows:
        values = " | ".join(f"{row[c]:.4f}" for c in columns)
        print(f"| {Path(row['source']).name} | {row['snapshot']} | {values} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
