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
