#!/usr/bin/env bash
# run_fuzzer.sh FUZZER CORPUS WORK SECONDS [SEED]: runs a libFuzzer binary
# for a bounded time over a copy of the kept corpus (new inputs stay in WORK,
# the repository is not written to). SEED (default 1) fixes the order in
# which inputs are tried, so CI explores the same inputs on every run of a
# commit and a red fuzz test is one anybody can rerun; 0 asks libFuzzer for
# a random seed (for long hunts by hand). A crash fails the test and leaves the
# input in WORK/crash-*, with the command that replays it printed.
set -euo pipefail
fuzzer="$1" corpus="$2" work="$3" seconds="$4" seed="${5:-1}"
[[ -d "${corpus}" ]] || { echo "run_fuzzer: no corpus folder ${corpus}" >&2; exit 1; }
rm -rf "${work}"
mkdir -p "${work}/corpus"
cp -r "${corpus}/." "${work}/corpus/"
# One job, bounded memory and input size; leaks are not what is hunted here
# (the replay under ASan in the asan build checks them on the kept inputs).
if ASAN_OPTIONS=detect_leaks=0:${ASAN_OPTIONS:-} "${fuzzer}" "${work}/corpus" \
    -max_total_time="${seconds}" -seed="${seed}" -rss_limit_mb=2048 -max_len=1048576 -timeout=20 \
    -artifact_prefix="${work}/" -print_final_stats=1 2>"${work}/log"; then
  tail -n 12 "${work}/log"
  exit 0
fi
tail -n 60 "${work}/log"
for crash in "${work}"/crash-* "${work}"/oom-* "${work}"/timeout-*; do
  [[ -e "${crash}" ]] || continue
  echo "run_fuzzer: found ${crash}; replay it with: ${fuzzer} ${crash}"
  echo "run_fuzzer: once fixed, keep it: cp ${crash} ${corpus}/"
done
exit 1
