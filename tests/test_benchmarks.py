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


def load_transfer():
    import importlib.util

    spec = importlib.util.spec_from_file_location("transfer", ROOT / "benchmarks" / "transfer.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["transfer"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_transfer_plan_lists_every_axis(capsys):
    assert run_script("transfer.py", "--plan") == 0
    assert "runs, about" in capsys.readouterr().out
    module = load_transfer()
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


def record(target, method, factor, seed, metric, kind="accuracy"):
    return {"run_id": f"{target}-{method}-{factor}-{seed}", "target": target, "method": method,
            "grid_factor": factor, "seed": seed, "metric": kind, "final_test_metric": metric,
            "best_test_metric": metric, "steps_to_goal": None, "seconds_to_goal": None,
            "axis": "dataset", "task": target, "epochs": 1, "goal": 0.0}  # fmt: skip


def test_tuning_protocol_picks_the_grid_point_on_seed_0():
    transfer = load_transfer()
    target = transfer.targets(quick=True)[0]
    seed0 = [
        record(target.name, "cosine", f, 0, m)
        for f, m in zip(transfer.GRID, (90, 95, 97), strict=True)
    ]
    # seed 0's grid is incomplete: the other seeds' tuned runs wait, their defaults run
    specs = {
        (s.grid_factor, s.seed): s
        for s in transfer.plan(quick=True, seeds=2)
        if s.target == target and s.method == "cosine"
    }
    assert transfer.in_protocol(specs[(3.0, 1)], seed0[:2]) is None
    assert transfer.in_protocol(specs[(1.0, 1)], seed0[:2]) is True
    assert transfer.in_protocol(specs[(1 / 3, 0)], []) is True
    # complete: seed 1 runs the default and x3 (best on seed 0), not x1/3
    assert transfer.tuned_factor(seed0, target.name, "cosine") == 3.0
    assert transfer.in_protocol(specs[(3.0, 1)], seed0) is True
    assert transfer.in_protocol(specs[(1 / 3, 1)], seed0) is False
    # the report's tuned column follows seed 0 even where another seed disagrees
    seed1 = [record(target.name, "cosine", 3.0, 1, 91), record(target.name, "cosine", 1.0, 1, 96),
             record(target.name, "cosine", 1 / 3, 1, 99)]  # fmt: skip
    cols = transfer.summarize(seed0 + seed1)[target.name]
    assert cols["cosine (tuned x3)"]["mean"] == 94 and cols["cosine (tuned x3)"]["n"] == 2
    assert cols["cosine (untuned)"]["mean"] == 95.5


def test_tuning_protocol_for_perplexity_and_divergence():
    transfer = load_transfer()
    rs = [record("lm", "fixed", f, 0, m, kind="perplexity")
          for f, m in zip(transfer.GRID, (130.0, 120.0, float("nan")), strict=True)]  # fmt: skip
    assert transfer.tuned_factor(rs, "lm", "fixed") == 1.0  # lower is better; NaN is worst


def test_report_is_written_between_the_markers(tmp_path):
    transfer = load_transfer()
    page = tmp_path / "BENCHMARKS.md"
    page.write_text(f"head\n{transfer.MARKDOWN_BEGIN}\nold\n{transfer.MARKDOWN_END}\ntail\n")
    transfer.write_markdown(page, "### t (x)\n\n| a |")
    text = page.read_text()
    assert text.startswith("head\n") and text.endswith("tail\n")
    assert "old" not in text and "#### t (x)" in text
    with pytest.raises(SystemExit, match="no result markers"):
        (tmp_path / "plain.md").write_text("no markers")
        transfer.write_markdown(tmp_path / "plain.md", "")
