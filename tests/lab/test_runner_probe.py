"""``lr="probe"``: the library's range test picks a run's base rate; a resumed run keeps it."""

import json
from pathlib import Path

import pytest
import torch

from mlrsnet.lab import probing, tasks
from mlrsnet.lab.rundir import CHECKPOINT_FILE
from mlrsnet.lab.runner import RunConfig, run
from mlrsnet.probe import ProbeResult

torch.set_num_threads(1)


def config(tmp_path, name, **kw):
    """digits-mlp at its own batch size, momentum and weight decay, so that the runner's
    probe is :func:`probing.probe_task` with the task's settings."""
    kw = {"task": "digits-mlp", "schedule": "cosine", "epochs": 2, "lr": "probe", **kw}
    return RunConfig(out=str(tmp_path / name), **kw)


def task_probe(seed):
    """The probe of digits-mlp's model at ``seed``, computed here as the runner should."""
    task = tasks.get("digits-mlp", seed=seed)
    model = task.build_model(seed=seed)
    model.train()
    return probing.probe_task(task, model, "sgd", seed)


def records(out):
    rows = [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        row.pop("wall_seconds")
    return rows


def assert_same_training(a, b):
    assert (Path(a) / "lr.csv").read_text() == (Path(b) / "lr.csv").read_text()
    assert records(a) == records(b)


@pytest.fixture(scope="module")
def probed(tmp_path_factory):
    """A whole run at the probe's rate (seed 1) and what it wrote."""
    cfg = config(tmp_path_factory.mktemp("runs"), "probed", seed=1)
    return cfg, run(cfg)


def test_a_probed_run_trains_at_the_rate_probe_task_finds(probed, tmp_path):
    cfg, summary = probed
    expected = task_probe(seed=1)
    assert summary["completed"] and summary["lr"] == "probe"
    assert summary["probe_lr"] == expected.lr and summary["probe_steps"] == expected.steps
    assert 0 < summary["probe_seconds"]
    written = json.loads((Path(cfg.out) / "summary.json").read_text())
    assert {k: written[k] for k in ("probe_lr", "probe_steps", "probe_seconds")} == {
        k: summary[k] for k in ("probe_lr", "probe_steps", "probe_seconds")
    }
    state = torch.load(Path(cfg.out) / CHECKPOINT_FILE, weights_only=True)["state"]
    assert state["probe"]["lr"] == expected.lr and state["probe"]["steps"] == expected.steps
    # cosine starts at its base rate: the probe's
    first_rate = float((Path(cfg.out) / "lr.csv").read_text().splitlines()[1].split(",")[1])
    assert first_rate == expected.lr
    # the probe leaves the model and the RNG as they were: the very run of that rate given
    given = run(config(tmp_path, "given", seed=1, lr=expected.lr))
    assert_same_training(cfg.out, tmp_path / "given")
    assert given["final_test_metric"] == summary["final_test_metric"]
    assert "probe_lr" not in given and given["lr"] == expected.lr


def test_a_stopped_probed_run_resumes_exactly_without_probing_again(probed, tmp_path, monkeypatch):
    full, full_summary = probed
    calls = []
    original = probing.probe_task

    def counted(*args, **kwargs):
        calls.append(args[3])
        return original(*args, **kwargs)

    monkeypatch.setattr(probing, "probe_task", counted)
    part = config(tmp_path, "part", seed=1)
    summary = run(part, stop_after_steps=5)  # mid-epoch 1
    assert calls == [1] and not summary["completed"]
    assert summary["probe_lr"] == full_summary["probe_lr"]

    def refuse(*args, **kwargs):
        raise AssertionError("probed again")

    monkeypatch.setattr(probing, "probe_task", refuse)
    for stop in (13, 7):  # across the epoch boundary (18 steps an epoch), then mid-epoch 2
        summary = run(part, stop_after_steps=stop)
    while not summary["completed"]:
        summary = run(part, stop_after_steps=9)
    assert_same_training(full.out, part.out)
    for key in ("final_test_metric", "best_test_metric", "final_test_loss", "probe_lr",
                "probe_steps"):  # fmt: skip
        assert summary[key] == full_summary[key], key
    first = json.loads((Path(part.out) / "summary.json").read_text())
    assert first["probe_seconds"] == summary["probe_seconds"]  # the recorded cost, kept


def _fake_probe(calls):
    def probe_task(task, model, optimizer, seed, **kwargs):
        calls.append({"optimizer": optimizer, "seed": seed, **kwargs})
        return ProbeResult(lr=0.0123, lrs=[], losses=[], smoothed=[], steps=7)

    return probe_task


@pytest.fixture
def plus_file(tmp_path):
    from mlrsnet import plus

    return plus.save(tmp_path / "plus.safetensors", plus.PlusNet.from_shape(iterations=200),
                     {"note": "test"})  # fmt: skip


@pytest.mark.parametrize(
    "schedule,options,optimizer",
    [
        ("cosine", {}, "sgd"),  # the task's optimizer
        ("wsd", {"optimizer": "adamw"}, "adamw"),  # the schedule's option
        ("fixed", {}, "sgd"),
        ("cosine", {"nesterov": True}, "sgd"),  # the run's Nesterov momentum
        ("adamw", {}, "adamw"),
        ("mlrsnet-plus", {}, "sgd"),
    ],
)
def test_the_probe_measures_the_optimizer_the_run_trains_with(
    tmp_path, monkeypatch, plus_file, schedule, options, optimizer
):
    calls = []
    monkeypatch.setattr(probing, "probe_task", _fake_probe(calls))
    if schedule == "mlrsnet-plus":
        schedule = f"mlrsnet-plus:{plus_file}"
    cfg = config(tmp_path, "run", schedule=schedule, options=options, batch_size=32,
                 momentum=0.5, seed=2)  # fmt: skip
    summary = run(cfg, stop_after_steps=2)
    assert calls == [{"optimizer": optimizer, "seed": 2, "batch_size": 32, "momentum": 0.5,
                      "weight_decay": tasks.get("digits-mlp").weight_decay,
                      "nesterov": options.get("nesterov", False),
                      "augment": None}]  # the task's augmentation, as the run  # fmt: skip
    assert summary["probe_lr"] == 0.0123 and summary["probe_steps"] == 7
    checkpoint = torch.load(Path(cfg.out) / CHECKPOINT_FILE, weights_only=True)
    group = checkpoint["method"]["optimizer"]["param_groups"][0]
    assert group.get("initial_lr", group["lr"]) == 0.0123  # the base rate: the probe's


@pytest.mark.parametrize(
    "kind,settings,match",
    [
        ("train", {"lr": "fast"}, "lr must be a number or 'probe'.*'fast'"),
        ("train", {"lr": ""}, "lr must be a number or 'probe'"),
        ("train", {"schedule": "mlrsnet:ptb-lstm"}, "faithful MLR-SNet.*scale gamma"),
        ("meta-train", {}, "meta-training.*scale gamma"),
        ("train", {"schedule": "prodigy"}, "base rate of SGD or AdamW.*'prodigy'"),
        ("train", {"schedule": "l4"}, "base rate of SGD or AdamW.*'l4'"),
    ],
)
def test_probe_where_it_has_no_meaning_is_refused_by_name(tmp_path, kind, settings, match):
    cfg = config(tmp_path, "bad", **settings)
    with pytest.raises(ValueError, match=match):
        run(cfg, kind=kind)
    assert not Path(cfg.out).exists()  # refused before anything was written


def test_a_bad_optimizer_option_is_refused_before_probing(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(probing, "probe_task", _fake_probe(calls))
    with pytest.raises(ValueError, match="optimizer must be one of"):
        run(config(tmp_path, "bad", options={"optimizer": "rmsprop"}))
    assert calls == []


def test_a_checkpoint_of_a_given_rate_is_not_resumed_with_probe(tmp_path):
    run(config(tmp_path, "a", lr=0.1), stop_after_steps=2)
    with pytest.raises(ValueError, match="other settings.*lr"):
        run(config(tmp_path, "a"))


@pytest.mark.parametrize("recorded", [None, {"lr": 0.1}, {"lr": -1.0, "steps": 3, "seconds": 1.0}])
def test_a_checkpoint_without_its_probe_is_refused_by_name(tmp_path, monkeypatch, recorded):
    monkeypatch.setattr(probing, "probe_task", _fake_probe([]))
    cfg = config(tmp_path, "run")
    run(cfg, stop_after_steps=2)
    path = Path(cfg.out) / CHECKPOINT_FILE
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["state"]["probe"] = recorded
    torch.save(checkpoint, path)
    with pytest.raises(ValueError, match="records no probe rate.*start the run afresh"):
        run(cfg)


def test_the_probe_trains_with_the_runs_beta1_and_nesterov(monkeypatch):
    """AdamW reads the momentum as β1 where it is one (else 0.9), in training and in the probe;
    SGD takes the run's Nesterov switch."""
    import mlrsnet.probe

    seen = []

    def range_test(model, optimizer, next_loss, **kwargs):
        seen.append(optimizer.param_groups[0]["betas"])
        return ProbeResult(lr=0.01, lrs=[], losses=[], smoothed=[], steps=0)

    monkeypatch.setattr(mlrsnet.probe, "lr_range_test", range_test)
    task = tasks.get("digits-mlp", seed=0)
    model = task.build_model(seed=0)
    for momentum in (0.95, 0.0, None):  # None: the task's (0.9)
        probing.probe_task(task, model, "adamw", 0, momentum=momentum)
    assert seen == [(0.95, 0.999), (0.9, 0.999), (0.9, 0.999)]
    monkeypatch.setattr(mlrsnet.probe, "lr_range_test",
                        lambda model, optimizer, *a, **k: seen.append(optimizer.param_groups[0]["nesterov"]))  # fmt: skip
    probing.probe_task(task, model, "sgd", 0, nesterov=True)
    assert seen[-1] is True
