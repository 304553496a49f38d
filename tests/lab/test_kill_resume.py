"""Runs killed with SIGKILL at random points resume to exactly the uninterrupted result."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors import safe_open

pytestmark = pytest.mark.skipif(os.name != "posix", reason="needs SIGKILL")


def command(kind, out, *extra):
    return [sys.executable, "-m", "mlrsnet.lab.cli", kind, "--task", "digits-cnn", "--batch-size", "32",
            "--seed", "3", "--out", str(out), "--quiet", *extra]  # fmt: skip


def comparable(out):
    out = Path(out)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for r in records:
        r.pop("wall_seconds")
    summary = json.loads((out / "summary.json").read_text())
    keep = (
        "final_test_metric",
        "best_test_metric",
        "final_test_loss",
        "completed",
        "num_meta_steps",
    )
    files = {"lr.csv": (out / "lr.csv").read_text(), "metrics": records}
    if (out / "schedule.safetensors").is_file():
        # safetensors orders header metadata differently from process to process: compare contents
        with safe_open(str(out / "schedule.safetensors"), "pt") as f:
            files["schedule"] = (f.metadata(), {k: f.get_tensor(k).tolist() for k in f.keys()})
    return files, {k: summary.get(k) for k in keep}


def run_with_kills(cmd, out, kills, rng):
    """Start `cmd`, SIGKILL it at a random moment after its first checkpoint, `kills` times; then finish."""
    killed, during_write = 0, 0
    while True:
        process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if killed < kills:
            deadline = time.monotonic() + 120
            while (
                not (out / "checkpoint.pt").exists()
                and process.poll() is None
                and time.monotonic() < deadline
            ):
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.6))
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait()
                killed += 1
                during_write += any(out.glob("*.tmp"))
                continue
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err.decode()
        if killed >= kills:
            return killed, during_write
        # it finished before the kill: start again from scratch with a fresh directory
        for path in out.iterdir():
            path.unlink()


def test_kill_nine_at_random_points_then_resume(tmp_path):
    rng = random.Random(20261128)
    results = {}
    for kind, extra, kills in (
        ("train", ["--schedule", "cosine", "--epochs", "4", "--checkpoint-every", "3"], 3),
        (
            "meta-train",
            [
                "--epochs",
                "4",
                "--meta-interval",
                "3",
                "--save-epochs",
                "1,2,4",
                "--checkpoint-every",
                "2",
            ],
            10,
        ),
    ):
        reference = tmp_path / f"{kind}-reference"
        subprocess.run(command(kind, reference, *extra), check=True, timeout=300)
        interrupted = tmp_path / f"{kind}-killed"
        interrupted.mkdir()
        killed, during_write = run_with_kills(
            command(kind, interrupted, *extra), interrupted, kills, rng
        )
        assert killed == kills
        assert comparable(interrupted) == comparable(reference)
        assert not list(interrupted.glob("*.tmp"))  # leftovers of killed writes are cleaned up
        results[kind] = (killed, during_write)
    print(f"kills survived: {results}")


DIE_IN_FSYNC = """
import os, sys
calls, target, real = 0, int(sys.argv[1]), os.fsync
def dying_fsync(fd):
    global calls
    calls += 1
    if calls == target:
        os._exit(137)  # dies like SIGKILL: no cleanup, the file being written stays half-done
    real(fd)
os.fsync = dying_fsync
from mlrsnet.lab.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_death_in_the_middle_of_checkpoint_writes(tmp_path):
    extra = [
        "--epochs",
        "2",
        "--meta-interval",
        "3",
        "--save-epochs",
        "1,2",
        "--checkpoint-every",
        "4",
    ]
    reference = tmp_path / "reference"
    subprocess.run(command("meta-train", reference, *extra), check=True, timeout=300)
    out = tmp_path / "killed"
    left_behind = 0
    # the n-th fsync of a process: a checkpoint is 3 (lr.csv, metrics.jsonl, then the atomic checkpoint file)
    for target in (3, 2, 6, 9):
        args = command("meta-train", out, *extra)[3:]
        result = subprocess.run(
            [sys.executable, "-c", DIE_IN_FSYNC, str(target), *args], timeout=300
        )
        assert result.returncode == 137
        left_behind += bool(list(out.glob("*.tmp")))
    assert left_behind >= 3  # deaths inside the atomic checkpoint write
    subprocess.run(command("meta-train", out, *extra), check=True, timeout=300)
    assert comparable(out) == comparable(reference)
