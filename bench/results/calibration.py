"""Calibration: each learning rule trained normally (not few-shot) on scikit-learn's digits.

A weak few-shot number must not hide a broken rule: here every rule trains the
same 64 -> 64 -> 10 network (Kaiming init, `--seeds` networks at once, one per
seed) on all 1,437 training images, full batch, and is scored on the 360 test
images. Backprop (`sgd`) is the reference. The Hebbian rule with the output
clamped to the label converges to the class-sum readout (each class's summed
hidden features as its weights, no bias); that readout is also computed in
closed form on the same features, so that the rule can be checked against
what it is meant to reach as well as against backprop.

    python bench/results/calibration.py            # the README's table
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from genome import Layout
from lifetime.baselines import kaiming_bodies
from lifetime.rules import RULES, Net, make_rule
from tasks.digits import load_digits

# Settings per rule, fixed before the first run and not changed after the test numbers.
SETTINGS = {
    "sgd": {"lr": 0.5, "steps": 500},
    "fa": {"lr": 0.5, "steps": 500},
    "hebbian": {"lr": 0.5, "steps": 50},
    "eqprop": {"lr": 0.5, "steps": 500},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--rules", default=",".join(RULES))
    parser.add_argument("--hidden", default="64", help="hidden widths, comma-separated")
    args = parser.parse_args()
    data = load_digits()
    g = args.seeds
    x = data.train_x.reshape(1, -1, 64).expand(g, -1, -1).contiguous()
    y = data.train_y.expand(g, -1).contiguous()
    tx = data.test_x.reshape(1, -1, 64).expand(g, -1, -1)
    hidden = [int(w) for w in args.hidden.split(",")]
    layout = Layout.build((8, 8), hidden, 10)
    shape = " -> ".join(map(str, [64, *hidden, 10]))
    print(f"digits, {shape}, {g} seeds, full batch of {x.shape[1]} training images")
    print("rule      settings                       test accuracy % (mean ± std over seeds)  time")
    for name in args.rules.split(","):
        bodies = kaiming_bodies(layout, g, torch.Generator().manual_seed(0))
        net = Net(tuple(bodies.weights), tuple(bodies.biases))
        rule = make_rule(name, **SETTINGS[name])
        try:
            rule.check_layers(net.n_layers)
        except ValueError as e:
            print(f"{name:9s} refused: {e}")
            continue
        t = time.perf_counter()
        trained = rule.adapt(net, x, y, 10)
        seconds = time.perf_counter() - t
        with torch.no_grad():
            acc = (trained(tx).argmax(-1) == data.test_y).double().mean(-1) * 100
        print(
            f"{name:9s} {SETTINGS[name]!s:30s} {acc.mean():6.2f} ± {acc.std():4.2f}"
            f"{'':26s}{seconds:5.1f} s"
        )
        if name == "hebbian":
            with torch.no_grad():
                h, th = net.activations(x)[-2], net.activations(tx)[-2]
                sums = torch.nn.functional.one_hot(y, 10).to(h.dtype).transpose(-1, -2) @ h
                acc = (th @ sums.transpose(-1, -2)).argmax(-1) == data.test_y
                acc = acc.double().mean(-1) * 100
            print(
                f"{'':9s} {'class-sum readout, closed form':30s} {acc.mean():6.2f} ± {acc.std():4.2f}"
            )


if __name__ == "__main__":
    main()
