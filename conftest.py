"""The integrations' doctests run where their framework is installed (the test extra installs
them all, and CI checks that it did); elsewhere they are left out of the collection."""

from __future__ import annotations

import importlib.util

FRAMEWORKS = {"lightning": ("lightning", "pytorch_lightning"), "huggingface": ("transformers",)}

collect_ignore = [
    f"src/mlrsnet/integrations/{module}.py"
    for module, names in FRAMEWORKS.items()
    if not any(importlib.util.find_spec(name) for name in names)
]
