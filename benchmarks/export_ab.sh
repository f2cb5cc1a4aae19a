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
cd "$(dirname "$0")/.."
base=${1:?baseline revision}
new=${2:?new revision}
run=$(realpath "${3:?run folder}")
formats=${4:-coreml,tflite,onnx}
runs=${5:-3}
precision=${6:-}
py=${PYTHON:-.venv/bin/python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for rev in "$base" "$new"; do
  mkdir -p "$work/$rev"
  git archive "$rev" src | tar -x -C "$work/$rev"
done
echo "host: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-) | $(nproc) cores |" \
  "avx512: $(grep -m1 flags /proc/cpuinfo | grep -c avx512f || true) | $(date -u +%FT%TZ) | $run --to $formats"
declare -A times
for i in $(seq 1 "$runs"); do
  for rev in "$base" "$new"; do
    out="$work/out-$rev-$i"
    start=$(date +%s.%N)
    PYTHONPATH="$work/$rev/src" TQDM_DISABLE=1 "$py" -m visioncascade.cli export "$run" --to "$formats" \
      ${precision:+--precision "$precision"} --out "$out" >"$work/log-$rev-$i" 2>&1 \
      || { cat "$work/log-$rev-$i"; exit 1; }
    seconds=$(echo "$(date +%s.%N) - $start" | bc)
    times[$rev]="${times[$rev]:-} $seconds"
    figures=$("$py" -c "import json,sys; m=json.load(open(sys.argv[1])); print(' '.join(
f\"{a['format']}-{a['precision']}={a['bytes']}B/{a['parity']['max_abs_diff']:.3g}\" for a in m['artifacts']))" \
      "$out/manifest.json")
    printf '%-12s run %d: %6.1f s %s\n' "$rev" "$i" "$seconds" "$figures"
  done
done
for rev in "$base" "$new"; do
  median=$(printf '%s\n' ${times[$rev]} | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}')
  printf '%-12s median %.1f s of%s\n' "$rev" "$median" "${times[$rev]}"
done
