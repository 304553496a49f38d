"""mlrsnet.lab.rundir: the one owner of the run-directory format, writer and readers."""

import json
import os

import pytest
import torch

from mlrsnet.lab import rundir
from mlrsnet.lab.rundir import RunDir, read_lr, read_metrics


def test_logs_commit_and_are_cut_back_to_what_the_checkpoint_saw(tmp_path):
    run_dir = RunDir(tmp_path / "run")
    run_dir.prepare()
    run_dir.open_logs(None)
    run_dir.log_step(1, 0.1, 2.5)
    run_dir.log_epoch({"epoch": 1, "step": 1, "train_loss": 2.5, "test_metric": 50.0})
    run_dir.save_checkpoint({"state": {"epoch": 1}})
    run_dir.log_step(2, 0.05, 2.0)  # after the checkpoint: written, then lost on resume
    run_dir.commit_logs()
    assert len(read_lr(run_dir.path / rundir.LR_FILE)[0]) == 2

    checkpoint = run_dir.load_checkpoint()
    assert checkpoint["format"] == rundir.CHECKPOINT_FORMAT and checkpoint["state"] == {"epoch": 1}
    resumed = RunDir(run_dir.path)
    resumed.open_logs(checkpoint)
    steps, lrs, losses = read_lr(run_dir.path / rundir.LR_FILE)
    assert steps.tolist() == [1] and lrs.tolist() == [0.1] and losses.tolist() == [2.5]
    assert [r["epoch"] for r in read_metrics(run_dir.path / rundir.METRICS_FILE)] == [1]


def test_prepare_drops_half_written_files_and_summaries_round_trip(tmp_path):
    run_dir = RunDir(tmp_path)
    (tmp_path / "checkpoint.pt.abc.tmp").write_bytes(b"half")
    run_dir.prepare()
    assert not list(tmp_path.glob("*.tmp"))
    summary = {"task": "digits-mlp", "schedule": "cosine", "metric": "accuracy", "seed": 0}
    run_dir.write_summary(summary)
    assert rundir.is_run(tmp_path) and run_dir.read_summary() == summary


def test_a_checkpoint_of_another_layout_is_refused_with_what_to_do(tmp_path):
    run_dir = RunDir(tmp_path)
    run_dir.prepare()
    torch.save({"format": 1, "fingerprint": {}}, tmp_path / rundir.CHECKPOINT_FILE)
    with pytest.raises(ValueError, match="checkpoint format 1, expected 2.*another --out"):
        run_dir.load_checkpoint()
    (tmp_path / rundir.CHECKPOINT_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a loadable run checkpoint"):
        run_dir.load_checkpoint()


def test_readers_name_the_file_and_line_of_a_damaged_record(tmp_path):
    metrics = tmp_path / rundir.METRICS_FILE
    good = json.dumps({"epoch": 1, "train_loss": 1.0, "test_metric": 9.0})
    metrics.write_text(good + "\n" + '{"epoch": 2, "train_loss"\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl: line 2: malformed JSON"):
        read_metrics(metrics)
    summary = tmp_path / rundir.SUMMARY_FILE
    summary.write_text(json.dumps({"task": "t", "schedule": "s", "metric": "bleu"}))
    with pytest.raises(ValueError, match="'metric' must be one of"):
        rundir.read_summary(summary)


def test_writes_are_strict_json_and_the_readers_read_them(tmp_path):
    run_dir = RunDir(tmp_path)
    run_dir.prepare()
    run_dir.open_logs(None)
    nan = float("nan")
    run_dir.log_epoch({"epoch": 1, "step": 3, "train_loss": nan, "test_loss": float("inf"),
                       "test_metric": 10.0, "lr": 0.1})  # fmt: skip
    run_dir.commit_logs()
    run_dir.write_summary({"task": "digits-mlp", "schedule": "cosine", "metric": "accuracy",
                           "final_test_loss": nan, "best_test_metric": 10.0})  # fmt: skip
    for name in (rundir.METRICS_FILE, rundir.SUMMARY_FILE):
        text = (tmp_path / name).read_text()
        assert "NaN" not in text and "Infinity" not in text
    assert read_metrics(tmp_path / rundir.METRICS_FILE)[0]["train_loss"] is None
    assert run_dir.read_summary()["final_test_loss"] is None


def test_the_lock_is_exclusive_and_names_the_holder(tmp_path):
    first = RunDir(tmp_path / "run")
    with first.lock():
        assert (tmp_path / "run" / rundir.LOCK_FILE).read_text().strip() == str(os.getpid())
        with pytest.raises(rundir.RunInUseError, match=f"run is in use by another run "
                                                       f"\\(pid {os.getpid()}\\)"):  # fmt: skip
            with RunDir(tmp_path / "run").lock():
                pass
    assert not (tmp_path / "run" / rundir.LOCK_FILE).exists()  # released and removed
    with RunDir(tmp_path / "run").lock():
        pass
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file, not a run directory"):
        with RunDir(tmp_path / "file").lock():
            pass


# -- issue 15, finding 3: logs are validated on resume, never padded ----------------------


def _committed(tmp_path):
    run_dir = RunDir(tmp_path / "run")
    run_dir.prepare()
    run_dir.open_logs(None)
    for step in range(1, 6):
        run_dir.log_step(step, 0.1 / step, 2.5 - step / 10)
    run_dir.log_epoch({"epoch": 1, "step": 5, "train_loss": 2.0, "test_metric": 50.0})
    run_dir.save_checkpoint({"state": {"epoch": 1}})
    return run_dir, run_dir.load_checkpoint()


@pytest.mark.parametrize("log,key", [(rundir.LR_FILE, "lr_log_offset"),
                                     (rundir.METRICS_FILE, "metrics_offset")])  # fmt: skip
def test_a_log_cut_below_its_committed_length_is_refused_never_padded(tmp_path, log, key):
    run_dir, checkpoint = _committed(tmp_path)
    path = run_dir.path / log
    for cut in range(checkpoint[key]):  # every byte offset below the committed length
        data = path.read_bytes()
        path.write_bytes(data[:cut])
        with pytest.raises(ValueError, match=f"{log}: {cut} bytes, shorter than the "
                                             f"{checkpoint[key]} bytes.*start the run afresh"):  # fmt: skip
            RunDir(run_dir.path).open_logs(checkpoint)
        assert path.read_bytes() == data[:cut]  # not padded, not changed
        path.write_bytes(data)
    RunDir(run_dir.path).open_logs(checkpoint)  # whole again: resumes
    print(f"{log}: all {checkpoint[key]} cuts below the committed length refused")


@pytest.mark.parametrize("log", [rundir.LR_FILE, rundir.METRICS_FILE])
@pytest.mark.parametrize("legacy", [False, True])
def test_a_log_changed_within_its_committed_part_is_refused(tmp_path, log, legacy):
    run_dir, checkpoint = _committed(tmp_path)
    if legacy:  # a checkpoint of the previous version: no digests, the lines are checked
        checkpoint = {k: v for k, v in checkpoint.items() if not k.endswith("sha256")}
    path = run_dir.path / log
    data = bytearray(path.read_bytes())
    data[len(data) // 2] = 0  # a NUL, as the padding of a file cut and grown again
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=f"{log}: .*(differ|damaged).*start the run afresh"):
        RunDir(run_dir.path).open_logs(checkpoint)


def test_a_missing_log_or_schedule_file_is_refused(tmp_path):
    run_dir, checkpoint = _committed(tmp_path)
    (run_dir.path / rundir.LR_FILE).unlink()
    with pytest.raises(ValueError, match="lr.csv: missing"):
        RunDir(run_dir.path).open_logs(checkpoint)
    checkpoint = {**checkpoint, "method": {"snapshots": {"epoch_1": {}}}}
    with pytest.raises(ValueError, match="schedule.safetensors: missing, but the checkpoint "
                                         "holds 1 snapshot"):  # fmt: skip
        RunDir(run_dir.path).open_logs(checkpoint)
