"""``mlrsnet demo``: the whole product on scikit-learn's digits, in a few minutes on a CPU.

1. Meta-train a schedule network on ``digits-mlp`` with its held-out meta split,
   saving the three snapshots the paper's transfer protocol uses.
2. Transfer it, frozen and untuned (the paper's scale rule sets ``γ``), to a
   different model, ``digits-cnn``.
3. Train the same model with baseline schedules at their default settings.
4. Compare: a markdown report with a table (mean ± std over seeds) and plots.

Every number in the report comes from the runs this function makes; each run
directory records the equivalent ``mlrsnet`` command.
"""

from __future__ import annotations

import logging
import platform
from collections.abc import Callable
from pathlib import Path

import torch

from mlrsnet.lab import report
from mlrsnet.lab.runner import RunConfig, run

__all__ = ["run_demo", "DEMO_FULL", "DEMO_QUICK"]

logger = logging.getLogger(__name__)

DEMO_FULL = {
    "source": "digits-mlp",
    "target": "digits-cnn",
    "meta_epochs": 40,
    "save_epochs": [1, 20, 40],
    "meta_interval": 1,
    "epochs": 30,
    "seeds": 2,
    "baselines": ["fixed", "multistep", "cosine", "adam", "hd", "schedulefree-sgd", "prodigy"],
}
DEMO_QUICK = {
    "source": "digits-mlp",
    "target": "digits-cnn",
    "meta_epochs": 6,
    "save_epochs": [1, 3, 6],
    "meta_interval": 2,
    "epochs": 4,
    "seeds": 1,
    "baselines": ["fixed", "cosine", "adam"],
}


def _command(kind: str, config: RunConfig, extra: list[str]) -> str:
    parts = [
        "mlrsnet",
        kind,
        "--task",
        config.task,
        "--epochs",
        str(config.epochs),
        "--seed",
        str(config.seed),
    ]
    return " ".join([*parts, *extra, "--out", config.out])


def run_demo(
    out: Path,
    *,
    quick: bool = False,
    seeds: int | None = None,
    device: str = "auto",
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Run the demo into ``out`` and return the path of its ``report.md``.

    Runs already complete in ``out`` are reused (an interrupted demo resumes).

    Args:
        out: Output directory (runs under ``out/runs``, the report in ``out/report``).
        quick: The small configuration (:data:`DEMO_QUICK`), for CI.
        seeds: Seeds per method (default 2, quick 1).
        device: ``auto``, ``cpu``, ``cuda``, ...
        progress: Called with a one-line status before each run.

    Returns:
        The report's path.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the digits models are tiny: one thread is faster than two
    try:
        return _run_demo(Path(out), quick, seeds, device, progress)
    finally:
        torch.set_num_threads(threads)


def _run_demo(
    out: Path, quick: bool, seeds: int | None, device: str, progress: Callable[[str], None] | None
) -> Path:
    plan = dict(DEMO_QUICK if quick else DEMO_FULL)
    n_seeds = seeds or plan["seeds"]
    say = progress or (lambda line: logger.info("%s", line))
    runs_dir = Path(out) / "runs"
    commands: list[str] = []

    meta_out = runs_dir / "meta-train"
    meta_config = RunConfig(
        task=plan["source"],
        out=str(meta_out),
        epochs=plan["meta_epochs"],
        seed=0,
        device=device,
        meta_interval=plan["meta_interval"],
        save_epochs=plan["save_epochs"],
        label="mlrsnet meta-training",
    )
    meta_config.command = _command(
        "meta-train", meta_config,
        ["--meta-interval", str(plan["meta_interval"]), "--save-epochs", ",".join(map(str, plan["save_epochs"]))],
    )  # fmt: skip
    commands.append(meta_config.command)
    say(
        f"[1/3] meta-training a schedule network on {plan['source']} ({plan['meta_epochs']} epochs)"
    )
    run(meta_config, kind="meta-train")
    schedule_file = meta_out / "schedule.safetensors"

    methods = [(f"mlrsnet:{schedule_file}", "MLR-SNet (transferred, untuned)")]
    methods += [(name, f"{name} (default lr)") for name in plan["baselines"]]
    run_dirs = []
    total = len(methods) * n_seeds
    k = 0
    for seed in range(n_seeds):
        for schedule, label in methods:
            k += 1
            slug = "mlrsnet" if schedule.startswith("mlrsnet:") else schedule
            config = RunConfig(
                task=plan["target"],
                out=str(runs_dir / f"{slug}-seed{seed}"),
                schedule=schedule,
                epochs=plan["epochs"],
                seed=seed,
                device=device,
                label=label,
            )
            config.command = _command(
                "train", config, ["--schedule", schedule, "--label", repr(label)]
            )
            commands.append(config.command)
            say(f"[2/3] run {k}/{total}: {plan['target']} with {label}, seed {seed}")
            run(config, kind="train")
            run_dirs.append(Path(config.out))

    say("[3/3] comparing")
    runs = [report.load_run(d) for d in run_dirs]
    intro = (
        f"A schedule network was meta-trained on `{plan['source']}` for {plan['meta_epochs']} epochs "
        f"(meta update every {plan['meta_interval']} step(s), snapshots at epochs "
        f"{', '.join(map(str, plan['save_epochs']))}) and transferred, frozen and untuned, to "
        f"`{plan['target']}`: its three snapshots take over at 0, 1/3 and 2/3 of training, with the "
        "paper's scale rule setting gamma from the training loss at each switch. The baselines run "
        f"at their default learning rates. {plan['epochs']} epochs, {n_seeds} seed(s) each."
        + (" This is the quick configuration (`--quick`)." if quick else "")
        + " The commands below give exactly these numbers again on this machine; another CPU "
        "rounds differently in the last bits, which can move an accuracy by an image or two."
    )
    machine = f"{platform.machine()} {platform.system()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"
    return report.write_report(
        runs,
        Path(out) / "report",
        title="mlrsnet demo: digits",
        intro=intro,
        commands=commands,
        machine=machine,
    )
