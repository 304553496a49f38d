"""A folder of the authors' three released checkpoints loads as the paper's 3-stage schedule."""

import shutil
from pathlib import Path

import pytest
import torch

from mlrsnet import MLRSNet, hub

torch.set_num_threads(1)

OFFICIAL = Path(__file__).resolve().parents[1].parent / "shared/reference/official-checkpoints"


@pytest.fixture(scope="module")
def official() -> Path:
    if not all((OFFICIAL / name).is_file() for name in hub.AUTHORS_CHECKPOINTS):
        pytest.skip(f"the authors' checkpoints are not in {OFFICIAL}")
    return OFFICIAL


def test_authors_checkpoint_names():
    assert hub.AUTHORS_CHECKPOINTS == ("mlr_snet_1.pth", "mlr_snet_100.pth", "mlr_snet_200.pth")


@pytest.mark.parametrize("load", [hub.load_schedule, lambda p: hub.resolve(str(p))])
def test_folder_of_authors_checkpoints_is_a_three_stage_bundle(official, load):
    bundle = load(official)
    assert isinstance(bundle, hub.ScheduleBundle)
    assert bundle.fractions == [0.0, 1 / 3, 2 / 3]
    assert bundle.snapshots == ["mlr_snet_1", "mlr_snet_100", "mlr_snet_200"]
    assert bundle.source == str(official)
    stages = bundle.stages()
    assert [f for f, _ in stages] == [0.0, 1 / 3, 2 / 3]
    assert all(isinstance(net, MLRSNet) for _, net in stages)
    # each stage is its own file, in order
    for name, net in zip(hub.AUTHORS_CHECKPOINTS, bundle.nets, strict=True):
        single = MLRSNet.from_original(official / name)
        for (key, a), b in zip(net.state_dict().items(), single.state_dict().values(), strict=True):
            assert torch.equal(a, b), (name, key)
    first, middle = bundle.nets[0].state_dict(), bundle.nets[1].state_dict()
    assert any(not torch.equal(first[k], middle[k]) for k in first)


def test_a_copy_of_the_folder_resolves_too(official, tmp_path):
    for name in hub.AUTHORS_CHECKPOINTS:
        shutil.copy(official / name, tmp_path / name)
    bundle = hub.resolve(str(tmp_path))
    assert bundle.fractions == [0.0, 1 / 3, 2 / 3] and len(bundle.nets) == 3


def test_one_authors_checkpoint_is_still_a_single_stage(official):
    bundle = hub.resolve(str(official / "mlr_snet_100.pth"))
    assert len(bundle.nets) == 1 and bundle.fractions == [0.0]


def saved_schedule(folder: Path) -> Path:
    torch.manual_seed(0)
    nets = {"a": MLRSNet(), "b": MLRSNet()}
    return hub.save_schedule(folder / "schedule.safetensors", nets, {"task": "test"})


def test_folder_without_them_resolves_to_its_schedule_file(tmp_path):
    path = saved_schedule(tmp_path)
    bundle = hub.resolve(str(tmp_path))
    assert bundle.source == str(path)
    assert bundle.snapshots == ["a", "b"] and bundle.fractions == [0.0, 0.5]


def test_folder_with_one_other_authors_file_resolves_to_its_schedule_file(tmp_path, official):
    # only mlr_snet_1.pth marks a folder of the authors' files; mlr_snet_100.pth alone does not
    path = saved_schedule(tmp_path)
    shutil.copy(official / "mlr_snet_100.pth", tmp_path / "mlr_snet_100.pth")
    assert hub.resolve(str(tmp_path)).source == str(path)


def test_folder_without_schedule_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="schedule.safetensors"):
        hub.resolve(str(tmp_path))
    with pytest.raises(FileNotFoundError):
        hub.load_schedule(tmp_path)  # a folder is no schedule file


def test_incomplete_authors_folder_falls_back_to_its_schedule_file(tmp_path, official):
    path = saved_schedule(tmp_path)
    shutil.copy(official / "mlr_snet_1.pth", tmp_path / "mlr_snet_1.pth")
    assert hub.resolve(str(tmp_path)).source == str(path)
