"""MLR-SNet+ meta-training: the ES estimator, whole-run evaluation, resume, the network file."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mlrsnet import plus
from mlrsnet.lab import plus_training
from mlrsnet.lab.plus_training import ESConfig

ROOT = Path(__file__).resolve().parents[2]
ray = pytest.importorskip("ray")


@pytest.fixture(scope="module", autouse=True)
def _stop_ray():
    yield
    if ray.is_initialized():
        ray.shutdown()


def test_es_gradient_is_unbiased_on_a_quadratic():
    """E[(f(θ+σε) − f(θ−σε)) ε / 2σ] = ∇f exactly for a quadratic: the mean over many draws."""
    rng = np.random.default_rng(0)
    a = np.array([1.0, -2.0, 0.5])
    theta = np.array([0.3, 0.1, -0.4])

    def f(x):
        return float(a @ x + 0.5 * x @ x)

    eps = rng.standard_normal((20000, 3))
    differences = np.array([f(theta + 0.1 * e) - f(theta - 0.1 * e) for e in eps])
    grad = plus_training.es_gradient(differences, eps, 0.1)
    # the standard error of each component is about |∇f| / sqrt(20000) ≈ 0.016
    assert np.allclose(grad, a + theta, atol=0.06)


def test_shaped_differences_keep_signs_and_order_and_bound_outliers():
    rng = np.random.default_rng(2)
    diff = rng.standard_normal(9) * 0.01
    diff[3] = 7.0  # a run that diverged on one side
    shaped = plus_training.shape_differences(diff)
    assert np.array_equal(np.sign(shaped), np.sign(diff))
    assert np.array_equal(np.argsort(shaped[diff != 7.0]), np.argsort(diff[diff != 7.0]))
    assert shaped[3] == 3.0 and np.median(np.abs(shaped)) == pytest.approx(1.0)
    assert np.array_equal(plus_training.shape_differences(np.array([0.0, 0.0, 2.0])),
                          np.array([0.0, 0.0, 1.0]))  # fmt: skip


def test_flat_params_round_trip():
    net = plus.PlusNet(hidden=5)
    theta = plus_training.flat_params(net)
    other = plus_training.set_params(plus.PlusNet(hidden=5), theta * 2)
    assert np.array_equal(plus_training.flat_params(other), theta * 2)
    with pytest.raises(ValueError, match="values"):
        plus_training.set_params(plus.PlusNet(hidden=5), theta[:-1])


def test_instances_come_from_the_meta_training_set():
    from mlrsnet.lab.benchmark.tasksets import HELD_OUT, META_TRAINING

    rng = np.random.default_rng(1)
    config = ESConfig(out="unused", max_steps=300)
    seen = [plus_training.sample_instance(rng, config) for _ in range(200)]
    assert {s["task"] for s in seen} <= {m.task for m in META_TRAINING}
    assert {s["task"] for s in seen}.isdisjoint({t.task for t in HELD_OUT})
    assert all(30 <= s["steps"] <= 300 for s in seen)
    assert {s["optimizer"] for s in seen} == {"sgd", "adamw"}
    quick = ESConfig(out="unused", quick=True)
    assert all(plus_training.sample_instance(rng, quick)["task"].startswith("digits")
               for _ in range(20))  # fmt: skip
    long = ESConfig(out="unused", min_steps=100, max_steps=2000)
    lengths = [plus_training.sample_instance(rng, long)["steps"] for _ in range(400)]
    assert 100 <= min(lengths) < 130 and 1500 < max(lengths) <= 2000  # every family's range
    assert 350 < np.median(lengths) < 550  # log-uniform: the median near sqrt(100 * 2000)


def test_instances_drawn_by_passes_over_the_data(shared_data, fashion_mnist_dir):
    from mlrsnet.lab.benchmark.tasksets import HELD_OUT, META_TRAINING_BY_PASSES

    rng = np.random.default_rng(2)
    config = ESConfig(out="unused", min_steps=100, max_steps=2000, passes=(1.0, 16.0))
    seen = [plus_training.sample_instance(rng, config, str(shared_data)) for _ in range(300)]
    assert {s["task"] for s in seen} == {m.task for m in META_TRAINING_BY_PASSES}
    assert {s["task"] for s in seen}.isdisjoint({t.task for t in HELD_OUT})
    assert all(100 <= s["steps"] <= 2000 for s in seen)
    for s in seen:  # the recorded passes are the run's: its steps over one pass's
        per_pass = plus_training.steps_per_pass(s["task"], s["train_fraction"], str(shared_data))
        assert s["passes"] == s["steps"] / per_pass
        family = [m for m in META_TRAINING_BY_PASSES
                  if m.task == s["task"] and s["optimizer"] in m.optimizers]  # fmt: skip
        assert len(family) == 1 and s["train_fraction"] in family[0].train_fractions
    assert max(s["train_fraction"] for s in seen
               if s["task"] == "fmnist-mlp" and s["optimizer"] == "adamw") == 0.1  # fmt: skip
    assert max(s["train_fraction"] for s in seen if s["optimizer"] == "sgd"
               and s["task"] == "fmnist-mlp") == 0.5  # fmt: skip
    # the datasets large enough for it make the drawn passes; the small ones more, not fewer
    large = [s["passes"] for s in seen if s["task"] != "digits-mlp" and s["task"] != "digits-cnn"]
    assert 1.0 <= min(large) < 1.3 and 12 < max(large) <= 16.5 and 2 < np.median(large) < 8
    small = [s["passes"] for s in seen if s["task"].startswith("digits")]
    assert min(small) >= 100 / plus_training.steps_per_pass("digits-mlp", 1.0)
    assert plus_training.steps_per_pass("fmnist-mlp", 0.5) == 231  # 29,500 images / 128


def test_instances_drawn_from_the_tasks_trained_to_their_plateau(shared_data, fashion_mnist_dir):
    from mlrsnet.lab.benchmark.tasksets import META_TRAINING_CONVERGENCE

    rng = np.random.default_rng(3)
    config = ESConfig(out="unused", min_steps=100, max_steps=3000, passes=(8.0, 48.0),
                      task_set="convergence")  # fmt: skip
    seen = [plus_training.sample_instance(rng, config, str(shared_data)) for _ in range(200)]
    assert {s["task"] for s in seen} == {m.task for m in META_TRAINING_CONVERGENCE}
    assert {s["noise_rate"] for s in seen} == {0.0, 0.2, 0.4, 0.6}
    assert all(100 <= s["steps"] <= 3000 for s in seen)
    large = [s["passes"] for s in seen if s["task"] == "fmnist-mlp"]
    assert 8.0 <= min(large) and max(large) <= 48.5


def test_evaluate_trains_a_whole_run_and_counts_the_probe():
    instance = {"task": "digits-mlp", "train_fraction": 0.5, "optimizer": "sgd",
                "noise_rate": 0.2, "steps": 40, "seed": 3}  # fmt: skip
    theta = plus_training.flat_params(plus.PlusNet.from_shape(iterations=200))
    first = plus_training.evaluate(instance, theta)
    assert first["probe_steps"] > 0 and first["base_lr"] > 0
    again = plus_training.evaluate(instance, theta, base_lr=first["base_lr"])
    assert again["probe_steps"] == 0
    assert again["val_loss"] == first["val_loss"]  # the probe leaves no trace on the run
    alone = plus_training.probe(instance)
    assert (alone["base_lr"], alone["probe_steps"]) == (first["base_lr"], first["probe_steps"])
    assert first["objective"] == pytest.approx(np.log(first["val_loss"]))
    wsd = plus_training.evaluate(instance, None, base_lr=first["base_lr"], schedule="wsd")
    assert np.isfinite(wsd["val_loss"])


def test_evaluate_bounds_the_networks_rate_at_its_peak(monkeypatch):
    """``peak`` reaches the run's scheduler: a network whose rate starts at 3x the base rate
    is held at the base rate with ``peak=1.0``, and the run differs from the unbounded one."""
    instance = {"task": "digits-mlp", "train_fraction": 0.5, "optimizer": "sgd",
                "noise_rate": 0.0, "steps": 30, "seed": 4}  # fmt: skip
    net = plus_training.with_peaks(plus.PlusNet.from_shape(iterations=200),
                                   {"sgd": 3.0, "adaptive": 3.0})  # fmt: skip
    theta = plus_training.flat_params(net)
    rates = []
    step = plus.MLRSNetPlusLR.step

    def recording(self, *args, **kwargs):
        step(self, *args, **kwargs)
        rates.append(self.get_last_lr()[0])

    monkeypatch.setattr(plus.MLRSNetPlusLR, "step", recording)
    free = plus_training.evaluate(instance, theta, base_lr=0.05)
    free_rates, rates[:] = list(rates), []
    capped = plus_training.evaluate(instance, theta, base_lr=0.05, peak=1.0)
    assert max(free_rates) > 0.14 and max(rates) <= 0.05  # from_shape peaks near 1x: 3x here
    assert len(rates) == len(free_rates) == 31  # the constructor's step, then one a step
    assert capped["val_loss"] != free["val_loss"]


def test_quick_meta_training_runs_and_resumes_exactly(tmp_path):
    config = ESConfig(out=str(tmp_path / "a"), iterations=2, pairs=2, max_steps=40, quick=True)
    whole = plus_training.meta_train(config, workers=2)
    net, manifest = plus.load(whole)
    assert manifest["iterations"] == 2 and manifest["config"]["pairs"] == 2

    class Stop(Exception):
        pass

    def stop(record):
        raise Stop

    cut = ESConfig(**{**config.__dict__, "out": str(tmp_path / "b")})
    with pytest.raises(Stop):
        plus_training.meta_train(cut, workers=2, on_iteration=stop)
    assert json.loads((tmp_path / "b" / "state.json").read_text())["iteration"] == 1
    resumed = plus.load(plus_training.meta_train(cut, workers=2))[0]
    assert np.array_equal(plus_training.flat_params(resumed), plus_training.flat_params(net))
    history = (tmp_path / "b" / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["iteration"] for line in history] == [0, 1, 2]  # 0: the monitor


def test_a_meta_training_by_passes_resumes_and_names_its_task_set(tmp_path):
    config = ESConfig(out=str(tmp_path), iterations=1, pairs=1, max_steps=40, quick=True,
                      monitor_instances=1, passes=(2.0, 4.0))  # fmt: skip
    plus_training.meta_train(config, workers=1)
    longer = ESConfig(**{**config.__dict__, "iterations": 2})  # the file holds passes as a list
    manifest = plus.load(plus_training.meta_train(longer, workers=1))[1]
    assert manifest["meta_training_set"].endswith("META_TRAINING_BY_PASSES")
    assert manifest["config"]["passes"] == [2.0, 4.0]
    history = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert all("passes" in inst for record in history[1:] for inst in record["instances"])
    with pytest.raises(ValueError, match="passes"):
        plus_training.meta_train(ESConfig(**{**longer.__dict__, "passes": (2.0, 8.0)}), workers=1)


def test_a_network_starts_at_a_fitted_familys_peaks(tmp_path):
    fitted = tmp_path / "wsd.json"
    fitted.write_text(json.dumps({"options": {"sgd": {"peak": 2.5}, "adaptive": {"peak": 0.3}}}))
    torch.manual_seed(3)
    init = plus.PlusNet(hidden=8)  # a network file to start from, as a shipped one would be
    start = plus.save(tmp_path / "start.safetensors", init, {"command": "test"})
    config = ESConfig(out=str(tmp_path / "run"), iterations=0, pairs=1, max_steps=30, quick=True,
                      monitor_instances=1, hidden=8, init=str(start), init_peaks=str(fitted))  # fmt: skip
    net, manifest = plus.load(plus_training.meta_train(config, workers=1))  # the start itself
    assert manifest["config"]["init_peaks"] == str(fitted)
    params = net.numpy_params()
    assert all(np.array_equal(a, b) for a, b in zip(params, init.numpy_params(), strict=True))
    m0 = plus.multiplier(params, plus.features(plus.init_state(), 0, 500))
    assert net.scale("sgd") * m0 == pytest.approx(2.5, rel=1e-6)  # float32 weights
    assert net.scale("adaptive") * m0 == pytest.approx(0.3, rel=1e-6)
    with pytest.raises(ValueError, match="the sgd peak must be a positive number"):
        plus_training.with_peaks(plus.PlusNet(hidden=4), {"sgd": -1.0})
    with pytest.raises(ValueError, match="family must be one of"):
        plus_training.with_peaks(plus.PlusNet(hidden=4), {"rmsprop": 1.0})
    wsd = ESConfig(out=str(tmp_path / "wsd"), family="wsd", init_peaks=str(fitted))
    with pytest.raises(ValueError, match="the WSD family has none"):
        plus_training.meta_train(wsd, workers=1)


def test_other_settings_in_the_same_folder_are_refused(tmp_path):
    config = ESConfig(out=str(tmp_path), iterations=1, pairs=1, max_steps=30, quick=True)
    plus_training.meta_train(config, workers=1)
    with pytest.raises(ValueError, match="sigma"):
        plus_training.meta_train(ESConfig(**{**config.__dict__, "sigma": 0.1}), workers=1)


def test_a_folder_goes_on_to_more_iterations_and_never_back(tmp_path):
    config = ESConfig(out=str(tmp_path), iterations=1, pairs=1, max_steps=30, quick=True,
                      monitor_instances=1)  # fmt: skip
    first = plus_training.flat_params(plus.load(plus_training.meta_train(config, workers=1))[0])
    again = plus.load(plus_training.meta_train(config, workers=1))  # where it stands: no training
    assert np.array_equal(plus_training.flat_params(again[0]), first)
    assert again[1]["iterations"] == 1 and again[1]["versions"]["torch"] == torch.__version__
    assert 0 < again[1]["iteration_seconds"] < 600  # the history's iteration (no monitor)
    longer = ESConfig(**{**config.__dict__, "iterations": 2})
    net, manifest = plus.load(plus_training.meta_train(longer, workers=1))
    assert manifest["iterations"] == 2 and not np.array_equal(plus_training.flat_params(net), first)
    with pytest.raises(ValueError, match="already at iteration 2, past the 1"):
        plus_training.meta_train(config, workers=1)
    moved = tmp_path.parent / f"{tmp_path.name}-moved"
    tmp_path.rename(moved)  # a moved folder resumes where it stands, under its new path
    net, manifest = plus.load(plus_training.meta_train(
        ESConfig(**{**longer.__dict__, "out": str(moved)}), workers=1))  # fmt: skip
    assert manifest["iterations"] == 2 and manifest["config"]["out"] == str(moved)


def test_the_command_line_quick_mode(tmp_path):
    out = tmp_path / "cli"
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "meta_train_plus.py"), "--quick",
                           "--out", str(out), "--iterations", "1"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "iteration 1:" in done.stdout and (out / "plus.safetensors").is_file()
    assert "tools/meta_train_plus.py --quick" in plus.load(out / "plus.safetensors")[1]["command"]


def test_the_command_line_at_convergence_under_the_user_rate_against_cosine(tmp_path):
    out = tmp_path / "cli"
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "meta_train_plus.py"), "--quick",
                           "--out", str(out), "--iterations", "1", "--task-set", "convergence",
                           "--passes", "4", "8", "--peak", "1", "--monitor-schedule", "cosine",
                           "--validation", "--prior-shape", "0.02", "0.98", "1", "--limit", "4",
                           "--base", "user", "--workers", "1"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "vs cosine on the monitor tasks" in done.stdout
    net, manifest = plus.load(out / "plus.safetensors")
    config = manifest["config"]
    assert (config["task_set"], config["peak"], config["monitor_schedule"]) == (
        "convergence",
        1.0,
        "cosine",
    )
    assert config["prior_shape"] == [0.02, 0.98, 1.0] and manifest["contract"] == "user-rate"
    assert net.reads_validation and net.peak == 1.0 and net.prior.limit == 4.0
    assert manifest["meta_training_set"].endswith("META_TRAINING_CONVERGENCE")
    monitor = json.loads((out / "monitor.json").read_text())
    instance, base_lr = monitor["instances"][0], monitor["base_lrs"][0]
    assert base_lr == plus_training.user_lr(instance)
    cosine = plus_training.evaluate(instance, None, base_lr=base_lr, schedule="cosine",
                                    validation=True)  # fmt: skip
    assert monitor["reference"][0] == cosine["objective"]  # cosine's, the same run


def test_the_parametric_wsd_family_starts_at_wsd_and_is_fitted_by_the_same_es(tmp_path):
    start = plus_training.wsd_options(plus_training.WSD_START)
    assert start["peak"] == 1.0 and start["power"] == pytest.approx(0.5)
    assert start["cooldown"] == pytest.approx(0.2)
    assert plus_training.wsd_options(plus_training.WSD_START, "adaptive") == start
    moved = plus_training.WSD_START + np.array([0.0, 0, 0, 0, np.log(0.1)])  # adaptive peak only
    assert plus_training.wsd_options(moved, "adaptive")["peak"] == pytest.approx(0.1)
    assert plus_training.wsd_options(moved, "sgd") == start
    with pytest.raises(ValueError, match="family must be one of"):
        plus_training.wsd_options(moved, "adamw")
    instance = {"task": "digits-mlp", "train_fraction": 1.0, "optimizer": "adamw",
                "noise_rate": 0.0, "steps": 40, "seed": 5}  # fmt: skip
    family = plus_training.evaluate(instance, plus_training.WSD_START, base_lr=1e-3,
                                    schedule="wsd-family")  # fmt: skip
    plain = plus_training.evaluate(instance, None, base_lr=1e-3, schedule="wsd")
    assert family["val_loss"] == pytest.approx(plain["val_loss"], rel=1e-3)  # warmup 0.4 %
    config = ESConfig(out=str(tmp_path), iterations=2, pairs=2, max_steps=40, quick=True,
                      family="wsd", monitor_instances=2)  # fmt: skip
    path = plus_training.meta_train(config, workers=2)
    fitted = json.loads(path.read_text())
    assert fitted["iterations"] == 2 and set(fitted["options"]) == {"sgd", "adaptive"}
    assert all(set(options) == set(start) for options in fitted["options"].values())
    assert fitted["theta"] != plus_training.WSD_START.tolist()  # ES moved it


def test_the_wsd_family_is_fitted_under_the_networks_contract_and_scoring(tmp_path):
    """``peak`` bounds the family's peak as it bounds the network's rate, and ``validation``
    scores every run on the second half of the meta split, as the network it is the bar of."""
    high = np.r_[np.log(3.0), plus_training.WSD_START[1:4], np.log(0.5)]
    assert plus_training.wsd_options(high, "sgd", bound=1.0)["peak"] == 1.0
    assert plus_training.wsd_options(high, "sgd")["peak"] == pytest.approx(3.0)
    assert plus_training.wsd_options(high, "adaptive", bound=1.0)["peak"] == pytest.approx(0.5)
    instance = {"task": "digits-mlp", "train_fraction": 1.0, "optimizer": "sgd",
                "noise_rate": 0.0, "steps": 40, "seed": 5}  # fmt: skip
    bounded = plus_training.evaluate(instance, high, base_lr=0.05, schedule="wsd-family",
                                     peak=1.0, validation=True)  # fmt: skip
    at_one = np.r_[0.0, high[1:]]
    assert bounded == {**plus_training.evaluate(instance, at_one, base_lr=0.05, validation=True,
                                                schedule="wsd-family"),
                       "seconds": bounded["seconds"]}  # fmt: skip
    config = ESConfig(out=str(tmp_path), iterations=1, pairs=1, max_steps=40, quick=True,
                      family="wsd", monitor_instances=1, base="user", peak=1.0,
                      validation=True, sigma=2.0)  # fmt: skip
    fitted = json.loads(plus_training.meta_train(config, workers=1).read_text())
    assert fitted["contract"] == "user-rate" and fitted["config"]["validation"]
    theta = np.asarray(fitted["theta"])
    assert fitted["options"] == {family: plus_training.wsd_options(theta, family, bound=1.0)
                                 for family in plus.OPTIMIZER_FAMILIES}  # fmt: skip


def test_a_network_meta_trained_at_the_users_rate_starts_from_another(tmp_path):
    torch.manual_seed(3)
    start = plus.save(tmp_path / "start.safetensors", plus.PlusNet(hidden=4), {"command": "t"})
    config = ESConfig(out=str(tmp_path / "es"), iterations=1, pairs=1, max_steps=30, quick=True,
                      hidden=4, monitor_instances=2, base="user", init=str(start))  # fmt: skip
    net, manifest = plus.load(plus_training.meta_train(config, workers=1))
    # Adam's first step moves every weight by its step size from where it started
    moved = plus_training.flat_params(net) - plus_training.flat_params(plus.load(start)[0])
    assert np.allclose(np.abs(moved), config.meta_lr, rtol=1e-3)
    assert manifest["config"]["base"] == "user" and manifest["config"]["init"] == str(start)
    monitor = json.loads((tmp_path / "es" / "monitor.json").read_text())
    assert monitor["base_lrs"] == [plus_training.user_lr(i) for i in monitor["instances"]]
    rates = [plus_training.user_lr({"task": task, "optimizer": optimizer})
             for task, optimizer in (("digits-cnn", "sgd"), ("shakespeare-lstm-tiny", "sgd"),
                                     ("digits-cnn", "adamw"))]  # fmt: skip
    assert rates == [0.05, 20.0, 1e-3]


def test_bad_starts_and_bases_are_refused(tmp_path):
    torch.manual_seed(3)
    start = plus.save(tmp_path / "start.safetensors", plus.PlusNet(hidden=4), {"command": "t"})
    cases = [({"base": "default"}, "base must be one of"),
             ({"init": str(start), "hidden": 8}, "has 4 hidden units, the config 8"),
             ({"init": str(start), "family": "wsd"}, "the WSD family has none"),
             ({"min_steps": 500, "max_steps": 400}, "min_steps must be between 1 and max_steps"),
             ({"min_steps": 0}, "min_steps must be between"),
             ({"passes": (0.0, 16.0)}, "passes must be"),
             ({"passes": (8.0, 2.0)}, "passes must be"),
             ({"prior": str(start), "family": "wsd"}, "the WSD family has none"),
             ({"prior": str(start), "init_peaks": str(start)}, "no init_peaks"),
             ({"prior_shape": (0.02, 0.98, 1.0), "hidden": 4, "init": str(start)},
              "corrects another prior"),  # a plain network's weights in a residual one
             ({"peak": 0.0}, "peak"),
             ({"task_set": "long"}, "task_set must be"),
             ({"monitor_schedule": "nope"}, "monitor_schedule must be"),
             ({"task_set": "convergence"}, "give passes")]  # fmt: skip
    for i, (change, message) in enumerate(cases):
        config = ESConfig(out=str(tmp_path / f"c{i}"), iterations=1, pairs=1, quick=True,
                          monitor_instances=1, **change)  # fmt: skip
        with pytest.raises(ValueError, match=message):
            plus_training.meta_train(config, workers=1)


def test_a_residual_network_starts_from_a_network_of_the_same_prior(tmp_path):
    """``init`` for a residual network: the weights of one that corrects the same prior at the
    same scales and peak (a meta-trained network, changed by hand, say), exactly; one of
    another prior is refused, and a residual start is refused for a plain network."""
    settings = {"iterations": 0, "pairs": 1, "max_steps": 30, "quick": True,
                "monitor_instances": 1, "hidden": 4, "validation": True, "peak": 1.0}  # fmt: skip
    prior = plus.Prior(0.02, 0.98, 1.0, limit=8.0)
    torch.manual_seed(4)
    start = plus.PlusNet.residual(prior, dict.fromkeys(plus.OPTIMIZER_FAMILIES, 1.0), hidden=4,
                                  validation=True, peak=1.0)  # fmt: skip
    with torch.no_grad():
        start.layer2.weight.normal_()  # not the zero correction meta-training would start at
    path = plus.save(tmp_path / "start.safetensors", start, {"command": "t"})
    config = ESConfig(out=str(tmp_path / "run"), prior_shape=(0.02, 0.98, 1.0), limit=8.0,
                      init=str(path), **settings)  # fmt: skip
    net = plus.load(plus_training.meta_train(config, workers=1))[0]
    assert all(torch.equal(a, b) for a, b in zip(net.parameters(), start.parameters(), strict=True))
    assert net.prior.as_list() == start.prior.as_list()
    other = ESConfig(out=str(tmp_path / "other"), prior_shape=(0.02, 0.8, 1.0), limit=8.0,
                     init=str(path), **settings)  # fmt: skip
    with pytest.raises(ValueError, match="corrects another prior"):
        plus_training.meta_train(other, workers=1)
    plain = ESConfig(out=str(tmp_path / "plain"), init=str(path), **settings)
    with pytest.raises(ValueError, match="corrects another prior"):
        plus_training.meta_train(plain, workers=1)


def test_an_early_stopping_unit_lowers_the_rate_only_once_the_validation_loss_rises(tmp_path):
    """The response reads how far the validation loss rose above its best: with a falling
    validation loss, or none, the rates are exactly the network's with those units silent;
    with a rising one they fall. In a meta-training it is the start (``iterations=0``)."""
    torch.manual_seed(5)
    net = plus.PlusNet.residual(plus.Prior(0.02, 0.98, 1.0, limit=8.0),
                                dict.fromkeys(plus.OPTIMIZER_FAMILIES, 1.0), hidden=4,
                                validation=True, peak=1.0)  # fmt: skip
    with torch.no_grad():
        net.layer2.weight.normal_(std=0.1)
        net.layer2.weight[0, 2] = 1e-3  # the two least used: the units rewired
        net.layer2.weight[0, 0] = -2e-3
    unit = plus_training.with_early_stop_unit(net, 10.0, 2.0, -2.0)
    removed = plus_training.with_early_stop_unit(net, 0.0, 0.0, 0.0)  # the same units, silent
    _, _, w2, _ = unit.numpy_params()
    assert (w2[2], w2[0]) == (-2.0, 2.0) and np.array_equal(
        w2[[1, 3]], net.numpy_params()[2][[1, 3]]
    )

    def rates(network, validation):
        params = [torch.zeros(1, requires_grad=True)]
        optimizer = torch.optim.SGD(params, lr=1.0)
        scheduler = plus.MLRSNetPlusLR(optimizer, network, total_steps=100)
        out = []
        for step in range(100):
            if validation is not None and step % 10 == 0:
                scheduler.observe_validation(validation(step))
            scheduler.step(torch.tensor(2.0 - 0.01 * step))
            out.append(scheduler.get_last_lr()[0])
        return out

    falling = lambda step: 1.0 - 0.005 * step  # noqa: E731
    rising = lambda step: 1.0 + 0.02 * max(step - 30, 0)  # noqa: E731 (+40 % by step 50)
    assert rates(unit, None) == rates(removed, None)  # the validation inputs are all 0
    # a new best at every reading: the two units cancel (up to the dot product's rounding)
    assert rates(unit, falling) == pytest.approx(rates(removed, falling), rel=1e-12, abs=0)
    late = slice(50, 90)
    assert all(a < b for a, b in zip(rates(unit, rising)[late], rates(removed, rising)[late],
                                     strict=True))  # fmt: skip
    with pytest.raises(ValueError, match="reads none"):
        plus_training.with_early_stop_unit(plus.PlusNet(hidden=4), 10.0, 2.0, -2.0)
    path = plus.save(tmp_path / "net.safetensors", net, {"command": "t"})
    config = ESConfig(out=str(tmp_path / "run"), iterations=0, pairs=1, max_steps=30, quick=True,
                      monitor_instances=1, hidden=4, validation=True, peak=1.0, limit=8.0,
                      prior_shape=(0.02, 0.98, 1.0), init=str(path),
                      early_stop_unit=(10.0, 2.0, -2.0))  # fmt: skip
    started, manifest = plus.load(plus_training.meta_train(config, workers=1))
    assert all(torch.equal(a, b) for a, b in zip(started.parameters(), unit.parameters(),
                                                 strict=True))  # fmt: skip
    assert manifest["config"]["early_stop_unit"] == [10.0, 2.0, -2.0]
    bad = ESConfig(out=str(tmp_path / "bad"), iterations=0, early_stop_unit=(10.0, 2.0, -2.0))
    with pytest.raises(ValueError, match="needs validation"):
        plus_training.meta_train(bad, workers=1)


def test_a_folder_from_before_the_base_setting_resumes(tmp_path):
    config = ESConfig(out=str(tmp_path), iterations=1, pairs=1, max_steps=30, quick=True,
                      monitor_instances=1)  # fmt: skip
    plus_training.meta_train(config, workers=1)
    state_path = tmp_path / "state.json"
    state = json.loads(state_path.read_text())
    for key in ("base", "init", "init_peaks", "min_steps", "passes", "prior", "limit", "objective"):
        del state["config"][key]
    state_path.write_text(json.dumps(state))
    plus_training.meta_train(config, workers=1)  # the missing settings read as their defaults
    with pytest.raises(ValueError, match="base"):
        plus_training.meta_train(ESConfig(**{**config.__dict__, "base": "user"}), workers=1)


FITTED = {"sgd": {"peak": 2.5, "warmup": 0.01, "cooldown": 0.3, "power": 0.3},
          "adaptive": {"peak": 4.0, "warmup": 0.01, "cooldown": 0.3, "power": 0.3}}  # fmt: skip


def test_a_residual_network_starts_as_the_fitted_family_and_learns_its_correction(tmp_path):
    fitted = tmp_path / "wsd.json"
    fitted.write_text(json.dumps({"options": FITTED}))
    start = plus_training.residual_start(fitted, hidden=4, limit=3.0)
    assert start.prior.as_list() == pytest.approx([0.01, 0.3, 0.3, 3.0], rel=1e-7)  # float32
    assert start.scale("sgd") == pytest.approx(2.5, rel=1e-7)
    # the start trains exactly as the family it corrects (float32 against float64 numbers)
    instance = {"task": "digits-mlp", "train_fraction": 1.0, "optimizer": "adamw",
                "noise_rate": 0.0, "steps": 40, "seed": 5}  # fmt: skip
    theta = plus_training.flat_params(start)
    assert theta.size == plus.NUM_FEATURES * 4 + 4 + 4 + 1  # the correction's weights only
    net_run = plus_training.evaluate(instance, theta, hidden=4, base_lr=1e-3, template=start)
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731 - wsd_options' parameters of FITTED
    family_theta = np.array([np.log(2.5), logit(0.01 / 0.2), logit(0.3 / 0.8), np.log(0.3),
                             np.log(4.0)])  # fmt: skip
    assert plus_training.wsd_options(family_theta, "adaptive") == pytest.approx(FITTED["adaptive"])
    family = plus_training.evaluate(instance, family_theta, base_lr=1e-3, schedule="wsd-family")
    assert net_run["val_loss"] == pytest.approx(family["val_loss"], rel=1e-4)
    plain = plus_training.evaluate(instance, None, base_lr=1e-3, schedule="wsd")
    assert abs(plain["val_loss"] / family["val_loss"] - 1) > 1e-3  # not a trivial check
    config = ESConfig(out=str(tmp_path / "run"), iterations=1, pairs=1, max_steps=30,
                      quick=True, monitor_instances=1, hidden=4, base="user",
                      prior=str(fitted), limit=3.0)  # fmt: skip
    net, manifest = plus.load(plus_training.meta_train(config, workers=1))
    assert net.prior == start.prior and manifest["config"]["prior"] == str(fitted)
    assert torch.equal(net.log_scale, start.log_scale)  # the family's peaks stay
    moved = plus_training.flat_params(net) - theta  # Adam's first step: meta_lr on every weight
    assert np.allclose(np.abs(moved), config.meta_lr, rtol=1e-3)
    with pytest.raises(ValueError, match="shapes differ"):
        other = {**FITTED, "adaptive": {**FITTED["adaptive"], "power": 0.5}}
        fitted.write_text(json.dumps({"options": other}))
        plus_training.residual_start(fitted, hidden=4)


def test_evaluate_with_validation_feeds_one_half_at_each_epoch_end_and_scores_the_other(
    monkeypatch,
):
    """``validation=True``: a network that reads a validation loss is given the first half of
    the meta split's loss at every epoch boundary (the model in evaluation mode), the run is
    scored on the second half; a hand schedule is only scored on the second half; without it
    the whole meta split scores the run and the network reads no validation loss."""
    from mlrsnet.lab.tasks.types import ImageTask

    instance = {"task": "digits-mlp", "train_fraction": 0.5, "optimizer": "sgd",
                "noise_rate": 0.0, "steps": 40, "seed": 6}  # fmt: skip
    per_pass = plus_training.steps_per_pass("digits-mlp", 0.5)
    boundaries = (instance["steps"] - 1) // per_pass
    assert boundaries >= 3
    template = plus.PlusNet(hidden=4, validation=True)
    theta = plus_training.flat_params(template)
    theta = theta + 0.5 * np.random.default_rng(6).standard_normal(theta.size)
    calls, fed, rates = [], [], []
    real_evaluate, real_observe = ImageTask.evaluate, plus.MLRSNetPlusLR.observe_validation
    real_step = plus.MLRSNetPlusLR.step

    def evaluate(self, model, *args, **kwargs):
        out = real_evaluate(self, model, *args, **kwargs)
        calls.append((kwargs.get("split"), kwargs.get("part"), out["loss"]))
        return out

    def observe_validation(self, loss):
        fed.append(loss)
        real_observe(self, loss)

    def step(self, *args, **kwargs):
        real_step(self, *args, **kwargs)
        rates.append(self.get_last_lr()[0])

    monkeypatch.setattr(ImageTask, "evaluate", evaluate)
    monkeypatch.setattr(plus.MLRSNetPlusLR, "observe_validation", observe_validation)
    monkeypatch.setattr(plus.MLRSNetPlusLR, "step", step)
    told = plus_training.evaluate(instance, theta, hidden=4, base_lr=0.05, template=template,
                                  validation=True)  # fmt: skip
    assert [c[:2] for c in calls] == [("meta", (0, 2))] * boundaries + [("meta", (1, 2))]
    assert fed == [c[2] for c in calls[:-1]] and told["val_loss"] == calls[-1][2]
    told_rates, rates[:], calls[:], fed[:] = list(rates), [], [], []
    blind = plus_training.evaluate(instance, theta, hidden=4, base_lr=0.05, template=template)
    assert [c[:2] for c in calls] == [("meta", None)] and fed == []
    assert told_rates[: per_pass + 1] == rates[: per_pass + 1]  # the same until the first one
    assert told_rates != rates and told["val_loss"] != blind["val_loss"]
    calls[:] = []
    plus_training.evaluate(instance, None, base_lr=0.05, schedule="cosine", validation=True)
    assert [c[:2] for c in calls] == [("meta", (1, 2))]


def test_a_validation_meta_training_under_the_user_rate_contract(tmp_path):
    """``validation``, ``prior_shape`` and ``peak`` reach the network file, its manifest and the
    monitor (whose reference is scored on the same half of the meta split)."""
    config = ESConfig(out=str(tmp_path), iterations=1, pairs=1, max_steps=30, quick=True,
                      monitor_instances=1, hidden=4, base="user", peak=1.0, validation=True,
                      prior_shape=(0.02, 0.98, 1.0), limit=4.0, monitor_schedule="cosine")  # fmt: skip
    start = plus_training.start_network(config)
    net, manifest = plus.load(plus_training.meta_train(config, workers=1))
    assert net.reads_validation and net.peak == 1.0 and net.prior == start.prior
    assert net.prior.limit == 4.0 and net.prior.cooldown == pytest.approx(0.98)
    assert manifest["contract"] == "user-rate" and manifest["config"]["validation"] is True
    assert manifest["config"]["prior_shape"] == [0.02, 0.98, 1.0]
    monitor = json.loads((tmp_path / "monitor.json").read_text())
    instance, base_lr = monitor["instances"][0], monitor["base_lrs"][0]
    cosine = plus_training.evaluate(instance, None, base_lr=base_lr, schedule="cosine",
                                    validation=True)  # fmt: skip
    assert monitor["reference"][0] == cosine["objective"]
    # a plain network that reads validation starts from the shape, its validation weights 0
    plain = plus_training._fresh(ESConfig(out="x", hidden=4, validation=True), None)[0]
    net = plus_training.set_params(plus.PlusNet(hidden=4, validation=True), plain)
    assert not net.layer1.weight[:, plus.NUM_FEATURES :].any()


@pytest.mark.parametrize("changes,message", [
    ({"prior": "wsd.json", "prior_shape": (0.0, 1.0, 1.0)}, "not both"),
    ({"family": "wsd", "prior_shape": (0.02, 0.98, 1.0)}, "WSD family has none"),
    ({"prior_shape": (0.5, 0.6, 1.0)}, "exceed the whole run"),
    ({"prior_shape": (0.0, 1.0)}, "prior_shape"),
    ({"prior_shape": (0.0, 1.0, 1.0), "init": "v6", "hidden": 8}, "corrects another prior"),
    ({"prior_shape": (0.0, 1.0, 1.0), "init_peaks": "wsd.json"}, "no init_peaks"),
    ({"objective": "accuracy"}, "objective must be one of"),
])  # fmt: skip
def test_validation_and_prior_shape_settings_are_checked(tmp_path, changes, message):
    with pytest.raises(ValueError, match=message):
        plus_training.meta_train(ESConfig(out=str(tmp_path), **changes), workers=1)


def test_the_contract_of_a_meta_training():
    assert plus_training.contract("user", 1.0) == "user-rate"
    assert plus_training.contract("user", None) == "user-scaled"
    assert plus_training.contract("probe", None) == "zero-tuning"
    with pytest.raises(ValueError, match="base"):
        plus_training.contract("users", 1.0)


def test_the_run_objective_of_a_loss_and_of_an_error():
    loss, error = (plus_training.run_objective(k, 0.4, 0.9, size=200) for k in ("loss", "error"))
    assert loss == np.log(0.4) and error == np.log(0.1 + 1 / 200)
    assert plus_training.run_objective("error", 0.01, 1.0, size=200) == np.log(1 / 200)  # finite
    worst = np.log(1 + 1 / 200)
    for bad in (float("nan"), float("inf")):  # a diverged run scores the worst error
        assert plus_training.run_objective("error", bad, 0.9, size=200) == worst
        assert plus_training.run_objective("loss", bad, 0.9, size=200) == plus_training.DIVERGED
    assert plus_training.run_objective("error", 0.3, float("nan"), size=200) == worst
    # a language model's metric is a perplexity: it is scored by its loss under either kind
    text = plus_training.run_objective("error", 1.5, 4.48, size=1, language_model=True)
    assert text == np.log(1.5)
    with pytest.raises(ValueError, match="objective must be one of"):
        plus_training.run_objective("accuracy", 0.4, 0.9, size=200)
    with pytest.raises(ValueError, match="size must be a positive int"):
        plus_training.run_objective("error", 0.4, 0.9, size=0)
    soft = plus_training.run_objective("soft-error", 0.4, 0.9, size=200, soft_error=0.15)
    assert soft == np.log(0.15 + 1 / 200)
    for bad in (float("nan"), float("inf")):  # a diverged run scores the worst, as the error
        assert plus_training.run_objective("soft-error", bad, 0.9, size=200,
                                           soft_error=0.1) == worst  # fmt: skip
    assert plus_training.run_objective("soft-error", 1.5, 4.48, size=1, language_model=True,
                                       soft_error=None) == np.log(1.5)  # fmt: skip
    with pytest.raises(ValueError, match="needs the run's soft error"):
        plus_training.run_objective("soft-error", 0.4, 0.9, size=200)
    sharp = plus_training.run_objective("sharp-error", 0.4, 0.9, size=200, soft_error=0.12)
    assert sharp == np.log(0.12 + 1 / 200)  # the caller passes the sharp error
    with pytest.raises(ValueError, match="sharp-error objective needs"):
        plus_training.run_objective("sharp-error", 0.4, 0.9, size=200)


def test_evaluate_scores_a_run_by_its_validation_error():
    """The same run (same seed, same rate) under both objectives: its loss and accuracy are
    the same, and ``"error"`` scores it by the accuracy of the half of the meta split that
    scores it."""
    instance = {"task": "digits-mlp", "train_fraction": 0.5, "optimizer": "sgd",
                "noise_rate": 0.2, "steps": 30, "seed": 5}  # fmt: skip
    runs = {kind: plus_training.evaluate(instance, None, base_lr=0.05, schedule="cosine",
                                         validation=True, objective=kind)
            for kind in plus_training.OBJECTIVES}  # fmt: skip
    loss, error = runs["loss"], runs["error"]
    assert (loss["val_loss"], loss["val_metric"]) == (error["val_loss"], error["val_metric"])
    from mlrsnet.lab import tasks

    size = plus_training.scoring_size(tasks.get("digits-mlp", train_fraction=0.5), (1, 2))
    assert 0 < size < plus_training.scoring_size(tasks.get("digits-mlp"), None)
    assert error["objective"] == np.log(1 - error["val_metric"] + 1 / size)
    assert loss["objective"] == np.log(loss["val_loss"])
    # the soft error: between the error's objective and the worst, smooth in the weights
    soft = runs["soft-error"]
    assert (soft["val_loss"], soft["val_metric"]) == (loss["val_loss"], loss["val_metric"])
    assert np.log(1 / size) < soft["objective"] < np.log(1 + 1 / size)
    sharp = runs["sharp-error"]  # the same run, scored by its sharp error
    assert (sharp["val_loss"], sharp["val_metric"]) == (loss["val_loss"], loss["val_metric"])
    assert np.log(1 / size) < sharp["objective"] < np.log(1 + 1 / size)
    assert sharp["objective"] != soft["objective"]


@pytest.mark.skipif(not (ROOT.parent / "shared" / "data" / "tinyshakespeare").is_dir(),
                    reason="shared data not found")  # fmt: skip
def test_a_language_model_is_scored_by_its_loss_under_the_error_objective():
    instance = {"task": "shakespeare-lstm-tiny", "train_fraction": 0.05, "optimizer": "adamw",
                "noise_rate": 0.0, "steps": 4, "seed": 1}  # fmt: skip
    run = plus_training.evaluate(instance, None, base_lr=1e-3, schedule="cosine",
                                 data_dir=str(ROOT.parent / "shared" / "data"), objective="error")  # fmt: skip
    assert run["val_metric"] > 1 and run["objective"] == np.log(run["val_loss"])


def test_the_meta_task_curves_tool_prints_one_row_per_instance_and_length(capsys):
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import meta_task_curves
    finally:
        sys.path.pop(0)
    assert (
        meta_task_curves.main(["--only", "digits-mlp", "--passes", "1", "2", "--seeds", "0"]) == 0
    )
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| digits")]
    assert [row.split(" | ")[4:6] for row in rows] == [["1", "18"], ["2", "36"]]
    assert all(0 < float(row.split(" | ")[7].split()[0]) <= 100 for row in rows)
    with pytest.raises(SystemExit):
        meta_task_curves.main(["--only", "nope"])
