"""The executor of the lab's suites: Ray, and what a job on it needs to find its task's data.

The held-out benchmark (:mod:`mlrsnet.lab.benchmark.execute`) and MLR-SNet+ meta-training
(:mod:`mlrsnet.lab.plus_training`) both run their jobs on Ray (the ``suite`` extra). What they
share lives here, importing neither of them.
"""

from __future__ import annotations

__all__ = ["start_ray", "text_data_dir"]


def start_ray(workers: int, address: str | None) -> None:
    """Join the Ray cluster at ``address``, or start a local one of ``workers`` CPUs (once)."""
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    else:
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)


def text_data_dir(task_name: str, data_dir: str | None) -> str | None:
    """``data_dir`` (the root of the text data) for a text task, ``None`` for an image task
    (whose data the task finds itself: the Debian package, or scikit-learn's digits).

    Example:
        >>> text_data_dir("digits-mlp", "/data"), text_data_dir("shakespeare-lstm", "/data")
        (None, '/data')
    """
    from mlrsnet.lab import tasks

    return data_dir if tasks.spec(task_name).modality == "text" else None
