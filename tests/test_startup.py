"""Start-up: a command imports what it uses, not the heavy packages other commands need.

Each check runs in a fresh interpreter and reads `sys.modules` afterwards: a
claim about what is imported, not about how long it takes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# sympy: torch imports it (about 35 MB) on the first call of some Python helpers,
# torch.broadcast_shapes among them.
HEAVY = ("evotorch", "ray", "matplotlib", "cma", "pandas", "sympy")


def _loaded_after(script: str) -> dict[str, bool]:
    """{package: whether it was really imported} after running `script` in a new process."""
    check = (
        "\nimport sys, json\n"
        "from evo import _Deferred\n"
        f"print(json.dumps({{m: m in sys.modules and not isinstance(sys.modules[m], _Deferred) "
        f"for m in {HEAVY!r}}}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script + check],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_inspect_imports_no_search_ray_or_plotting(tmp_path):
    genome = tmp_path / "g.genome"
    script = (
        "from typer.testing import CliRunner\n"
        "from evo.cli import app\n"
        f"for args in (['create', {str(genome)!r}, '--hidden', '8'], "
        f"['inspect', {str(genome)!r}, '--json']):\n"
        "    res = CliRunner().invoke(app, args)\n"
        "    assert res.exit_code == 0, res.output\n"
    )
    assert not any(_loaded_after(script).values())


def test_reading_a_config_leaves_pycma_and_matplotlib_unloaded():
    loaded = _loaded_after("import evo.config\nevo.config.load('configs/faces.toml')\n")
    assert loaded["evotorch"]  # the searchers' settings come from EvoTorch's signatures
    assert not loaded["cma"] and not loaded["matplotlib"]


def test_the_deferred_module_loads_on_first_use():
    script = (
        "import evo, sys\n"
        "import evotorch.algorithms.pycmaes as p\n"
        "assert isinstance(sys.modules['cma'], evo._Deferred)\n"
        "assert p.cma.CMAEvolutionStrategy.__name__ == 'CMAEvolutionStrategy'\n"
        "assert not isinstance(sys.modules['cma'], evo._Deferred)\n"
    )
    assert _loaded_after(script)["cma"]


def test_an_evolution_run_leaves_sympy_unloaded(tmp_path):
    # A direct genome: SNES's gradient goes through its buffers, the noise through the kernel.
    raw = {
        "seed": 0,
        "generations": 3,
        "batch_size": 32,
        "workers": 0,
        "task": {"objectives": ["faces"]},
        "layout": {"hidden": [8]},
        "decoder": {"name": "direct"},
        "algorithm": {"name": "snes", "population_size": 16},
    }
    script = (
        "from evo import config\n"
        "from evo.driver import new_run\n"
        f"cfg = config.resolve(config.validate({raw!r}, 'test'), 'test')\n"
        f"new_run(cfg, {str(tmp_path)!r}, progress=False)\n"
    )
    loaded = _loaded_after(script)
    assert loaded["evotorch"] and not loaded["sympy"]
