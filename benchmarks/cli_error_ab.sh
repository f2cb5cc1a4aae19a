#!/usr/bin/env bash
# How long a mistyped option takes to be refused, at two commits: `visioncascade train breastmnist
# --folds 1` (exit status 2, "--folds must be 0 ... or at least 2"), runs alternated, medians at the end.
#
#   bash benchmarks/cli_error_ab.sh BASELINE_REV NEW_REV [RUNS]      (default RUNS=5)
#
# Each commit's src/ runs with this checkout's virtual environment (PYTHON, default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:?baseline revision}
new=${2:?new revision}
runs=${3:-5}
py=${PYTHON:-.venv/bin/python}
. benchmarks/_ab.sh
ab_checkout "$base" "$new"
ab_host "train breastmnist --folds 1"
for i in $(seq 1 "$runs"); do
  for rev in "$base" "$new"; do
    start=$(date +%s.%N)
    status=0
    PYTHONPATH="$work/$rev/src" "$py" -m visioncascade.cli train breastmnist --folds 1 --out "$work/never" \
      >/dev/null 2>"$work/err" || status=$?
    seconds=$(echo "$(date +%s.%N) - $start" | bc)
    grep -q -- "--folds must be 0" "$work/err" && [ "$status" = 2 ] || { cat "$work/err"; exit 1; }
    ab_record "$rev" "$seconds"
    printf '%-12s run %d: %5.2f s\n' "$rev" "$i" "$seconds"
  done
done
ab_medians "$base" "$new"
