"""The quick suite end to end on a local Ray cluster: records, resume, report, figures."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from mlrsnet.lab.benchmark import execute, plan, report, tasksets

ROOT = Path(__file__).resolve().parents[3]
SHARED = ROOT.parent / "shared"

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module", autouse=True)
def _stop_ray():
    """The in-process calls start a local Ray cluster; stop it when the module is done."""
    yield
    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture(scope="module")
def quick_suite(tmp_path_factory):
    """``benchmarks/heldout.py --quick`` in a subprocess, as CI and users run it."""
    out = tmp_path_factory.mktemp("quick")
    command = [sys.executable, str(ROOT / "benchmarks" / "heldout.py"), "--quick", "--out", str(out),
               "--reference", str(SHARED / "reference")]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def _records(out):
    return [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]


def test_quick_suite_records_every_job_once(quick_suite):
    rows = _records(quick_suite)
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids))
    runs, probes = plan.plan(tasksets.QUICK, (0, 1))
    assert {p.probe_id for p in probes} <= set(ids)
    assert {r.run_id for r in runs} <= set(ids)
    tuned = [r for r in rows if r.get("tier") == "tuned"]
    assert tuned or all(execute.tuned_factor(rows, t.name, m) == 1.0
                        for t in tasksets.QUICK for m in plan.TUNED)  # fmt: skip
    for row in rows:
        if row["kind"] == "probe":
            assert 1e-6 <= row["lr"] <= 100 and row["steps"] >= 1
            continue
        assert 0 <= row["final_test_metric"] <= 100
        assert row["final_val_metric"] is not None
        assert len(row["curve"]["lr"]) == len(row["curve"]["step"]) <= execute.CURVE_POINTS
        if row["tier"] == "probe":  # the probe's rate and cost travel with the run
            probe = next(r for r in rows if r["id"] == f"{row['target']}--probe--s{row['seed']}")
            assert row["lr"] == probe["lr"] and row["probe_steps"] == probe["steps"]
    for row in tuned:  # tuned on the validation split of the tuning seed, run on eval seeds
        assert row["seed"] in (0, 1) and row["factor"] in plan.GRID


def test_a_tuned_rate_is_chosen_by_validation_not_test(quick_suite):
    rows = _records(quick_suite)
    for target in tasksets.QUICK:
        for method in plan.TUNED:
            grid = [r for r in rows if r.get("tier") == "tuning" and r["target"] == target.name
                    and r["method"] == method]  # fmt: skip
            factor = execute.tuned_factor(rows, target.name, method)
            best_val = max(grid, key=lambda r: (r["final_val_metric"], -r["factor"]))
            assert factor == best_val["factor"]


def test_finished_jobs_are_never_run_again(quick_suite, tmp_path):
    before = _records(quick_suite)
    records = execute.execute(tasksets.QUICK, out=quick_suite, workers=1, seeds=(0, 1),
                              reference=str(SHARED / "reference"))  # fmt: skip
    assert len(records.rows) == len(before)


def test_a_lost_record_is_recomputed_from_its_finished_run(quick_suite):
    lines = (quick_suite / "records.jsonl").read_text().splitlines()
    victim = next(json.loads(line) for line in lines if '"kind": "run"' in line
                  and '"tier": "defaults"' in line)  # fmt: skip
    kept = [line for line in lines if json.loads(line)["id"] != victim["id"]]
    (quick_suite / "records.jsonl").write_text("\n".join(kept) + "\n")
    records = execute.execute(tasksets.QUICK, out=quick_suite, workers=1, seeds=(0, 1),
                              reference=str(SHARED / "reference"))  # fmt: skip
    again = next(r for r in records.rows if r["id"] == victim["id"])
    assert again["final_test_metric"] == victim["final_test_metric"]
    assert len(records.rows) == len(lines)


def test_a_suite_can_run_some_methods_only(tmp_path):
    target = tasksets.QUICK[0]
    picked = ["mlrsnet-plus:v6", "mlrsnet-plus:v6~probe"]  # the default rate, the probe's
    records = execute.execute([target], out=tmp_path, workers=1, seeds=(0,), methods=picked)
    kinds = sorted((r["kind"], r.get("method", "")) for r in records.rows)
    assert kinds == [("probe", ""), ("run", picked[0]), ("run", picked[1])]
    with pytest.raises(ValueError, match="no target plans method.s. cosine~typo"):
        execute.execute([target], out=tmp_path, workers=1, seeds=(0,), methods=["cosine~typo"])


def test_a_damaged_records_file_is_refused_with_its_line(tmp_path):
    (tmp_path / "records.jsonl").write_text('{"id": "a"}\n{not json\n')
    with pytest.raises(ValueError, match="line 2"):
        execute.Records(tmp_path / "records.jsonl")


def test_quick_report_has_every_target_tier_and_figure(quick_suite):
    text = (quick_suite / "report.md").read_text()
    assert report.BEGIN in text and report.END in text
    for target in tasksets.QUICK:
        assert f"#### {target.name}" in text
        assert (quick_suite / "figures" / f"{target.name}.png").is_file()
    assert (quick_suite / "figures" / "ranks.png").is_file()
    for label in ("cosine · defaults", "cosine · probe", "cosine · tuned", "wsd · tuned",
                  "mlrsnet:authors", "mlrsnet:fmnist-resnet", "schedulefree · defaults",
                  "cosine · defaults + early stop"):  # fmt: skip
        assert f"| {label} |" in text, label
    assert "### What is significant" in text and "win" in text


def test_report_rows_agree_with_the_records(quick_suite):
    records = execute.Records(quick_suite / "records.jsonl")
    result = report.tables(records, tasksets.QUICK, (0, 1))
    rows = result["quick-digits-mlp"]
    cosine = next(r for r in rows if r.label == "cosine · defaults")
    expected = [r["final_test_metric"] for r in records.rows
                if r["id"] in (f"quick-digits-mlp--cosine--lr0.1--s{s}" for s in (0, 1))]  # fmt: skip
    assert sorted(cosine.values()) == sorted(expected)
    noisy = result["quick-digits-mlp-adamw"]
    stopped = next(r for r in noisy if r.tier == "defaults + early stop")
    assert stopped.values() == [r["val_selected_test_metric"] for r in stopped.records]


def _runs(rows, target):
    return [r for r in rows if r.get("target") == target and r["kind"] == "run"]


def _section(text, heading):
    return text.split(heading, 1)[1].split("\n### ", 1)[0]


def test_quick_convergence_suite_records_its_plan_and_reports_it(tmp_path):
    """``heldout.py --suite convergence --quick``: every planned job recorded once, the
    learning-rate-free anchors among them, and a report with each target and its check."""
    command = [sys.executable, str(ROOT / "benchmarks" / "heldout.py"), "--suite", "convergence",
               "--quick", "--workers", "1", "--out", str(tmp_path),
               "--reference", str(SHARED / "reference")]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = _records(tmp_path)
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids))
    runs, probes = plan.plan(tasksets.QUICK_CONVERGENCE, (0, 1))
    assert {r.run_id for r in runs} | {p.probe_id for p in probes} <= set(ids)
    first = tasksets.QUICK_CONVERGENCE[0].name
    methods = {r["method"] for r in rows if r.get("target") == first and r["kind"] == "run"}
    assert {"fixed", "dadaptation-sgd", "dog", "mechanic", "prodigy", "schedulefree-sgd",
            "mlrsnet:fmnist-resnet", "mlrsnet:authors"} <= methods  # fmt: skip
    plus_rows = {m for m in methods if m.startswith("mlrsnet-plus:")}
    assert plus_rows == {"mlrsnet-plus:v6", "mlrsnet-plus:v7", "mlrsnet-plus:v7~progress-only",
                         "mlrsnet-plus:v7~probe"}  # fmt: skip
    assert "wsd~fitted-user-convergence" in methods  # v7's bar
    for row in rows:
        if row["kind"] == "run":
            assert 0 <= row["final_test_metric"] <= 100
            assert all(math.isfinite(lr) for lr in row["curve"]["lr"])
    # --plan of the finished suite: every job of every target done, the tuned tier included
    shown = subprocess.run(command[:-4] + ["--plan", "--out", str(tmp_path)],
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    assert shown.returncode == 0, shown.stderr[-3000:]
    for target in tasksets.QUICK_CONVERGENCE:
        jobs, finished = shown.stdout.split(f"{target.name} ", 1)[1].split()[:2]
        assert jobs == finished, (target.name, jobs, finished)
    assert "left: 0.00 h" in shown.stdout
    text = (tmp_path / "report.md").read_text()
    for target in tasksets.QUICK_CONVERGENCE:
        # each target has its table; its learning-curve check is a row of the plateau table
        assert (f"#### {target.name}" in text) != bool(target.check_seeds)
        assert f"| `{target.name}` | {len(_runs(rows, target.name))} |" in text  # the costs
    plateau = _section(text, "### At their plateau")
    assert plateau.count("| `quick-conv-digits-mlp` |") == 1
    assert "(seeds 0, 1) |" in plateau  # the check's seeds
    gaps = _section(text, "### Zero tuning")
    assert "| dog · defaults |" in gaps and "| mlrsnet-plus:v6 |" in gaps
    assert "· tuned |" not in gaps  # the reference itself is not a zero-tuning row
    assert "dog · defaults" in text and "mechanic · defaults" in text
    # on a page with the short-horizon section, the convergence report goes before it, once,
    # and leaves the rest of the page as it was
    page = tmp_path / "page.md"
    heading = "## The held-out transfer benchmark"
    rest = f"{heading}\n\n{report.BEGIN}\nshort-horizon tables\n{report.END}\n"
    page.write_text(f"# Benchmarks\n\noverhead\n\n{rest}")
    for _ in range(2):
        report.write(tmp_path, tasksets.QUICK_CONVERGENCE, page, quick=True,
                     suite="convergence", insert_before=heading)  # fmt: skip
        written = page.read_text()
        begin, end = report.markers("convergence")
        assert written.startswith("# Benchmarks\n\noverhead\n\n" + begin)
        assert written.count(begin) == 1 and written.endswith(rest)
        assert written.index(end) < written.index(heading)
        assert f"#### {tasksets.QUICK_CONVERGENCE[0].name}" in written
