"""Schedule files: round trips, shipped networks, safe and strict loading."""

import json
import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

import mlrsnet
from mlrsnet import hub


def nets(n=3, **kw):
    torch.manual_seed(0)
    return {f"epoch_{i + 1}": mlrsnet.MLRSNet(**kw) for i in range(n)}


def test_round_trip_with_manifest(tmp_path):
    saved = nets()
    path = hub.save_schedule(tmp_path / "s.safetensors", saved, {"task": "digits-mlp", "seed": 3})
    bundle = hub.load_schedule(path)
    assert bundle.snapshots == list(saved)
    assert bundle.fractions == pytest.approx([0, 1 / 3, 2 / 3])
    assert bundle.manifest["task"] == "digits-mlp" and bundle.manifest["seed"] == 3
    for a, b in zip(saved.values(), bundle.nets, strict=True):
        for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
            assert torch.equal(pa, pb)
    stages = bundle.stages()
    assert [f for f, _ in stages] == bundle.fractions


def test_stacked_networks_round_trip(tmp_path):
    path = hub.save_schedule(
        tmp_path / "deep.safetensors", nets(1, num_layers=2, hidden_size=20), {}
    )
    assert hub.load_schedule(path).nets[0].num_layers == 2


def test_a_newer_format_version_is_refused_by_name(tmp_path):
    path = tmp_path / "future.safetensors"
    tensors = {f"epoch_1.{k}": v for k, v in mlrsnet.MLRSNet().state_dict().items()}
    save_file(tensors, str(path), metadata={"format": hub.FORMAT, "format_version": "99", "config": "{}",
                                            "snapshots": '["epoch_1"]', "fractions": "[0.0]"})  # fmt: skip
    with pytest.raises(ValueError, match="format version '99'"):
        hub.load_schedule(path)


def test_wrong_shapes_are_named(tmp_path):
    path = tmp_path / "odd.safetensors"
    tensors = {f"epoch_1.{k}": v for k, v in mlrsnet.MLRSNet(hidden_size=20).state_dict().items()}
    config = json.dumps(mlrsnet.MLRSNet().config())
    save_file(tensors, str(path), metadata={"format": hub.FORMAT, "format_version": hub.FORMAT_VERSION,
                                            "config": config, "snapshots": '["epoch_1"]', "fractions": "[0.0]"})  # fmt: skip
    with pytest.raises(ValueError, match=r"head.weight: shape \(1, 20\)"):
        hub.load_schedule(path)


def test_not_a_schedule_file(tmp_path):
    path = tmp_path / "random.safetensors"
    save_file({"x": torch.zeros(2)}, str(path))
    with pytest.raises(ValueError, match="not an mlrsnet schedule"):
        hub.load_schedule(path)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 40)
    with pytest.raises(ValueError, match="junk.safetensors"):
        hub.load_schedule(junk)
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        hub.load_schedule(tmp_path / "nope.safetensors")


def test_a_crafted_pickle_never_runs(tmp_path):
    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "mlr_snet_1.pth"
    path.write_bytes(pickle.dumps({"layer3.weight": Exploit()}))
    with pytest.raises(ValueError, match="mlr_snet_1.pth"):
        hub.resolve(str(path))
    assert not marker.exists()


def test_unknown_names_list_the_shipped_ones():
    with pytest.raises(ValueError, match="no shipped schedule network named 'nope'"):
        hub.pretrained("nope")
    with pytest.raises(ValueError, match="neither a shipped schedule network"):
        hub.resolve("nope")


def test_shipped_networks_load_by_name():
    for name in hub.pretrained_names():
        bundle = mlrsnet.pretrained(name)
        assert bundle.nets and bundle.manifest["command"].startswith("mlrsnet meta-train")


# -- issue 15, finding 6: hostile headers, dtypes, the write order of the pair


def _write(path, tensors, config=None, snapshots='["epoch_1"]', fractions="[0.0]", **extra):
    metadata = {"format": hub.FORMAT, "format_version": hub.FORMAT_VERSION,
                "config": json.dumps(config if config is not None else mlrsnet.MLRSNet().config()),
                "snapshots": snapshots, "fractions": fractions, **extra}  # fmt: skip
    save_file(tensors, str(path), metadata=metadata)
    return path


def _weights(dtype=torch.float32, **kw):
    return {f"epoch_1.{k}": v.to(dtype) for k, v in mlrsnet.MLRSNet(**kw).state_dict().items()}


@pytest.mark.parametrize(
    "config",
    [
        {"hidden_size": 4000, "num_layers": 1, "projection_size": 25},  # 790 MB on main
        {"hidden_size": 2**20, "num_layers": 2**20, "projection_size": 2**20},  # petabytes
        {"hidden_size": 50, "num_layers": 1, "projection_size": 2**40},
    ],
)
def test_the_header_decides_no_allocation_beyond_the_bound(tmp_path, config, monkeypatch):
    built = []

    class Recorded(mlrsnet.MLRSNet):
        def __init__(self, **kw):
            built.append(kw)
            super().__init__(**kw)

    monkeypatch.setattr(hub, "MLRSNet", Recorded)
    path = _write(tmp_path / "big.safetensors", _weights(), config=config)
    assert path.stat().st_size < 64_000
    with pytest.raises(ValueError, match="at most|does not fit"):
        hub.load_schedule(path)
    assert built == []  # refused from the header: no network was built, no tensor read


@pytest.mark.parametrize(
    "config,match",
    [
        ({"hidden_size": 0}, "positive integer"),
        ({"hidden_size": "50"}, "positive integer"),
        ({"hidden_size": 50, "width": 3}, "must hold only"),
        ([50, 1, 25], "must hold only"),
    ],
)
def test_a_bad_config_is_named(tmp_path, config, match):
    with pytest.raises(ValueError, match=match):
        hub.load_schedule(_write(tmp_path / "c.safetensors", _weights(), config=config))


def test_integer_and_non_finite_weights_are_refused(tmp_path):
    with pytest.raises(ValueError, match="dtype I64"):
        hub.load_schedule(_write(tmp_path / "i.safetensors", _weights(torch.int64)))
    weights = _weights()
    weights["epoch_1.head.bias"] = torch.tensor([float("nan")])
    with pytest.raises(ValueError, match="non-finite"):
        hub.load_schedule(_write(tmp_path / "n.safetensors", weights))
    assert hub.load_schedule(_write(tmp_path / "d.safetensors", _weights(torch.float64))).nets


def test_a_header_naming_missing_snapshots_or_bad_fractions_is_refused(tmp_path):
    with pytest.raises(ValueError, match="missing epoch_2"):
        hub.load_schedule(_write(tmp_path / "a.safetensors", _weights(),
                                 snapshots='["epoch_1", "epoch_2"]', fractions="[0, 0.5]"))  # fmt: skip
    with pytest.raises(ValueError, match="fractions"):
        hub.load_schedule(_write(tmp_path / "b.safetensors", _weights(), fractions="[NaN]"))
    with pytest.raises(ValueError, match="snapshots"):
        hub.load_schedule(_write(tmp_path / "c.safetensors", _weights(), snapshots="{}"))
    with pytest.raises(ValueError, match="not JSON"):
        hub.load_schedule(_write(tmp_path / "d.safetensors", _weights(), snapshots="[epoch"))


def test_weights_are_written_before_the_manifest(tmp_path, monkeypatch):
    written = []
    real = hub.atomic_write

    def failing_write(path, data):
        written.append(path.suffix)
        if path.suffix == ".safetensors":
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(hub, "atomic_write", failing_write)
    with pytest.raises(OSError):
        hub.save_schedule(tmp_path / "s.safetensors", nets(1), {"task": "x"})
    assert written == [".safetensors"]
    assert not (tmp_path / "s.json").exists()  # no orphan manifest


def test_a_manifest_of_other_weights_is_not_used(tmp_path, caplog):
    path = hub.save_schedule(tmp_path / "s.safetensors", nets(1), {"task": "old"})
    old_manifest = (tmp_path / "s.json").read_bytes()
    hub.save_schedule(path, nets(2), {"task": "new"})
    assert hub.load_schedule(path).manifest["task"] == "new"
    (tmp_path / "s.json").write_bytes(old_manifest)  # a crash between the two renames
    with caplog.at_level("WARNING"):
        bundle = hub.load_schedule(path)
    assert bundle.manifest == {} and bundle.snapshots == ["epoch_1", "epoch_2"]
    assert "other weights" in caplog.text


def test_the_manifest_is_strict_json(tmp_path):
    hub.save_schedule(tmp_path / "s.safetensors", nets(1), {"metrics": {"loss": float("nan")}})
    text = (tmp_path / "s.json").read_text()
    assert "NaN" not in text
    json.loads(text, parse_constant=lambda name: pytest.fail(f"bare {name}"))
    assert hub.load_schedule(tmp_path / "s.safetensors").manifest["metrics"]["loss"] is None
