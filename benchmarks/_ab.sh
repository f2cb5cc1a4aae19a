# Shared by the *_ab.sh benchmarks (sourced, not run): two commits' src/ side by side and medians.
#
#   ab_checkout BASE NEW   sets $work (removed on exit) and extracts each commit's src/ into $work/REV
#   ab_host [WHAT]         prints the host line (CPU, cores, AVX-512 or not, UTC time, WHAT)
#   ab_record REV SECONDS  remembers one run's seconds
#   ab_medians BASE NEW    prints each commit's median and its runs

ab_checkout() {
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  for rev in "$@"; do
    mkdir -p "$work/$rev"
    git archive "$rev" src | tar -x -C "$work/$rev"
  done
}

ab_host() {
  echo "host: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-) | $(nproc) cores |" \
    "avx512: $(grep -m1 flags /proc/cpuinfo | grep -c avx512f || true) | $(date -u +%FT%TZ)${1:+ | $1}"
}

declare -A ab_times
ab_record() {
  ab_times[$1]="${ab_times[$1]:-} $2"
}

ab_medians() {
  local rev median
  for rev in "$@"; do
    median=$(printf '%s\n' ${ab_times[$rev]} | sort -n |
      awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}')
    printf '%-12s median %.1f s of%s\n' "$rev" "$median" "${ab_times[$rev]}"
  done
}
