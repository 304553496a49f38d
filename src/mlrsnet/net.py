"""The MLR-SNet schedule network ``A(f; θ)``: an LSTM that reads the loss."""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from mlrsnet.functional import State, mlrsnet_forward

__all__ = ["MLRSNet", "MLRSNetCell"]

_ORIGINAL_KEYS = (
    "fc_i2h.0.weight",
    "fc_i2h.0.bias",
    "fc_i2h.2.weight",
    "fc_i2h.2.bias",
    "fc_h2h.0.weight",
    "fc_h2h.0.bias",
    "fc_h2h.2.weight",
    "fc_h2h.2.bias",
)


class MLRSNetCell(nn.Module):
    """One LSTM layer whose gate pre-activations come from two small MLPs.

    Args:
        input_size: Size of the layer's input (1 for the loss).
        hidden_size: ``H``, the LSTM width.
        projection_size: Width of the hidden layer of each MLP (25 in the paper).
    """

    def __init__(self, input_size: int, hidden_size: int, projection_size: int) -> None:
        super().__init__()
        self.fc_i2h = nn.Sequential(
            nn.Linear(input_size, projection_size),
            nn.ReLU(),
            nn.Linear(projection_size, 4 * hidden_size),
        )
        self.fc_h2h = nn.Sequential(
            nn.Linear(hidden_size, projection_size),
            nn.ReLU(),
            nn.Linear(projection_size, 4 * hidden_size),
        )

    def params(self) -> tuple[Tensor, ...]:
        """The eight tensors in the order :func:`mlrsnet.functional.mlrsnet_cell` takes."""
        i, h = self.fc_i2h, self.fc_h2h
        return (i[0].weight, i[0].bias, i[2].weight, i[2].bias,
                h[0].weight, h[0].bias, h[2].weight, h[2].bias)  # fmt: skip


class MLRSNet(nn.Module):
    """The schedule network: ``factor, state = net(loss, state)`` with factor in (0, 1).

    The defaults are the paper's: one LSTM layer of width 50 whose gates come from
    ``Linear(·, 25) -> ReLU -> Linear(25, 200)`` on the input and on the previous
    hidden state, and a ``sigmoid(Linear(50, 1))`` output: 11,776 parameters.

    The module holds parameters only. The LSTM state is explicit: it is passed in
    and returned, so a scheduler (which keeps it in its ``state_dict``) or a
    meta-trainer decides what is carried. Stacking layers (``num_layers > 1``)
    feeds each layer's hidden state to the next, each with its own state.

    Args:
        hidden_size: LSTM width ``H`` (50).
        num_layers: Number of stacked LSTM layers (1).
        projection_size: Width of the MLPs inside each gate block (25).
        init_range: Weights of the gate MLPs start uniform in ``±init_range``,
            as in the authors' code; biases keep torch's default.

    Example:
        >>> import torch
        >>> net = MLRSNet()
        >>> sum(p.numel() for p in net.parameters())
        11776
        >>> factor, state = net(torch.tensor(2.3))
        >>> factor.shape, state[0].shape
        (torch.Size([]), torch.Size([1, 50]))
    """

    def __init__(
        self,
        hidden_size: int = 50,
        num_layers: int = 1,
        projection_size: int = 25,
        init_range: float = 0.1,
    ) -> None:
        super().__init__()
        for name, value in (
            ("hidden_size", hidden_size),
            ("num_layers", num_layers),
            ("projection_size", projection_size),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"MLRSNet: {name} must be a positive int, got {value!r}")
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.projection_size = projection_size
        self.cells = nn.ModuleList(
            MLRSNetCell(1 if i == 0 else hidden_size, hidden_size, projection_size)
            for i in range(num_layers)
        )
        self.head = nn.Linear(hidden_size, 1)
        with torch.no_grad():
            for cell in self.cells:
                for block in (cell.fc_i2h, cell.fc_h2h):
                    for layer in (block[0], block[2]):
                        layer.weight.uniform_(-init_range, init_range)

    def cell_params(self) -> list[tuple[Tensor, ...]]:
        """Each layer's eight tensors, for :func:`mlrsnet.functional.mlrsnet_forward`."""
        return [cell.params() for cell in self.cells]

    def init_state(self) -> State:
        """A zero state ``(h, c)``, each ``[num_layers, hidden_size]``, on the net's device."""
        w = self.head.weight
        zeros = torch.zeros(self.num_layers, self.hidden_size, device=w.device, dtype=w.dtype)
        return zeros, zeros.clone()

    def forward(self, loss: Tensor | float, state: State | None = None) -> tuple[Tensor, State]:
        """Map a loss to a factor in ``(0, 1)``, advancing the state.

        Args:
            loss: The training loss: a float or a tensor with one element.
            state: ``(h, c)`` from the previous call, or ``None`` for zeros.

        Returns:
            ``(factor, new_state)``; the factor is a 0-d tensor.
        """
        w = self.head.weight
        loss = torch.as_tensor(loss, dtype=w.dtype, device=w.device)
        if loss.numel() != 1:
            raise ValueError(f"MLRSNet expects a scalar loss, got shape {tuple(loss.shape)}")
        if state is None:
            state = self.init_state()
        return mlrsnet_forward(loss, state, self.cell_params(), self.head.weight, self.head.bias)

    def config(self) -> dict[str, int]:
        """The constructor arguments, for saving next to the weights."""
        return {
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "projection_size": self.projection_size,
        }

    @staticmethod
    def parameter_count(
        hidden_size: int = 50, num_layers: int = 1, projection_size: int = 25
    ) -> int:
        """How many parameters a network of this config has, computed, not built.

        Example:
            >>> MLRSNet.parameter_count(), MLRSNet.parameter_count(20, 3, 10)
            (11776, 6371)
        """
        H, P = hidden_size, projection_size
        gates = P + 4 * H * P + 4 * H  # the biases of both linear maps and the second weight
        first = (P * 1 + gates) + (P * H + gates)
        above = 2 * (P * H + gates)
        return first + (num_layers - 1) * above + H + 1

    @staticmethod
    def parameter_shapes(
        hidden_size: int = 50, num_layers: int = 1, projection_size: int = 25
    ) -> dict[str, tuple[int, ...]]:
        """The shape of every tensor of :meth:`state_dict` for a config, without building it.

        Lets a loader check a file's header against the network it describes before
        allocating anything.

        Example:
            >>> import math
            >>> shapes = MLRSNet.parameter_shapes()
            >>> shapes == {k: tuple(v.shape) for k, v in MLRSNet().state_dict().items()}
            True
            >>> sum(math.prod(s) for s in shapes.values())
            11776
        """
        H, P = hidden_size, projection_size
        shapes: dict[str, tuple[int, ...]] = {}
        for layer in range(num_layers):
            for block, n_in in (("fc_i2h", 1 if layer == 0 else H), ("fc_h2h", H)):
                prefix = f"cells.{layer}.{block}"
                shapes[f"{prefix}.0.weight"] = (P, n_in)
                shapes[f"{prefix}.0.bias"] = (P,)
                shapes[f"{prefix}.2.weight"] = (4 * H, P)
                shapes[f"{prefix}.2.bias"] = (4 * H,)
        shapes["head.weight"] = (1, H)
        shapes["head.bias"] = (1,)
        return shapes

    @classmethod
    def from_original(cls, path_or_state: str | os.PathLike[str] | Mapping[str, Tensor]) -> MLRSNet:
        """Load one of the authors' released checkpoints (``mlr_snet_{1,100,200}.pth``).

        The file is read with ``torch.load(weights_only=True)``, which refuses
        anything but tensors and plain containers, so a crafted pickle cannot run
        code. Keys ``layer1.fc_{i2h,h2h}.{0,2}.{weight,bias}`` and
        ``layer3.{weight,bias}`` map to ``cells.0.…`` and ``head.…``; sizes are
        read from the shapes.

        Args:
            path_or_state: A path to the ``.pth`` file, or its loaded state dict.

        Returns:
            The network, in the checkpoint's dtype (float32 for the released files).

        Raises:
            ValueError: If the file is not such a checkpoint: keys missing or
                unexpected, or shapes inconsistent; the message names them.

        Example:
            >>> net = MLRSNet()
            >>> original = {"layer1." + k: v for k, v in net.cells[0].state_dict().items()}
            >>> original.update({"layer3.weight": net.head.weight, "layer3.bias": net.head.bias})
            >>> MLRSNet.from_original(original).hidden_size
            50
        """
        if isinstance(path_or_state, Mapping):
            state = dict(path_or_state)
            source = "state dict"
        else:
            source = os.fspath(path_or_state)
            try:
                state = torch.load(source, map_location="cpu", weights_only=True)
            except Exception as err:  # noqa: BLE001 - re-raised with the file named
                raise ValueError(
                    f"{source}: not a loadable weights-only checkpoint ({err})"
                ) from err
            if not isinstance(state, Mapping):
                raise ValueError(f"{source}: expected a state dict, got {type(state).__name__}")
        expected = {"layer1." + k for k in _ORIGINAL_KEYS} | {"layer3.weight", "layer3.bias"}
        missing = sorted(expected - state.keys())
        unexpected = sorted(state.keys() - expected)
        if missing or unexpected:
            raise ValueError(
                f"{source}: not an MLR-SNet checkpoint in the released layout; "
                f"missing keys {missing}, unexpected keys {unexpected}"
            )
        w_i1 = state["layer1.fc_i2h.0.weight"]
        projection_size, input_size = w_i1.shape
        hidden_size = state["layer3.weight"].shape[-1]
        if input_size != 1:
            raise ValueError(
                f"{source}: layer1.fc_i2h.0.weight must take 1 input, has {input_size}"
            )
        net = cls(hidden_size=hidden_size, projection_size=projection_size).to(w_i1.dtype)
        mapped = {"cells.0." + k: state["layer1." + k] for k in _ORIGINAL_KEYS}
        mapped["head.weight"] = state["layer3.weight"]
        mapped["head.bias"] = state["layer3.bias"]
        net.load_checked(mapped, source=source)
        return net

    def check_state(self, state: Mapping[str, Tensor], *, source: str = "state dict") -> None:
        """Check that ``state`` fits this network, changing nothing.

        Every value must be a floating-point tensor of the network's shape holding finite
        numbers: integer tensors (which would load as whole numbers, typically a factor of 0)
        and NaN or infinite weights (which would give a NaN learning rate) are refused.

        Raises:
            ValueError: Naming every key that is missing, unexpected, of another shape or
                dtype, or not finite.
        """
        own = self.state_dict()
        if not isinstance(state, Mapping):
            raise ValueError(f"{source}: expected a dict of tensors, got {type(state).__name__}")
        problems = [f"missing {k}" for k in own if k not in state]
        problems += [f"unexpected {k}" for k in state if k not in own]
        for k, v in own.items():
            if k not in state:
                continue
            value = state[k]
            if not isinstance(value, Tensor):
                problems.append(f"{k}: a {type(value).__name__} in {source}, not a tensor")
            elif tuple(value.shape) != tuple(v.shape):
                problems.append(
                    f"{k}: shape {tuple(value.shape)} in {source}, {tuple(v.shape)} in the network"
                )
            elif not value.is_floating_point():
                problems.append(f"{k}: dtype {value.dtype} in {source}; floating point expected")
            elif not bool(torch.isfinite(value).all()):
                problems.append(f"{k}: non-finite values (NaN or infinity) in {source}")
        if problems:
            raise ValueError(
                f"{source} does not fit MLRSNet({self.config()}): " + "; ".join(problems)
            )

    def load_checked(self, state: Mapping[str, Tensor], *, source: str = "state dict") -> None:
        """``load_state_dict`` after :meth:`check_state`: nothing is copied unless all fits.

        Raises:
            ValueError: Naming every key that is missing, unexpected, of another shape or
                dtype, or not finite.
        """
        self.check_state(state, source=source)
        with torch.no_grad():
            for k, v in self.state_dict().items():
                v.copy_(state[k])
