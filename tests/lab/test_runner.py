"""Runs: files, determinism, and exact resume after a stop at any step."""

import json
import math
from pathlib import Path

import pytest
import torch

from mlrsnet import hub
from mlrsnet.lab.runner import RunConfig, run

SHARED = Path(__file__).resolve().parents[2].parent / "shared"


def read_records(out):
    records = [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    for r in records:
        r.pop("wall_seconds")
    return records


def config(tmp_path, name, **kw):
    kw.setdefault("task", "digits-mlp")
    kw.setdefault("epochs", 2)
    kw.setdefault("batch_size", 128)
    return RunConfig(out=str(tmp_path / name), **kw)


def assert_same_run(a, b):
    assert (Path(a) / "lr.csv").read_text() == (Path(b) / "lr.csv").read_text()
    assert read_records(a) == read_records(b)
    sa, sb = (json.loads((Path(d) / "summary.json").read_text()) for d in (a, b))
    for key in ("final_test_metric", "best_test_metric", "final_test_loss", "completed"):
        assert sa[key] == sb[key], key


def test_run_writes_its_files(tmp_path):
    cfg = config(tmp_path, "cosine", schedule="cosine", command="mlrsnet train ...")
    summary = run(cfg)
    out = Path(cfg.out)
    records = read_records(out)
    assert [r["epoch"] for r in records] == [1, 2]
    assert (
        records[-1]["step"]
        == summary["steps"]
        == len((out / "lr.csv").read_text().splitlines()) - 1
    )
    assert (
        summary["completed"] and summary["task"] == "digits-mlp" and summary["schedule"] == "cosine"
    )
    assert 0 <= summary["final_test_metric"] <= 100
    assert summary["versions"]["torch"] == torch.__version__
    assert summary["command"] == "mlrsnet train ..."
    torch.load(out / "checkpoint.pt", weights_only=True)  # tensors and plain data only
    # a completed run is not run again
    assert run(cfg)["wall_seconds"] == summary["wall_seconds"]


@pytest.mark.parametrize(
    "schedule,options",
    [
        ("cosine", {}),
        ("plateau", {}),
        ("rtho", {}),
        ("schedulefree-sgd", {}),
        ("prodigy", {}),
        ("hd", {}),
    ],
)
def test_stopped_and_resumed_equals_uninterrupted(tmp_path, schedule, options):
    full = config(tmp_path, "full", schedule=schedule, options=options)
    run(full)
    part = config(tmp_path, "part", schedule=schedule, options=options)
    for stop in (3, 5, 4):  # mid-epoch, across the epoch boundary, to the end
        summary = run(part, stop_after_steps=stop)
    while not summary["completed"]:
        summary = run(part, stop_after_steps=7)
    assert_same_run(full.out, part.out)


def test_meta_training_resumes_exactly_and_saves_snapshots(tmp_path):
    kw = dict(epochs=3, meta_interval=2, save_epochs=[1, 2, 3])
    full = config(tmp_path, "full", **kw)
    run(full, kind="meta-train")
    part = config(tmp_path, "part", **kw)
    summary = run(part, kind="meta-train", stop_after_steps=5)
    while not summary["completed"]:
        summary = run(part, kind="meta-train", stop_after_steps=6)
    assert_same_run(full.out, part.out)
    a = hub.load_schedule(Path(full.out) / "schedule.safetensors")
    b = hub.load_schedule(Path(part.out) / "schedule.safetensors")
    assert a.snapshots == b.snapshots == ["epoch_1", "epoch_2", "epoch_3"]
    assert a.fractions == pytest.approx([0, 1 / 3, 2 / 3])
    for na, nb in zip(a.nets, b.nets, strict=True):
        for pa, pb in zip(na.parameters(), nb.parameters(), strict=True):
            assert torch.equal(pa, pb)
    assert not torch.equal(a.nets[0].head.weight, a.nets[2].head.weight)  # it learned something
    assert a.manifest["task"] == "digits-mlp" and a.manifest["seed"] == 0
    assert summary["num_meta_steps"] > 0


def test_transfer_with_a_saved_schedule_resumes_exactly(tmp_path):
    meta = config(tmp_path, "meta", epochs=3, meta_interval=3, save_epochs=[1, 2, 3])
    run(meta, kind="meta-train")
    schedule = f"mlrsnet:{Path(meta.out) / 'schedule.safetensors'}"
    full = config(tmp_path, "full", task="digits-cnn", schedule=schedule, epochs=3)
    summary = run(full)
    assert summary["gamma"] > 0
    part = config(tmp_path, "part", task="digits-cnn", schedule=schedule, epochs=3)
    summary = run(part, stop_after_steps=4)
    while not summary["completed"]:
        summary = run(part, stop_after_steps=5)
    assert_same_run(full.out, part.out)


@pytest.mark.skipif(
    not (SHARED / "data" / "tinyshakespeare").is_dir(), reason="shared data not found"
)
def test_language_model_resume_carries_the_hidden_state(tmp_path):
    kw = dict(
        task="shakespeare-lstm",
        schedule="fixed",
        epochs=1,
        batch_size=16,
        data_dir=str(SHARED / "data"),
    )
    full = config(tmp_path, "full", **kw)
    run(full, stop_after_steps=8)
    part = config(tmp_path, "part", **kw)
    run(part, stop_after_steps=3)
    run(part, stop_after_steps=5)
    assert (Path(full.out) / "lr.csv").read_text() == (Path(part.out) / "lr.csv").read_text()


def test_a_checkpoint_of_other_settings_is_refused(tmp_path):
    run(config(tmp_path, "a", schedule="fixed"), stop_after_steps=2)
    with pytest.raises(ValueError, match="other settings.*schedule"):
        run(config(tmp_path, "a", schedule="cosine"))


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("epochs", 0, "epochs"),
        ("batch_size", -1, "batch_size"),
        ("lr", float("nan"), "lr"),
        ("momentum", 1.5, "momentum"),
        ("train_fraction", 0.0, "train_fraction"),
        ("noise", "gaussian", "noise"),
        ("schedule", "nope", "unknown schedule"),
        ("schedule", "mlrsnet", "needs a network"),
        ("task", "imagenet", "unknown task"),
        ("device", "tpu", "device"),
        ("save_epochs", [3, 1], "save_epochs"),
    ],
)
def test_bad_configuration_is_named(tmp_path, field, value, match):
    cfg = config(tmp_path, "x", **{field: value})
    with pytest.raises(ValueError, match=match):
        run(cfg, kind="meta-train" if field == "save_epochs" else "train")


def _lrs(path):
    return [float(r.split(",")[1]) for r in (path / "lr.csv").read_text().splitlines()[1:]]


def test_a_named_stage_scale_policy_reaches_the_scheduler(tmp_path):
    common = dict(task="digits-mlp", schedule="mlrsnet:fmnist-resnet", epochs=3, seed=0)
    fixed = run(RunConfig(out=str(tmp_path / "fixed"), lr=0.5, **common))
    named = run(RunConfig(out=str(tmp_path / "named"), lr=0.5,
                          options={"stage_scale": "fixed"}, **common))  # fmt: skip
    assert _lrs(tmp_path / "named") == _lrs(tmp_path / "fixed")  # 'fixed' keeps the given γ
    assert named["final_test_metric"] == fixed["final_test_metric"]
    paper = run(RunConfig(out=str(tmp_path / "paper"), lr=0.5,
                          options={"stage_scale": "paper"}, **common))  # fmt: skip
    lrs, steps = _lrs(tmp_path / "paper"), paper["steps"]
    assert lrs[: steps // 3] == _lrs(tmp_path / "fixed")[: steps // 3]  # the first stage: γ
    assert lrs[steps // 3 :] != _lrs(tmp_path / "fixed")[steps // 3 :]  # then the rule's γ


@pytest.mark.parametrize(
    ("schedule", "first_lr"),
    [("cosine", 0.05), ("hd", 0.05), ("schedulefree-sgd", 1.0), ("adamw", 1e-3)],
)
def test_without_an_lr_a_schedule_of_the_tasks_optimizer_trains_at_the_tasks_rate(
    tmp_path, schedule, first_lr
):
    """digits-mlp trains with SGD at 0.05: a schedule whose lr is an SGD rate starts there; a
    rate that means something else (Schedule-Free's, AdamW's on this SGD task) keeps its own."""
    run(config(tmp_path, schedule, schedule=schedule, epochs=1), stop_after_steps=1)
    assert _lrs(tmp_path / schedule)[0] == pytest.approx(first_lr)


# -- issue 15, finding 1: every run path skips and counts non-finite steps -----------------


def _no_bare_nan(path):
    """Strict JSON: every line of ``path`` parses without NaN or Infinity."""
    text = Path(path).read_text()

    def refuse(name):
        raise AssertionError(f"{path}: bare {name}")

    lines = text.splitlines() if Path(path).suffix == ".jsonl" else [text]
    return [json.loads(line, parse_constant=refuse) for line in lines]


def _finite_weights(out):
    checkpoint = torch.load(Path(out) / "checkpoint.pt", weights_only=True)
    return all(
        bool(torch.isfinite(v).all()) for v in checkpoint["model"].values() if v.is_floating_point()
    )


#: One schedule of each family, with a learning rate that makes its losses non-finite.
FAMILIES = [
    ("cosine", 1e6),  # a torch scheduler
    ("adam", 1e30),  # an adaptive optimizer (it normalises the step: a larger lr)
    ("hd", 1e6),  # hypergradient
    ("rtho", 1e6),  # hypergradient with a held-out loss
    ("l4", 1e6),  # loss-based
    ("schedulefree-sgd", 1e6),  # schedule-free
    ("prodigy", 1e30),  # parameter-free
    ("mlrsnet:fmnist-resnet", 1e6),  # a transferred MLR-SNet
]


@pytest.mark.parametrize("schedule,lr", FAMILIES)
def test_non_finite_steps_are_skipped_and_counted_by_every_method(tmp_path, schedule, lr):
    cfg = config(tmp_path, "run", schedule=schedule, lr=lr, batch_size=64)
    summary = run(cfg)
    assert summary["nonfinite_steps_skipped"] > 0
    assert _finite_weights(cfg.out)
    steps, lrs, losses = _lr_columns(Path(cfg.out))
    assert all(math.isfinite(v) for v in lrs)
    # a step with a non-finite loss is skipped; so is one whose gradient alone is not finite
    assert summary["nonfinite_steps_skipped"] >= sum(not math.isfinite(v) for v in losses)
    _no_bare_nan(Path(cfg.out) / "summary.json")
    _no_bare_nan(Path(cfg.out) / "metrics.jsonl")
    print(f"{schedule} lr {lr:g}: {summary['nonfinite_steps_skipped']} of {summary['steps']} "
          "steps skipped")  # fmt: skip


def test_meta_training_skips_and_counts_non_finite_steps_the_same_way(tmp_path):
    cfg = config(tmp_path, "meta", lr=1e6, batch_size=64, meta_interval=3)
    summary = run(cfg, kind="meta-train")
    assert summary["nonfinite_steps_skipped"] > 0 and _finite_weights(cfg.out)
    print(f"meta-train lr 1e6: {summary['nonfinite_steps_skipped']} of {summary['steps']} "
          "steps skipped")  # fmt: skip
    _no_bare_nan(Path(cfg.out) / "summary.json")
    _no_bare_nan(Path(cfg.out) / "metrics.jsonl")


def test_a_run_with_skipped_steps_resumes_exactly(tmp_path):
    kw = dict(schedule="cosine", lr=1e6, batch_size=64)
    full = config(tmp_path, "full", **kw)
    run(full)
    part = config(tmp_path, "part", **kw)
    summary = run(part, stop_after_steps=7)
    while not summary["completed"]:
        summary = run(part, stop_after_steps=9)
    assert_same_run(full.out, part.out)
    assert summary["nonfinite_steps_skipped"] == run(full)["nonfinite_steps_skipped"] > 0


def _lr_columns(out):
    from mlrsnet.lab.rundir import read_lr

    return read_lr(out / "lr.csv")


# -- issue 15, finding 5: the resume check covers every setting that changes the run -------


@pytest.mark.parametrize(
    "first,second,named",
    [
        ({"num_meta": 100}, {"num_meta": 300}, "num_meta"),
        ({}, {"num_meta": 300}, "num_meta"),
        ({"data_dir": "a"}, {"data_dir": "b"}, "data_dir"),
        ({"train_fraction": 0.5}, {"train_fraction": 1.0}, "train_fraction"),
        ({"gamma_batches": 5}, {"gamma_batches": 6}, "gamma_batches"),
        ({}, {"noise": "uniform", "noise_rate": 0.2}, "noise"),
    ],
)
def test_a_resume_with_other_settings_is_refused(tmp_path, first, second, named):
    run(config(tmp_path, "a", schedule="fixed", **first), stop_after_steps=2)
    with pytest.raises(ValueError, match=f"other settings.*{named}"):
        run(config(tmp_path, "a", schedule="fixed", **second))


def test_meta_settings_are_checked_too(tmp_path):
    run(config(tmp_path, "m", meta_interval=2), kind="meta-train", stop_after_steps=2)
    with pytest.raises(ValueError, match="other settings.*meta_weight_decay"):
        run(config(tmp_path, "m", meta_interval=2, meta_weight_decay=0.1), kind="meta-train")
    with pytest.raises(ValueError, match="other settings.*num_meta"):
        run(config(tmp_path, "m", meta_interval=2, num_meta=50), kind="meta-train")


def test_a_checkpoint_of_the_previous_format_resumes_when_nothing_changed(tmp_path):
    """Checkpoints written before the fingerprint grew lack its new keys: they are taken at
    their defaults, so an unchanged run resumes (and a changed one is still refused)."""
    from mlrsnet.lab.rundir import CHECKPOINT_FILE, RunDir

    full = config(tmp_path, "full", schedule="cosine")
    run(full)
    part = config(tmp_path, "part", schedule="cosine")
    run(part, stop_after_steps=5)
    path = Path(part.out) / CHECKPOINT_FILE
    checkpoint = torch.load(path, weights_only=True)
    for key in ("num_meta", "data_dir", "meta_weight_decay", "gamma_batches", "steps_per_epoch"):
        del checkpoint["fingerprint"][key]
    for key in ("lr_log_sha256", "metrics_sha256"):  # nor did it record the logs' digests
        del checkpoint[key]
    torch.save(checkpoint, path)
    with pytest.raises(ValueError, match="num_meta"):
        run(config(tmp_path, "part", schedule="cosine", num_meta=100))
    assert RunDir(part.out).load_checkpoint() is not None
    run(part)
    assert_same_run(full.out, part.out)
