"""The declared task sets and the plan of runs: disjoint sets, paired seeds, no duplicates."""

from collections import Counter

import pytest

from mlrsnet.lab import baselines, tasks
from mlrsnet.lab.benchmark import plan, tasksets


def test_held_out_targets_are_not_meta_training_tasks():
    assert tasksets.overlap(tasksets.META_TRAINING, tasksets.HELD_OUT) == []
    meta = {m.task for m in tasksets.META_TRAINING}
    assert meta.isdisjoint({t.task for t in tasksets.HELD_OUT})


def test_the_convergence_meta_training_set_is_disjoint_from_both_benchmarks():
    both = tasksets.HELD_OUT + tasksets.CONVERGENCE
    assert tasksets.overlap(tasksets.META_TRAINING_CONVERGENCE, both) == []
    for family in tasksets.META_TRAINING_CONVERGENCE:
        assert family.task in tasks.names()
        assert max(family.noise_rates) <= 0.6 and set(family.optimizers) == {"sgd", "adamw"}


def test_every_target_names_a_registered_task_and_a_reason():
    names = [t.name for t in tasksets.HELD_OUT]
    assert len(names) == len(set(names))
    for target in tasksets.HELD_OUT + tasksets.QUICK:
        assert target.task in tasks.names()
        assert target.optimizer in baselines.SHAPE_OPTIMIZERS
        assert 0 < target.train_fraction <= 1
    for target in tasksets.HELD_OUT:
        assert target.note, target.name
        if target.tuned_at is not None:  # reuses a grid of the same task
            source = next(t for t in tasksets.HELD_OUT if t.name == target.tuned_at)
            assert source.task == target.task and source.tuned_at is None


def test_the_issue_targets_are_all_there():
    axes = Counter(t.axis for t in tasksets.HELD_OUT)
    assert axes["training length"] == 3 and axes["label noise"] == 2
    noisy = {(t.noise, t.noise_rate) for t in tasksets.HELD_OUT if t.noisy}
    assert noisy == {("uniform", 0.4), ("pairflip", 0.2)}
    optimizers = Counter(t.optimizer for t in tasksets.HELD_OUT)
    assert optimizers["adamw"] == 2
    assert {"ptb-lstm", "shakespeare-char-lstm", "shakespeare-char-transformer",
            "fmnist-resnet"} <= {t.task for t in tasksets.HELD_OUT}  # fmt: skip


def test_plan_pairs_every_cell_on_the_evaluation_seeds():
    runs, probes = plan.plan(tasksets.HELD_OUT)
    assert len({r.run_id for r in runs}) == len(runs)  # nothing computed twice
    assert len(plan.EVAL_SEEDS) >= 5 and plan.TUNING_SEED not in plan.EVAL_SEEDS
    cells = Counter((r.target, r.method, r.tier) for r in runs if r.tier != "tuning")
    assert set(cells.values()) == {len(plan.EVAL_SEEDS)}
    assert len(probes) == len(tasksets.HELD_OUT) * len(plan.EVAL_SEEDS)
    for target in tasksets.HELD_OUT:
        tiers = Counter(r.tier for r in runs if r.target == target.name)
        assert tiers["probe"] == len(plan.SHAPES) * len(plan.EVAL_SEEDS)
        assert tiers["learned"] == len(plan.learned_methods(target)) * len(plan.EVAL_SEEDS)
        grid = len(plan.GRID) * len(plan.TUNED) if target.tuned_at is None else 0
        assert tiers["tuning"] == grid
        assert all(r.seed == plan.TUNING_SEED for r in runs
                   if r.target == target.name and r.tier == "tuning")  # fmt: skip


def test_a_tuned_point_at_the_default_is_the_defaults_run():
    target = tasksets.HELD_OUT[1]
    default = plan.RunSpec(target.name, "cosine", "defaults", 0, target.lr)
    assert plan.tuned_run(target, "cosine", 1.0, 0).run_id == default.run_id
    assert plan.tuned_run(target, "cosine", 3.16, 0).run_id != default.run_id


def test_the_estimated_suite_fits_the_budget():
    """--plan's estimate: at most 6 hours of run time summed over runs (issue 10)."""
    runs, probes = plan.plan(tasksets.HELD_OUT)
    # MLR-SNet+ and its ablations are issue 11's runs, beside the suite's budget
    runs = [r for r in runs if "~" not in r.method and not r.method.startswith("mlrsnet-plus")]
    by_name = {t.name: t for t in tasksets.HELD_OUT}
    seconds = sum(plan.estimated_seconds(by_name[j.target], j) for j in [*runs, *probes])
    seconds += sum(t.seconds * len(plan.TUNED) * len(plan.EVAL_SEEDS) for t in tasksets.HELD_OUT)
    assert seconds / 3600 <= 6.1


def test_unknown_suite_is_refused():
    with pytest.raises(ValueError, match="heldout"):
        tasksets.targets("full")
