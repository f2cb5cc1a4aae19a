#!/usr/bin/env bash
# Wall time of `visioncascade export RUN --to FORMATS` (with its parity proofs) at two commits, runs
# alternated so that both see the same machine, with the medians at the end.
#
#   bash benchmarks/export_ab.sh BASELINE_REV NEW_REV RUN_DIR [FORMATS] [RUNS] [PRECISION]
#       (defaults: FORMATS=coreml,tflite,onnx, RUNS=3, PRECISION: each format's default)
#
# As benchmarks/quick_compare_ab.sh: each commit's src/ is taken with `git archive` and run with this
# checkout's virtual environment (PYTHON, default .venv/bin/python), one fresh process per export, as a
# user runs the command. Prints each run's seconds and each artifact's bytes and max |Δp| from its
# manifest.json, which must agree between the two commits.
set -euo pipefail
run=$(realpath "${3:?run folder}")  # before the cd: a path relative to where it was called
cd "$(dirname "$0")/.."
base=${1:?baseline revision}
new=${2:?new revision}
formats=${4:-coreml,tflite,onnx}
runs=${5:-3}
precision=${6:-}
py=${PYTHON:-.venv/bin/python}
. benchmarks/_ab.sh
ab_checkout "$base" "$new"
ab_host "$run --to $formats"
n=0
for i in $(seq 1 "$runs"); do
  for rev in "$base" "$new"; do
    n=$((n + 1))
    out="$work/out-$n"  # numbered: BASE and NEW may be the same commit (a check of the noise)
    start=$(date +%s.%N)
    PYTHONPATH="$work/$rev/src" TQDM_DISABLE=1 "$py" -m visioncascade.cli export "$run" --to "$formats" \
      ${precision:+--precision "$precision"} --out "$out" >"$work/log-$n" 2>&1 \
      || { cat "$work/log-$n"; exit 1; }
    seconds=$(echo "$(date +%s.%N) - $start" | bc)
    ab_record "$rev" "$seconds"
    figures=$("$py" -c "import json,sys; m=json.load(open(sys.argv[1])); print(' '.join(
f\"{a['format']}-{a['precision']}={a['bytes']}B/{a['parity']['max_abs_diff']:.3g}\" for a in m['artifacts']))" \
      "$out/manifest.json")
    printf '%-12s run %d: %6.1f s %s\n' "$rev" "$i" "$seconds" "$figures"
  done
done
ab_medians "$base" "$new"
