"""MLR-SNet+ in the benchmark: its variants (issue 11's ablations) and the fitted WSD family."""

import json
from collections import Counter

import numpy as np
import pytest
import torch

from mlrsnet import plus
from mlrsnet.lab.benchmark import execute, plan, report, tasksets

FITTED = {"peak": 1.5, "warmup": 0.05, "cooldown": 0.3, "power": 1.0}


@pytest.fixture
def shipped(monkeypatch, tmp_path):
    """A shipped network ``v1`` (random, so it reads the loss) and a fitted WSD family."""
    folder = tmp_path / "plus"
    folder.mkdir()
    torch.manual_seed(0)
    net = plus.PlusNet(hidden=4)
    plus.save(folder / "v1.safetensors", net, {"command": "test"})
    monkeypatch.setattr(plus, "_pretrained_dir", lambda: folder)
    monkeypatch.setattr(plan, "PLUS", ("v1",))
    fitted = tmp_path / "wsd_fitted.json"
    fitted.write_text(json.dumps({"options": {"sgd": FITTED, "adaptive": {**FITTED, "peak": 0.2}}}))
    monkeypatch.setattr(plan, "FITTED_WSD", {"fitted": fitted,
                                             "fitted-user": tmp_path / "absent.json"})  # fmt: skip
    return tmp_path


@pytest.fixture
def shipped_at_default(shipped, monkeypatch):
    """Beside ``v1``, a network ``v2`` meta-trained at the default rate, and the WSD family
    fitted at the default rate."""
    torch.manual_seed(1)
    plus.save(shipped / "plus" / "v2.safetensors", plus.PlusNet(hidden=4),
              {"command": "test", "config": {"base": "user"}})  # fmt: skip
    monkeypatch.setattr(plan, "PLUS", ("v1", "v2"))
    fitted = shipped / "wsd_fitted_user.json"
    fitted.write_text(json.dumps({"config": {"base": "user"},
                                  "options": {"sgd": {**FITTED, "peak": 3.0},
                                              "adaptive": {**FITTED, "peak": 0.5}}}))  # fmt: skip
    monkeypatch.setitem(plan.FITTED_WSD, "fitted-user", fitted)
    return shipped


def test_the_learned_tier_is_the_faithful_networks_then_mlrsnet_plus():
    target = tasksets.HELD_OUT[0]
    plus_runs = [f"mlrsnet-plus:{n}{v}" for n in plan.PLUS for v in plan.plus_variants(n)]
    short = [v for v in plan.FITTED_WSD if v != "fitted-user-convergence"]  # v7's: convergence
    fitted = [f"wsd~{v}" for v in short if plan.fitted_wsd(variant=v) is not None]
    assert [m for m, _ in plan.learned_methods(target)] == [*plan.LEARNED, *plus_runs, *fitted]
    assert plus_runs == [
        "mlrsnet-plus:v6",
        "mlrsnet-plus:v6~progress-only",
        "mlrsnet-plus:v6~probe",
    ]
    for method in plan.LEARNED:  # the faithful networks keep the paper's rate (their run ids)
        spec = plan.RunSpec(target.name, method, "learned", 0)
        assert not plan.uses_probe(spec) and spec.run_id.endswith("--paper--s0")


def test_every_variant_is_planned_on_every_seed_at_its_rate(shipped):
    target = tasksets.HELD_OUT[1]  # SGD
    runs, _ = plan.plan([target])
    learned = [r for r in runs if r.tier == "learned"]
    cells = Counter(r.method for r in learned)
    expected = {"mlrsnet-plus:v1", "mlrsnet-plus:v1~progress-only", "mlrsnet-plus:v1~user-lr",
                "wsd~fitted", *plan.LEARNED}  # fmt: skip
    assert set(cells) == expected and set(cells.values()) == {len(plan.EVAL_SEEDS)}
    by_method = {r.method: r for r in learned if r.seed == 0}
    for method in ("mlrsnet-plus:v1", "mlrsnet-plus:v1~progress-only", "wsd~fitted"):
        assert plan.uses_probe(by_method[method]), method
        assert by_method[method].run_id.endswith("--probe--s0")
    user = by_method["mlrsnet-plus:v1~user-lr"]
    assert user.lr == target.lr and not plan.uses_probe(user)
    assert len({r.run_id for r in runs}) == len(runs)


def test_a_network_meta_trained_at_the_default_rate_runs_there(shipped_at_default):
    target = tasksets.HELD_OUT[1]  # SGD
    assert plan.plus_base("v2") == "user" and plan.plus_base("v1") == "probe"
    assert plan.plus_variants("v2") == ("", "~progress-only", "~probe")
    runs, _ = plan.plan([target])
    by_method = {r.method: r for r in runs if r.tier == "learned" and r.seed == 0}
    for method in ("mlrsnet-plus:v2", "mlrsnet-plus:v2~progress-only", "wsd~fitted-user"):
        assert by_method[method].lr == target.lr and not plan.uses_probe(by_method[method])
    assert plan.uses_probe(by_method["mlrsnet-plus:v2~probe"])
    assert "mlrsnet-plus:v2~user-lr" not in by_method and "mlrsnet-plus:v1~user-lr" in by_method
    assert len({r.run_id for r in runs}) == len(runs)
    quick = tasksets.QUICK[0]  # digits MLP, SGD
    out = shipped_at_default / "suite"
    fitted = _train(quick, "wsd~fitted-user", 0, out, lr=quick.lr)
    assert fitted["lr"] == pytest.approx(quick.lr * 3.0) and fitted["probe_steps"] is None
    assert max(fitted["curve"]["lr"]) == pytest.approx(quick.lr * 3.0, rel=1e-6)
    probed = _train(quick, "mlrsnet-plus:v2~probe", 0, out, {"lr": 0.02, "steps": 5, "seconds": 0})
    assert probed["lr"] == 0.02 and probed["probe_steps"] == 5


def _train(target, method, seed, out, probe=None, lr=None):
    spec = plan.RunSpec(target.name, method, "learned", seed, lr)
    return execute.run_training(target, spec, out=str(out), probe=probe)


def test_variants_run_as_their_names_say(shipped):
    target = tasksets.QUICK[0]  # digits MLP, SGD
    probe = {"lr": 0.05, "steps": 17, "seconds": 0.1}
    out = shipped / "suite"
    full = [_train(target, "mlrsnet-plus:v1", seed, out, probe) for seed in (0, 1)]
    only = [_train(target, "mlrsnet-plus:v1~progress-only", seed, out, probe) for seed in (0, 1)]
    for row in full + only:
        assert row["lr"] == 0.05 and row["probe_steps"] == 17
    # with the loss inputs held, the rates depend on t/T alone: the same on both seeds
    assert only[0]["curve"]["lr"] == only[1]["curve"]["lr"]
    # the full network reads the loss, whose curve differs between the seeds
    assert full[0]["curve"]["lr"] != full[1]["curve"]["lr"]
    assert full[0]["curve"]["lr"] != only[0]["curve"]["lr"]
    user = _train(target, "mlrsnet-plus:v1~user-lr", 0, out, lr=target.lr)
    assert user["lr"] == target.lr and user["probe_steps"] is None
    fitted = _train(target, "wsd~fitted", 0, out, probe)
    assert fitted["lr"] == pytest.approx(0.05 * FITTED["peak"])
    curve = np.array(fitted["curve"]["lr"])
    assert curve.max() == pytest.approx(0.05 * FITTED["peak"], rel=1e-6)
    assert curve[0] < curve.max()  # the fitted warmup
    adamw = _train(tasksets.QUICK[1], "wsd~fitted", 0, out, {"lr": 0.004, "steps": 9, "seconds": 0})
    assert adamw["lr"] == pytest.approx(0.004 * 0.2)  # the adaptive family's own peak


def test_an_unknown_variant_or_a_missing_family_is_refused(shipped, monkeypatch):
    target = tasksets.QUICK[0]
    with pytest.raises(ValueError, match="unknown variant 'typo'"):
        execute._options(target, "mlrsnet-plus:v1~typo")
    with pytest.raises(ValueError, match="wsd~fitted needs a base rate"):  # no probe, no lr
        _train(target, "wsd~fitted", 0, shipped / "suite")
    with pytest.raises(ValueError, match="unknown variant 'fitted'"):  # the WSD family only
        execute._options(target, "cosine~fitted")
    with pytest.raises(ValueError, match="no fitted WSD family 'fitted-typo'"):
        plan.fitted_wsd(variant="fitted-typo")
    monkeypatch.setitem(plan.FITTED_WSD, "fitted", shipped / "absent.json")
    with pytest.raises(ValueError, match="needs the fitted family"):
        execute._options(target, "wsd~fitted")


def test_each_network_is_measured_against_the_family_fitted_on_its_tasks(shipped, monkeypatch):
    folder = shipped / "plus"
    for name, config in (("v1", {}), ("v2", {"base": "user", "max_steps": 400}),
                         ("v3", {"base": "user", "min_steps": 100, "max_steps": 2000}),
                         ("v4", {"base": "user", "min_steps": 100, "max_steps": 2000,
                                 "passes": [1, 16]}),
                         ("v5", {"base": "user", "max_steps": 99})):  # fmt: skip
        plus.save(folder / f"{name}.safetensors", plus.PlusNet(hidden=4),
                  {"command": "test", "config": config})  # fmt: skip
    fits = {"fitted": {"max_steps": 600}, "fitted-user": {"base": "user", "max_steps": 400},
            "fitted-user-long": {"base": "user", "min_steps": 100, "max_steps": 2000},
            "fitted-user-passes": {"base": "user", "min_steps": 100, "max_steps": 2000,
                                   "passes": [1, 16]}}  # fmt: skip
    for variant, config in fits.items():
        path = shipped / f"{variant}.json"
        path.write_text(
            json.dumps({"config": config, "options": {"sgd": FITTED, "adaptive": FITTED}})
        )
        monkeypatch.setitem(plan.FITTED_WSD, variant, path)
    bars = {name: plan.plus_bar(name) for name in ("v1", "v2", "v3", "v4", "v5")}
    assert bars == {"v1": "wsd~fitted", "v2": "wsd~fitted-user", "v3": "wsd~fitted-user-long",
                    "v4": "wsd~fitted-user-passes", "v5": None}  # fmt: skip
    learned = dict(plan.learned_methods(tasksets.HELD_OUT[1]))
    assert learned["wsd~fitted"] is None  # at the probe's rate
    assert learned["wsd~fitted-user"] == learned["wsd~fitted-user-long"] == tasksets.HELD_OUT[1].lr
    assert report._bar("mlrsnet-plus:v3", at_default=True) == "wsd~fitted-user-long"
    assert report._bar("mlrsnet-plus:gone", at_default=True) == "wsd~fitted-user"  # not shipped


def _row(target, method, tier, values, metric, key="final_test_metric"):
    records = [{"seed": seed, "metric": metric, "final_test_metric": v, "final_val_metric": v,
                "val_selected_test_metric": v, "steps": 10} for seed, v in enumerate(values)]  # fmt: skip
    return report.Row(target.name, method, tier, records, key=key)


def test_the_acceptance_section_measures_each_criterion():
    """Four targets: two lengths, the uniform-noise one and a text one; the network ties the
    tuned tier on images and loses to every tier on text, yet ranks first overall."""
    names = ("fmnist-cnn-0.5x", "fmnist-cnn-1x", "fmnist-cnn-uniform40", "shakespeare-char-lstm")
    targets = [t for t in tasksets.HELD_OUT if t.name in names]
    jitter = np.array([0.1, -0.2, 0.05, 0.0, 0.15])
    result, metric_of = {}, {}
    for target in targets:
        text = target.name.startswith("shakespeare")
        metric = "perplexity" if text else "accuracy"
        sign = -1.0 if text else 1.0  # perplexity: lower is better
        base = 6.0 if text else 80.0

        def values(offset, base=base, sign=sign):
            return list(base + sign * offset + jitter)

        rows = [
            _row(target, "mlrsnet-plus:v1", "learned", values(2.0 if not text else -1.0), metric),
            _row(target, "mlrsnet-plus:v1~progress-only", "learned", values(1.0), metric),
            _row(target, "wsd~fitted", "learned", values(1.5 + jitter), metric),
            _row(target, "cosine", "defaults", values(0.0 + 0.3 * jitter), metric),
            _row(target, "cosine", "probe", values(0.5 - jitter), metric),
            _row(target, "wsd", "tuned", values(2.0 + 0.2 * jitter[::-1]), metric),
        ]
        if target.noisy:
            rows.append(_row(target, "cosine", "defaults + early stop", values(2.5), metric))
        result[target.name], metric_of[target.name] = rows, metric
    ranks = report.rank_table(result, metric_of)
    text = report.acceptance("mlrsnet-plus:v1", result, targets, metric_of, ranks)
    lines = text.splitlines()
    assert lines[0] == "### Acceptance of `mlrsnet-plus:v1` (issue 11)"
    zero = next(line for line in lines if line.startswith("- Zero tuning"))
    assert "**met**" in zero and "ranked as well or better: none" in zero
    tuned = next(line for line in lines if "tuned* tier's 95 % interval" in line)
    assert "**met**: on 3 of 4 (needed 3)" in tuned and "shakespeare" not in tuned
    lengths = next(line for line in lines if line.startswith("- Length transfer"))
    assert "`fmnist-cnn-0.5x`" in lengths and "`fmnist-cnn-1x`" in lengths
    ahead = next(line for line in lines if "ahead of cosine at the final step" in line)
    assert "**met**: +1.99" in ahead and "(win)" in ahead
    stopped = next(line for line in lines if "within 1 point of cosine · defaults + early" in line)
    assert "**met**: -0.50 points" in stopped
    groups = next(line for line in lines if line.startswith("- SGD and AdamW"))
    assert groups.endswith("per group: image 3/0/0, sgd 3/0/1, text 0/0/1.")
    table = lines[lines.index("| target | (a) only t/T | (b) fitted WSD | (c) user lr | "
                              "(d) mlrsnet:fmnist-resnet | (d) mlrsnet:ptb-lstm | "
                              "(d) mlrsnet:authors |") + 2:]  # fmt: skip
    assert len(table) == 4 and table[0].startswith("| `fmnist-cnn-0.5x` | +1.00 [")
    assert "| — |" in table[0]  # a variant that did not run
    assert report._plus_networks(result) == ["mlrsnet-plus:v1"]


def test_the_acceptance_of_a_network_at_the_default_rate_reads_its_own_ablations():
    target = next(t for t in tasksets.HELD_OUT if t.name == "fmnist-cnn-1x")
    jitter = [0.1, -0.2, 0.05, 0.0, 0.15]
    rows = [_row(target, method, tier, [80.0 + offset + j for j in jitter], "accuracy")
            for method, tier, offset in (("mlrsnet-plus:v2", "learned", 1.0),
                                         ("mlrsnet-plus:v2~probe", "learned", 0.0),
                                         ("wsd~fitted-user", "learned", 2.0),
                                         ("wsd~fitted", "learned", 5.0),
                                         ("cosine", "defaults", 0.0), ("wsd", "tuned", 0.0))]  # fmt: skip
    result, metric_of = {target.name: rows}, {target.name: "accuracy"}
    text = report.acceptance("mlrsnet-plus:v2", result, [target], metric_of,
                             report.rank_table(result, metric_of))  # fmt: skip
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("| target |"))
    assert header.startswith("| target | (a) only t/T | (b) fitted WSD | (c) probe |")
    cells = next(line for line in lines if line.startswith("| `fmnist-cnn-1x`")).split(" | ")
    assert cells[2].startswith("-1.00 [") and cells[3].startswith("+1.00 [")  # (b) the user family


def test_each_shipped_residual_network_corrects_the_family_benchmarked_as_its_bar():
    """A residual network's prior and scales are the fitted family the benchmark runs as its
    ablation (b), and the family file its manifest names is the one the registry copied."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    residual = [n for n in plan.PLUS if plus.pretrained(n)[0].prior is not None]
    assert residual  # v6
    for name in residual:
        net, manifest = plus.pretrained(name)
        variant = plan.plus_bar(name).removeprefix("wsd~")
        source = json.loads((root / manifest["config"]["prior"]).read_text())["options"]
        assert source == json.loads(plan.FITTED_WSD[variant].read_text())["options"]
        for optimizer, family in (("sgd", "sgd"), ("adamw", "adaptive")):
            options = plan.fitted_wsd(optimizer, variant)
            assert net.scale(family) == pytest.approx(options["peak"], rel=1e-6)  # float32
            shape = [options["warmup"], options["cooldown"], options["power"]]
            assert net.prior.as_list()[:3] == pytest.approx(shape, rel=1e-6)
        assert net.prior.limit == manifest["config"]["limit"]


def test_a_network_no_longer_shipped_keeps_the_bar_its_manifest_matched():
    """``v1``–``v4`` left the package; the short-horizon page's ablation (b) for each is still
    the family fitted on its own tasks (its record's manifest against the family files)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    for name, bar in plan.RETIRED_PLUS_BARS.items():
        assert name not in plus.pretrained_names()
        manifest = json.loads(
            (root / "benchmarks" / "results" / f"plus-{name}" / "plus.json").read_text()
        )
        family = json.loads(plan.FITTED_WSD[bar.removeprefix("wsd~")].read_text())
        assert plan._task_settings(manifest) == plan._task_settings(family)
        assert report._bar(f"mlrsnet-plus:{name}", at_default=name != "v1") == bar


def test_the_shipped_convergence_candidate_is_a_user_rate_network_with_its_bar_shipped():
    """``v7`` keeps the optimizer's rate as its peak, and the WSD family fitted by the same
    meta-training (same tasks, contract and scoring) ships as its bar, copied unchanged from
    the record its manifest names."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    net, manifest = plus.pretrained("v7")
    assert "v7" in plan.CONVERGENCE_PLUS and plan.plus_contract("v7") == "user-rate"
    assert net.peak == 1.0 and plan.plus_base("v7") == "user"
    assert plan.plus_bar("v7") == "wsd~fitted-user-convergence"
    bar = json.loads(plan.FITTED_WSD["fitted-user-convergence"].read_text())
    record = root / "benchmarks" / "results" / "plus-wsd-user-convergence" / "wsd.json"
    assert bar == json.loads(record.read_text())
    assert (root / manifest["config"]["out"] / "plus.json").is_file()
    for optimizer in ("sgd", "adamw"):
        assert plan.fitted_wsd(optimizer, "fitted-user-convergence")["peak"] <= 1.0
    target = next(t for t in tasksets.CONVERGENCE if t.name == "conv-fmnist-mlp-sgd")
    methods = [m for m, _ in plan.learned_methods(target)]
    rows = {"mlrsnet-plus:v7", "mlrsnet-plus:v7~probe", "wsd~fitted-user-convergence"}
    assert rows <= set(methods)


def test_a_user_rate_network_runs_at_convergence_in_both_modes_with_its_ablations(
    shipped, monkeypatch
):
    """Under the user-rate contract the convergence suite runs the network at the target's
    rate and at the probe's, with its loss inputs at 0, and the WSD family fitted by the same
    meta-training (matched on every task setting, the contract's included)."""
    settings = {"base": "user", "task_set": "convergence", "passes": [8, 96], "min_steps": 100,
                "max_steps": 4000, "peak": 1.0, "validation": True, "objective": "error"}  # fmt: skip
    torch.manual_seed(2)
    plus.save(shipped / "plus" / "v7.safetensors", plus.PlusNet(hidden=4, peak=1.0),
              {"command": "test", "config": settings, "contract": "user-rate"})  # fmt: skip
    monkeypatch.setattr(plan, "CONVERGENCE_PLUS", ("v7",))
    target = tasksets.CONVERGENCE[0]
    name = "mlrsnet-plus:v7"
    expected = [(name, target.lr), (f"{name}~progress-only", target.lr), (f"{name}~probe", None)]
    assert plan.plus_contract("v7") == "user-rate" and plan.plus_contract("v1") == "zero-tuning"
    assert plan.convergence_plus(target, "v7") == expected  # no fitted family yet
    other = shipped / "wsd_other.json"  # the same tasks scored by the loss: not its bar
    other.write_text(json.dumps({"config": {**settings, "objective": "loss"},
                                 "options": {"sgd": FITTED, "adaptive": FITTED}}))  # fmt: skip
    monkeypatch.setitem(plan.FITTED_WSD, "fitted-other", other)
    assert plan.convergence_plus(target, "v7") == expected
    bar = shipped / "wsd_bar.json"
    bar.write_text(json.dumps({"config": settings, "options": {"sgd": FITTED, "adaptive": FITTED}}))
    monkeypatch.setitem(plan.FITTED_WSD, "fitted-convergence", bar)
    assert plan.convergence_plus(target, "v7") == [*expected, ("wsd~fitted-convergence", target.lr)]
    learned = [m for m, _ in plan.learned_methods(target)]
    assert learned[-4:] == [m for m, _ in expected] + ["wsd~fitted-convergence"]
    assert execute._options(target, f"{name}~progress-only")["progress_only"] is True
    length = next(t for t in tasksets.CONVERGENCE if t.name == "conv-fmnist-cnn-2x")
    learned = [m for m, _ in plan.learned_methods(length)]  # its modes, not the fitted family
    assert learned == ["mlrsnet:fmnist-resnet"] + [m for m, _ in expected]
