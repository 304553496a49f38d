"""Tests for mlrsnet.lab.report on synthetic run directories with hand-computed statistics."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from mlrsnet.lab import report

ACC = "fmnist-resnet"
PPL = "ptb lstm/word"  # needs sanitizing in file names
PPL_SAFE = "ptb_lstm_word"
EPOCHS, STEPS_PER_EPOCH = 3, 5

# (task, schedule, label or None, seed, final, best, final loss, wall s, completed)
RUNS = [
    # accuracy: cosine 90/91/92 -> mean 91, std 1; best 91/92/93 -> 92 ± 1
    (ACC, "cosine", None, 0, 90.0, 91.0, 0.30, 10.0, True),
    (ACC, "cosine", None, 1, 91.0, 92.0, 0.28, 12.0, True),
    (ACC, "cosine", None, 2, 92.0, 93.0, 0.26, 14.0, True),
    # MLR-SNet 92/94 -> 93 ± sqrt(2); best 93/95 -> 94 ± sqrt(2)
    (ACC, "mlrsnet:fmnist-resnet", "MLR-SNet", 0, 92.0, 93.0, 0.25, 20.0, True),
    (ACC, "mlrsnet:fmnist-resnet", "MLR-SNet", 1, 94.0, 95.0, 0.23, 22.0, True),
    # step: one seed -> std 0
    (ACC, "step", None, 0, 89.5, 90.0, 0.35, 9.0, True),
    # perplexity (lower is better): cosine 120/124 -> 122 ± sqrt(8); best 118/122 -> 120 ± sqrt(8)
    (PPL, "cosine", None, 0, 120.0, 118.0, 4.79, 30.0, True),
    (PPL, "cosine", None, 1, 124.0, 122.0, 4.82, 34.0, True),
    (PPL, "mlrsnet:fmnist-resnet", "MLR-SNet", 0, 110.0, 108.0, 4.70, 40.0, True),
    # step 130/130/136 -> 132 ± sqrt(12); best 129/128/130 -> 129 ± 1; seed 2 incomplete
    (PPL, "step", None, 0, 130.0, 129.0, 4.87, 25.0, True),
    (PPL, "step", None, 1, 130.0, 128.0, 4.87, 27.0, True),
    (PPL, "step", None, 2, 136.0, 130.0, 4.91, 29.0, False),
]


def write_run(
    folder: Path,
    task: str,
    schedule: str,
    label: str | None,
    seed: int,
    final: float,
    best: float,
    loss: float,
    wall: float,
    completed: bool,
) -> Path:
    """A run directory in the format ``mlrsnet train`` writes."""
    folder.mkdir(parents=True)
    metric = "accuracy" if task == ACC else "perplexity"
    summary = {
        "task": task,
        "schedule": schedule,
        "seed": seed,
        "metric": metric,
        "final_test_metric": final,
        "best_test_metric": best,
        "final_test_loss": loss,
        "wall_seconds": wall,
        "epochs": EPOCHS,
        "steps": EPOCHS * STEPS_PER_EPOCH,
        "versions": {"mlrsnet": "0.1.0", "torch": "2.13.0"},
        "command": f"mlrsnet train --task '{task}' --schedule {schedule} --seed {seed}",
        "completed": completed,
    }
    if label is not None:
        summary["label"] = label
    (folder / "summary.json").write_text(json.dumps(summary))
    sign = -1.0 if metric == "accuracy" else 1.0
    lines = []
    for epoch in range(1, EPOCHS + 1):
        lines.append(
            json.dumps(
                {
                    "epoch": epoch,
                    "step": epoch * STEPS_PER_EPOCH,
                    "train_loss": loss + 0.5 * (EPOCHS - epoch) + 0.01 * seed,
                    "test_loss": loss + 0.4 * (EPOCHS - epoch),
                    "test_metric": final + sign * 5.0 * (EPOCHS - epoch),
                    "lr": 0.1 / epoch,
                    "wall_seconds": wall * epoch / EPOCHS,
                }
            )
        )
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    n = EPOCHS * STEPS_PER_EPOCH
    rows = ["step,lr,loss"]
    for step in range(1, n + 1):
        # ends at lr = 0 (cosine-like): the log-scale plot must cope
        lr = 0.1 * (1 + math.cos(math.pi * step / n)) / 2 * (1 + 0.1 * seed)
        rows.append(f"{step},{lr!r},{2.0 / step + 0.01 * seed!r}")
    (folder / "lr.csv").write_text("\n".join(rows) + "\n")
    return folder


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    for task, schedule, label, seed, *rest in RUNS:
        sub = "fmnist" if task == ACC else "ptb/nested"
        write_run(
            root / sub / f"{schedule.replace(':', '-')}-s{seed}", task, schedule, label, seed, *rest
        )
    return root


@pytest.fixture(scope="module")
def runs(runs_root: Path) -> list[report.Run]:
    return report.find_runs([runs_root / "fmnist", runs_root / "ptb"])


@pytest.fixture(scope="module")
def rows(runs: list[report.Run]) -> list[dict]:
    return report.summarize(runs)


def row_of(rows: list[dict], task: str, label: str) -> dict:
    (row,) = [r for r in rows if r["task"] == task and r["label"] == label]
    return row


# ----------------------------------------------------------------------------- loading


def test_load_run_reads_all_files(runs_root: Path) -> None:
    run = report.load_run(runs_root / "fmnist" / "cosine-s1")
    assert run.task == ACC and run.schedule == "cosine" and run.seed == 1
    assert run.label == "cosine"  # no label in the summary -> schedule
    assert run.metric == "accuracy" and run.higher_is_better
    assert run.completed and not run.incomplete
    assert [m["epoch"] for m in run.metrics] == [1, 2, 3]
    assert run.metrics[-1]["test_metric"] == 91.0
    np.testing.assert_array_equal(run.lr_steps, np.arange(1, 16))
    assert run.lr_steps.dtype == np.int64 and run.lr.dtype == np.float64
    assert run.lr[0] == pytest.approx(0.1 * (1 + math.cos(math.pi / 15)) / 2 * 1.1, rel=1e-15)
    assert run.loss[1] == pytest.approx(1.0 + 0.01)
    np.testing.assert_allclose(run.epoch_values("train_loss"), [1.29, 0.79, 0.29], rtol=1e-12)
    labelled = report.load_run(runs_root / "fmnist" / "mlrsnet-fmnist-resnet-s0")
    assert labelled.label == "MLR-SNet" and labelled.schedule == "mlrsnet:fmnist-resnet"


def test_find_runs_recursive_direct_and_deduplicated(runs_root: Path, runs: list) -> None:
    assert len(runs) == len(RUNS)
    assert {r.task for r in runs} == {ACC, PPL}
    again = report.find_runs([runs_root, runs_root / "fmnist" / "step-s0"])
    assert len(again) == len(RUNS)  # the direct run dir is already under runs_root
    single = report.find_runs(runs_root / "fmnist" / "step-s0")  # one path, not a list
    assert [r.label for r in single] == ["step"]
    with pytest.raises(FileNotFoundError, match="nope"):
        report.find_runs([runs_root / "nope"])


def test_find_runs_folder_without_runs(tmp_path: Path) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="summary.json"):
        report.find_runs([tmp_path / "empty"])


def test_missing_summary_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text("")
    with pytest.raises(FileNotFoundError, match=r"run.*summary\.json"):
        report.load_run(tmp_path / "run")


def test_malformed_metrics_line_reports_line_number(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", ACC, "cosine", None, 0, 90.0, 91.0, 0.3, 1.0, True)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    lines[1] = lines[1][:-5]  # truncate the second line
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"metrics\.jsonl: line 2: malformed JSON"):
        report.load_run(run)
    lines[1] = json.dumps({"epoch": 2, "train_loss": "high", "test_metric": 1.0})
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"metrics\.jsonl: line 2: 'train_loss'"):
        report.load_run(run)
    lines[1] = json.dumps({"train_loss": 1.0, "test_metric": 1.0})
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"line 2: missing 'epoch'"):
        report.load_run(run)


def test_malformed_summary_and_lr_csv(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", ACC, "cosine", None, 0, 90.0, 91.0, 0.3, 1.0, True)
    good = (run / "summary.json").read_text()
    (run / "summary.json").write_text(good[:-3])
    with pytest.raises(ValueError, match=r"summary\.json: malformed JSON"):
        report.load_run(run)
    (run / "summary.json").write_text(good.replace('"accuracy"', '"bleu"'))
    with pytest.raises(ValueError, match=r"summary\.json: 'metric'"):
        report.load_run(run)
    (run / "summary.json").write_text(good)
    rows = (run / "lr.csv").read_text().splitlines()
    rows[3] = "3,abc,1.0"
    (run / "lr.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(ValueError, match=r"lr\.csv: line 4"):
        report.load_run(run)


# ----------------------------------------------------------------------------- summary


def test_summarize_accuracy_means_stds_ranks(rows: list[dict]) -> None:
    assert [(r["task"], r["label"], r["rank"]) for r in rows if r["task"] == ACC] == [
        (ACC, "MLR-SNet", 1.0),
        (ACC, "cosine", 2.0),
        (ACC, "step", 3.0),
    ]
    cos = row_of(rows, ACC, "cosine")
    assert cos["n_seeds"] == 3 and cos["seeds"] == [0, 1, 2] and cos["n_incomplete"] == 0
    assert cos["final_test_metric_mean"] == 91.0 and cos["final_test_metric_std"] == 1.0
    assert cos["best_test_metric_mean"] == 92.0 and cos["best_test_metric_std"] == 1.0
    assert cos["final_test_loss_mean"] == pytest.approx(0.28, abs=1e-15)
    assert cos["wall_seconds_mean"] == 12.0
    assert cos["metric"] == "accuracy" and cos["higher_is_better"] is True
    mlr = row_of(rows, ACC, "MLR-SNet")
    assert mlr["schedule"] == "mlrsnet:fmnist-resnet" and mlr["n_seeds"] == 2
    assert mlr["final_test_metric_mean"] == 93.0
    assert mlr["final_test_metric_std"] == pytest.approx(math.sqrt(2), rel=1e-15)
    assert mlr["best_test_metric_mean"] == 94.0
    assert mlr["best_test_metric_std"] == pytest.approx(math.sqrt(2), rel=1e-15)
    assert mlr["final_test_loss_mean"] == pytest.approx(0.24, abs=1e-15)
    assert mlr["wall_seconds_mean"] == 21.0
    step = row_of(rows, ACC, "step")
    assert step["n_seeds"] == 1 and step["final_test_metric_std"] == 0.0
    assert step["final_test_metric_mean"] == 89.5 and step["best_test_metric_mean"] == 90.0
    assert set(rows[0]) == set(report.CSV_COLUMNS)


def test_summarize_perplexity_lower_is_better(rows: list[dict]) -> None:
    ppl = [r for r in rows if r["task"] == PPL]
    # an accuracy-style ranking would put MLR-SNet (110) last
    assert [(r["label"], r["rank"]) for r in ppl] == [
        ("MLR-SNet", 1.0),
        ("cosine", 2.0),
        ("step", 3.0),
    ]
    assert all(r["higher_is_better"] is False for r in ppl)
    cos = row_of(rows, PPL, "cosine")
    assert cos["final_test_metric_mean"] == 122.0
    assert cos["final_test_metric_std"] == pytest.approx(math.sqrt(8), rel=1e-15)
    assert cos["best_test_metric_mean"] == 120.0
    assert cos["best_test_metric_std"] == pytest.approx(math.sqrt(8), rel=1e-15)
    step = row_of(rows, PPL, "step")
    assert step["final_test_metric_mean"] == 132.0
    assert step["final_test_metric_std"] == pytest.approx(math.sqrt(12), rel=1e-15)
    assert step["best_test_metric_mean"] == 129.0
    assert step["best_test_metric_std"] == 1.0  # 129/128/130
    assert step["wall_seconds_mean"] == 27.0
    assert [r["task"] for r in rows] == [ACC] * 3 + [PPL] * 3  # sorted by task, then rank


def test_ties_share_the_mean_rank_and_mixed_metrics_fail(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", ACC, "a", None, 0, 90.0, 91.0, 0.3, 1.0, True)
    b = write_run(tmp_path / "b", ACC, "b", None, 0, 90.0, 92.0, 0.3, 1.0, True)
    c = write_run(tmp_path / "c", ACC, "c", None, 0, 95.0, 95.0, 0.3, 1.0, True)
    rows = report.summarize([report.load_run(p) for p in (a, b, c)])
    assert [(r["label"], r["rank"]) for r in rows] == [("c", 1.0), ("a", 2.5), ("b", 2.5)]
    summary = json.loads((c / "summary.json").read_text())
    (c / "summary.json").write_text(json.dumps({**summary, "metric": "perplexity"}))
    with pytest.raises(ValueError, match="mixed metrics"):
        report.summarize([report.load_run(p) for p in (a, c)])


def cosine_run(folder: Path, seed: int, final: float, **settings: object) -> Path:
    """A cosine run of the accuracy task whose summary also records ``settings``."""
    run_dir = write_run(folder, ACC, "cosine", None, seed, final, final, 0.3, 1.0, True)
    summary = json.loads((run_dir / "summary.json").read_text())
    (run_dir / "summary.json").write_text(json.dumps({**summary, **settings}))
    return run_dir


def test_runs_with_other_result_settings_are_not_averaged_together(tmp_path: Path) -> None:
    # the same task, schedule and seeds, but 10 and 40 epochs: two methods, not four seeds
    runs = [
        report.load_run(cosine_run(tmp_path / f"e{epochs}-s{seed}", seed, final, epochs=epochs))
        for epochs, seed, final in ((10, 0, 80.0), (10, 1, 82.0), (40, 0, 90.0), (40, 1, 92.0))
    ]
    rows = report.summarize(runs)
    assert [(r["label"], r["n_seeds"], r["final_test_metric_mean"], r["rank"]) for r in rows] == [
        ("cosine (epochs=40)", 2, 91.0, 1.0),
        ("cosine (epochs=10)", 2, 81.0, 2.0),
    ]
    assert {r["schedule"] for r in rows} == {"cosine"}
    text = report.write_report(runs, tmp_path / "out").read_text()
    assert "| cosine (epochs=10) | 2 | 81.00 ± 1.41 |" in text
    assert "| cosine (epochs=40) | 2 | 91.00 ± 1.41 |" in text
    # each setting that differs is named, equal ones are not; a default lr reads "default"
    common = dict(epochs=10, momentum=0.9)
    more = [
        cosine_run(tmp_path / "b128-s0", 0, 80.0, batch_size=128, lr=None, **common),
        cosine_run(tmp_path / "b128-s1", 1, 82.0, batch_size=128, lr=None, **common),
        cosine_run(tmp_path / "b256-s0", 0, 85.0, batch_size=256, lr=0.05, **common),
    ]
    labels = [(r["label"], r["n_seeds"]) for r in report.summarize(map(report.load_run, more))]
    assert sorted(labels) == [
        ("cosine (batch_size=128, lr=default)", 2),
        ("cosine (batch_size=256, lr=0.05)", 1),
    ]


def test_incomplete_runs_are_loaded_and_flagged(runs: list, rows: list[dict]) -> None:
    incomplete = [r for r in runs if r.incomplete]
    assert [(r.task, r.label, r.seed) for r in incomplete] == [(PPL, "step", 2)]
    assert row_of(rows, PPL, "step")["n_incomplete"] == 1
    assert row_of(rows, PPL, "cosine")["n_incomplete"] == 0


def test_crashed_run_falls_back_to_metrics_and_tolerates_missing_lr(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "run", PPL, "cosine", None, 3, 150.0, 140.0, 5.0, 7.0, False)
    summary = json.loads((run_dir / "summary.json").read_text())
    summary.update(final_test_metric=None, best_test_metric=None, final_test_loss=None)
    (run_dir / "summary.json").write_text(json.dumps(summary))
    (run_dir / "lr.csv").unlink()
    run = report.load_run(run_dir)
    assert run.incomplete and run.lr.size == 0 and run.lr_steps.dtype == np.int64
    # metrics.jsonl test_metric per epoch: 160, 155, 150 -> final 150, best (lowest) 150
    assert (run.final_test_metric, run.best_test_metric) == (150.0, 150.0)
    assert run.final_test_loss == 5.0
    (row,) = report.summarize([run])
    assert row["final_test_metric_mean"] == 150.0 and row["n_incomplete"] == 1


def test_a_run_tested_only_at_the_end_has_no_best_test_metric(tmp_path: Path) -> None:
    """``test_eval="end"``: the one tested epoch is not a best, so no fallback to it."""
    run_dir = write_run(tmp_path / "run", ACC, "cosine", None, 0, 90.0, 90.0, 0.3, 7.0, True)
    summary = json.loads((run_dir / "summary.json").read_text())
    summary.update(best_test_metric=None, test_eval="end")
    (run_dir / "summary.json").write_text(json.dumps(summary))
    run = report.load_run(run_dir)
    assert run.final_test_metric == 90.0 and math.isnan(run.best_test_metric)
    (row,) = report.summarize([run])
    assert math.isnan(row["best_test_metric_mean"])
    md_path, _ = report.write_table([row], tmp_path / "table")
    assert "| 90.00 ± 0.00 | n/a |" in md_path.read_text()
    summary["test_eval"] = "epoch"  # tested every epoch: the best epoch's, as before
    (run_dir / "summary.json").write_text(json.dumps(summary))
    assert report.load_run(run_dir).best_test_metric == 90.0


def test_a_probed_runs_wall_time_counts_its_probe(tmp_path: Path) -> None:
    plain = write_run(tmp_path / "plain", ACC, "cosine", None, 0, 90.0, 91.0, 0.3, 7.0, True)
    probed = write_run(tmp_path / "probed", ACC, "cosine", None, 1, 90.0, 91.0, 0.3, 7.0, True)
    summary = json.loads((probed / "summary.json").read_text())
    summary.update(probe_lr=0.2, probe_steps=40, probe_seconds=1.5)
    (probed / "summary.json").write_text(json.dumps(summary))
    assert report.load_run(plain).wall_seconds == 7.0
    assert report.load_run(probed).wall_seconds == 8.5
    (row,) = report.summarize([report.load_run(plain), report.load_run(probed)])
    assert row["wall_seconds_mean"] == 7.75


# ----------------------------------------------------------------------------- outputs


def test_write_table_markdown_and_csv(rows: list[dict], tmp_path: Path) -> None:
    md_path, csv_path = report.write_table(rows, tmp_path / "out")
    assert (md_path.name, csv_path.name) == ("comparison.md", "comparison.csv")
    with csv_path.open(newline="") as fh:
        parsed = list(csv.DictReader(fh))
    assert len(parsed) == len(rows) == 6
    assert list(parsed[0]) == list(report.CSV_COLUMNS)
    for got, want in zip(parsed, rows, strict=True):
        assert (got["task"], got["label"], got["schedule"]) == (
            want["task"],
            want["label"],
            want["schedule"],
        )
        assert got["metric"] == want["metric"]
        assert got["higher_is_better"] == ("true" if want["higher_is_better"] else "false")
        assert int(got["n_seeds"]) == want["n_seeds"]
        assert [int(s) for s in got["seeds"].split(";")] == want["seeds"]
        assert int(got["n_incomplete"]) == want["n_incomplete"]
        for key in report.CSV_COLUMNS[8:]:
            assert float(got[key]) == want[key], key  # full precision round trip
    md = md_path.read_text()
    assert f"## {ACC}" in md and "## ptb lstm/word" in md
    assert "lower is better" in md and "higher is better" in md
    assert "| MLR-SNet | 2 | 93.00 ± 1.41 | 94.00 ± 1.41 | 0.2400 | 21.0 | 1 |" in md
    assert "| cosine | 3 | 91.00 ± 1.00 | 92.00 ± 1.00 | 0.2800 | 12.0 | 2 |" in md
    assert "| step | 1 | 89.50 ± 0.00 | 90.00 ± 0.00 | 0.3500 | 9.0 | 3 |" in md
    assert "| cosine | 2 | 122.00 ± 2.83 | 120.00 ± 2.83 | 4.8050 | 32.0 | 2 |" in md
    assert "| step (incomplete: 1/3) | 3 | 132.00 ± 3.46 |" in md


@pytest.fixture(scope="module")
def report_dir(runs: list, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("report") / "out"
    path = report.write_report(
        runs,
        out,
        title="Synthetic comparison",
        intro="Runs made up for the tests.",
        commands=["mlrsnet compare runs/ --out out/"],
        machine="2 shared CPU cores",
    )
    return out, path


def test_plot_runs_writes_valid_pngs(runs: list, tmp_path: Path) -> None:
    import matplotlib.image

    out = tmp_path / "figs"
    pngs = report.plot_runs(runs, out)
    names = [p.name for p in pngs]
    assert names == [
        f"{ACC}_lr.png",
        f"{ACC}_train_loss.png",
        f"{ACC}_test_metric.png",
        f"{PPL_SAFE}_lr.png",
        f"{PPL_SAFE}_train_loss.png",
        f"{PPL_SAFE}_test_metric.png",
    ]
    assert sorted(p.name for p in out.iterdir()) == sorted(names)  # nothing else written
    for png in pngs:
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert len(data) > 10_000
    image = matplotlib.image.imread(pngs[0])
    assert image.shape == (504, 768, 4)  # 6.4 x 4.2 in at 120 dpi, RGBA
    assert image[..., :3].std() > 0.05  # not blank
    assert report.plot_runs([], tmp_path / "none") == []


def test_report_references_pngs_numbers_commands_machine(
    report_dir: tuple[Path, Path], runs: list
) -> None:
    out, path = report_dir
    assert path == out / "report.md"
    text = path.read_text()
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 6
    for png in pngs:
        assert f"]({png.name})" in text  # embedded with a relative link
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["report.md", "comparison.md", "comparison.csv"] + [p.name for p in pngs]
    )
    assert text.startswith("# Synthetic comparison\n\nRuns made up for the tests.")
    for number in ("93.00 ± 1.41", "91.00 ± 1.00", "110.00 ± 0.00", "132.00 ± 3.46", "4.8050"):
        assert number in text
    for run in runs:
        assert run.command in text
    assert "mlrsnet compare runs/ --out out/" in text
    assert "2 shared CPU cores" in text
    assert "torch 2.13.0" in text
    assert "did not complete" in text and "**no**" in text


def test_report_writes_nothing_outside_out_dir_and_prints_nothing(
    runs: list, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    subset = [r for r in runs if r.task == PPL and r.label == "MLR-SNet"]
    path = report.write_report(subset, tmp_path / "deep" / "out")
    assert [p.relative_to(tmp_path).as_posix() for p in sorted(tmp_path.rglob("*"))] == [
        "deep",
        "deep/out",
        "deep/out/comparison.csv",
        "deep/out/comparison.md",
        f"deep/out/{PPL_SAFE}_lr.png",
        f"deep/out/{PPL_SAFE}_test_metric.png",
        f"deep/out/{PPL_SAFE}_train_loss.png",
        "deep/out/report.md",
    ]
    assert "Not given." in path.read_text()  # no machine description
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
