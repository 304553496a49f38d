"""The benchmark scripts run: overhead, the recorded-run reproduction, the shipped schedules.

The held-out suite's tests are in ``tests/lab/benchmark``."""

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
        and cpu["b_plus_scheduler_step_us"] > 0
        and cpu["c_whole_run_ratio"] > 1
    )


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


def test_gpu_nosync_loop_runs_every_scheduler_and_refuses_without_cuda(monkeypatch, capsys):
    import torch

    module = runpy.run_path(str(ROOT / "benchmarks" / "gpu_nosync.py"), run_name="gpu_nosync")
    rows = [module["loop"](kind, 12, 16, 8, seed=0, device="cpu") for kind in
            ("torch-cosine", "mlrsnet-lag1", "plus-lag1", "mlrsnet-lag0", "plus-lag0")]  # fmt: skip
    assert all(r["steps_per_second"] > 0 and 0 <= r["lr_final"] < 0.05 * 4.9 for r in rows)
    assert rows[0]["lr_final"] == 0.0 and all(r["lr_final"] > 0 for r in rows[1:])
    assert not any(r["sync_checked"] for r in rows)  # the sync check is CUDA's
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert module["main"]([]) == 2
    assert "needs a CUDA device" in capsys.readouterr().err


def test_plateau_pilot_prints_each_length_and_the_change_at_twice_it(capsys):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import plateau_pilot
    finally:
        sys.path.pop(0)
    argv = ["--suite", "quick-convergence", "--targets", "quick-conv-digits-mlp", "--epochs", "1",
            "--seeds", "0", "--workers", "1", "--augment", "off"]  # fmt: skip
    assert plateau_pilot.main(argv) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "`quick-conv" in line]
    assert len(rows) == 1
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[1:3] == ["no", "1"] and cells[5] == "2"
    test_1x, test_2x, change = float(cells[4]), float(cells[7]), float(cells[8])
    assert 0 < test_1x <= 100 and 0 < test_2x <= 100
    assert change == pytest.approx(test_2x - test_1x, abs=0.011)
    with pytest.raises(SystemExit):  # an unknown target: argparse's error, naming it
        plateau_pilot.main(["--targets", "no-such-target"])
    assert "no-such-target" in capsys.readouterr().err


def test_stacking_steps_each_model_as_it_would_alone_and_prints_the_ratio(capsys, monkeypatch):
    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import stacking
    finally:
        sys.path.pop(0)
    small = lambda: torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 16))  # noqa: E731
    assert stacking.agreement(small, count=3, steps=3) < 1e-6
    moved = stacking.Stacked(stacking._models(small, 2), lr=0.05)
    before = [p.clone() for p in moved.parameters()[1].values()]
    moved.step(*stacking._batches(2, 1)[0])
    after = moved.parameters()[1].values()
    assert all(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    monkeypatch.setattr(stacking, "MODELS", {"small": small})
    stacking.main(["--count", "2", "--steps", "2"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| small")]
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert float(cells[1]) < 1e-6 and float(cells[4]) > 0


def test_plus_outputs_prints_the_rate_of_each_trace_and_the_ablation(capsys):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import plus_outputs
    finally:
        sys.path.pop(0)
    assert plus_outputs.main(["v6", "--steps", "60"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| sgd")]
    assert len(rows) == 1 + len(plus_outputs.LOSSES)  # v6 reads no validation loss
    ablation = [float(c) for c in rows[0].strip("|").split("|")[3:]]
    assert len(ablation) == 11 and all(0 < v < 5 for v in ablation[:-1])


def test_plus_objectives_prints_accuracy_and_both_objectives_per_schedule(capsys, monkeypatch):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import plus_objectives
    finally:
        sys.path.pop(0)
    monkeypatch.setattr(plus_objectives, "INSTANCES", (("digits-mlp", 0.5, "sgd", 0.4, 2, (3,)),))
    assert plus_objectives.main(["--network", "v7", "--weights", "-2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| instance | seed | cosine | v7 | +response -2 |"
    (row,) = [line for line in lines if line.startswith("| `digits-mlp`")]
    cells = row.strip("| ").split(" | ")[2:]
    assert len(cells) == 3
    for cell in cells:  # accuracy / soft error / sharp error, each in [0, 1]
        assert all(0.0 <= float(v) <= 1.0 for v in cell.split(" / "))
