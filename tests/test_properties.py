"""Property-based tests (hypothesis) of every entry point's arguments.

Each strategy draws every argument either from a valid set or from an invalid one;
valid inputs must run, invalid ones must end in a clear error that names the problem
(a one-line message and exit status 2 from the command line, never a traceback).
The numbers of cases are the ``max_examples`` below; docs/robustness.md records them.
"""

import math
import warnings

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mlrsnet
from mlrsnet.lab.cli import main

SCHEDULER_CASES = 300
TRAINER_CASES = 150
CLI_CASES = 40
TOML_CASES = 40

BAD_NUMBERS = [float("nan"), float("inf"), -1.0, "0.1", None, [0.1], True]


def tagged(valid, invalid, p_valid=0.5):
    """(value, is_valid) pairs; valid with probability about ``p_valid``."""
    pick = st.integers(0, 99).map(lambda k: k < 100 * p_valid)
    return pick.flatmap(lambda ok: st.tuples(valid if ok else invalid, st.just(ok)))


TRIED = {"cli": [0, 0], "toml": [0, 0]}  # [valid, invalid] cases run


losses = tagged(
    st.one_of(
        st.floats(-1e6, 1e6, allow_nan=False),
        st.floats(
            allow_nan=True, allow_infinity=True
        ),  # non-finite losses are valid: they are skipped
        st.builds(torch.tensor, st.floats(0, 10)),
        st.builds(lambda v: torch.tensor([v]), st.floats(0, 10)),
    ),
    st.one_of(
        st.text(max_size=3),
        st.none(),
        st.builds(torch.ones, st.integers(2, 4)),
        st.builds(lambda n: torch.ones(n, 2), st.integers(1, 3)),
        st.just(True),
    ),
)


@settings(max_examples=SCHEDULER_CASES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    stages=tagged(
        st.lists(st.floats(0.01, 0.99), max_size=3).map(lambda xs: [0.0, *sorted(set(xs))]),
        st.one_of(
            st.lists(st.floats(0.01, 0.99), min_size=1, max_size=3).map(
                lambda xs: sorted(set(xs))
            ),  # no 0
            st.just([0.0, 0.5, 0.5]),
            st.just([0.0, 1.0]),
            st.just([0.0, float("nan")]),
            st.just([]),
        ),
    ),
    total_steps=tagged(st.integers(1, 50), st.sampled_from([0, -5, 2.5, "10", True])),
    loss_list=st.lists(losses, min_size=1, max_size=6),
)
def test_scheduler_arguments(stages, total_steps, loss_list):
    (fractions, fractions_ok), (steps, steps_ok) = stages, total_steps
    optimizer = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)
    nets = [(f, mlrsnet.MLRSNet(hidden_size=4, projection_size=3)) for f in fractions]
    construct_ok = fractions_ok and steps_ok
    if not construct_ok:
        with pytest.raises((ValueError, TypeError)) as err:
            mlrsnet.MLRSNetLR(optimizer, stages=nets, total_steps=steps)
        assert str(err.value)
        return
    scheduler = mlrsnet.MLRSNetLR(optimizer, stages=nets, total_steps=steps)
    for loss, ok in loss_list:
        if ok:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                scheduler.step(loss)
            assert math.isfinite(optimizer.param_groups[0]["lr"])
        else:
            with pytest.raises((ValueError, TypeError)) as err:
                scheduler.step(loss)
            assert "MLRSNetLR.step" in str(err.value)


@settings(max_examples=TRAINER_CASES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    meta_interval=tagged(st.integers(1, 4), st.sampled_from([0, -1, 1.5, "2", None, True])),
    grad_clip=tagged(
        st.one_of(st.none(), st.floats(1e-3, 10)), st.sampled_from([0.0, -1.0, "1", float("nan")])
    ),
    optimizer_kind=tagged(
        st.sampled_from(["sgd", "sgd-momentum", "sgd-nesterov"]), st.sampled_from(["adam"])
    ),
    batch_size=tagged(st.integers(1, 8), st.sampled_from([0])),
)
def test_meta_trainer_arguments(meta_interval, grad_clip, optimizer_kind, batch_size):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    kind, kind_ok = optimizer_kind
    if kind == "adam":
        optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.0 if kind == "sgd" else 0.9,
                                    nesterov=kind == "sgd-nesterov")  # fmt: skip
    net = mlrsnet.MLRSNet(hidden_size=4, projection_size=3)
    scheduler = mlrsnet.MLRSNetLR(optimizer, net)
    args = (
        model,
        optimizer,
        scheduler,
        torch.optim.Adam(net.parameters()),
        torch.nn.functional.cross_entropy,
    )
    ok = meta_interval[1] and grad_clip[1] and kind_ok
    kwargs = {"meta_interval": meta_interval[0], "grad_clip": grad_clip[0]}
    if not ok:
        with pytest.raises((ValueError, TypeError)) as err:
            mlrsnet.MetaTrainer(*args, **kwargs)
        assert str(err.value).startswith("MetaTrainer")
        return
    trainer = mlrsnet.MetaTrainer(*args, **kwargs)
    n, n_ok = batch_size
    x, y = torch.randn(n, 3), torch.randint(0, 2, (n,))
    for _ in range(3):
        if n_ok:
            stats = trainer.step((x, y), meta_batch=(x, y))
            assert math.isfinite(stats["lr"])
        else:
            with pytest.raises((ValueError, TypeError, RuntimeError)):
                trainer.step((x, y), meta_batch=(x, y))
            return


def run_cli(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own usage errors
        code = exit_.code
    err = capsys.readouterr().err
    return code, err


def check_outcome(code, err, ok):
    if ok:
        assert code == 0, err
    else:
        assert code == 2
        lines = [line for line in err.strip().splitlines() if line.strip()]
        assert lines and "Traceback" not in err
        assert lines[-1].startswith("mlrsnet: error:") or "error:" in lines[-1], err


CLI_FIELDS = {
    "--schedule": (
        st.sampled_from(["fixed", "cosine", "adam", "onecycle"]),
        st.sampled_from(["", "nope", "mlrsnet", "mlrsnet:/nope"]),
    ),
    "--epochs": (st.just("1"), st.sampled_from(["0", "-2", "x", "1.5", ""])),
    "--batch-size": (st.sampled_from(["256", "512"]), st.sampled_from(["0", "-1", "ten"])),
    "--lr": (
        st.sampled_from(["0.05", "0.1"]),
        st.sampled_from(["nan", "inf", "-0.1", "0", "fast"]),
    ),
    "--momentum": (st.sampled_from(["0", "0.5"]), st.sampled_from(["1.5", "-0.1", "nan"])),
    "--seed": (st.sampled_from(["0", "7"]), st.sampled_from(["-1", "seed"])),
    "--train-fraction": (st.sampled_from(["1", "0.5"]), st.sampled_from(["0", "1.5", "-1", "all"])),
    "--device": (st.sampled_from(["cpu", "auto"]), st.sampled_from(["gpu7", "tpu", ""])),
}


@settings(
    max_examples=CLI_CASES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_cli_options(tmp_path_factory, capsys, data):
    out = tmp_path_factory.mktemp("cli")
    argv = ["train", "--task", "digits-mlp", "--out", str(out / "run"), "--quiet"]
    ok = True
    for flag, (valid, invalid) in CLI_FIELDS.items():
        value, good = data.draw(tagged(valid, invalid, p_valid=0.85), label=flag)
        if flag == "--schedule" or data.draw(st.booleans(), label=f"give {flag}"):
            argv += [flag, value]
            ok &= good
    if (
        "--lr" in argv and argv[argv.index("--lr") + 1] == "0"
    ):  # zero is a valid float for argparse but not for a learning rate
        ok = False
    code, err = run_cli(argv, capsys)
    check_outcome(code, err, ok)
    TRIED["cli"][0 if ok else 1] += 1


TOML_FIELDS = {
    "task": ('"digits-mlp"', '"nope"'),
    "schedule": ('"cosine"', '"nope"'),
    "epochs": ("1", "0"),
    "batch-size": ("512", '"big"'),
    "lr": ("0.05", "-1.0"),
    "seed": ("3", "-3"),
    "noise-rate": ("0.0", "2.0"),
    "quiet": ("true", '"yes"'),
    "unknown-key": (None, "1"),
}


@settings(
    max_examples=TOML_CASES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    choices=st.fixed_dictionaries(
        {k: st.integers(0, 19).map(lambda v: v < 19) for k in TOML_FIELDS}
    ),
    broken=st.integers(0, 9).map(lambda v: v == 0),
)
def test_toml_config(tmp_path_factory, capsys, choices, broken):
    out = tmp_path_factory.mktemp("toml")
    lines, ok = [f'out = "{out / "run"}"'], True
    for key, (valid, invalid) in TOML_FIELDS.items():
        if choices[key] and valid is not None:
            lines.append(f"{key} = {valid}")
        elif not choices[key]:
            lines.append(f"{key} = {invalid}")
            ok = False
    if broken:
        lines.append("this is = = not toml")
        ok = False
    path = out / "run.toml"
    path.write_text("\n".join(lines) + "\n")
    code, err = run_cli(["train", "--config", str(path), "--quiet"], capsys)
    check_outcome(code, err, ok)
    TRIED["toml"][0 if ok else 1] += 1


def test_both_kinds_of_command_line_cases_were_tried():
    """Runs after the two tests above (pytest keeps file order)."""
    for kind, (valid, invalid) in TRIED.items():
        assert valid >= 3 and invalid >= 3, (kind, valid, invalid)
    print(f"command-line cases tried [valid, invalid]: {TRIED}")


# -- issue 15: hostile schedule-file headers, logs cut at any byte ------------------------

HEADER_CASES = 200
TRUNCATION_CASES = 60
SMALL = {"hidden_size": 4, "num_layers": 1, "projection_size": 3}

huge = st.integers(2**20, 2**62)
configs = tagged(
    st.just(SMALL),
    st.one_of(
        st.fixed_dictionaries(
            {
                "hidden_size": huge,
                "num_layers": st.integers(1, 4),
                "projection_size": st.integers(1, 8),
            }
        ),  # fmt: skip
        st.fixed_dictionaries(
            {
                "hidden_size": st.integers(1, 8),
                "num_layers": huge,
                "projection_size": st.integers(1, 8),
            }
        ),  # fmt: skip
        st.fixed_dictionaries(
            {
                "hidden_size": st.integers(-3, 0),
                "num_layers": st.just(1),
                "projection_size": st.just(3),
            }
        ),  # fmt: skip
        st.fixed_dictionaries({"hidden_size": st.sampled_from(["4", 4.0, None, True, [4]])}),
        st.sampled_from([[4, 1, 3], "small", None, 7, {"width": 4}]),
        st.fixed_dictionaries(
            {
                "hidden_size": st.integers(5, 4000),
                "num_layers": st.just(1),
                "projection_size": st.just(3),
            }
        ),  # fmt: skip
    ),
    p_valid=0.3,
)
snapshot_lists = tagged(
    st.just(["a"]),
    st.sampled_from([[], ["a.b"], [1], "a", ["a", "a"], ["a", "b"], None, [""]]),
    p_valid=0.7,
)
fraction_lists = tagged(
    st.just([0.0]),
    st.sampled_from([[], [float("nan")], [0.0, 0.5], ["0"], None, [True], [float("inf")]]),
    p_valid=0.7,
)
dtypes = tagged(
    st.sampled_from([torch.float32, torch.float64, torch.float16, torch.bfloat16]),
    st.sampled_from([torch.int64, torch.int32, torch.uint8, torch.bool]),
    p_valid=0.7,
)
HOSTILE = {"headers": [0, 0], "truncation": {"lr.csv": 0, "metrics.jsonl": 0}}


@settings(max_examples=HEADER_CASES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])  # fmt: skip
@given(config=configs, snapshots=snapshot_lists, fractions=fraction_lists, dtype=dtypes,
       bad_value=st.booleans())  # fmt: skip
def test_hostile_schedule_headers(tmp_path_factory, monkeypatch, config, snapshots, fractions,
                                  dtype, bad_value):  # fmt: skip
    """A schedule file whose header lies about the network (size, shapes, names, dtypes) is
    refused with a ValueError from its header alone: no network beyond
    ``hub.MAX_PARAMETERS`` is ever built; a truthful one loads."""
    import json

    from safetensors.torch import save_file

    from mlrsnet import hub

    built = []

    class Recorded(mlrsnet.MLRSNet):
        def __init__(self, **kw):
            assert mlrsnet.MLRSNet.parameter_count(**kw) <= hub.MAX_PARAMETERS
            built.append(kw)
            super().__init__(**kw)

    monkeypatch.setattr(hub, "MLRSNet", Recorded)
    torch.manual_seed(0)
    weights = {f"a.{k}": v.to(dtype[0]) for k, v in mlrsnet.MLRSNet(**SMALL).state_dict().items()}
    if bad_value and dtype[1]:
        weights["a.head.bias"] = torch.tensor([float("nan")], dtype=dtype[0])
    path = tmp_path_factory.mktemp("header") / "s.safetensors"
    metadata = {"format": hub.FORMAT, "format_version": hub.FORMAT_VERSION,
                "config": json.dumps(config[0]), "snapshots": json.dumps(snapshots[0]),
                "fractions": json.dumps(fractions[0])}  # fmt: skip
    save_file(weights, str(path), metadata=metadata)
    ok = config[1] and snapshots[1] and fractions[1] and dtype[1] and not bad_value
    if ok:
        assert hub.load_schedule(path).snapshots == ["a"]
    else:
        with pytest.raises(ValueError) as err:
            hub.load_schedule(path)
        assert str(path) in str(err.value) or "saved" in str(err.value)
        assert not built or (config[1] and snapshots[1] and fractions[1] and dtype[1])
    HOSTILE["headers"][0 if ok else 1] += 1


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory):
    """A train run stopped in its second epoch: both logs have committed bytes."""
    from mlrsnet.lab.runner import RunConfig, run

    out = tmp_path_factory.mktemp("stopped") / "run"
    run(RunConfig(task="digits-mlp", out=str(out), schedule="cosine", epochs=3,
                  batch_size=128), stop_after_steps=14)  # fmt: skip
    return out


@settings(max_examples=TRUNCATION_CASES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])  # fmt: skip
@given(data=st.data())
def test_a_log_cut_at_any_byte_offset_is_refused_never_padded(stopped_run, tmp_path_factory,
                                                              data):  # fmt: skip
    import shutil

    from mlrsnet.lab.runner import RunConfig, run

    log, key = data.draw(st.sampled_from([("lr.csv", "lr_log_offset"),
                                          ("metrics.jsonl", "metrics_offset")]), label="log")  # fmt: skip
    committed = torch.load(stopped_run / "checkpoint.pt", weights_only=True)[key]
    cut = data.draw(st.integers(0, committed - 1), label="cut")
    out = tmp_path_factory.mktemp("cut") / "run"
    shutil.copytree(stopped_run, out)
    whole = (out / log).read_bytes()
    (out / log).write_bytes(whole[:cut])
    config = RunConfig(task="digits-mlp", out=str(out), schedule="cosine", epochs=3,
                       batch_size=128)  # fmt: skip
    with pytest.raises(ValueError, match=f"{log}: {cut} bytes, shorter than the {committed}"):
        run(config)
    assert (out / log).read_bytes() == whole[:cut]  # never padded
    HOSTILE["truncation"][log] += 1


def test_hostile_headers_and_cut_logs_of_both_kinds_were_tried():
    """Runs after the two tests above (pytest keeps file order)."""
    assert min(HOSTILE["headers"]) >= 10, HOSTILE["headers"]
    assert min(HOSTILE["truncation"].values()) >= 5, HOSTILE["truncation"]
    print(f"schedule headers tried [valid, hostile]: {HOSTILE['headers']}; "
          f"log cuts refused: {HOSTILE['truncation']}")  # fmt: skip
