"""The integrations import their framework only when imported, and say what to install."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[2] / "src")
FRAMEWORKS = ("lightning", "pytorch_lightning", "transformers", "accelerate")


def python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"}, timeout=120)  # fmt: skip


def test_mlrsnet_and_its_integrations_package_import_no_framework():
    done = python(
        "import sys, mlrsnet, mlrsnet.integrations\n"
        "mlrsnet.MLRSNetLR, mlrsnet.integrations.__doc__\n"
        f"print(sorted(m for m in {FRAMEWORKS!r} if m in sys.modules))"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("module", "blocked", "extra"),
    [
        ("lightning", ("lightning", "pytorch_lightning"), "lightning"),
        ("huggingface", ("transformers",), "huggingface"),
    ],  # fmt: skip
)
def test_a_missing_framework_names_the_extra_to_install(module, blocked, extra):
    block = "".join(f"sys.modules[{name!r}] = None\n" for name in blocked)  # import fails
    done = python(f"import sys\n{block}import mlrsnet.integrations.{module}")
    assert done.returncode != 0
    assert f"pip install 'mlrsnet[{extra}]'" in done.stderr
