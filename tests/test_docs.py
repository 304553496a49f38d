"""Every ```python block of README.md and docs/*.md runs as written.

Each block runs in a fresh namespace, in a temporary working directory, so whatever it writes
lands there and not in the repository. A block that cannot run here for a real reason is
marked in the markdown on the line just before its fence:

    <!-- snippet: skip (needs torchrun) -->      reported as skipped, with the reason
    <!-- snippet: needs shared data -->          runs with $MLRSNET_DATA at ../shared/data,
                                                 skipped where that folder is absent
    <!-- snippet: needs fashion-mnist -->        skipped where Fashion-MNIST is not installed
    <!-- snippet: reads the repository -->       runs in the repository root, to read committed
                                                 records (it must write nothing)
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
#: docs/demo and docs/benchmarks hold generated reports, not documentation with code.
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^```python\s*$")
MARKER = re.compile(r"^<!--\s*snippet:\s*(.*?)\s*-->\s*$")
#: ``needs ...`` markers: the conftest fixture that skips when the data is absent, and the
#: environment variable pointing the data lookup at it (None: found in its system folder).
NEEDS = {
    "shared data": ("shared_data", "MLRSNET_DATA"),
    "fashion-mnist": ("fashion_mnist_dir", None),
}


def snippets(path: Path) -> list[tuple[str, str]]:
    """``[(code, marker), ...]`` of the ```python blocks of ``path``, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found = []
    i = 0
    while i < len(lines):
        if not FENCE.match(lines[i]):
            i += 1
            continue
        marker = MARKER.match(lines[i - 1]) if i > 0 else None
        end = i + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        if end == len(lines):
            raise ValueError(f"{path.name}: the ```python block at line {i + 1} is not closed")
        found.append(("\n".join(lines[i + 1 : end]) + "\n", marker.group(1) if marker else ""))
        i = end + 1
    return found


CASES = [
    pytest.param(path, index, code, marker, id=f"{path.relative_to(ROOT).as_posix()}:{index}")
    for path in DOCUMENTS
    for index, (code, marker) in enumerate(snippets(path))
]


def test_the_snippets_are_found():
    ids = {case.id for case in CASES}
    assert {"README.md:0", "README.md:1"} <= ids
    assert not any("docs/demo/" in i or "docs/benchmarks/" in i for i in ids)


@pytest.mark.parametrize(("path", "index", "code", "marker"), CASES)
def test_snippet_runs_as_written(path, index, code, marker, tmp_path, monkeypatch, request):
    if marker.startswith("skip"):
        reason = marker[len("skip") :].strip().strip("()").strip()
        pytest.skip(reason or "marked skip in the markdown")
    if marker.startswith("needs "):
        need = marker[len("needs ") :]
        if need not in NEEDS:
            raise ValueError(f"unknown snippet marker {marker!r}; known needs: {sorted(NEEDS)}")
        fixture, variable = NEEDS[need]
        folder = request.getfixturevalue(fixture)  # skips when the data is absent
        if variable is not None:
            monkeypatch.setenv(variable, str(folder))
    elif marker and marker != "reads the repository":
        raise ValueError(f"unknown snippet marker {marker!r}")
    monkeypatch.chdir(ROOT if marker == "reads the repository" else tmp_path)
    run(code, f"{path.relative_to(ROOT).as_posix()}:{index}")


def run(code: str, name: str) -> dict:
    """Execute ``code`` in a fresh namespace and return it; the global RNGs are left as found."""
    namespace = {"__name__": "__main__"}
    numpy_state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):  # snippets may seed torch
        try:
            exec(compile(code, name, "exec"), namespace)
        finally:
            np.random.set_state(numpy_state)
    return namespace


def test_the_readme_meta_training_program_does_what_the_readme_says(tmp_path, monkeypatch):
    import mlrsnet

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (code, _), *_ = [s for s in snippets(ROOT / "README.md") if "MetaTrainer(" in s[0]]
    monkeypatch.chdir(tmp_path)
    namespace = run(code, "README.md (meta-training)")
    meta_updates = namespace["trainer"].num_meta_steps
    assert meta_updates >= 100
    assert f": {meta_updates} meta updates" in readme
    bundle = mlrsnet.load_schedule(tmp_path / "runs" / "digits.safetensors")
    assert bundle.snapshots == ["epoch_1", "epoch_10", "epoch_20"]
    assert (tmp_path / "runs" / "digits.json").is_file()
