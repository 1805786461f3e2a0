"""Genome commands of the innate CLI: `create`, `inspect` and `export`.

`innate create` writes a random genome (so the tools work before any
evolution), `innate inspect` reports what a genome file grows (compression,
weights, wiring cost, graph metrics, with `--faces` the face-selective units; text,
JSON or PNG), and `innate export`
hands the born network to other tools as a state_dict or a GraphML graph.
The logic lives in genome/ (files, inspect, wiring, graph, figures); this
module only parses arguments and prints. A bad genome file exits with status 2 and one
line on stderr. Text from the file (names, fitness, lineage) is printed as
plain text with control characters escaped: a file cannot style or steer the
terminal, and `--json` is strict JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from evo.cli.errors import fail, printable

# Column names of the stimulus categories in the face-units table.
SHORT = {
    "faces": "face",
    "lfw_faces": "lfw",
    "scrambled": "scr",
    "partial": "part",
    "featureless": "head",
    "textures": "tex",
    "natural": "nat",
    "lfw_background": "bg",
}
MAX_PARAMS_HELP = "Refuse layouts whose grown network has more parameters than this."


def _shape(text: str, what: str) -> int | tuple[int, int]:
    """ "64" -> 64, "8x8" -> (8, 8)."""
    parts = text.lower().split("x")
    try:
        vals = [int(p) for p in parts]
    except ValueError:
        vals = []
    if len(vals) not in (1, 2) or min(vals) < 1:
        fail(f"{what} must be N or RxC with positive integers, got {text!r}")
    return vals[0] if len(vals) == 1 else (vals[0], vals[1])


def _settings(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"--setting must be key=value, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value  # a bare word such as code=gray
    return out


def _load(path: Path, max_params: int) -> Any:
    from genome.files import GenomeFileError, load_genome

    try:
        return load_genome(path, max_params=max_params)
    except GenomeFileError as e:
        fail(str(e))


def _text(value: Any) -> Any:
    """A rich Text (never parsed for markup) with control characters shown escaped."""
    from rich.text import Text

    return Text(printable(value if isinstance(value, str) else json.dumps(value)))


def _num(v: float | None, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def _load_for_graph(path: Path, max_params: int, keep: float) -> Any:
    """The genome file, refused before decoding if its graph at `keep` would be too large."""
    from genome.inspect import graph_fault

    gf = _load(path, max_params)
    fault = graph_fault(gf.layout, keep)
    if fault:
        fail(f"{path}: {fault}")
    return gf


def _print_report(rep: dict[str, Any], figures: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console()
    head = Table(title=_text(f"genome {rep['path']}"), show_header=False)
    head.add_row("decoder", _text(rep["decoder"]))
    head.add_row("settings", _text(rep["settings"]))
    head.add_row("layout", rep["layout_text"])
    head.add_row("genome length", str(rep["genome_length"]))
    head.add_row("p-network params", str(rep["p_network_params"]))
    head.add_row("compression", f"{rep['compression']:.1f}x")
    head.add_row("wiring cost", _num(rep["wiring_cost"], ".4g"))
    for k, v in rep["fitness"].items():
        head.add_row(_text(f"fitness {k}"), _num(v, ".5g"))
    for k, v in rep["lineage"].items():
        head.add_row(_text(f"lineage {k}"), _text(v))
    con.print(head)
    layers = Table(title="weights and biases")
    for col in ("layer", "shape", "", "mean", "std", "min", "max", "|x|<1e-3"):
        layers.add_column(col, justify="right")
    for lay in rep["layers"]:
        for part in ("weights", "biases"):
            s = lay[part]
            layers.add_row(
                str(lay["layer"]) if part == "weights" else "",
                "x".join(map(str, lay["shape"])) if part == "weights" else "",
                part,
                *(_num(s[c], ".4g") for c in ("mean", "std", "min", "max")),
                _num(s["frac_near_zero"], ".1%"),
            )
    con.print(layers)
    graph = Table(title=f"graph of the strongest {rep['graph_keep']:.0%} of edges per layer")
    graph.add_column("measure")
    graph.add_column("value", justify="right")
    for k, v in rep["graph"].items():
        graph.add_row(k, "n/a" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v))
    con.print(graph)
    for face, sel in rep.get("faces", {}).get("tests", {}).items():
        _print_faces(con, face, sel)
    for f in figures:
        con.print(_text(f"wrote {f}"), highlight=False)


def _print_faces(con: Any, face: str, sel: dict[str, Any]) -> None:
    from rich.table import Table

    counts = ", ".join(
        f"{n} of {u}"
        for n, u in zip(sel["selective_per_layer"], sel["units_per_layer"], strict=True)
    )
    table = Table(
        box=None,
        pad_edge=False,
        title=f"face-selective units for {face!r}: {counts} per hidden layer ({sel['share']:.1%})",
        caption=f"mean responses; sel.: above every non-face category, rank-sum p < "
        f"{sel['alpha']:g} each; " + ", ".join(f"{v} = {k}" for k, v in SHORT.items()),
    )
    names = list(sel["units"][0]["mean"]) if sel["units"] else []
    for col in ("layer", "unit", "FSI", "sel.", *(SHORT.get(n, n) for n in names)):
        table.add_column(col, justify="right", min_width=max(len(col), 4), no_wrap=True)
    for row in sel["units"]:
        table.add_row(
            str(row["layer"]),
            str(row["unit"]),
            f"{row['fsi']:+.2f}",
            "yes" if row["selective"] else "no",
            *(f"{v:.2f}" for v in row["mean"].values()),
        )
    con.print(table)


def _face_units(phenotype: Any, per_category: int, top: int) -> tuple[dict, dict, Any]:
    """Baek et al.'s test of every hidden unit, once per face category: the report, the
    stimuli and the procedural-faces result (for the figure)."""
    from genome.selectivity import face_selectivities, selectivity_report
    from tasks.stimuli import FACE_CATEGORIES, NON_FACE_CATEGORIES, face_stimuli

    stimuli = face_stimuli(per_category, 0, phenotype.layout.input_shape, phenotype.device)
    sels = face_selectivities(phenotype, stimuli, FACE_CATEGORIES, NON_FACE_CATEGORIES)
    tests = {face: selectivity_report(sel, 0, top) for face, sel in sels.items()}
    doc = {
        "stimuli": {name: len(x) for name, x in stimuli.items()},
        "stimulus_seed": 0,
        "tests": tests,
    }
    return doc, stimuli, sels[FACE_CATEGORIES[0]]


def register(app: typer.Typer) -> None:
    @app.command()
    def create(
        out: Path = typer.Argument(..., help="Genome file to write (.genome)."),
        decoder: str = typer.Option("gnet", "--decoder", help="Decoder (registry name)."),
        input_shape: str = typer.Option("25x25", "--input", help="Input sheet RxC."),
        hidden: list[str] = typer.Option(["64"], "--hidden", help="Hidden sheet N or RxC; repeat."),
        output: str = typer.Option("1", "--output", help="Output units N (or RxC)."),
        setting: list[str] = typer.Option(
            [], "--setting", help="Decoder setting key=JSON; repeat."
        ),
        compression: float = typer.Option(
            None, "--compression", help="Widest decoder with at least this compression."
        ),
        seed: int = typer.Option(0, "--seed", help="Seed of the random genome."),
    ) -> None:
        """Write a random genome: a starting point before any evolution."""
        import torch

        from genome import DECODERS, Layout
        from genome.files import save_genome

        if decoder not in DECODERS:
            fail(f"unknown decoder {decoder!r}; valid decoders: {', '.join(DECODERS)}")
        ins = _shape(input_shape, "--input")
        if not isinstance(ins, tuple):
            fail(f"--input must be RxC, got {input_shape!r}")
        settings = _settings(setting)
        try:
            layout = Layout.build(
                ins, [_shape(h, "--hidden") for h in hidden], _shape(output, "--output")
            )
            cls = DECODERS[decoder]
            if compression is not None:
                dec = cls.for_compression(layout, compression, **settings)
            else:
                dec = cls(layout, **settings)
        except (ValueError, TypeError, NotImplementedError) as e:
            fail(str(e))
        genome = dec.init(1, torch.Generator().manual_seed(seed))[0]
        lineage = {"created_by": "innate create", "seed": seed}
        try:
            path = save_genome(out, genome, dec, lineage=lineage)
        except OSError as e:
            fail(f"cannot write {out}: {e.strerror or e}")
        typer.echo(
            f"wrote {path}: {dec.name} {json.dumps(dec.settings)} on {layout.describe()}, "
            f"{dec.genome_length()} genes -> {layout.n_params} params, "
            f"compression {dec.compression():.1f}x"
        )

    @app.command()
    def inspect(
        genome: Path = typer.Argument(..., help="Genome file."),
        as_json: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
        figures: Path = typer.Option(None, "--figures", help="Write PNG figures to this folder."),
        keep: float = typer.Option(
            0.1, "--keep", help="Fraction of strongest edges for graph metrics."
        ),
        max_params: int = typer.Option(2**28, "--max-params", help=MAX_PARAMS_HELP),
        faces: bool = typer.Option(
            False,
            "--faces",
            help="Test every hidden unit for face selectivity (Baek et al. 2021) on procedural "
            "faces, LFW faces and six non-face categories.",
        ),
        per_category: int = typer.Option(
            200, "--per-category", help="With --faces: procedural images of each category."
        ),
        top: int = typer.Option(10, "--top", help="With --faces: units listed per face set."),
    ) -> None:
        """Report what a genome grows: compression, weights, wiring, graph metrics."""
        if not 0 < keep <= 1:
            fail(f"--keep must be in (0, 1], got {keep}")
        if not 2 <= per_category <= 10_000:
            fail(f"--per-category must be from 2 to 10000, got {per_category}")
        if top < 1:
            fail(f"--top must be >= 1, got {top}")
        gf = _load_for_graph(genome, max_params, keep)
        phenotype = gf.decoder.decode(gf.genome[None])
        from genome.inspect import inspect_report

        rep = inspect_report(gf, phenotype, keep)
        if faces:
            rep["faces"], stimuli, sel = _face_units(phenotype, per_category, top)
        written: list[str] = []
        if figures is not None:
            from genome.figures import plot_receptive_fields, plot_weights, plot_wiring

            try:
                figures.mkdir(parents=True, exist_ok=True)
                written = [
                    str(plot_weights(phenotype, 0, figures / "weights.png")),
                    str(plot_receptive_fields(phenotype, 0, figures / "receptive_fields.png")),
                    str(plot_wiring(phenotype, 0, figures / "wiring.png")),
                ]
                if faces:
                    from genome.figures import plot_face_units

                    written.append(
                        str(plot_face_units(phenotype, 0, sel, stimuli, figures / "face_units.png"))
                    )
            except OSError as e:
                fail(f"cannot write figures to {figures}: {e.strerror or e}")
            rep["figures"] = written
        if as_json:
            # allow_nan=False: a NaN or infinity that slipped through fails here, not in a reader.
            typer.echo(json.dumps(rep, indent=2, allow_nan=False))
        else:
            _print_report(rep, written)

    @app.command()
    def export(
        genome: Path = typer.Argument(..., help="Genome file."),
        state_dict: Path = typer.Option(
            None, "--state-dict", help="Write the born network's state_dict (.pt or .safetensors)."
        ),
        graphml: Path = typer.Option(None, "--graphml", help="Write its graph as GraphML."),
        keep: float = typer.Option(1.0, "--keep", help="Fraction of strongest edges in the graph."),
        max_params: int = typer.Option(2**28, "--max-params", help=MAX_PARAMS_HELP),
    ) -> None:
        """Export the born network as a state_dict of nn.Sequential and/or GraphML."""
        if state_dict is None and graphml is None:
            fail("give --state-dict OUT.pt|OUT.safetensors and/or --graphml OUT.graphml")
        if state_dict is not None and state_dict.suffix not in (".pt", ".safetensors"):
            fail(f"--state-dict must end in .pt or .safetensors, got {state_dict.name!r}")
        if not 0 < keep <= 1:
            fail(f"--keep must be in (0, 1], got {keep}")
        gf = _load_for_graph(genome, max_params, keep) if graphml else _load(genome, max_params)
        phenotype = gf.decoder.decode(gf.genome[None])
        from genome.graph import to_graph, write_graphml
        from genome.inspect import write_state_dict

        target = state_dict
        try:
            if state_dict is not None:
                write_state_dict(phenotype.module(0), state_dict, gf.metadata)
                typer.echo(f"wrote {state_dict}")
            target = graphml
            if graphml is not None:
                write_graphml(to_graph(phenotype, 0, keep), graphml)
                typer.echo(f"wrote {graphml}")
        except OSError as e:
            fail(f"cannot write {target}: {e.strerror or e}")
