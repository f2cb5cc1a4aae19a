#!/usr/bin/env bash
# Wall time of `visioncascade compare breastmnist --quick --quiet` at two commits, runs alternated so that
# both see the same machine (load drifts on a shared host), with the medians at the end.
#
#   bash benchmarks/quick_compare_ab.sh BASELINE_REV NEW_REV [RUNS]      (default RUNS=3)
#
# Each commit's src/ is taken with `git archive` into a temporary folder and run with this checkout's
# virtual environment (PYTHON, default .venv/bin/python) through PYTHONPATH, so the installed
# dependencies are the same for both. Prints one line per run and the comparison.json figures that must
# not change between the two (test ACC / ROC-AUC per arm).
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:?baseline revision}
new=${2:?new revision}
runs=${3:-3}
py=${PYTHON:-.venv/bin/python}
. benchmarks/_ab.sh
ab_checkout "$base" "$new"
ab_host
n=0
for i in $(seq 1 "$runs"); do
  for rev in "$base" "$new"; do
    n=$((n + 1))
    out="$work/out-$n"  # numbered: BASE and NEW may be the same commit (a check of the noise)
    load=$(cut -d' ' -f1 /proc/loadavg)
    start=$(date +%s.%N)
    PYTHONPATH="$work/$rev/src" "$py" -m visioncascade.cli compare breastmnist --quick --out "$out" --quiet \
      >"$work/log-$n" 2>&1 || { cat "$work/log-$n"; exit 1; }
    seconds=$(echo "$(date +%s.%N) - $start" | bc)
    ab_record "$rev" "$seconds"
    figures=$("$py" -c "import json,sys; c=json.load(open(sys.argv[1])); print(' '.join(
f\"{a}={x['test']['accuracy']:.4f}/{x['test']['roc_auc']:.4f}\" for a,x in c['arms'].items()))" \
      "$out/comparison.json")
    printf '%-12s run %d: %7.1f s (load %s at start) %s\n' "$rev" "$i" "$seconds" "$load" "$figures"
  done
done
ab_medians "$base" "$new"
