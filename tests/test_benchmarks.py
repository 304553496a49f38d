"""The benchmark scripts run: the transfer suite's quick mode, end to end, and resumes."""

import json
import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_script(name, *args):
    argv = sys.argv
    sys.argv = [name, *args]
    try:
        with pytest.raises(SystemExit) as exit_info:
            runpy.run_path(str(ROOT / "benchmarks" / name), run_name="__main__")
    finally:
        sys.argv = argv
    return exit_info.value.code


def test_transfer_quick_suite_runs_and_resumes(tmp_path, capsys):
    out = tmp_path / "transfer"
    assert run_script("transfer.py", "--quick", "--out", str(out)) == 0
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    methods = {r["method"] for r in records}
    assert {"mlrsnet:digits-quick", "mlrsnet:self", "fixed", "cosine", "adam"} <= methods
    assert {r["grid_factor"] for r in records if r["method"] == "cosine"} == {1 / 3, 1.0, 3.0}
    for r in records:
        assert 0 <= r["final_test_metric"] <= 100
        assert (out / r["run_dir"] / "summary.json").is_file()
    text = capsys.readouterr().out
    assert "### digits-cnn" in text and "(untuned)" in text and "(tuned x" in text
    # a second call finds everything done and adds nothing
    assert run_script("transfer.py", "--quick", "--out", str(out)) == 0
    assert len((out / "results.jsonl").read_text().splitlines()) == len(records)


def test_transfer_plan_lists_every_axis(capsys):
    assert run_script("transfer.py", "--plan") == 0
    assert "runs, about" in capsys.readouterr().out
    import importlib.util

    spec = importlib.util.spec_from_file_location("transfer", ROOT / "benchmarks" / "transfer.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["transfer"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    axes = {t.axis for t in module.targets(quick=False)}
    assert axes == {
        "training length",
        "architecture",
        "dataset",
        "dataset size",
        "label noise",
        "data modality",
    }


def test_overhead_benchmark_prints_the_three_ratios(tmp_path, capsys):
    out = tmp_path / "overhead.json"
    assert run_script("overhead.py", "--model", "small", "--batch-size", "8", "--repeats", "1",
                      "--scheduler-calls", "50", "--json", str(out)) == 0  # fmt: skip
    text = capsys.readouterr().out
    for label in ("(a) meta step / plain step", "(b) scheduler.step(loss)", "(c) whole run"):
        assert label in text
    cpu = json.loads(out.read_text())["devices"]["cpu"]
    assert (
        cpu["a_meta_step_ratio"] > 1
        and cpu["b_scheduler_step_us"] > 0
        and cpu["c_whole_run_ratio"] > 1
    )
