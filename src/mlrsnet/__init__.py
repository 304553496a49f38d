"""MLR-SNet: meta-learned, transferable learning-rate schedules for PyTorch.

Example:
    >>> import torch, mlrsnet
    >>> model = torch.nn.Linear(3, 2)
    >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.3)
    >>> scheduler = mlrsnet.MLRSNetLR(optimizer, mlrsnet.MLRSNet())

The names below are imported on first use (PEP 562), so that ``import mlrsnet`` — and the
``mlrsnet`` command's ``--help`` — does not import torch until something needs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "MLRSNet",
    "MLRSNetLR",
    "MetaTrainer",
    "load_schedule",
    "paper_gamma",
    "pretrained",
    "pretrained_names",
    "save_schedule",
    "__version__",
]

#: Public name -> the submodule that defines it.
_LAZY = {
    "MLRSNet": "mlrsnet.net",
    "MLRSNetLR": "mlrsnet.scheduler",
    "MetaTrainer": "mlrsnet.meta",
    "load_schedule": "mlrsnet.hub",
    "paper_gamma": "mlrsnet.functional",
    "pretrained": "mlrsnet.hub",
    "pretrained_names": "mlrsnet.hub",
    "save_schedule": "mlrsnet.hub",
}

#: Submodules that ``import mlrsnet`` used to import, still reachable as attributes.
_SUBMODULES = (
    "atomic", "checks", "functional", "gradients", "hub", "integrations", "meta", "net", "scheduler",
)  # fmt: skip

if TYPE_CHECKING:
    from mlrsnet.functional import paper_gamma
    from mlrsnet.hub import load_schedule, pretrained, pretrained_names, save_schedule
    from mlrsnet.meta import MetaTrainer
    from mlrsnet.net import MLRSNet
    from mlrsnet.scheduler import MLRSNetLR


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, *_SUBMODULES})
