"""Ready-made tasks: real data splits, standard models, losses and metrics.

Example:
    >>> import mlrsnet.tasks as tasks
    >>> task = tasks.get("digits-mlp", seed=0)
    >>> task.num_classes, task.metric
    (10, 'accuracy')

Submodules: :mod:`~mlrsnet.tasks.datasets` (raw loaders), :mod:`~mlrsnet.tasks.splits` (meta
split, subsets, label noise, batchify), :mod:`~mlrsnet.tasks.augment` (batch augmentation),
:mod:`~mlrsnet.tasks.download` (optional verified downloads), :mod:`~mlrsnet.tasks.registry`
(tasks) and :mod:`~mlrsnet.tasks.models` (networks, imported lazily by
:meth:`Task.build_model`). See ``docs/tasks.md``.
"""

from .registry import (
    BPTTLoader,
    ImageBatchLoader,
    ImageTask,
    Task,
    TaskSpec,
    TextTask,
    available,
    get,
    names,
    register,
    spec,
)

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
