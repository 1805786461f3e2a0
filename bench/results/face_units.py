"""Face-selective units (Baek et al., Nat Commun 2021) in evolved, random and initialised bodies.

    python bench/results/face_units.py faces=S0.genome,S1.genome,S2.genome digits=D.genome

For each named group of genome files (evolved genomes, one per seed), for
random genomes of every decoder on the first group's body, compressed as
much as its genomes (`--seeds` each; `direct` uncompressed),
and for Kaiming-initialised bodies of the same shape (`--seeds`): the share of
hidden units that pass Baek's test (responses to the face category above
those to every non-face category, two-sided rank-sum p < 0.001 each; see
`genome.selectivity`), once with the procedural faces and once with the real
LFW faces as the face category, and the mean face-selectivity index; mean and
95% interval (1.96 std / sqrt(n)) over the genomes of a group. The stimuli
(`tasks.stimuli.face_stimuli`, `--per-category` procedural images of each
kind, LFW's 100 faces and 100 background crops) are drawn once, at each body's
input size, from `--stimulus-seed`. Prints a markdown table; `--out` also
writes it and a JSON file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from genome.decoders import DECODERS
from genome.files import load_genome
from genome.phenotype import Phenotype
from genome.selectivity import face_selectivities
from lifetime.baselines import kaiming_bodies, random_genomes
from tasks.stimuli import FACE_CATEGORIES, NON_FACE_CATEGORIES, face_stimuli


def measure(phenotype: Phenotype, stimuli: dict) -> dict[str, torch.Tensor]:
    """Per individual [P]: the share of selective units for each face category, the mean FSI."""
    out = {}
    sels = face_selectivities(phenotype, stimuli, FACE_CATEGORIES, NON_FACE_CATEGORIES)
    for face, sel in sels.items():
        out[f"share_{face}"] = sel.share()
        out[f"fsi_{face}"] = torch.cat(sel.fsi, dim=1).mean(dim=1)
    return out


def summary(values: torch.Tensor) -> dict[str, float]:
    n = len(values)
    std = float(values.std()) if n > 1 else 0.0
    return {"mean": float(values.mean()), "ci95": 1.96 * std / n**0.5, "n": n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("groups", nargs="+", help="NAME=FILE[,FILE...]: genomes of one kind")
    parser.add_argument("--seeds", type=int, default=10, help="random genomes and bodies per kind")
    parser.add_argument("--per-category", type=int, default=200)
    parser.add_argument("--stimulus-seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    groups: dict[str, list] = {}
    for arg in args.groups:
        name, _, files = arg.partition("=")
        if not files:
            parser.error(f"expected NAME=FILE[,FILE...], got {arg!r}")
        groups[name] = [load_genome(f) for f in files.split(",")]
    reference = next(iter(groups.values()))[0]  # random and Kaiming bodies take its body plan
    stimuli_at: dict[tuple, dict] = {}

    def stimuli(layout) -> dict:
        shape = tuple(layout.input_shape)
        if shape not in stimuli_at:
            stimuli_at[shape] = face_stimuli(args.per_category, args.stimulus_seed, shape)
        return stimuli_at[shape]

    rows: dict[str, dict] = {}
    for name, files in groups.items():
        parts = [measure(f.decoder.decode(f.genome[None]), stimuli(f.layout)) for f in files]
        values = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        rows[f"{name} genomes"] = {k: summary(v) for k, v in values.items()}
    layout = reference.layout
    gen = torch.Generator().manual_seed(0)
    for dname in DECODERS:
        if dname == reference.decoder.name:
            decoder = reference.decoder
        elif dname == "direct":
            decoder = DECODERS[dname](layout)
        else:  # as compressed as the reference genome
            decoder = DECODERS[dname].for_compression(layout, reference.decoder.compression())
        values = measure(random_genomes(decoder, args.seeds, gen), stimuli(layout))
        rows[f"random {dname}"] = {k: summary(v) for k, v in values.items()}
    values = measure(kaiming_bodies(layout, args.seeds, gen), stimuli(layout))
    rows["Kaiming init"] = {k: summary(v) for k, v in values.items()}

    def cell(r: dict, key: str, scale: float = 100.0, digits: int = 1) -> str:
        return f"{r[key]['mean'] * scale:.{digits}f} ± {r[key]['ci95'] * scale:.{digits}f}"

    lines = [
        f"Face-selective hidden units, % (mean ± 95% interval over genomes; "
        f"body of the random and Kaiming rows: {' -> '.join(map(str, layout.sizes))})",
        "",
        "| bodies | n | selective for procedural faces | selective for LFW faces "
        "| mean FSI, procedural | mean FSI, LFW |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['share_faces']['n']} | {cell(r, 'share_faces')} | "
            f"{cell(r, 'share_lfw_faces')} | {cell(r, 'fsi_faces', 1, 2)} | "
            f"{cell(r, 'fsi_lfw_faces', 1, 2)} |"
        )
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "face_units.md").write_text(table + "\n")
        (args.out / "face_units.json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
