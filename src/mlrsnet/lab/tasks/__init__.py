"""Ready-made tasks: real data splits, standard models, losses and metrics.

Example:
    >>> import mlrsnet.lab.tasks as tasks
    >>> task = tasks.get("digits-mlp", seed=0)
    >>> task.num_classes, task.metric
    (10, 'accuracy')

Submodules: :mod:`~mlrsnet.lab.tasks.datasets` (raw loaders), :mod:`~mlrsnet.lab.tasks.splits`
(meta split, subsets, label noise, batchify), :mod:`~mlrsnet.lab.tasks.augment` (batch
augmentation), :mod:`~mlrsnet.lab.tasks.download` (optional verified downloads),
:mod:`~mlrsnet.lab.tasks.loaders` (deterministic, resumable batch loaders),
:mod:`~mlrsnet.lab.tasks.types` (the task types: how a model is called, trained and
evaluated), :mod:`~mlrsnet.lab.tasks.registry` (the task table) and
:mod:`~mlrsnet.lab.tasks.models` (networks, imported lazily by :meth:`Task.build_model`). See
``docs/tasks.md``.
"""

from .loaders import BPTTLoader, ImageBatchLoader
from .registry import TaskSpec, available, get, names, register, spec
from .types import ImageTask, Task, TextTask

__all__ = [
    "BPTTLoader",
    "ImageBatchLoader",
    "ImageTask",
    "Task",
    "TaskSpec",
    "TextTask",
    "available",
    "get",
    "names",
    "register",
    "spec",
]
