#!/usr/bin/env bash
# Reproduce one result: bench/results/run.sh NAME [innate evolve options...]
# NAME is a config in configs/results/ (faces_lfw, faces_lfw_fresh, digits_gradient_300x,
# digits_gradient_1000x, faces_wiring_weighted, faces_wiring_pareto,
# digits_evolution_300x).
# Runs `innate evolve`, then prints `innate report` and the claim's numbers.
#
# A config may build on other results, named in its comment lines:
#   # init-from: NAME [NAME...]   start from the best genome of a run of each
#                                NAME (one --init each)
#   # reference: NAME             compare the Pareto front with the best genome
#                                of NAME
# Those runs come first (each time, with the same options: a --seed applies to
# all); a result they name may not itself name others.
set -euo pipefail
shopt -s inherit_errexit  # a failed run inside $(...) stops the script too
cd "$(dirname "$0")/../.."
name=${1:?usage: bench/results/run.sh NAME [evolve options]}
shift
out=${OUT:-runs/results}
py=${PYTHON:-.venv/bin/python}
innate=${INNATE:-.venv/bin/innate}
mkdir -p "$out"

# evolve NAME [options]: run configs/results/NAME.toml; prints its run directory
# (on stdout, everything else on stderr). A run that does not finish stops the script.
evolve() {
    local cfg=configs/results/$1.toml log dir
    shift
    [[ -f $cfg ]] || { echo "no result config $cfg" >&2; exit 2; }
    log=$(mktemp)
    "$innate" evolve "$cfg" --out "$out" --quiet "$@" | tee "$log" >&2
    dir=$(sed -n 's/^finished generation [0-9]*: //p' "$log" | tail -1)
    rm -f "$log"
    [[ -n $dir ]] || { echo "$cfg: the run did not finish" >&2; exit 1; }
    echo "$dir"
}

# depends KEY: the result NAMEs a config's "# KEY: NAME [NAME...]" line names (empty if none).
depends() { sed -n "s/^# $1: *\([a-z0-9_ ]*\).*/\1/p" "configs/results/$name.toml" | head -1; }

[[ -f configs/results/$name.toml ]] || { echo "no result config configs/results/$name.toml" >&2; exit 2; }
extra=()
deps=$(depends init-from)
read -ra inits <<<"$deps"
for init in "${inits[@]}"; do
    echo "== $name starts from the best genome of $init" >&2
    dir=$(evolve "$init" "$@")
    extra+=(--init "$dir/best.genome")
done
summary=()
deps=$(depends reference)
read -r reference _ <<<"$deps"
if [[ -n $reference ]]; then
    echo "== $name is compared with the best genome of $reference" >&2
    dir=$(evolve "$reference" "$@")
    summary+=(--reference "$dir/best.genome")
fi
run_dir=$(evolve "$name" "${extra[@]}" "$@")
"$innate" report "$run_dir"
if grep -Eq '^[[:space:]]*mode[[:space:]]*=[[:space:]]*"pareto"' "configs/results/$name.toml"; then
    summary=(--pareto "${summary[@]}")
fi
"$py" bench/results/summarize.py "$run_dir" "${summary[@]}"
