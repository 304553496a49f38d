"""Which objective agrees with the accuracy a user reads, and does an early-stopping response
help where a model memorises noisy labels? On meta-training instances only.

Trains each instance (:data:`INSTANCES`: label noise that memorises, and clean runs) with
cosine at the user's rate, with an MLR-SNet+ network under the user-rate contract, and with
that network's least-used hidden units rewired into a thresholded response to a validation
loss risen above its best (:func:`mlrsnet.lab.plus_training.with_early_stop_unit`, output
weights ``--weights``), each run as meta-training runs it (the first half of the meta split
given to the network at every epoch end, the second half scoring it). Prints, per instance
and seed, each schedule's validation accuracy, soft error (1 − p(true class)) and sharp error
(the same of the logits over 0.25): the objective to meta-train on is the one that ranks the
schedules as the accuracy does.

    python benchmarks/plus_objectives.py                  # v7, the response at -2 and -4
    python benchmarks/plus_objectives.py --network v8 --weights   # a network as it is
"""

from __future__ import annotations

import argparse

#: ``(task, training fraction, optimizer, label-noise rate, passes, seeds)``: instances of
#: :data:`mlrsnet.lab.benchmark.tasksets.META_TRAINING_CONVERGENCE`.
INSTANCES = (
    ("digits-cnn", 1.0, "sgd", 0.2, 96, (11, 12)),
    ("digits-mlp", 1.0, "adamw", 0.4, 96, (11, 12)),
    ("digits-cnn", 0.5, "sgd", 0.6, 48, (11, 12)),
    ("digits-mlp", 1.0, "sgd", 0.0, 64, (11, 12)),
    ("digits-cnn", 1.0, "adamw", 0.0, 64, (11,)),
    ("fmnist-mlp", 0.1, "sgd", 0.0, 64, (11,)),
    ("fmnist-mlp", 0.1, "adamw", 0.4, 48, (11,)),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", default="v7", help="a shipped network or a file")
    parser.add_argument("--weights", type=float, nargs="*", default=[-2.0, -4.0],
                        help="output weights of the early-stopping response (none: without)")  # fmt: skip
    parser.add_argument("--rise", type=float, nargs=2, default=[10.0, 2.0],
                        metavar=("RISE", "THRESHOLD"), help="the response's input weights")  # fmt: skip
    args = parser.parse_args(argv)

    from mlrsnet import plus
    from mlrsnet.lab import plus_training as pt

    net, _ = plus.resolve(args.network)
    schedules = {args.network: pt.flat_params(net)}
    for weight in args.weights:
        rewired = pt.with_early_stop_unit(net, *args.rise, weight)
        schedules[f"+response {weight:g}"] = pt.flat_params(rewired)
    print("| instance | seed | " + " | ".join(["cosine", *schedules]) + " |")
    print("|---|---:|" + "---|" * (len(schedules) + 1))
    for task, fraction, optimizer, noise, passes, seeds in INSTANCES:
        for seed in seeds:
            instance = {"task": task, "train_fraction": fraction, "optimizer": optimizer,
                        "noise_rate": noise, "seed": seed,
                        "steps": min(4000, round(passes * pt.steps_per_pass(task, fraction)))}  # fmt: skip
            lr = pt.user_lr(instance)
            runs = [pt.evaluate(instance, None, schedule="cosine", base_lr=lr, validation=True,
                                objective="sharp-error")]  # fmt: skip
            runs += [pt.evaluate(instance, theta, hidden=net.hidden, template=net, base_lr=lr,
                                 peak=1.0, validation=True, objective="sharp-error")
                     for theta in schedules.values()]  # fmt: skip
            cells = [f"{r['val_metric']:.2f} / {r['soft_error']:.3f} / {r['sharp_error']:.3f}"
                     for r in runs]  # fmt: skip
            name = f"`{task}` {fraction:.0%}, {optimizer}, noise {noise:.0%}, {passes} passes"
            print(f"| {name} | {seed} | " + " | ".join(cells) + " |", flush=True)
    print("\ncells: validation accuracy / soft error / sharp error (lower is better for both)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
