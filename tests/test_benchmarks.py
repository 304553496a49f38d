"""The benchmark scripts run: the transfer suite's quick mode, end to end, and resumes."""

import json
import os
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
    every_axis = {
        "training length",
        "architecture",
        "dataset",
        "dataset size",
        "label noise",
        "data modality",
    }
    for suite in ("cpu", "full"):
        assert {t.axis for t in module.targets(suite)} == every_axis
    # the label-noise targets also meta-train on the noisy task; modality uses both networks
    noisy = [t for t in module.targets("cpu") if t.axis == "label noise"]
    assert noisy and all(t.self_meta for t in noisy)
    modality = [t for t in module.targets("cpu") if t.axis == "data modality"]
    assert modality and all({"fmnist-resnet", "ptb-lstm"} <= set(t.networks) for t in modality)
    with pytest.raises(ValueError, match="suite must be one of"):
        module.targets("huge")


def test_the_cpu_suite_is_sized_for_this_machine():
    transfer = load_transfer()
    specs = transfer.plan("cpu", seeds=3)
    seconds = sum(
        w * transfer.estimate_seconds(s) for s, w in transfer.planned_cost(specs, [], False)
    )
    assert seconds < 6 * 3600  # the budget: about 6 hours of the 2-core machine
    full = transfer.plan("full", seeds=3)
    assert sum(w for _, w in transfer.planned_cost(full, [], False)) < len(full)  # the protocol


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
    target = transfer.targets("quick")[0]
    seed0 = [
        record(target.name, "cosine", f, 0, m)
        for f, m in zip(transfer.GRID, (90, 95, 97), strict=True)
    ]
    # seed 0's grid is incomplete: the other seeds' tuned runs wait, their defaults run
    specs = {
        (s.grid_factor, s.seed): s
        for s in transfer.plan("quick", seeds=2)
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


def test_ablation_runs_its_variants_and_tabulates_them(tmp_path, capsys):
    if not (ROOT.parent / "shared" / "reference" / "official-checkpoints").is_dir():
        pytest.skip("the authors' checkpoints are not in ../shared/reference")
    out = tmp_path / "ablation"
    args = ("--out", str(out), "--transfer", str(tmp_path / "none"), "--targets", "digits-mlp")
    assert run_script("ablation.py", *args, "--only", "gamma-fixed", "authors", "--seeds", "1") == 0
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert {(r["variant"], r["method"]) for r in records} == {
        ("gamma-fixed", "mlrsnet:gamma-fixed"),
        ("authors", "mlrsnet:authors"),
    }
    fixed = next(r for r in records if r["variant"] == "gamma-fixed")
    assert fixed["lr"] == 0.67 and fixed["gamma"] == 0.67  # γ held, not the paper's rule
    authors = next(r for r in records if r["variant"] == "authors")
    assert authors["gamma"] != 0.67 and 0 < authors["final_test_metric"] <= 100
    table = capsys.readouterr().out
    assert "| digits-mlp |" in table and "gamma-fixed" in table


def test_processes_share_the_plan_through_run_locks(tmp_path):
    transfer = load_transfer()
    assert transfer.claim(tmp_path, "a--fixed-x1--s0")
    assert not transfer.claim(tmp_path, "a--fixed-x1--s0")  # held by a live process (us)
    assert transfer.claim(tmp_path, "a--fixed-x1--s1")  # another run is free
    transfer.release(tmp_path, "a--fixed-x1--s0")
    assert transfer.claim(tmp_path, "a--fixed-x1--s0")
    # a lock left by a process that died is taken over
    import subprocess

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    (tmp_path / "runs" / "a--cosine-x1--s0.lock").write_text(dead)
    assert not transfer._held(tmp_path / "runs" / "a--cosine-x1--s0.lock")
    assert transfer._held(tmp_path / "runs" / "a--fixed-x1--s1.lock")  # ours, alive
    assert transfer.claim(tmp_path, "a--cosine-x1--s0")
    assert (tmp_path / "runs" / "a--cosine-x1--s0.lock").read_text() == str(os.getpid())


def test_results_are_read_again_when_the_file_grows(tmp_path):
    transfer = load_transfer()
    path = tmp_path / "results.jsonl"
    assert transfer.read_results(path) == {}
    path.write_text(json.dumps({"run_id": "x"}) + "\n")
    assert set(transfer.read_results(path)) == {"x"}
    with open(path, "a") as f:
        f.write(json.dumps({"run_id": "y"}) + "\n")
    assert set(transfer.read_results(path)) == {"x", "y"}


def test_report_states_the_aim_and_ranks_on_complete_targets():
    transfer = load_transfer()
    records = []
    for target in ("a", "b"):
        for i, name in enumerate(transfer.BASELINES):
            for f, bonus in zip(transfer.GRID, (0.0, 0.5, 0.2), strict=True):
                seeds = range(3) if f == 1.0 or (name != "cosine" and f == 1 / 3) else [0]
                records += [record(target, name, f, s, 80.0 + i + bonus) for s in seeds]
            # cosine's best point on seed 0 (x3) runs on every seed
            if name == "cosine":
                records += [record(target, name, 3.0, s, 80.0 + i + 0.2) for s in (1, 2)]
        records += [record(target, "mlrsnet:net", None, s, 90.0) for s in range(3)]
    text = transfer.report(records)
    # baseline i scores 80 + i (+0.5 at its default, its best point): prodigy, the last, is
    # 93.5 untuned; MLR-SNet's 90 beats the 10 untuned baselines below it
    best = len(transfer.BASELINES) - 1 + 80.5
    assert (
        f"| a | net | 90.00 | prodigy (tuned x1): {best:.2f} | +{best - 90:.2f} points | 10 of 14 |"
        in text
    )
    assert "Mean rank over the 2 complete targets" in text
    incomplete = [r for r in records if not (r["target"] == "b" and r["seed"] == 2)]
    assert "Mean rank" not in transfer.report(incomplete)  # one complete target: no ranking


def _reproduce_module():
    return runpy.run_path(str(ROOT / "benchmarks" / "reproduce.py"), run_name="reproduce")


def test_reproduce_rebuilds_the_recorded_commands(tmp_path):
    module = _reproduce_module()
    records = module["read_records"]()
    assert set(module["DEFAULT_RUNS"]) <= set(records)
    noisy_self = module["commands"](records["digits-cnn-uniform40--mlrsnet-self--s0"], tmp_path)
    assert [c[1] for c in noisy_self] == ["meta-train", "train"]
    for command in noisy_self:  # the target's noise, its length and seed, single-threaded
        text = " ".join(command)
        assert "--noise uniform --noise-rate 0.4" in text and "--epochs 30" in text
        assert "--seed 0" in text and "--threads 1" in text
    assert "--meta-interval 2 --save-epochs 1,15,30" in " ".join(noisy_self[0])
    assert noisy_self[1][5] == f"mlrsnet:{tmp_path / 'self-meta' / 'schedule.safetensors'}"
    text_run = module["commands"](records["shakespeare-lstm-10pct--plateau-x0.333--s1"], tmp_path)
    assert len(text_run) == 1 and "--train-fraction 0.1" in " ".join(text_run[0])
    assert text_run[0][-2:] == [
        "--lr",
        repr(records["shakespeare-lstm-10pct--plateau-x0.333--s1"]["lr"]),
    ]


def test_reproduce_runs_a_record_and_compares_with_an_earlier_rerun(tmp_path, capsys):
    run_id = "digits-mlp--fixed-x1--s1"
    first = tmp_path / "first.json"
    code = run_script("reproduce.py", "--runs", run_id, "--json", str(first))
    rerun = json.loads(first.read_text())[0]["rerun"]
    assert code == (0 if json.loads(first.read_text())[0]["exact"] else 1)  # vs the record
    # the same machine twice: exactly the same metrics, whatever the recording CPU gave
    assert run_script("reproduce.py", "--runs", run_id, "--expect", str(first)) == 0
    assert f"rerun {rerun}; same as --expect" in capsys.readouterr().out


def test_shipped_schedules_alone_are_constant_and_in_stages_a_staircase():
    module = runpy.run_path(str(ROOT / "benchmarks" / "shipped_schedules.py"), run_name="x")
    losses = module["loss_curve"](300)
    for name in ("fmnist-resnet-every100", "ptb-lstm"):
        alone = module["factors"](name, False, losses)
        staged = module["factors"](name, True, losses)
        assert all(0 < a < 1 for a in alone + staged)
        assert max(alone[20:]) / min(alone[20:]) < 1.05  # one snapshot: a constant factor
        assert staged[:100] == alone[:100]  # the first stage is the first snapshot
        assert staged[-1] < 0.9 * staged[99]  # later snapshots step down
