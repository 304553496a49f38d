"""``test_eval="end"`` (the test split once, at the end, and on the best validation epoch's
weights) against the per-epoch evaluation it replaces, and ``augment``."""

from pathlib import Path

import pytest
import torch
from run_files import lr_rows, records

from mlrsnet.lab import tasks
from mlrsnet.lab.runner import RunConfig, run

torch.set_num_threads(1)


# lr 0.5 with batches of 128 makes the validation accuracy peak before the last epoch
# (as in test_runner_validation), so the selected weights are not the final ones.
def digits(tmp_path, name, **kw):
    kw = {"task": "digits-mlp", "schedule": "fixed", "epochs": 3, "batch_size": 128,
          "lr": 0.5, "validation": True, **kw}  # fmt: skip
    return RunConfig(out=str(tmp_path / name), **kw)


@pytest.fixture(scope="module", params=["fixed", "schedulefree-sgd"])
def both_modes(request, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("runs")
    kw = {"schedule": request.param}
    if request.param == "schedulefree-sgd":  # Schedule-Free evaluates its averaged weights
        kw["lr"] = 2.0
    every = digits(tmp_path, "epoch", **kw)
    end = digits(tmp_path, "end", test_eval="end", **kw)
    return (every, run(every)), (end, run(end))


def test_end_gives_the_per_epoch_runs_final_and_selected_test_metrics(both_modes):
    (every, per_epoch), (end, at_end) = both_modes
    assert at_end["completed"] and per_epoch["completed"]
    for key in ("final_test_metric", "final_test_loss", "val_selected_test_metric",
                "final_val_metric", "final_val_loss"):  # fmt: skip
        assert at_end[key] == per_epoch[key], key
    # the best validation epoch is not the last, so its weights were kept and tested
    vals = [r["val_metric"] for r in records(every.out)]
    best = vals.index(max(vals))
    assert best < len(vals) - 1
    assert per_epoch["val_selected_test_metric"] == records(every.out)[best]["test_metric"]
    assert at_end["val_selected_test_metric"] != at_end["final_test_metric"]


def test_end_trains_the_same_run_and_tests_only_the_last_epoch(both_modes):
    (every, per_epoch), (end, at_end) = both_modes
    assert lr_rows(end.out) == lr_rows(every.out)  # evaluation draws nothing from the run
    recs = records(end.out)
    assert [r["test_metric"] is not None for r in recs] == [False, False, True]
    assert [r["val_metric"] for r in recs] == [r["val_metric"] for r in records(every.out)]
    assert at_end["best_test_metric"] is None  # a pick on the test set: not measured
    assert per_epoch["best_test_metric"] is not None


def test_end_mode_resumes_with_the_kept_weights(both_modes, tmp_path):
    _, (end, at_end) = both_modes
    part = digits(tmp_path, "part", test_eval="end", schedule=end.schedule, lr=end.lr)
    for stop in (12, 6):  # mid-epoch 2, then at the end of epoch 2 (the best validation epoch)
        assert not run(part, stop_after_steps=stop)["completed"]
    checkpoint = torch.load(Path(part.out) / "checkpoint.pt", weights_only=True)
    assert checkpoint["state"]["best_val_model"] is not None
    resumed = run(part)
    for key in ("final_test_metric", "val_selected_test_metric", "best_test_metric"):
        assert resumed[key] == at_end[key], key


def test_a_checkpoint_of_the_other_mode_is_refused(tmp_path):
    config = digits(tmp_path, "run", epochs=2)
    run(config, stop_after_steps=3)
    other = RunConfig(**{**config.__dict__, "test_eval": "end"})
    with pytest.raises(ValueError, match="test_eval"):
        run(other)


@pytest.mark.parametrize("field,value", [("test_eval", "never"), ("augment", "no")])
def test_bad_values_are_named(tmp_path, field, value):
    with pytest.raises(ValueError, match=field):
        run(digits(tmp_path, "bad", **{field: value}))


def test_augment_false_trains_on_the_plain_images(tmp_path, fashion_mnist_dir):
    common = dict(task="fmnist-cnn-small", schedule="fixed", lr=0.1, epochs=1, batch_size=64,
                  train_fraction=0.02, data_dir=str(fashion_mnist_dir))  # fmt: skip
    plain = RunConfig(out=str(tmp_path / "plain"), augment=False, **common)
    augmented = RunConfig(out=str(tmp_path / "augmented"), **common)
    run(plain, stop_after_steps=1)
    run(augmented, stop_after_steps=1)
    task = tasks.get("fmnist-cnn-small", data_dir=str(fashion_mnist_dir), seed=0,
                     train_fraction=0.02)  # fmt: skip
    torch.manual_seed(0)
    model = task.build_model(seed=0)
    inputs, labels = next(iter(task.train_loader(64, epoch=0, seed=0, augment=False)))
    with torch.no_grad():
        expected = float(task.loss_fn(model(inputs), labels))
    assert float(lr_rows(plain.out)[0]["loss"]) == pytest.approx(expected, rel=1e-6)
    assert float(lr_rows(augmented.out)[0]["loss"]) != pytest.approx(expected, rel=1e-6)
