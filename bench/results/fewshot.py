"""The few-shot table: genomes against the baselines, by rule and head, on glyph episodes.

    python bench/results/fewshot.py tune                      # settings, on validation scripts
    python bench/results/fewshot.py table faces=F.genome digits=D.genome [--out DIR]

`tune` picks each (rule, head)'s learning rate and step count on episodes of
the *validation* scripts, with Kaiming-initialised bodies of each genome's body
plan (not the genomes, which it is meant to judge), and writes them to
`bench/results/fewshot_settings.json`; `table` reads that file and never
changes it. The choice is the grid point with the best mean accuracy over both
body plans and both shot counts.

`table` runs, for each genome on its own body, 5-way 1-shot and 5-way 5-shot
episodes of the *evaluation* scripts (600 by default, within script): the
genome, the pixel prototype, Kaiming bodies, random genomes of the same
decoder and the body trained on the background scripts, for the prototype head
and each rule with the linear and the all head. It prints a markdown table
(accuracy % ± 95% interval; a paired difference to the genome for each
baseline is in the JSON) and writes `fewshot.json` and `fewshot.md` to --out.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from genome.files import load_genome
from lifetime.baselines import kaiming_bodies
from lifetime.compare import BASELINES, LABELS, compare, method_bodies
from lifetime.fewshot import accuracy
from lifetime.rules import RULES, make_rule
from tasks.episodes import draw_episodes, load_source

SETTINGS = Path(__file__).with_name("fewshot_settings.json")
LRS = (0.03, 0.1, 0.3, 1.0)
STEPS = (10, 30)
SHOTS = (1, 5)
# The body plans of the genomes the table judges: faces_lfw and digits_gradient_300x.
PLANS = {"faces": ((25, 25), 64), "digits": ((28, 28), 800)}


def combos() -> list[tuple[str, str]]:
    return [("-", "prototype")] + [(r, h) for r in RULES for h in ("linear", "all")]


def tune(args) -> None:
    from genome import Layout

    chosen, log = {}, []
    data = {
        plan: {
            shot: draw_episodes(
                load_source("glyphs", "validation", size),
                way=5,
                shot=shot,
                seed=args.seed,
                split="validation",
                indices=args.episodes,
            )
            for shot in SHOTS
        }
        for plan, (size, _) in PLANS.items()
    }
    bodies = {
        plan: kaiming_bodies(Layout.build(size, [hidden], 1), 2, torch.Generator().manual_seed(1))
        for plan, (size, hidden) in PLANS.items()
    }
    for rule, head in combos()[1:]:
        best = None
        for lr, steps in itertools.product(LRS, STEPS):
            learner = make_rule(rule, lr=lr, steps=steps)
            scores = [
                float(accuracy(bodies[p], data[p][s], learner, head).mean())
                for p in PLANS
                for s in SHOTS
            ]
            mean = sum(scores) / len(scores)
            log.append({"rule": rule, "head": head, "lr": lr, "steps": steps, "accuracy": mean})
            print(f"{rule:8s} {head:7s} lr {lr:<5} steps {steps:3d}: {100 * mean:.2f}", flush=True)
            if best is None or mean > best[0]:
                best = (mean, lr, steps)
        chosen[f"{rule}/{head}"] = {"lr": best[1], "steps": best[2]}
    SETTINGS.write_text(
        json.dumps({"chosen": chosen, "episodes": args.episodes, "grid": log}, indent=2) + "\n"
    )
    print(f"wrote {SETTINGS}")


def table(args) -> None:
    settings = json.loads(SETTINGS.read_text())["chosen"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for spec in args.genomes:
        name, _, path = spec.partition("=")
        gf = load_genome(path)
        phenotype = gf.decoder.decode(gf.genome[None])
        size = gf.layout.input_shape
        background = load_source("glyphs", "background", size)
        source = load_source("glyphs", "evaluation", size)
        # The network baselines' bodies, built once per genome and shared by every rule and head.
        bodies = {
            b: method_bodies(
                b,
                phenotype,
                gf.decoder,
                bodies=args.bodies,
                seed=args.seed,
                background=background,
                pretrain_steps=args.pretrain_steps,
            )
            for b in BASELINES
            if b != "pixel"
        }
        for shot in SHOTS:
            eps = draw_episodes(
                source, way=5, shot=shot, seed=args.seed, split="evaluation", indices=args.episodes
            )
            for rule, head in combos():
                t = time.perf_counter()
                learner = None if rule == "-" else make_rule(rule, **settings[f"{rule}/{head}"])
                comparison = compare(
                    phenotype,
                    gf.decoder,
                    eps,
                    learner,
                    head,
                    reference=name,
                    baselines=("pixel",),
                )
                for b, body in bodies.items():
                    comparison.accuracy[b] = accuracy(body, eps, learner, head).mean(0)
                key = f"{name}/{shot}-shot/{rule}/{head}"
                results[key] = comparison.summary()
                row = results[key]
                print(
                    f"{key:40s} "
                    + "  ".join(
                        f"{m} {100 * r['mean']:.1f}±{100 * r['ci95']:.1f}" for m, r in row.items()
                    )
                    + f"  ({time.perf_counter() - t:.0f} s)",
                    flush=True,
                )
    doc = {
        "settings": settings,
        "episodes": args.episodes,
        "bodies": args.bodies,
        "results": results,
    }
    (out / "fewshot.json").write_text(json.dumps(doc, indent=2) + "\n")
    md = markdown(results, [s.partition("=")[0] for s in args.genomes])
    (out / "fewshot.md").write_text(md)
    print(md)


def markdown(results: dict, names: list[str]) -> str:
    lines = []
    for name in names:
        for shot in SHOTS:
            lines.append(
                f"\n**{name} genome's body, 5-way {shot}-shot** (accuracy %, 95% interval)\n"
            )
            methods = [name, "pixel", *[b for b in BASELINES if b != "pixel"]]
            header = ["rule / head", f"{name} genome", *[LABELS[m] for m in methods[1:]]]
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "---|" * len(header))
            for rule, head in combos():
                row = results[f"{name}/{shot}-shot/{rule}/{head}"]
                cells = [
                    f"{100 * row[m]['mean']:.1f} ± {100 * row[m]['ci95']:.1f}" for m in methods
                ]
                label = head if rule == "-" else f"{rule} / {head}"
                lines.append("| " + " | ".join([label, *cells]) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("tune")
    t.add_argument("--episodes", type=int, default=100)
    t.add_argument("--seed", type=int, default=0)
    r = sub.add_parser("table")
    r.add_argument("genomes", nargs="+", help="NAME=GENOME_FILE")
    r.add_argument("--episodes", type=int, default=600)
    r.add_argument("--bodies", type=int, default=4)
    r.add_argument("--pretrain-steps", type=int, default=2000)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--out", default="runs/results/fewshot")
    args = parser.parse_args()
    tune(args) if args.command == "tune" else table(args)


if __name__ == "__main__":
    main()
