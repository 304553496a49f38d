"""MLR-SNet: meta-learned, transferable learning-rate schedules for PyTorch.

Example:
    >>> import torch, mlrsnet
    >>> model = torch.nn.Linear(3, 2)
    >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.3)
    >>> scheduler = mlrsnet.MLRSNetLR(optimizer, mlrsnet.MLRSNet())
"""

from mlrsnet.functional import paper_gamma
from mlrsnet.hub import load_schedule, pretrained, pretrained_names, save_schedule
from mlrsnet.meta import MetaTrainer
from mlrsnet.net import MLRSNet
from mlrsnet.scheduler import MLRSNetLR

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
