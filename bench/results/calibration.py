"""Calibration: each learning rule trained normally (not few-shot) on scikit-learn's digits.

A weak few-shot number must not hide a broken rule: here every rule trains the
same 64 -> 64 -> 10 network (Kaiming init, `--seeds` networks at once, one per
seed) on all 1,437 training images, full batch, and is scored on the 360 test
images. Backprop (`sgd`) is the reference.

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

# Settings per rule, chosen on the training loss of seed 0 only (no test numbers).
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
    args = parser.parse_args()
    data = load_digits()
    g = args.seeds
    x = data.train_x.reshape(1, -1, 64).expand(g, -1, -1).contiguous()
    y = data.train_y.expand(g, -1).contiguous()
    tx = data.test_x.reshape(1, -1, 64).expand(g, -1, -1)
    layout = Layout.build((8, 8), [64], 10)
    print(f"digits, 64 -> 64 -> 10, {g} seeds, full batch of {x.shape[1]} training images")
    print("rule      settings                       test accuracy % (mean ± std over seeds)  time")
    for name in args.rules.split(","):
        bodies = kaiming_bodies(layout, g, torch.Generator().manual_seed(0))
        net = Net(tuple(bodies.weights), tuple(bodies.biases))
        t = time.perf_counter()
        trained = make_rule(name, **SETTINGS[name]).adapt(net, x, y, 10)
        seconds = time.perf_counter() - t
        with torch.no_grad():
            acc = (trained(tx).argmax(-1) == data.test_y).double().mean(-1) * 100
        print(
            f"{name:9s} {SETTINGS[name]!s:30s} {acc.mean():6.2f} ± {acc.std():4.2f}"
            f"{'':26s}{seconds:5.1f} s"
        )


if __name__ == "__main__":
    main()
