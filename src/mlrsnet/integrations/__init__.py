"""Training frameworks that step the scheduler themselves, in torch's order.

Each integration is a module of its own that imports its framework when it is imported, so
``import mlrsnet`` and ``import mlrsnet.integrations`` import none of them:

- :mod:`mlrsnet.integrations.lightning`: ``MLRSNetCallback`` for Lightning
  (``pip install "mlrsnet[lightning]"``).
- :mod:`mlrsnet.integrations.huggingface`: ``MLRSNetCallback`` for the Hugging Face
  ``Trainer`` (``pip install "mlrsnet[huggingface]"``).

Accelerate needs no module: ``scheduler.observe(loss)`` in the loop is all (see
docs/integrations.md).
"""

__all__: list[str] = []
