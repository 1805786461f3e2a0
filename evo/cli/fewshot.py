"""The `innate fewshot` command: a genome's born network learns from a few examples.

It draws N-way K-shot episodes from the evaluation split of a data set,
adapts the genome's network on each with a learning rule and head, and sets
the query accuracy against the baselines on the same episodes (lifetime.compare).
This module parses arguments and prints; a bad genome, data file or setting
exits with status 2 and one line on stderr.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from evo.cli.errors import fail
from evo.cli.genome import MAX_PARAMS_HELP, _load, _settings


def register(app: typer.Typer) -> None:
    @app.command()
    def fewshot(
        genome: Path = typer.Argument(..., help="Genome file."),
        data: str = typer.Option(
            "glyphs", "--data", help="glyphs, digits, mnist, or a labelled FILE.npz."
        ),
        split: str = typer.Option("evaluation", "--split", help="Split the episodes come from."),
        way: int = typer.Option(5, "--way", help="Classes per episode."),
        shot: int = typer.Option(1, "--shot", help="Labelled examples per class."),
        query: int = typer.Option(15, "--query", help="Query examples per class."),
        episodes: int = typer.Option(600, "--episodes", help="Number of episodes."),
        rule: str = typer.Option("sgd", "--rule", help="Learning rule: sgd, fa, hebbian, eqprop."),
        head: str = typer.Option("linear", "--head", help="Head: prototype, linear, all."),
        steps: int = typer.Option(None, "--steps", help="Updates per episode (rule default)."),
        lr: float = typer.Option(None, "--lr", help="Learning rate (rule default)."),
        setting: list[str] = typer.Option(
            [], "--setting", help="Rule setting key=JSON, e.g. beta=0.05; repeat."
        ),
        within_groups: bool = typer.Option(
            True, "--within-groups/--across-groups", help="Classes of an episode from one group."
        ),
        baselines: str = typer.Option(
            "pixel,kaiming,random,pretrained", "--baselines", help="Comma list, or 'none'."
        ),
        bodies: int = typer.Option(4, "--bodies", help="Random bodies averaged per baseline."),
        pretrain_steps: int = typer.Option(
            2000, "--pretrain-steps", help="Adam steps of the trained-on-background baseline."
        ),
        samples: int = typer.Option(
            0,
            "--samples",
            help="Glyphs: pick the episodes among this many samples of each character, "
            "drawn once as a run's test draws them; 0: a fresh distortion for every image.",
        ),
        seed: int = typer.Option(0, "--seed", help="Seed of the episodes and the baselines."),
        device: str = typer.Option("cpu", "--device", help="Torch device, e.g. cpu or cuda."),
        as_json: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
        figures: Path = typer.Option(
            None, "--figures", help="Draw a few episodes with predictions into this folder."
        ),
        max_params: int = typer.Option(2**28, "--max-params", help=MAX_PARAMS_HELP),
    ) -> None:
        """Few-shot accuracy of a genome's born network, against baselines on the same episodes."""
        import torch

        from lifetime.compare import BASELINES, LABELS, compare
        from lifetime.heads import HEADS
        from lifetime.rules import make_rule
        from tasks.episodes import draw_episodes, load_source
        from tasks.labelled import DataError

        if head not in HEADS:
            fail(f"unknown head {head!r}; valid heads: {', '.join(HEADS)}")
        chosen = () if baselines == "none" else tuple(b for b in baselines.split(",") if b)
        bad = [b for b in chosen if b not in BASELINES]
        if bad:
            fail(f"unknown baseline(s) {bad}; valid: {', '.join(BASELINES)} or none")
        if bodies < 1:
            fail(f"--bodies must be >= 1, got {bodies}")
        if episodes < 1:
            fail(f"--episodes must be >= 1, got {episodes}")
        _check_samples(samples, data, shot + query)
        try:
            torch.empty(1, device=device)
        except (RuntimeError, ValueError) as e:
            fail(f"--device {device!r} is not usable here: {str(e).splitlines()[0]}")
        try:
            learner = make_rule(rule, steps=steps, lr=lr, **_settings(setting))
        except (ValueError, TypeError) as e:
            fail(str(e))
        gf = _load(genome, max_params)
        if head == "all":
            try:
                learner.check_layers(gf.layout.n_layers)
            except ValueError as e:
                fail(str(e))
        phenotype = gf.decoder.decode(gf.genome[None].to(device))
        size = gf.layout.input_shape
        try:
            source = load_source(data, split, size, device)
            background = None
            if "pretrained" in chosen:
                background = load_source(data, "background", size, device)
            if samples:
                from tasks.glyphs import drawn_glyphs

                # As a run's test draws its set (seed 0), so that its score can be checked here.
                source = drawn_glyphs(source, samples, 0)
                if background is not None:
                    background = drawn_glyphs(background, samples, seed)
            eps = draw_episodes(
                source,
                way=way,
                shot=shot,
                query=query,
                seed=seed,
                split=split,
                indices=episodes,
                within_groups=within_groups,
            )
        except (DataError, ValueError, ImportError) as e:
            fail(str(e))

        from rich.progress import Progress

        total = len(eps) * (1 + len(chosen))
        with Progress(transient=True, disable=as_json) as bar:
            task = bar.add_task("episodes", total=total)
            result = compare(
                phenotype,
                gf.decoder,
                eps,
                None if head == "prototype" else learner,
                head,
                reference=genome.name,
                baselines=chosen,
                bodies=bodies,
                seed=seed,
                background=background,
                pretrain_steps=pretrain_steps,
                progress=lambda n: bar.advance(task, n),
            )
        summary = result.summary()
        doc = {
            "genome": str(genome),
            "data": data,
            "split": split,
            "way": way,
            "shot": shot,
            "query": query,
            "episodes": len(eps),
            "within_groups": within_groups,
            "seed": seed,
            "samples": samples,
            "head": head,
            "rule": None if head == "prototype" else learner.describe(),
            "methods": summary,
        }
        if figures is not None:
            from lifetime.figures import draw_episodes as draw

            try:
                doc["figures"] = [str(p) for p in draw(phenotype, eps, learner, head, figures)]
            except OSError as e:
                fail(f"cannot write figures to {figures}: {e.strerror or e}")
        if as_json:
            typer.echo(json.dumps(doc, indent=2))
            return
        _print_table(doc, {genome.name: f"genome {genome.name}", **LABELS})


def _check_samples(samples: int, data: str, need: int) -> None:
    from evo.objectives.fewshot import MAX_SAMPLES

    if samples == 0:
        return
    if data != "glyphs":
        fail(f"--samples draws glyph samples; with --data {data} leave it out (or 0)")
    if not need <= samples <= MAX_SAMPLES:
        fail(
            f"--samples {samples}: an episode takes --shot + --query = {need} samples of each "
            f"character; valid: 0 (a fresh sample for every image) or {need} to {MAX_SAMPLES}"
        )


def _print_table(doc: dict, labels: dict[str, str]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    rule = doc["rule"]
    learning = (
        "head prototype (no learning)"
        if rule is None
        else f"rule {rule['rule']} (lr {rule['lr']}, {rule['steps']} steps), head {doc['head']}"
    )
    title = (
        f"{doc['way']}-way {doc['shot']}-shot, {doc['episodes']} episodes of {doc['data']} "
        f"({doc['split']}, {'within' if doc['within_groups'] else 'across'} groups"
        + (f", {doc['samples']} samples per character" if doc["samples"] else "")
        + f"); {learning}"
    )
    table = Table(title=Text(title), title_justify="left")
    table.add_column("method")
    table.add_column("accuracy % (95% CI)", justify="right")
    table.add_column("genome minus method, paired", justify="right")
    for name, row in doc["methods"].items():
        vs = row.get("vs_reference")
        diff = "" if vs is None else f"{-100 * vs['mean']:+.2f} ± {100 * vs['ci95']:.2f}"
        table.add_row(
            Text(labels.get(name, name)), f"{100 * row['mean']:.2f} ± {100 * row['ci95']:.2f}", diff
        )
    console = Console(markup=False, highlight=False)
    console.print(table)
    for path in doc.get("figures", []):
        console.print(f"wrote {path}")
