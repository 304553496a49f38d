"""Readers of a run directory's files, shared by the runner's tests."""

import csv
import json
from pathlib import Path


def records(out):
    """The rows of ``metrics.jsonl``, one dict an epoch."""
    return [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]


def lr_rows(out):
    """The rows of ``lr.csv``, one dict a step."""
    with open(Path(out) / "lr.csv") as f:
        return list(csv.DictReader(f))
