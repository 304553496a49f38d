"""The `mlrsnet` command: every schedule end to end, help, config files, errors."""

import json
import subprocess
import sys

import pytest

from mlrsnet.lab import baselines
from mlrsnet.lab.cli import main

BASELINES = [n for n in baselines.names() if n not in ("mlrsnet", "mlrsnet-plus")]


@pytest.fixture(scope="module")
def schedule_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("meta") / "run"
    code = main(["meta-train", "--task", "digits-mlp", "--epochs", "2", "--batch-size", "256",
                 "--meta-interval", "2", "--save-epochs", "1,2", "--out", str(out), "--quiet"])  # fmt: skip
    assert code == 0
    return out / "schedule.safetensors"


@pytest.fixture(scope="module")
def plus_file(tmp_path_factory):
    from mlrsnet import plus

    path = tmp_path_factory.mktemp("plus") / "plus.safetensors"
    return plus.save(path, plus.PlusNet.from_shape(iterations=200), {"note": "test"})


@pytest.mark.parametrize("schedule", [*BASELINES, "mlrsnet", "mlrsnet-plus"])
def test_every_schedule_runs_end_to_end_on_digits(
    tmp_path, schedule, schedule_file, plus_file, capsys
):
    name = {"mlrsnet": f"mlrsnet:{schedule_file}", "mlrsnet-plus": f"mlrsnet-plus:{plus_file}"}
    name = name.get(schedule, schedule)
    out = tmp_path / "run"
    code = main(["train", "--task", "digits-mlp", "--schedule", name, "--epochs", "1",
                 "--batch-size", "256", "--out", str(out), "--quiet"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["completed"] and summary["schedule"] == name
    if schedule in ("prodigy", "dadaptation-sgd", "dadaptation-adam", "dog", "mechanic"):
        # their step sizes start at 1e-6 (d0, DoG's reps_rel) or 1e-8 (Mechanic's s_init) and
        # need more than one epoch's 7 steps to grow
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
        (
            ["train", "--task", "digits-mlp", "--schedule", "fixed", "--lr", "fast", "--out", "X"],
            "expected a number or 'probe', got 'fast'",
        ),
        (["meta-train", "--task", "digits-mlp", "--lr", "probe", "--out", "X"], "meta-training"),
        (
            [
                "train",
                "--task",
                "digits-mlp",
                "--schedule",
                "mlrsnet:ptb-lstm",
                "--lr",
                "probe",
                "--out",
                "X",
            ],
            "faithful MLR-SNet is its scale gamma",
        ),
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


def test_validation_and_test_at_the_end_from_flags_or_a_config_file(tmp_path, capsys):
    argv = ["train", "--task", "digits-mlp", "--schedule", "cosine", "--epochs", "2",
            "--batch-size", "256", "--validation", "--test-eval", "end", "--no-augment"]  # fmt: skip
    assert main([*argv, "--out", str(tmp_path / "flag"), "--threads", "1"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if " epoch " in line]
    assert "val metric" in lines[0] and "test metric" not in lines[0]
    assert "val metric" in lines[1] and "test metric" in lines[1]
    summary = json.loads((tmp_path / "flag" / "summary.json").read_text())
    assert summary["best_test_metric"] is None and summary["val_selected_test_metric"] > 50
    config = tmp_path / "run.toml"
    config.write_text('validation = true\ntest-eval = "end"\nno-augment = true\n')
    assert main([*argv[:-4], "--config", str(config), "--out", str(tmp_path / "toml"),
                 "--threads", "1", "--quiet"]) == 0  # fmt: skip
    from_file = json.loads((tmp_path / "toml" / "summary.json").read_text())
    assert from_file["val_selected_test_metric"] == summary["val_selected_test_metric"]


def test_lr_probe_from_a_flag_or_a_config_file(tmp_path, capsys):
    argv = ["train", "--task", "digits-mlp", "--schedule", "cosine", "--epochs", "1",
            "--batch-size", "256", "--seed", "2"]  # fmt: skip
    assert main([*argv, "--lr", "probe", "--out", str(tmp_path / "flag")]) == 0
    lines = capsys.readouterr().out.splitlines()
    summary = json.loads((tmp_path / "flag" / "summary.json").read_text())
    assert summary["lr"] == "probe" and summary["probe_lr"] > 0 and summary["probe_steps"] > 0
    probe_line = f"probe: base rate {summary['probe_lr']:.4g} after {summary['probe_steps']} steps"
    assert lines[-2].startswith(probe_line)
    assert lines[-1].startswith("done:")
    config = tmp_path / "run.toml"
    config.write_text('lr = "probe"\n')
    assert main([*argv, "--config", str(config), "--out", str(tmp_path / "toml"), "--quiet"]) == 0
    from_file = json.loads((tmp_path / "toml" / "summary.json").read_text())
    assert from_file["probe_lr"] == summary["probe_lr"]  # same model, seed and batch size
    assert (tmp_path / "toml" / "lr.csv").read_text() == (tmp_path / "flag" / "lr.csv").read_text()


def test_a_network_meta_trained_at_the_users_rate_is_noted_under_the_probe(tmp_path, capsys):
    argv = ["train", "--task", "digits-mlp", "--epochs", "1", "--batch-size", "512",
            "--stop-after-steps", "1"]  # fmt: skip
    assert main([*argv, "--schedule", "mlrsnet-plus:v6", "--lr", "probe",
                 "--out", str(tmp_path / "v6")]) == 0  # fmt: skip
    assert (
        "note: mlrsnet-plus:v6 was meta-trained at the rate a user types" in capsys.readouterr().err
    )
    # the user-rate network's zero-tuning mode is the probe's rate: no note
    for schedule, lr in (("mlrsnet-plus:v6", "0.05"), ("mlrsnet-plus:v7", "probe")):
        assert main([*argv, "--schedule", schedule, "--lr", lr,
                     "--out", str(tmp_path / f"{schedule[-2:]}-{lr}")]) == 0  # fmt: skip
        assert "note:" not in capsys.readouterr().err


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
    lines = capsys.readouterr().out.splitlines()
    assert "cosine" in lines[0] and "mlrsnet-plus" not in lines[0]
    assert lines[1].startswith("mlrsnet networks (--schedule mlrsnet:NAME): fmnist-resnet")
    assert lines[2].startswith("mlrsnet-plus networks (--schedule mlrsnet-plus:NAME): v6 (")
    from mlrsnet.lab.benchmark.plan import PLUS, RECOMMENDED_PLUS

    assert RECOMMENDED_PLUS in PLUS and lines[2].count("recommended") == 1
    assert (
        "v7 (user-rate mode; meta-trained at the task's --lr; corrects a warmup-stable-decay; "
        "reads a validation loss (observe_validation); its rate at most 1x the --lr (declared; "
        "--option peak=Infinity lifts it); zero-tuning mode: --lr probe" in lines[2]
    )
    # v6: scales 2.18 (SGD) and 4.83 (AdamW) times a correction of at most 2
    assert RECOMMENDED_PLUS == "v6" and (
        "v6 (user-scaled mode; meta-trained at the task's --lr; corrects a warmup-stable-decay; "
        "its rate up "
        "to 4.36x the --lr with SGD, 9.66x with AdamW (--option peak=1: the --lr is the peak); "
        "recommended)" in lines[2]
    )


def test_schedules_names_the_mode_of_a_user_rate_network(capsys, tmp_path, monkeypatch):
    from mlrsnet import plus

    net = plus.PlusNet.residual(plus.Prior(0.02, 0.98, 1.0, 4.0), {"sgd": 1.0, "adaptive": 1.0},
                                hidden=4, validation=True, peak=1.0)  # fmt: skip
    plus.save(tmp_path / "v9.safetensors", net,
              {"contract": "user-rate", "config": {"base": "user", "peak": 1.0}})  # fmt: skip
    monkeypatch.setattr(plus, "_pretrained_dir", lambda: tmp_path)
    assert main(["schedules"]) == 0
    line = capsys.readouterr().out.splitlines()[2]
    assert line.endswith(
        "v9 (user-rate mode; meta-trained at the task's --lr; corrects a warmup-stable-decay; "
        "reads a validation loss (observe_validation); its rate at most 1x the --lr (declared; "
        "--option peak=Infinity lifts it); zero-tuning mode: --lr probe (the probe's rate as "
        "the --lr))"
    )


def test_the_probe_note_is_for_user_scaled_networks_only(capsys, tmp_path, monkeypatch):
    """``--lr probe`` with a network meta-trained at the user's rate gets a note, unless the
    network is under the user-rate contract (the probe is then its zero-tuning mode)."""
    from mlrsnet import plus
    from mlrsnet.lab import cli

    for name, manifest in (("scaled", {"config": {"base": "user"}}),
                           ("capped", {"contract": "user-rate", "config": {"base": "user",
                                                                          "peak": 1.0}})):  # fmt: skip
        plus.save(tmp_path / f"{name}.safetensors", plus.PlusNet(hidden=4), manifest)
    monkeypatch.setattr(plus, "_pretrained_dir", lambda: tmp_path)
    cli._note_plus_base("mlrsnet-plus:scaled", "probe")
    assert "meant to run without the probe" in capsys.readouterr().err
    cli._note_plus_base("mlrsnet-plus:capped", "probe")
    cli._note_plus_base("mlrsnet-plus:scaled", 0.05)
    assert capsys.readouterr().err == ""


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


HEAVY = ("torch", "numpy", "matplotlib", "sklearn", "scipy", "tqdm", "mlrsnet.net", "mlrsnet.hub",
         "mlrsnet.lab.tasks", "mlrsnet.lab.runner", "mlrsnet.lab.rundir", "mlrsnet.lab.report",
         "mlrsnet.lab.baselines", "mlrsnet.lab.demo")  # fmt: skip


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["train", "--help"],
                                  ["meta-train", "--help"], ["compare", "--help"]])  # fmt: skip
def test_help_and_version_import_no_heavy_module(argv):
    code = (
        "import sys\n"
        "import mlrsnet.lab.cli as cli\n"
        "cli.build_parser()\n"
        "try:\n"
        f"    cli.main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_the_core_package_still_exports_its_names_lazily():
    code = (
        "import sys, mlrsnet\n"
        "assert 'torch' not in sys.modules\n"
        "assert {'MLRSNet', 'MLRSNetLR', 'pretrained', 'hub'} <= set(dir(mlrsnet))\n"
        "from mlrsnet import *\n"
        "print(mlrsnet.__version__, mlrsnet.MLRSNetLR.__name__, pretrained.__module__,\n"
        "      mlrsnet.hub.__name__, 'torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0.1.0", "MLRSNetLR", "mlrsnet.hub", "mlrsnet.hub", "True"]


@pytest.mark.parametrize("kind", ["train", "meta-train"])
def test_a_resumed_run_says_so_and_a_finished_one_is_not_trained_again(tmp_path, kind, capsys):
    out = tmp_path / "run"
    argv = [kind, "--task", "digits-mlp", "--epochs", "2", "--batch-size", "256",
            "--out", str(out), *(["--schedule", "cosine"] if kind == "train" else [])]  # fmt: skip
    assert main([*argv, "--stop-after-steps", "3"]) == 0
    assert not any(line.startswith("resuming") for line in capsys.readouterr().out.splitlines())
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    total = json.loads((out / "summary.json").read_text())["steps"]
    assert [line for line in lines if line.startswith("resuming")] == [
        f"resuming {out} at epoch 1, step 3 of {total}"
    ]
    assert lines[-1].startswith("done:") or lines[-2].startswith("done:")
    trace = (out / "lr.csv").read_text()
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{out}: run already complete (2 epochs, ")
    assert "nothing to train" in lines[0]
    assert (out / "lr.csv").read_text() == trace


def test_a_run_failing_at_start_leaves_no_empty_folder(tmp_path, capsys):
    out = tmp_path / "new" / "run"
    argv = ["train", "--task", "ptb-lstm", "--schedule", "cosine", "--data-dir", "/nonexistent"]
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mlrsnet: error: ptb files not found")
    assert not (tmp_path / "new").exists()  # nor the parent it created
    bad = ["train", "--task", "digits-mlp", "--schedule", "cosine", "--option", "bogus=1"]
    assert main([*bad, "--out", str(out)]) == 2
    assert "bogus" in capsys.readouterr().err and not (tmp_path / "new").exists()
    # a folder that was there before stays, empty or not
    existing = tmp_path / "existing"
    existing.mkdir()
    assert main([*argv, "--out", str(existing)]) == 2
    assert existing.is_dir()
    (existing / "notes.txt").write_text("mine")
    assert main([*argv, "--out", str(existing / "sub")]) == 2
    assert sorted(p.name for p in existing.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize(
    "setting,before,match",
    [
        ("lr = inf", [], "lr: expected a finite number, got 'inf'"),
        ("lr = inf", ["-v"], "lr: expected a finite number, got 'inf'"),  # flag before COMMAND
        ("momentum = nan", ["--verbose"], "momentum: expected a finite number, got 'nan'"),
        ("lr = 1e999", [], "lr: expected a finite number"),
        ("epochs = true", [], "epochs: expected a positive integer, got 'true'"),
        ("lr = true", [], "lr: expected a number or 'probe', got 'true'"),
        ('lr = "fast"', [], "lr: expected a number or 'probe', got 'fast'"),
        ("epochs = 0", [], "epochs: expected a positive integer, got '0'"),
        ("seed = -1", [], "seed: expected a non-negative integer"),
        ("train-fraction = [0.5]", [], "train-fraction: expected a single value"),
        ('noise = "gaussian"', [], "noise must be one of uniform, pairflip"),
        ("label = 3", [], "label: expected a string, got 3"),
        ("quiet = 1", [], "quiet must be true or false"),
    ],
)
def test_config_values_meet_the_same_checks_as_flags(tmp_path, capsys, setting, before, match):
    settings = {"task": '"digits-mlp"', "schedule": '"fixed"', "epochs": "1",
                "out": f'"{tmp_path / "run"}"', "quiet": "true"}  # fmt: skip
    key, value = (part.strip() for part in setting.split("=", 1))
    settings[key] = value  # replaces the setting of that name
    config = tmp_path / "run.toml"
    config.write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
    assert main([*before, "train", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"mlrsnet: error: {config}: {match}"), err
    assert not (tmp_path / "run").exists()


def test_config_save_epochs_list_is_checked_item_by_item(tmp_path, capsys):
    config = tmp_path / "meta.toml"
    config.write_text('task = "digits-mlp"\nsave-epochs = [1, 1.5]\n')
    assert main(["meta-train", "--config", str(config), "--out", str(tmp_path / "x")]) == 2
    assert "save-epochs: expected comma-separated epochs" in capsys.readouterr().err
    config.write_text('task = "digits-mlp"\nsave-epochs = [1, 2]\nepochs = 2\nbatch-size = 256\n')
    out = tmp_path / "run"
    assert main(["meta-train", "--config", str(config), "--out", str(out), "--quiet"]) == 0
    manifest = json.loads((out / "schedule.json").read_text())
    assert manifest["snapshots"] == ["epoch_1", "epoch_2"]


def test_tasks_says_where_it_looked_for_missing_data(monkeypatch, capsys):
    from pathlib import Path

    shared = Path(__file__).resolve().parents[2].parent / "shared" / "data"
    if not (shared / "ptb").is_dir():
        pytest.skip(f"no shared data at {shared}")
    monkeypatch.setenv("MLRSNET_DATA", str(shared))
    assert main(["tasks"]) == 0
    lines = capsys.readouterr().out.splitlines()
    marks = {line.split()[0]: line.rsplit("[data: ", 1)[1] for line in lines if "[data: " in line}
    assert marks["ptb-lstm"] == "yes]" and marks["digits-mlp"] == "yes]"
    assert marks["cifar10-resnet18"] == "missing]"
    cifar = [line for line in lines if line.startswith("  cifar10 (")]
    assert cifar == [f"  cifar10 (cifar10-resnet18, cifar10-wrn28-10): looked in {shared}"]
    assert lines[-1].startswith(
        f"look elsewhere with --data-dir DIR or MLRSNET_DATA=DIR (MLRSNET_DATA is {shared})"
    )
    assert len(lines) <= len(marks) + 10  # compact: one line per task, one per missing dataset
    assert main(["tasks", "--data-dir", "/nonexistent"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "  ptb (ptb-lstm, ptb-lstm3): looked in /nonexistent" in lines
    assert lines[-1].startswith("look elsewhere with --data-dir DIR or MLRSNET_DATA=DIR;")


# -- issue 15: one-line errors, never "stopped after None steps" --------------------------


def one_line_error(capsys, code, expected_code=2):
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == expected_code, err
    assert len(lines) == 1 and lines[0].startswith("mlrsnet: error: "), err
    return lines[0]


TRAIN = ["train", "--task", "digits-mlp", "--schedule", "fixed", "--epochs", "1",
         "--batch-size", "256", "--quiet"]  # fmt: skip


def test_a_damaged_log_is_refused_in_one_line_and_never_stopped_after_none(tmp_path, capsys):
    out = tmp_path / "run"
    argv = [*TRAIN[:-1], "--epochs", "3", "--out", str(out)]
    assert main([*argv, "--stop-after-steps", "9"]) == 0  # past the first epoch
    capsys.readouterr()
    metrics = out / "metrics.jsonl"
    good = metrics.read_bytes()
    metrics.write_bytes(good[:10] + b"\x01" + good[11:])  # the "Invalid control character"
    for _ in range(2):  # refused every time, the same way
        line = one_line_error(capsys, main(argv))
        assert "metrics.jsonl" in line and "start the run afresh" in line
    metrics.write_bytes(good[:-5])  # cut below its committed length: refused, not padded
    assert "shorter than" in one_line_error(capsys, main(argv))
    assert b"\x00" not in metrics.read_bytes()
    metrics.write_bytes(good)
    assert main(argv) == 0
    out_lines = capsys.readouterr().out
    assert "None" not in out_lines and "done:" in out_lines


def test_a_complete_run_whose_summary_is_not_says_complete(tmp_path, capsys):
    """Killed between the last checkpoint and the summary: the run is complete, the summary
    (of the epoch before) is not. The next call rewrites it; on main it printed 'stopped after
    None steps' every time."""
    out = tmp_path / "run"
    argv = [*TRAIN[:-1], "--epochs", "2", "--out", str(out)]
    assert main([*argv, "--stop-after-steps", "6"]) == 0
    earlier = (out / "summary.json").read_text()
    assert main(argv) == 0
    complete = json.loads((out / "summary.json").read_text())
    (out / "summary.json").write_text(earlier)
    capsys.readouterr()
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "None" not in printed and "stopped" not in printed
    rewritten = json.loads((out / "summary.json").read_text())
    assert rewritten["completed"] is True
    for key in ("final_test_metric", "best_test_metric", "final_test_loss", "steps"):
        assert rewritten[key] == complete[key]


def test_an_existing_file_as_out_is_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("mine")
    line = one_line_error(capsys, main([*TRAIN, "--out", str(tmp_path / "file")]))
    assert "is a file, not a run directory" in line
    assert (tmp_path / "file").read_text() == "mine"
    line = one_line_error(capsys, main([*TRAIN, "--out", str(tmp_path / "file" / "run")]), 1)
    assert "Not a directory" in line


def test_a_300_character_out_is_one_line(tmp_path, capsys):
    line = one_line_error(capsys, main([*TRAIN, "--out", str(tmp_path / ("x" * 300))]), 1)
    assert line.endswith("File name too long")


@pytest.mark.parametrize("flag", ["--lr", "--weight-decay"])
def test_a_number_beyond_float32_is_one_line(tmp_path, capsys, flag):
    line = one_line_error(capsys, main([*TRAIN, flag, "1e308", "--out", str(tmp_path / "r")]))
    assert flag[2:].replace("-", "_") in line and "1e+308" in line
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "errno_,text,patched",
    [
        (28, "No space left on device", "os.fsync"),
        (30, "Read-only file system", "pathlib.Path.mkdir"),
        (13, "Permission denied", "mlrsnet.lab.rundir.atomic_write"),
    ],
)
def test_a_full_or_read_only_disk_is_one_line(tmp_path, capsys, monkeypatch, errno_, text, patched):
    def refuse(*args, **kwargs):
        raise OSError(errno_, text, str(tmp_path / "r"))

    monkeypatch.setattr(patched, refuse)
    line = one_line_error(capsys, main([*TRAIN, "--out", str(tmp_path / "r")]), 1)
    assert line.endswith(text)


@pytest.mark.parametrize("part,value", [("fingerprint", [1, 2]), ("fingerprint", "tensor"),
                                        ("model", [1]), ("state", "tensor"),
                                        ("method", None), (None, "tensor"), (None, [1])])  # fmt: skip
def test_a_checkpoint_holding_a_tensor_or_list_is_one_line(tmp_path, capsys, part, value):
    import torch

    out = tmp_path / "run"
    assert main([*TRAIN, "--epochs", "2", "--stop-after-steps", "2", "--out", str(out)]) == 0
    capsys.readouterr()
    value = torch.ones(3) if value == "tensor" else value
    if part is None:
        checkpoint = value
    else:
        checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
        checkpoint[part] = value
    torch.save(checkpoint, out / "checkpoint.pt")
    line = one_line_error(capsys, main([*TRAIN, "--epochs", "2", "--out", str(out)]))
    assert "checkpoint.pt" in line


def test_a_checkpoint_whose_parts_do_not_fit_is_one_line(tmp_path, capsys):
    import torch

    out = tmp_path / "run"
    assert main([*TRAIN, "--epochs", "2", "--stop-after-steps", "2", "--out", str(out)]) == 0
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    checkpoint["model"] = {"weight": torch.ones(2)}
    torch.save(checkpoint, out / "checkpoint.pt")
    capsys.readouterr()
    line = one_line_error(capsys, main([*TRAIN, "--epochs", "2", "--out", str(out)]))
    assert "checkpoint.pt: cannot be resumed" in line


def test_toml_schedule_seven_is_one_line(tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text(f'task = "digits-mlp"\nschedule = 7\nout = "{tmp_path / "r"}"\n')
    assert "schedule: expected a string" in one_line_error(
        capsys, main(["train", "--config", str(config)])
    )
    from mlrsnet.lab.runner import RunConfig, run

    with pytest.raises(ValueError, match="schedule must be a name"):
        run(RunConfig(task="digits-mlp", out=str(tmp_path / "r"), schedule=7))


def test_a_summary_without_metric_is_rewritten_or_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*TRAIN, "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    damaged = {k: v for k, v in summary.items() if k != "metric"}
    (out / "summary.json").write_text(json.dumps(damaged))
    line = one_line_error(capsys, main(["compare", str(out), "--out", str(tmp_path / "cmp")]))
    assert "'metric'" in line
    # the run itself repairs it from its checkpoint: the run is complete
    assert main([*TRAIN, "--out", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text())["metric"] == "accuracy"
