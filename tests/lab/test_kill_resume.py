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


def command(kind, out, *extra, task="digits-cnn"):
    return [sys.executable, "-m", "mlrsnet.lab.cli", kind, "--task", task, "--batch-size", "32",
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


def run_with_kills(cmd, out, kills, rng, finish=True):
    """Start `cmd`, SIGKILL it at a random moment after its first checkpoint, `kills` times; then
    finish (unless not `finish`)."""
    killed, during_write = 0, 0
    while True:
        if killed >= kills and not finish:
            return killed, during_write
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


# -- issue 15, finding 2: one process per run directory -----------------------------------

#: A short run for the tests below (digits-mlp: seconds), and its uninterrupted result.
SHORT = ["--schedule", "cosine", "--epochs", "2", "--checkpoint-every", "5"]


def short_command(out):
    return command("train", out, *SHORT, task="digits-mlp")


@pytest.fixture(scope="module")
def short_reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("short") / "reference"
    subprocess.run(short_command(out), check=True, timeout=300)
    return comparable(out)


HOLD_LOCK = """
import sys, time
from mlrsnet.lab.rundir import RunDir
held = RunDir(sys.argv[1]).lock()  # kept referenced: collected, it would release the lock
held.__enter__()
print("locked", flush=True)
time.sleep(300)
"""


def test_a_second_process_is_refused_with_the_holders_pid_until_it_dies(tmp_path, short_reference):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], stdout=subprocess.PIPE,
                              text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        second = subprocess.run(short_command(out), capture_output=True, text=True, timeout=300)
        assert second.returncode == 1
        assert second.stderr.strip().splitlines() == [
            f"mlrsnet: error: {out} is in use by another run (pid {holder.pid}); "
            "wait for it to end, or use another --out"
        ]
        assert sorted(p.name for p in out.iterdir()) == [".lock"]  # nothing touched
    finally:
        holder.send_signal(signal.SIGKILL)  # dies holding it: the OS releases the lock
        holder.wait()
    subprocess.run(short_command(out), check=True, timeout=300)
    assert comparable(out) == short_reference
    assert not (out / ".lock").exists()


def test_processes_started_together_on_one_folder_never_mix(tmp_path, short_reference):
    outcomes = []
    for attempt in range(2):
        out = tmp_path / f"run-{attempt}"
        processes = [subprocess.Popen(short_command(out), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
                     for _ in range(3)]  # fmt: skip
        results = [(p.pid, *p.communicate(timeout=300), p.returncode) for p in processes]
        pids = {pid for pid, *_ in results}
        ran = 0
        for _pid, _stdout, stderr, code in results:
            if code == 1:  # refused: one line naming the folder and another process's pid
                (line,) = stderr.strip().splitlines()
                holder = int(line.split("(pid ")[1].split(")")[0])
                assert line.startswith(f"mlrsnet: error: {out} is in use") and holder in pids
            else:
                assert code == 0, stderr
                ran += 1
        assert ran >= 1
        assert comparable(out) == short_reference  # each step once, epochs in order
        outcomes.append(sum(code == 1 for *_, code in results))
    assert sum(outcomes) >= 1
    print(f"processes refused per start of three together: {outcomes}")


def test_logs_cut_after_a_kill_are_refused_then_restored_nothing_is_lost(tmp_path, short_reference):
    """After a kill at a random point, each log is cut at a random byte offset below the
    length the checkpoint committed: the run refuses to resume (exit 2, one line naming
    the log; the file is not padded); with the bytes restored it resumes to the result of
    an uninterrupted run."""
    import torch

    rng = random.Random(151515)
    out = tmp_path / "run"
    out.mkdir()
    refused = 0
    for _ in range(2):
        killed, _ = run_with_kills(short_command(out), out, 1, rng, finish=False)
        assert killed == 1
        checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
        for log, key in (("lr.csv", "lr_log_offset"), ("metrics.jsonl", "metrics_offset")):
            if checkpoint[key] == 0:
                continue
            data = (out / log).read_bytes()
            cut = rng.randrange(checkpoint[key])
            (out / log).write_bytes(data[:cut])
            result = subprocess.run(short_command(out), capture_output=True, text=True,
                                    timeout=300)  # fmt: skip
            assert result.returncode == 2
            (line,) = result.stderr.strip().splitlines()
            assert line.startswith(f"mlrsnet: error: {out / log}: {cut} bytes, shorter than")
            assert (out / log).read_bytes() == data[:cut]
            (out / log).write_bytes(data)
            refused += 1
    subprocess.run(short_command(out), check=True, timeout=300)
    assert comparable(out) == short_reference
    print(f"cut logs refused: {refused}")
