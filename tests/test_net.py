"""The schedule network: layout, the released checkpoints, bad input."""

import json
from pathlib import Path

import pytest
import torch

import mlrsnet
from mlrsnet.functional import mlrsnet_cell

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"
CHECKPOINTS = ["mlr_snet_1.pth", "mlr_snet_100.pth", "mlr_snet_200.pth"]
needs_reference = pytest.mark.skipif(
    not REFERENCE.is_dir(), reason=f"reference fixtures not found at {REFERENCE}"
)


def test_paper_defaults():
    net = mlrsnet.MLRSNet()
    assert sum(p.numel() for p in net.parameters()) == 11_776
    factor, (h, c) = net(2.3)
    assert factor.shape == () and 0 < factor.item() < 1
    assert h.shape == c.shape == (1, 50)


def test_gate_order_matches_hand_computation():
    torch.manual_seed(0)
    net = mlrsnet.MLRSNet(hidden_size=3, projection_size=2).double()
    cell = net.cells[0]
    x, h, c = (
        torch.tensor([0.7], dtype=torch.float64),
        torch.randn(3).double(),
        torch.randn(3).double(),
    )
    z = cell.fc_i2h(x) + cell.fc_h2h(h)
    i, f, g, o = z[:3].sigmoid(), z[3:6].sigmoid(), z[6:9].tanh(), z[9:].sigmoid()
    c_ref = f * c + i * g
    h_ref = o * c_ref.tanh()
    h_new, c_new = mlrsnet_cell(x, h, c, cell.params())
    torch.testing.assert_close(c_new, c_ref, rtol=0, atol=1e-15)
    torch.testing.assert_close(h_new, h_ref, rtol=0, atol=1e-15)


def test_stacked_layers_feed_each_other_and_keep_their_own_state():
    torch.manual_seed(0)
    net = mlrsnet.MLRSNet(num_layers=3)
    factor, (h, c) = net(1.5)
    assert h.shape == (3, 50)
    # layer k's input is layer k-1's new hidden state
    h0, c0 = mlrsnet_cell(
        torch.tensor([1.5]), torch.zeros(50), torch.zeros(50), net.cells[0].params()
    )
    h1, _ = mlrsnet_cell(h0, torch.zeros(50), torch.zeros(50), net.cells[1].params())
    torch.testing.assert_close(h[0], h0)
    torch.testing.assert_close(h[1], h1)
    # gradients reach every layer
    factor.backward()
    for cell in net.cells:
        assert all(p.grad.abs().sum() > 0 for p in cell.fc_i2h.parameters())


@needs_reference
@pytest.mark.parametrize("name", CHECKPOINTS)
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-9)])
def test_released_checkpoints_reproduce_the_official_trace(name, dtype, tol):
    trace = json.loads((REFERENCE / "official_trace.json").read_text())
    net = mlrsnet.MLRSNet.from_original(REFERENCE / "official-checkpoints" / name).to(dtype)
    state, outputs = None, []
    with torch.no_grad():
        for loss in trace["losses"]:
            factor, state = net(torch.tensor(loss, dtype=dtype), state)
            outputs.append(factor.item())
    expected = torch.tensor(trace["outputs"][name], dtype=torch.float64)
    error = (torch.tensor(outputs, dtype=torch.float64) - expected).abs().max().item()
    assert error <= tol, f"{name} {dtype}: max abs error {error}"


@needs_reference
def test_released_checkpoints_settle_to_the_documented_constants():
    trace = json.loads((REFERENCE / "official_trace.json").read_text())
    for name, value in zip(CHECKPOINTS, [0.728, 0.036, 0.018], strict=True):
        assert trace["outputs"][name][-1] == pytest.approx(value, abs=1e-3)


def test_from_original_refuses_wrong_layout(tmp_path):
    net = mlrsnet.MLRSNet()
    good = {"layer1." + k: v for k, v in net.cells[0].state_dict().items()}
    good.update({"layer3.weight": net.head.weight.detach(), "layer3.bias": net.head.bias.detach()})
    bad = dict(good)
    del bad["layer3.bias"]
    with pytest.raises(ValueError, match="missing keys.*layer3.bias"):
        mlrsnet.MLRSNet.from_original(bad)
    wrong = dict(good)
    wrong["layer1.fc_h2h.2.weight"] = torch.zeros(200, 24)
    with pytest.raises(ValueError, match=r"fc_h2h\.2\.weight: shape \(200, 24\)"):
        mlrsnet.MLRSNet.from_original(wrong)
    path = tmp_path / "not_a_checkpoint.pth"
    path.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not_a_checkpoint.pth"):
        mlrsnet.MLRSNet.from_original(path)


def test_from_original_never_unpickles_code(tmp_path):
    import os
    import pickle

    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"layer3.weight": Exploit()}, f)
    with pytest.raises(ValueError, match="evil.pth"):
        mlrsnet.MLRSNet.from_original(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "kwargs", [{"hidden_size": 0}, {"num_layers": -1}, {"projection_size": 2.5}]
)
def test_bad_sizes(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        mlrsnet.MLRSNet(**kwargs)


def test_non_scalar_loss_is_refused():
    with pytest.raises(ValueError, match="scalar"):
        mlrsnet.MLRSNet()(torch.ones(3))
