#!/usr/bin/env bash
# Reproduce one result: bench/results/run.sh NAME [innate evolve options...]
# NAME is a config in configs/results/ (faces_lfw, digits_gradient_300x,
# digits_gradient_1000x, faces_wiring_pareto, digits_evolution_300x).
# Runs `innate evolve`, then prints `innate report` and the claim's numbers.
set -euo pipefail
cd "$(dirname "$0")/../.."
name=${1:?usage: bench/results/run.sh NAME [evolve options]}
shift
cfg=configs/results/$name.toml
out=${OUT:-runs/results}
py=${PYTHON:-.venv/bin/python}
innate=${INNATE:-.venv/bin/innate}
mkdir -p "$out"
log=$(mktemp)
"$innate" evolve "$cfg" --out "$out" --quiet "$@" | tee "$log"
run_dir=$(sed -n 's/^finished generation [0-9]*: //p; s/^interrupted at generation [0-9]*: //p' "$log" | tail -1)
rm -f "$log"
"$innate" report "$run_dir"
extra=()
[[ $name == faces_wiring_pareto ]] && extra=(--pareto)
"$py" bench/results/summarize.py "$run_dir" "${extra[@]}"
