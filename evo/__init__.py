"""evo: evolution of genomes on Ray through EvoTorch, runs, checkpoints and the CLI.

By role: `search/` (the searchers' registry, the engine, NSGA-II, the gradient
optimiser, Pareto maths and the archive), `objectives/` (one objective per
file and their registry) and `cli/` (the `innate` command line). A run is the
flat modules: `problem` (the EvoTorch problem), `evals` (its packed
evaluations, by name), `cluster` (Ray), `config` (the TOML format),
`sections` (each section's defaults and checks), `build` (config -> objects), `driver` (the search loop), `rundir`
(the run directory's files), `checkpoint` and `report`.
"""
