"""Runs with per-epoch validation, the new tasks, and the task's optimizer in the runner."""

from pathlib import Path

import pytest
import torch
from run_files import lr_rows, records

from mlrsnet import shapes
from mlrsnet.lab import tasks
from mlrsnet.lab.runner import RunConfig, run

torch.set_num_threads(1)

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
VALIDATION_KEYS = ("final_val_metric", "final_val_loss", "val_selected_test_metric")


# lr 0.5 with batches of 128 makes the validation accuracy peak before the last epoch
# (epoch 2 of 3 when written), so the selected test metric is not simply the final one.
def digits(tmp_path, name, **kw):
    kw = {
        "task": "digits-mlp",
        "schedule": "fixed",
        "epochs": 3,
        "batch_size": 128,
        "lr": 0.5,
        **kw,
    }
    return RunConfig(out=str(tmp_path / name), **kw)


@pytest.fixture(scope="module")
def validated_and_plain(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("runs")
    with_val, without = digits(tmp_path, "val", validation=True), digits(tmp_path, "plain")
    return (with_val, run(with_val)), (without, run(without))


def test_every_epoch_record_has_validation(validated_and_plain):
    (config, summary), _ = validated_and_plain
    recs = records(config.out)
    assert [r["epoch"] for r in recs] == [1, 2, 3]
    for r in recs:
        assert r["val_loss"] > 0.0
        assert 0.0 <= r["val_metric"] <= 100.0  # accuracy in percent, as test_metric
    # the held-out split is not the test split
    assert [r["val_loss"] for r in recs] != [r["test_loss"] for r in recs]
    assert summary["final_val_metric"] == recs[-1]["val_metric"]
    assert summary["final_val_loss"] == recs[-1]["val_loss"]


def test_val_selected_test_metric_is_at_the_best_validation_epoch(validated_and_plain):
    (config, summary), _ = validated_and_plain
    recs = records(config.out)
    val = [r["val_metric"] for r in recs]
    best = val.index(max(val))  # accuracy: higher is better, the first epoch on ties
    assert summary["val_selected_test_metric"] == recs[best]["test_metric"]
    assert summary["final_test_metric"] == recs[-1]["test_metric"]
    assert summary["best_test_metric"] == max(r["test_metric"] for r in recs)


def test_validation_does_not_change_training(validated_and_plain):
    (config, summary), (plain_config, plain) = validated_and_plain
    for key in VALIDATION_KEYS:
        assert key not in plain
    for r in records(plain_config.out):
        assert "val_loss" not in r and "val_metric" not in r
    # evaluation must not touch the model, the data order or the RNG: exactly the same run
    assert plain["final_test_metric"] == summary["final_test_metric"]
    assert plain["final_test_loss"] == summary["final_test_loss"]
    assert lr_rows(plain_config.out) == lr_rows(config.out)
    strip = ("val_loss", "val_metric", "wall_seconds")
    assert [{k: v for k, v in r.items() if k not in strip} for r in records(config.out)] == [
        {k: v for k, v in r.items() if k != "wall_seconds"} for r in records(plain_config.out)
    ]


def test_stopped_and_resumed_validation_run_equals_uninterrupted(validated_and_plain, tmp_path):
    (config, summary), _ = validated_and_plain
    part = digits(tmp_path, "part", validation=True)
    for stop in (12, 6):  # mid-epoch 2, then exactly at the end of epoch 2 (step 18)
        assert not run(part, stop_after_steps=stop)["completed"]
    resumed = run(part)
    assert resumed["completed"]
    for key in (*VALIDATION_KEYS, "final_test_metric", "best_test_metric"):
        assert resumed[key] == summary[key], key
    strip = ("wall_seconds",)
    assert [{k: v for k, v in r.items() if k not in strip} for r in records(part.out)] == [
        {k: v for k, v in r.items() if k not in strip} for r in records(config.out)
    ]


def test_validation_must_be_a_bool(tmp_path):
    with pytest.raises(ValueError, match="validation"):
        run(digits(tmp_path, "bad", validation=1))


def test_validation_without_a_held_out_split_is_refused_up_front(tmp_path):
    with pytest.raises(ValueError, match="num_meta|validation"):
        run(digits(tmp_path, "no-meta", validation=True, num_meta=0, epochs=1))


def test_validation_with_a_plateau_schedule(tmp_path):
    # plateau also evaluates the held-out split: one evaluation serves both
    config = digits(tmp_path, "plateau", schedule="plateau", validation=True, epochs=2, lr=None)
    summary = run(config)
    recs = records(config.out)
    assert len(recs) == 2 and all("val_metric" in r for r in recs)
    assert summary["final_val_loss"] == recs[-1]["val_loss"]


@pytest.mark.parametrize(
    "name,optimizer,modality",
    [
        ("fmnist-cnn-small", "sgd", "image"),
        ("fmnist-mlp-adamw", "adamw", "image"),
        ("shakespeare-char-lstm", "sgd", "text"),
        ("shakespeare-char-transformer", "adamw", "text"),
    ],
)
def test_new_tasks_are_registered(name, optimizer, modality):
    assert name in tasks.names()
    spec = tasks.spec(name)
    assert spec.name == name
    assert spec.optimizer == optimizer
    assert spec.modality == modality
    if optimizer == "adamw":
        assert spec.lr == 1e-3


def test_existing_tasks_still_train_with_sgd():
    assert tasks.spec("digits-mlp").optimizer == "sgd"
    assert tasks.get("digits-mlp").optimizer == "sgd"


def test_transformer_task_builds_a_char_transformer():
    spec = tasks.spec("shakespeare-char-transformer")
    assert spec.model == "CharTransformer" and spec.dataset == "tinyshakespeare"
    assert spec.bptt <= spec.model_kwargs["block_size"]  # every window fits the context


@pytest.fixture
def shakespeare():
    if not (SHARED_DATA / "tinyshakespeare").is_dir():
        pytest.skip(f"Tiny Shakespeare not in {SHARED_DATA}")
    return str(SHARED_DATA)


def test_adamw_task_trains_with_adamw_at_its_rate(tmp_path, shakespeare):
    config = RunConfig(
        task="shakespeare-char-transformer",
        out=str(tmp_path / "gpt"),
        data_dir=shakespeare,
        train_fraction=0.01,
        epochs=1,
        schedule="cosine",
    )
    summary = run(config, stop_after_steps=2)
    assert summary["lr"] is None and not summary["completed"]
    rows = lr_rows(config.out)
    assert len(rows) == 2
    total = summary["steps"]
    # the task's AdamW rate 1e-3, not cosine's SGD default 0.1, along the cosine shape
    assert float(rows[0]["lr"]) == 1e-3 * shapes.cosine_decay(0, total) == 1e-3
    assert float(rows[1]["lr"]) == pytest.approx(1e-3 * shapes.cosine_decay(1, total), rel=1e-12)
    # the checkpointed optimizer is AdamW's: Adam moments, no momentum buffers
    checkpoint = torch.load(Path(config.out) / "checkpoint.pt", weights_only=True)
    optimizer = checkpoint["method"]["optimizer"]
    assert set(optimizer["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}
    group = optimizer["param_groups"][0]
    assert group["initial_lr"] == 1e-3 and group["weight_decay"] == 0.1
    assert group["decoupled_weight_decay"] is True


def test_explicit_optimizer_option_overrides_the_task(tmp_path, shakespeare):
    config = RunConfig(
        task="shakespeare-char-transformer",
        out=str(tmp_path / "gpt-sgd"),
        data_dir=shakespeare,
        train_fraction=0.01,
        epochs=1,
        schedule="cosine",
        options={"optimizer": "sgd"},
    )
    run(config, stop_after_steps=1)
    assert float(lr_rows(config.out)[0]["lr"]) == 0.1  # cosine's own default rate
    checkpoint = torch.load(Path(config.out) / "checkpoint.pt", weights_only=True)
    assert "momentum_buffer" in checkpoint["method"]["optimizer"]["state"][0]
