"""The `mlrsnet` command: every schedule end to end, help, config files, errors."""

import json
import subprocess
import sys

import pytest

from mlrsnet.lab import baselines
from mlrsnet.lab.cli import main

BASELINES = [n for n in baselines.names() if n != "mlrsnet"]


@pytest.fixture(scope="module")
def schedule_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("meta") / "run"
    code = main(["meta-train", "--task", "digits-mlp", "--epochs", "2", "--batch-size", "256",
                 "--meta-interval", "2", "--save-epochs", "1,2", "--out", str(out), "--quiet"])  # fmt: skip
    assert code == 0
    return out / "schedule.safetensors"


@pytest.mark.parametrize("schedule", [*BASELINES, "mlrsnet"])
def test_every_schedule_runs_end_to_end_on_digits(tmp_path, schedule, schedule_file, capsys):
    name = f"mlrsnet:{schedule_file}" if schedule == "mlrsnet" else schedule
    out = tmp_path / "run"
    code = main(["train", "--task", "digits-mlp", "--schedule", name, "--epochs", "1",
                 "--batch-size", "256", "--out", str(out), "--quiet"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["completed"] and summary["schedule"] == name
    if schedule == "prodigy":  # its step size starts at d0 = 1e-6 and needs more steps to grow
        assert 0 <= summary["final_test_metric"] <= 100
    else:
        assert summary["final_test_metric"] > 10  # better than chance after one epoch
    rows = (out / "lr.csv").read_text().splitlines()
    assert rows[0] == "step,lr,loss" and len(rows) == summary["steps"] + 1


def test_meta_train_writes_a_loadable_schedule_with_manifest(schedule_file):
    manifest = json.loads(schedule_file.with_suffix(".json").read_text())
    assert manifest["task"] == "digits-mlp"
    assert manifest["snapshots"] == ["epoch_1", "epoch_2"]
    assert manifest["command"].startswith("mlrsnet meta-train")
    assert manifest["versions"]["mlrsnet"]


@pytest.mark.parametrize(
    "command", ["train", "meta-train", "compare", "demo", "tasks", "schedules"]
)
def test_help_on_every_subcommand(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: mlrsnet" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,match",
    [
        (["train", "--task", "digits-mlp", "--schedule", "nope", "--out", "X"], "unknown schedule"),
        (["train", "--task", "nope", "--schedule", "fixed", "--out", "X"], "unknown task"),
        (["train", "--task", "digits-mlp", "--out", "X"], "--schedule is required"),
        (["train", "--schedule", "fixed", "--out", "X"], "--task is required"),
        (["train", "--task", "digits-mlp", "--schedule", "fixed"], "--out is required"),
        (
            ["train", "--task", "digits-mlp", "--schedule", "fixed", "--epochs", "0", "--out", "X"],
            "positive integer",
        ),
        (
            ["train", "--task", "digits-mlp", "--schedule", "fixed", "--lr", "nan", "--out", "X"],
            "finite",
        ),
        (
            [
                "train",
                "--task",
                "digits-mlp",
                "--schedule",
                "mlrsnet:/no/such.safetensors",
                "--out",
                "X",
            ],
            "not found",
        ),
        (
            [
                "train",
                "--task",
                "digits-mlp",
                "--schedule",
                "cosine",
                "--option",
                "bogus=1",
                "--out",
                "X",
            ],
            "bogus",
        ),
        (["meta-train", "--task", "digits-mlp", "--save-epochs", "a,b", "--out", "X"], "epochs"),
        (["train", "--config", "/no/such.toml"], "config file not found"),
        (["compare", "/no/such/dir"], "no/such"),
    ],
)
def test_bad_arguments_end_in_one_line(tmp_path, monkeypatch, capsys, argv, match):
    monkeypatch.chdir(tmp_path)
    try:
        code = main(argv)
    except SystemExit as err:  # argparse's own errors
        code = err.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "Traceback" not in "\n".join(err)
    assert any(match in line for line in err), err


def test_no_traceback_from_the_installed_command(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mlrsnet.lab.cli", "train", "--task", "digits-mlp", "--schedule", "nope", "--out",
         str(tmp_path / "x")],  # fmt: skip
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"mlrsnet: error: unknown schedule 'nope'; known: {', '.join(baselines.names())} "
        "(mlrsnet:NAME_OR_PATH for a schedule network)"
    ]


def test_toml_config_with_flags_overriding(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text(
        'task = "digits-mlp"\nschedule = "cosine"\nepochs = 3\nbatch-size = 256\nseed = 4\n'
        f'out = "{tmp_path / "run"}"\nquiet = true\n[option]\neta_min = 0.001\n'
    )
    assert main(["train", "--config", str(config), "--epochs", "1"]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["epochs"] == 1 and summary["seed"] == 4 and summary["batch_size"] == 256
    bad = tmp_path / "bad.toml"
    bad.write_text('task = "digits-mlp"\nepoch = 3\n')
    assert main(["train", "--config", str(bad)]) == 2


def test_compare_writes_table_and_plots(tmp_path, capsys):
    for schedule in ("fixed", "cosine"):
        for seed in (0, 1):
            assert main(["train", "--task", "digits-mlp", "--schedule", schedule, "--epochs", "1", "--batch-size",
                         "256", "--seed", str(seed), "--out", str(tmp_path / "runs" / f"{schedule}{seed}"),
                         "--quiet"]) == 0  # fmt: skip
    assert main(["compare", str(tmp_path / "runs"), "--out", str(tmp_path / "cmp")]) == 0
    assert "4 runs compared" in capsys.readouterr().out
    table = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "| fixed |" in table and "| cosine |" in table
    assert sorted(p.name for p in (tmp_path / "cmp").glob("*.png")) == [
        "digits-mlp_lr.png", "digits-mlp_test_metric.png", "digits-mlp_train_loss.png",
    ]  # fmt: skip


def test_lists(capsys):
    assert main(["tasks"]) == 0
    assert "digits-mlp" in capsys.readouterr().out
    assert main(["schedules"]) == 0
    assert "cosine" in capsys.readouterr().out


def test_quick_demo_reports_the_runs_it_made(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    report = tmp_path / "demo" / "report" / "report.md"
    assert f"report: {report}" in out
    text = report.read_text()
    for run_dir in sorted((tmp_path / "demo" / "runs").iterdir()):
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["completed"]
        if summary["kind"] == "train":
            assert summary["label"] in text
            assert f"{summary['final_test_metric']:.2f}" in text
    assert (tmp_path / "demo" / "runs" / "meta-train" / "schedule.safetensors").is_file()
    assert len(list((tmp_path / "demo" / "report").glob("*.png"))) == 3
