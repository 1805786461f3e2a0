"""evo: evolution of genomes on Ray through EvoTorch, runs, checkpoints and the CLI.

By role: `search/` (the searchers' registry, the engine, NSGA-II, the gradient
optimiser, Pareto maths and the archive), `objectives/` (one objective per
file and their registry) and `cli/` (the `innate` command line). A run is the
flat modules: `problem` (the EvoTorch problem), `evals` (its packed
evaluations, by name), `cluster` (Ray), `config` (the TOML format),
`sections` (each section's defaults and checks), `build` (config -> objects), `driver` (the search loop), `rundir`
(the run directory's files), `checkpoint` and `report`.
"""

import importlib
import importlib.util
import sys
import types


class _Deferred(types.ModuleType):
    """A stand-in for a module that imports it on the first read of one of its names."""

    def __getattr__(self, attr: str):
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), attr)


def _defer_import(name: str) -> None:
    """Import module `name` when one of its names is first read, not when it is imported.

    EvoTorch imports pycma (and pycma matplotlib's pyplot) for a searcher that
    innate never builds; that was most of the time `import evo.config` took
    after torch and Ray. The stand-in carries the module's file and spec, so
    tools that scan every module (inspect.getmodule) do not load it.
    """
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None:
        return
    module = _Deferred(name)
    # No __path__: importing a submodule reads it, which loads the real package first.
    module.__spec__, module.__file__ = spec, spec.origin
    sys.modules[name] = module


_defer_import("cma")
