"""MLR-SNet: meta-learned, transferable learning-rate schedules for PyTorch."""

__version__ = "0.1.0"
