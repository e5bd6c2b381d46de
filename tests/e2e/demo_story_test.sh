#!/bin/bash
# The demo's whole story end to end, as `make demo` runs it, in a private
# root: two sites in their own network namespaces, three TCG guests, a
# workload writing to db01; test recovery, cleanup, planned migration (no
# acknowledged write lost), reprotect, failback, a disaster at the
# protected site mid-workload, failover (the recovered log a prefix of the
# acknowledged writes), the old site back and fenced, reprotect and
# failback home. Then checks the story's outcome against libvirt
# itself and that tearing down leaves nothing running.
#
# usage: demo_story_test.sh BUILD_DIR   (ctest passes it)
set -uo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" "${1:?usage: demo_story_test.sh BUILD_DIR}" e2e-story st
out="${EVAC_DEMO_ROOT}.out"
finish() {
  if [[ ${failed} -gt 0 ]]; then
    echo "--- the story's output is kept in ${out}; evacd logs in ${EVAC_DEMO_ROOT}/site-{a,b}/evacd.log, reports in ${EVAC_DEMO_ROOT}/reports"
    tail -n 40 "${out}"
  fi
  "${repo_dir}/lab/demo.sh" down >/dev/null 2>&1
  [[ ${failed} -gt 0 ]] || { chattr -R -f -i "${EVAC_DEMO_ROOT}" 2>/dev/null; rm -rf "${EVAC_DEMO_ROOT}" "${out}"; }  # fenced images are immutable
}
trap finish EXIT

"${repo_dir}/lab/demo.sh" story >"${out}" 2>&1
rc=$?
check "the story runs to its end (exit ${rc})" test "${rc}" = 0
check "the summary names every phase" bash -c "grep -q '^Test recovery' '${out}' && grep -q '^Planned migration' '${out}' &&
  grep -q '^Failover (site-a gone)' '${out}' && grep -q '^Site-a back, fenced' '${out}' && test \$(grep -c '^Failback home' '${out}') = 2"
check "no acknowledged write was lost by the migration and both failbacks" \
  test "$(grep -Ec '^(Migration|Failback) data check.*OK: all [0-9]* acknowledged writes are there' "${out}")" = 3
check "the failover recovered a prefix of the acknowledged writes" grep -q '^Failover data check.*OK: the recovered log is a prefix' "${out}"
check "the failover's millisecond instant and loss window hold against the workload's own clock" \
  grep -Eq "^Failover data check.*evac's window [0-9]+[.][0-9]{3} s \(instant to last contact\), measured" "${out}"
check "site-a, back after the disaster, refuses to start a stale copy by hand" \
  grep -q "^starting db01 by hand at site-a: refused (Operation not permitted)" "${out}"
check "the RTOs are reported" test "$(grep -c 'RTO [0-9.]* s' "${out}")" -ge 5
check "eight HTML reports are left" test "$(ls "${EVAC_DEMO_ROOT}/reports/"*.html 2>/dev/null | wc -l)" = 8
check "each report says who, what and how long" bash -c "grep -l 'Achieved RTO' '${EVAC_DEMO_ROOT}'/reports/*.html | wc -l | grep -qx 8"
for vm in db01 app01 web01; do
  check "${vm} ends running at site-a only" \
    test "$(virsh -c "${uri_a}" domstate "${vm}" 2>/dev/null | head -1)/$(virsh -c "${uri_b}" domstate "${vm}" 2>/dev/null | head -1)" = "running/shut off"
  check "${vm} at site-b is a placeholder of site-a's again" \
    bash -c "virsh -c '${uri_b}' metadata '${vm}' https://evac.dev/xmlns/placeholder/1 | grep -q 'source-site=\"site-a\"'"
done
check "site-a protects the group toward site-b again" \
  bash -c "evac --context site-a group show demo | grep -Eq '^RECOVERY: +site-b'"
check "and replication to site-b goes on" bash -c "evac --context site-a group sync demo >/dev/null"

"${repo_dir}/lab/demo.sh" down >/dev/null 2>&1
for _ in $(seq 50); do pgrep -f "[/]${EVAC_DEMO_ROOT#/}" >/dev/null || break; sleep 0.1; done
check "nothing of the lab is left running" bash -c "! pgrep -f '[/]${EVAC_DEMO_ROOT#/}' >/dev/null"

echo "${passed} passed, ${failed} failed"
[[ ${failed} -eq 0 ]]
