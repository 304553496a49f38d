"""What the integrations share: the schedulers they feed."""

from __future__ import annotations

from mlrsnet.plus import MLRSNetPlusLR
from mlrsnet.scheduler import MLRSNetLR

#: The loss-driven schedulers the callbacks feed (MLR-SNet and MLR-SNet+).
LOSS_DRIVEN = (MLRSNetLR, MLRSNetPlusLR)
