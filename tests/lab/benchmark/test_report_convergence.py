"""The convergence report's own tables, on made-up rows: the learning-curve verdicts, the
zero-tuning gaps and the costs."""

import pytest

from mlrsnet.lab.benchmark import report
from mlrsnet.lab.benchmark.execute import Records
from mlrsnet.lab.benchmark.tasksets import Target


def rows(target, method, tier, tests, vals=None, seeds=(0, 1, 2, 3, 4)):
    vals = vals or tests
    records = [{"seed": s, "final_test_metric": t, "final_val_metric": v}
               for s, t, v in zip(seeds, tests, vals, strict=True)]  # fmt: skip
    return report.Row(target, method, tier, records)


BASE = Target("t", "axis", "digits-mlp", 10, 0.1, profile="convergence")
CHECK = Target("t-2x-check", "learning curve", "digits-mlp", 20, 0.1, profile="convergence",
               tuned_at="t", methods=(), check_seeds=(0, 1))  # fmt: skip


@pytest.mark.parametrize(
    "metric,one,two,verdict",
    [("accuracy", 90.0, 90.2, "yes"), ("accuracy", 90.0, 91.0, "no: still improving"),
     ("accuracy", 90.0, 85.0, "past it"), ("perplexity", 100.0, 99.0, "yes"),
     ("perplexity", 100.0, 95.0, "no: still improving"), ("perplexity", 100.0, 110.0, "past it")],
)  # fmt: skip
def test_the_learning_curve_verdicts(metric, one, two, verdict):
    better = 1.0 if metric == "accuracy" else -1.0  # wsd is chosen by validation either way
    result = {
        "t": [rows("t", "cosine", "tuned", [one + 20.0 * better] * 5, [50.0 - better] * 5),
              rows("t", "wsd", "tuned", [one + 9.0, one, one, one, one], [50.0] * 5)],
        "t-2x-check": [rows("t-2x-check", "wsd", "tuned", [two + 9.0, two], seeds=(0, 1))],
    }  # fmt: skip
    lines = report.plateau_lines(result, (BASE, CHECK), {"t": metric, "t-2x-check": metric})
    (line,) = lines[2:]
    assert line.startswith("| `t` | wsd · tuned | 10 |")  # the best by validation, not test
    assert f"| {verdict}" in line and line.endswith("(seeds 0, 1) |")


def test_an_incomplete_target_is_named_in_the_learning_curve_table():
    lines = report.plateau_lines({}, (BASE, CHECK), {})
    assert lines[2] == "| `t` | not yet complete | 10 | | | | |"


def test_zero_tuning_gaps_are_paired_differences_to_the_best_tuned_row():
    result = {"t": [rows("t", "cosine", "tuned", [90.0, 91.0, 92.0, 93.0, 94.0]),
                    rows("t", "cosine", "defaults", [89.0, 90.0, 91.0, 92.0, 93.0]),
                    rows("t", "dog", "defaults", [80.0, 81.0, 82.0, 83.0, 84.0])]}  # fmt: skip
    lines = report.gap_lines(result, {"t": "accuracy"})
    assert lines[2] == "| cosine · defaults | -1.00 | -1.00 [-1.00, -1.00] |"
    assert lines[3] == "| dog · defaults | -10.00 | -10.00 [-10.00, -10.00] |"
    assert len(lines) == 4  # the tuned reference is not a zero-tuning row


def test_the_mean_gap_is_over_the_same_targets_for_every_row():
    """A row missing one of the common targets gets no mean (its cells stay), so no mean is
    over fewer or easier targets than another's; targets outside ``common`` do not count."""

    def target(name, offset, dog=True):
        found = [rows(name, "cosine", "tuned", [90.0] * 5),
                 rows(name, "cosine", "defaults", [90.0 - offset] * 5)]  # fmt: skip
        return found + ([rows(name, "dog", "defaults", [80.0] * 5)] if dog else [])

    result = {"a": target("a", 1.0), "b": target("b", 3.0, dog=False), "c": target("c", 9.0)}
    metric_of = dict.fromkeys(result, "accuracy")
    lines = report.gap_lines(result, metric_of, ["a", "b"])
    assert lines[0].startswith(
        "| method | mean gap over 2 accuracy targets (the same for every row) |"
    )
    assert lines[2].startswith("| cosine · defaults | -2.00 | -1.00 [")  # c is not in common
    assert lines[3].startswith("| dog · defaults | — | -10.00 [") and "| — | -10.00 [" in lines[3]


def test_costs_sum_the_runs_and_probes_of_each_target(tmp_path):
    records = Records(tmp_path / "records.jsonl")
    for i, seconds in enumerate((60.0, 80.0, 100.0)):
        records.add({"id": f"r{i}", "kind": "run", "target": "t", "seconds": seconds})
    records.add({"id": "p", "kind": "probe", "target": "t", "seconds": 3600.0 - 240.0})
    lines = report.cost_lines(records, (BASE, CHECK))
    assert lines[2] == "| `t` | 3 | 1 | 1.00 | 80 | 10 |"
    assert lines[3] == "| `t-2x-check` | 0 | 0 | 0.00 | — | 10 |"


def run_rows(target, method, tier, tests, broken=()):
    """Rows with the fields divergence reads: a NaN final test loss on the ``broken`` seeds."""
    records = [{"seed": s, "metric": "accuracy", "final_test_metric": t, "final_val_metric": t,
                "final_test_loss": float("nan") if s in broken else 0.3,
                "nonfinite_steps_skipped": 0} for s, t in enumerate(tests)]  # fmt: skip
    return report.Row(target, method, tier, records)


def convergence_result(network_gain, broken=()):
    base = [90.0, 90.5, 92.0, 92.2, 94.0]
    shifted = lambda d: [v + d for v in base]  # noqa: E731
    net = "mlrsnet-plus:v7"
    return {target: [
        run_rows(target, "cosine", "defaults", base), run_rows(target, "cosine", "probe", base),
        run_rows(target, "cosine", "tuned", shifted(2.0)),
        run_rows(target, net, "learned", shifted(network_gain[target]),
                 broken=broken if target == "b" else ()),
        run_rows(target, f"{net}~probe", "learned", shifted(0.5)),
        run_rows(target, f"{net}~progress-only", "learned", base),
    ] for target in ("a", "b", "n")}  # fmt: skip


def test_the_convergence_acceptance_measures_each_criterion_of_issue_26():
    metric_of = dict.fromkeys("abn", "accuracy")
    result = convergence_result({"a": 1.0, "b": 1.0, "n": 1.0}, broken=(2,))
    ranks = report.rank_table(result, metric_of)
    text = report.acceptance_at_convergence("mlrsnet-plus:v7", result, metric_of, ranks, {"n"})
    lines = text.splitlines()
    assert lines[2].startswith("- User-rate mode") and "**met**" in lines[2]
    assert "`n` +1.00 [+1.00, +1.00] win" in lines[2]
    assert lines[3].startswith("- Zero-tuning mode, mean rank") and "**met**" in lines[3]
    assert "as well or better: none" in lines[3]
    assert "**missed**: on 0 of 3 (needed 2)" in lines[4]  # 1.5 behind the tuned tier
    assert "**missed**: mlrsnet-plus:v7 on `b`, seeds [2]" in lines[5]
    table = lines[lines.index("| target | loss inputs at 0 | fitted WSD (same meta-training) | "
                              "zero-tuning mode | cosine, same rate |"):]  # fmt: skip
    assert table[2] == ("| `a` | +1.00 [+1.00, +1.00] win | — | +0.50 [+0.50, +0.50] win "
                        "| +1.00 [+1.00, +1.00] win |")  # fmt: skip
    # behind cosine on one target, or ahead on fewer than 3, or not on the noisy one: missed
    for gains in ({"a": -1.0, "b": 1.0, "n": 1.0}, {"a": 1.0, "b": 1.0, "n": 0.0}):
        result = convergence_result(gains)
        text = report.acceptance_at_convergence(
            "mlrsnet-plus:v7", result, metric_of, report.rank_table(result, metric_of), {"n"}
        )
        assert "**missed**" in text.splitlines()[2]
        assert "No run diverges that cosine at the same rate does not (non-finite, or below 20 % " \
               "accuracy): **met**." in text  # fmt: skip


def test_a_run_diverged_when_its_loss_is_not_finite_or_it_is_at_chance():
    ok = {"metric": "accuracy", "final_test_metric": 85.0, "final_test_loss": 0.4}
    assert not report.diverged(ok)
    assert report.diverged({**ok, "final_test_loss": float("inf")})
    assert report.diverged({**ok, "final_test_loss": None})
    assert report.diverged({**ok, "nonfinite_steps_skipped": 3})
    assert report.diverged({**ok, "final_test_metric": 10.1})
    assert not report.diverged({"metric": "perplexity", "final_test_metric": 6.0,
                                "final_test_loss": 1.8})  # fmt: skip
