#!/bin/bash
# evac's main job on its embedded default, on this machine: two real libvirt
# sites, each in its own network namespace with its own libvirtd + QEMU and
# its own evacd, joined by one veth link (which the disaster cuts); two
# evacd's paired over mutual TLS across it, three real QEMU VMs at the
# protected site in one protection group, and their placeholders registered
# at the recovery site. The operator's CLI runs in a third namespace with a
# link to each site: nothing of the lab touches the host's own network.
#
# usage: lab/demo.sh story  build the lab, then the whole story: test recovery, cleanup,
#                           planned migration, reprotect, failback, a disaster at site-a,
#                           failover, site-a back and fenced, reprotect and failback home;
#                           data checks against a workload and a summary
#        lab/demo.sh up     build the lab only: sites, VMs, pairing, protection, replication
#                           (tears down a previous one first)
#        lab/demo.sh down   stop everything the demo started
#        lab/demo.sh status what runs
# Needs a built tree (make build) and root.
set -euo pipefail

lab_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_dir="$(cd "${lab_dir}/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${lab_dir}/lib.sh"

root="${EVAC_DEMO_ROOT:-/var/tmp/evac-lab/demo}"
sites_root="${root}/sites"
guest_dir="${EVAC_GUEST_DIR:-/var/tmp/evac-lab/guest}"
bin="${EVAC_BUILD_DIR:-${repo_dir}/build/default}/src"
site_uri() { printf 'qemu+unix:///system?socket=%s/%s/run/libvirt-sock' "${sites_root}" "$1"; }
port_base="${EVAC_DEMO_PORT_BASE:-8441}"
port_of() { case "$1" in site-a) echo "${port_base}" ;; site-b) echo $((port_base + 1)) ;; esac; }
# Namespaces, links and bridges are named from a prefix, so a test's lab
# runs apart from a demo running at the same time.
br="${EVAC_DEMO_BRIDGE_PREFIX:-evac}"
ns_of() { echo "${br}-$1"; }  # site-a, site-b, ops
# The link between the sites (what the peers use), and each site's link to
# the operator's namespace (what the CLI uses).
site_addr() { case "$1" in site-a) echo 10.99.0.1 ;; site-b) echo 10.99.0.2 ;; esac; }
ops_addr() { case "$1" in site-a) echo 10.98.1.2 ;; site-b) echo 10.98.2.2 ;; esac; }
evac_cli() { EVAC_CONFIG="${root}/cli.yaml" ip netns exec "$(ns_of ops)" "${bin}/cli/evac" "$@"; }

step_no=0
step() {
  step_no=$((step_no + 1))
  printf '\n\033[1m== %d. %s\033[0m\n' "${step_no}" "$*"
}
# show CMD...: echo an evac command as the operator would type it, then run it.
show() {
  printf '$ evac %s\n' "$*"
  evac_cli "$@"
}

# Three namespaces: one per site and the operator's; veth links between
# the sites and from the operator's to each. Idempotent.
netns_up() {
  lab_need_tool ip iproute2
  local ns
  for ns in site-a site-b ops; do
    ip netns list | grep -qw -- "$(ns_of "${ns}")" || ip netns add "$(ns_of "${ns}")"
    ip -n "$(ns_of "${ns}")" link set lo up
  done
  veth "$(ns_of site-a)" "${br}-ab" "$(site_addr site-a)" "$(ns_of site-b)" "${br}-ba" "$(site_addr site-b)"
  veth "$(ns_of ops)" "${br}-oa" 10.98.1.1 "$(ns_of site-a)" "${br}-ao" "$(ops_addr site-a)"
  veth "$(ns_of ops)" "${br}-ob" 10.98.2.1 "$(ns_of site-b)" "${br}-bo" "$(ops_addr site-b)"
  # What the other kinds of NIC attach to, at each site: a host device for
  # macvtap NICs (one end of a veth pair, as a NIC on a switch would be) and
  # a host bridge with no uplink (a test network of that kind).
  for ns in site-a site-b; do
    ip -n "$(ns_of "${ns}")" link show "${br}-mv" >/dev/null 2>&1 ||
      ip -n "$(ns_of "${ns}")" link add "${br}-mv" type veth peer name "${br}-mvp"
    ip -n "$(ns_of "${ns}")" link set "${br}-mv" up
    ip -n "$(ns_of "${ns}")" link set "${br}-mvp" up
    ip -n "$(ns_of "${ns}")" link show "${br}-tbr" >/dev/null 2>&1 || ip -n "$(ns_of "${ns}")" link add "${br}-tbr" type bridge
    ip -n "$(ns_of "${ns}")" link set "${br}-tbr" up
  done
}

veth() {  # NS1 DEV1 ADDR1 NS2 DEV2 ADDR2: a /30 link between two namespaces
  ip -n "$1" link show "$2" >/dev/null 2>&1 ||
    ip link add "$2" netns "$1" type veth peer name "$5" netns "$4"
  ip -n "$1" addr replace "$3/30" dev "$2"
  ip -n "$4" addr replace "$6/30" dev "$5"
  ip -n "$1" link set "$2" up
  ip -n "$4" link set "$5" up
}

netns_down() {
  local ns
  for ns in site-a site-b ops; do ip netns del "$(ns_of "${ns}")" 2>/dev/null || true; done
}

# The link between the sites: cut (the disaster) and restored.
link_cut() { ip -n "$(ns_of site-a)" link set "${br}-ab" down; ip -n "$(ns_of site-b)" link set "${br}-ba" down; }
link_restore() { ip -n "$(ns_of site-a)" link set "${br}-ab" up; ip -n "$(ns_of site-b)" link set "${br}-ba" up; }

stop_evacd() {
  local site="$1"
  local pidfile="${root}/${site}/evacd.pid"
  [[ -f "${pidfile}" ]] || return 0
  local pid
  pid="$(cat "${pidfile}")"
  if kill -0 "${pid}" 2>/dev/null; then
    kill -TERM "${pid}"
    for _ in $(seq 50); do kill -0 "${pid}" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "${pid}" 2>/dev/null || true
  fi
  rm -f "${pidfile}"
}

# Networks outlive libvirtd (their bridges stay), so take them down first.
destroy_networks() {
  local uri
  uri="$(site_uri "$1")"
  "${lab_dir}/site.sh" status "$1" --root "${sites_root}" >/dev/null 2>&1 || return 0
  for net in $(virsh -q -c "${uri}" net-list --name 2>/dev/null); do
    virsh -q -c "${uri}" net-destroy "${net}" >/dev/null 2>&1 || true
  done
}

down() {
  workload_stop
  for site in site-a site-b; do
    stop_evacd "${site}"
    destroy_networks "${site}"
    "${lab_dir}/site.sh" down "${site}" --root "${sites_root}" >/dev/null 2>&1 || true
  done
  netns_down  # and with them the links and bridges in them
  lab_say "demo lab is down"
}

status() {
  for site in site-a site-b; do
    "${lab_dir}/site.sh" status "${site}" --root "${sites_root}" || true
    if [[ -f "${root}/${site}/evacd.pid" ]] && kill -0 "$(cat "${root}/${site}/evacd.pid")" 2>/dev/null; then
      echo "evacd ${site}: running (pid $(cat "${root}/${site}/evacd.pid"), https://$(ops_addr "${site}"):$(port_of "${site}") in namespace $(ns_of "${site}"))"
    else
      echo "evacd ${site}: stopped"
    fi
  done
}

define_pool() {  # URI NAME DIR
  mkdir -p "$3"
  virsh -q -c "$1" pool-define-as "$2" dir --target "$3" >/dev/null
  virsh -q -c "$1" pool-start "$2" >/dev/null
}

# A libvirt network over a bridge the lab makes itself in the site's
# namespace (libvirt bridges VMs onto it, forward mode "bridge").
define_network() {  # SITE NAME BRIDGE
  local xml="${root}/$2-$3.xml" ns
  ns="$(ns_of "$1")"
  ip -n "${ns}" link show "$3" >/dev/null 2>&1 || ip -n "${ns}" link add "$3" type bridge
  ip -n "${ns}" link set "$3" up
  printf "<network><name>%s</name><forward mode='bridge'/><bridge name='%s'/></network>\n" "$2" "$3" >"${xml}"
  virsh -q -c "$(site_uri "$1")" net-define "${xml}" >/dev/null
  virsh -q -c "$(site_uri "$1")" net-start "$2" >/dev/null
}

# libvirt's own isolated network (no forward mode): libvirt makes the
# bridge, with firewall rules that keep its traffic on it (iptables, from
# the install script), as an operator's test network would be.
define_isolated_network() {  # SITE NAME BRIDGE
  local xml="${root}/$2-$3.xml"
  printf "<network><name>%s</name><bridge name='%s'/></network>\n" "$2" "$3" >"${xml}"
  virsh -q -c "$(site_uri "$1")" net-define "${xml}" >/dev/null
  virsh -q -c "$(site_uri "$1")" net-start "$2" >/dev/null
}

write_evacd_config() {  # SITE PROVIDER URI
  local site="$1" dir="${root}/$1"
  mkdir -p "${dir}"
  cat >"${dir}/evacd.yaml" <<YAML
site: ${site}
listen: 0.0.0.0:$(port_of "${site}")
advertise_url: https://$(site_addr "${site}"):$(port_of "${site}")
state_dir: ${dir}/state
heartbeat_interval: 2s
log: {format: json, level: info}
compute_providers:
  - {name: $2, kind: libvirt, uri: "$3", connect_timeout: 5s, keepalive: 3s}
YAML
}

# Starts a site's evacd in its namespace from its config and waits until it
# answers. With EVAC_FAULT_EXIT_AFTER_STEPS set (crash tests), an evacd
# that resumed a run and already exited on its own counts as started.
start_evacd() {  # SITE
  local site="$1" dir="${root}/$1" pid
  ip netns exec "$(ns_of "${site}")" "${bin}/daemon/evacd" --config "${dir}/evacd.yaml" >>"${dir}/evacd.log" 2>&1 </dev/null &
  pid=$!
  disown  # the disaster kills it: no "Killed" line from this shell
  echo "${pid}" >"${dir}/evacd.pid"
  for _ in $(seq 300); do
    [[ -s "${dir}/state/pin" ]] &&
      ip netns exec "$(ns_of ops)" curl -sk --max-time 1 "https://$(ops_addr "${site}"):$(port_of "${site}")/api/v1/health" >/dev/null &&
      return 0
    if ! kill -0 "${pid}" 2>/dev/null; then
      [[ "${EVAC_FAULT_EXIT_AFTER_STEPS:-0}" == 0 ]] || return 0
      lab_tail_file "evacd ${site}" "${dir}/evacd.log"
      lab_die "evacd ${site} exited"
    fi
    sleep 0.1
  done
  lab_tail_file "evacd ${site}" "${dir}/evacd.log"
  lab_die "evacd ${site} did not answer within 30 s"
}

up() {
  lab_need_root
  [[ -x "${bin}/daemon/evacd" && -x "${bin}/cli/evac" ]] || lab_die "evac is not built: run 'make build' first"
  down 2>/dev/null
  lab_remove_tree "${root}"
  mkdir -p "${root}"
  local t0
  t0="$(lab_now_ms)"

  step "Two sites on this machine, each in its own network namespace with its own libvirtd and QEMU"
  "${lab_dir}/build-guest.sh" "${guest_dir}" >/dev/null
  netns_up
  local uri_a uri_b
  uri_a="$("${lab_dir}/site.sh" up site-a --root "${sites_root}" --netns "$(ns_of site-a)")"
  uri_b="$("${lab_dir}/site.sh" up site-b --root "${sites_root}" --netns "$(ns_of site-b)")"
  echo "site-a: namespace $(ns_of site-a), $(site_addr site-a) on the link to site-b, libvirt ${uri_a}"
  echo "site-b: namespace $(ns_of site-b), $(site_addr site-b) on the link to site-a, libvirt ${uri_b}"
  echo "operator: namespace $(ns_of ops), a link to each site"
  define_pool "${uri_a}" images "${root}/site-a/images"
  define_network site-a prod "${br}-prod"
  define_isolated_network site-a test-isolated "${br}-test"  # for tests of the way back, after a reprotect
  define_pool "${uri_b}" replicas "${root}/site-b/replicas"
  define_network site-b recovery-prod "${br}-prod"
  define_network site-b recovery-edge "${br}-prod"  # where app01's bridged NIC is mapped
  define_isolated_network site-b test-isolated "${br}-test"

  step "Three real QEMU VMs at the protected site: db01, app01, web01"
  # Every kind of NIC a libvirt VM uses: db01 on the libvirt network prod,
  # app01 on the host bridge under it, web01 on prod and on a macvtap
  # device.
  local ip=10
  local -A nics=([db01]="--network prod" [app01]="--bridge ${br}-prod" [web01]="--network prod --direct ${br}-mv")
  for vm in db01 app01 web01; do
    ip=$((ip + 1))
    "${lab_dir}/make-data-disk.sh" "${root}/site-a/images/${vm}.qcow2" 64M >/dev/null
    # shellcheck disable=SC2086  # the NIC options are words
    "${lab_dir}/vm.sh" define "${uri_a}" "${vm}" "${guest_dir}" "${root}/site-a/images/${vm}.qcow2" \
      ${nics[${vm}]} --ip "10.77.0.${ip}/24" >/dev/null
    virsh -q -c "${uri_a}" start "${vm}" >/dev/null
  done
  for vm in db01 app01 web01; do
    "${lab_dir}/vm.sh" wait-agent "${uri_a}" "${vm}" 120 >/dev/null
    echo "${vm}: running, guest agent answers"
  done

  step "One evacd per site, HTTPS with a self-signed identity and an admin token"
  write_evacd_config site-a kvm-a "${uri_a}"
  write_evacd_config site-b kvm-b "${uri_b}"
  start_evacd site-a
  start_evacd site-b
  for site in site-a site-b; do
    evac_cli context add "${site}" --url "https://$(ops_addr "${site}"):$(port_of "${site}")" \
      --token-file "${root}/${site}/state/admin.token" --pin-file "${root}/${site}/state/pin" >/dev/null
  done
  evac_cli context use site-a >/dev/null
  show --context site-a inventory vms

  step "Pair the sites (one-time token from the recovery site, mutual TLS from then on)"
  local token
  token="$(evac_cli --context site-b -o json site pairing-token | sed -n 's/.*"token": "\(.*\)".*/\1/p')"
  printf '$ evac --context site-b site pairing-token\n%s\n' "${token:0:40}..."
  show --context site-a site pair "${token}"
  show --context site-a site status
  show --context site-b site status

  step "Inventory mappings: what at site-b stands for what at site-a"
  show mapping create compute kvm-a kvm-b
  show mapping create network prod recovery-prod --test-network test-isolated
  # A host bridge (a bare name is read as one) to a libvirt network, and a
  # macvtap device to its peer, tested on a host bridge with no uplink.
  show mapping create network "${br}-prod" recovery-edge --test-network test-isolated
  show mapping create network "direct:${br}-mv" "direct:${br}-mv" --test-network "bridge:${br}-tbr"
  show mapping create storage images replicas
  show mapping list

  step "Protect the three VMs as one group; placeholders appear at site-b"
  show group create demo --vm db01 --vm app01 --vm web01 --rpo 15m --keep-pits 24
  show --context site-b placeholder list
  show --context site-b inventory vms
  printf '$ virsh -c site-b dumpxml web01 | grep placeholder\n'
  # Not a pipe into grep -m1: virsh could die of SIGPIPE and pipefail fail the step.
  grep -m1 'evac:placeholder' <<<"$(virsh -c "${uri_b}" dumpxml web01)" || lab_die "web01's placeholder carries no evac metadata"
  show --context site-b site copies

  step "Replicate to site-b while the guests run (one checkpoint per cycle; only changed blocks travel)"
  show group sync demo
  printf '$ lab/vm.sh exec site-a db01 -- dd if=/dev/urandom of=/data/demo.bin bs=64k count=64 conv=fsync\n'
  "${lab_dir}/vm.sh" exec "${uri_a}" db01 -- \
    sh -c 'dd if=/dev/urandom of=/data/demo.bin bs=64k count=64 conv=fsync 2>/dev/null' ||
    lab_die "db01 could not write its data disk"
  show group sync demo
  show group pits demo
  show group show demo

  step "Done in $(lab_secs_since "${t0}") s"
  [[ -z "${in_story:-}" ]] || return 0
  cat <<EOF
The lab keeps running so you can explore it:
  export EVAC_CONFIG=${root}/cli.yaml
  ${bin}/cli/evac group show demo
  ${bin}/cli/evac --context site-b inventory vms -o yaml
  virsh -c '${uri_a}' list --all
evacd logs: ${root}/site-a/evacd.log, ${root}/site-b/evacd.log
Stop everything: make demo-down   (or lab/demo.sh down)
EOF
}

# ---- the story: test, cleanup, migration, reprotect, disaster, failover ----

reports="${root}/reports"
summary=()
verdicts_failed=0
report_no=0

# phase_done NAME START_MS [NOTE]: one line of the closing summary.
phase_done() {
  summary+=("$(printf '%-44s %8s s  %s' "$1" "$(lab_secs_since "$2")" "${3:-}")")
}

# run_op SITE OPERATION [ARGS...]: starts a run the way an operator does,
# follows it step by step, and leaves its HTML report in ${reports}. Sets
# run_id.
run_op() {
  local site="$1" op="$2"
  shift 2
  printf '$ evac --context %s plan %s demo-dr %s--follow\n' "${site}" "${op}" "${*:+$* }"
  run_id="$(evac_cli --context "${site}" -o json plan "${op}" demo-dr "$@" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')" || lab_die "${op} did not start"
  evac_cli --context "${site}" run show "${run_id}" --follow || {
    evac_cli --context "${site}" run show "${run_id}" || true
    lab_die "the ${op} run ${run_id} did not succeed"
  }
  mkdir -p "${reports}"
  report_no=$((report_no + 1))
  local report="${reports}/${report_no}-${op}.html"
  evac_cli --context "${site}" run report "${run_id}" --out "${report}" >/dev/null ||
    lab_die "no report for run ${run_id}"
  echo "report: ${report}"
}

# rto_of SITE: the achieved RTO of run_id from its JSON report, against
# the plan's lower bound: the sum over its tiers of the slowest VM's boot
# and check time there (power-on, guest heartbeat, re-IP, checks, as this
# run measured them); plus each guest's boot (power-on to heartbeat) and
# the RPO the report gives (a test's PIT age, a failover's loss window).
rto_of() {
  evac_cli --context "$1" -o json run report "${run_id}" --format json | python3 -c '
import json, sys
d = json.load(sys.stdin)
tier_of = {v["vm"]: v.get("priority", 3) for v in (d.get("plan") or {}).get("vms", [])}
up = {}    # VM -> power-on .. last check, seconds
boot = {}  # VM -> power-on + heartbeat
for s in d["steps"]:
    vm = s["name"].rsplit(": ", 1)[-1]
    if vm in tier_of and s["kind"] in ("power_on", "wait_for_guest", "customize_ip", "check") and s["seconds"] is not None:
        up[vm] = up.get(vm, 0) + s["seconds"]
        if s["kind"] in ("power_on", "wait_for_guest"):
            boot[vm] = boot.get(vm, 0) + s["seconds"]
bound = sum(max(up[v] for v in up if tier_of[v] == t) for t in sorted({tier_of[v] for v in up}))
rpo = "; ".join(r["text"].split(" (")[0] for r in d.get("rpo", []))
boots = ", ".join(f"{v} {boot[v]:.1f}" for v in sorted(boot, key=lambda v: (tier_of[v], v)))
rto = d["rto"]["text"]
print(f"RTO {rto} vs {bound:.1f} s of boots and checks by tier (boots s: {boots})" + (f"; RPO {rpo}" if rpo else ""))'
}

# The workload: db01's HTTP counter (each request appends a numbered line to
# /data/log.txt on its virtio disk, syncs, and answers the number), called
# inside the guest through its agent every ~0.3 s. Every acknowledged write
# is logged here as "SEND_MS ACK_MS N TEXT" (when the request left, when
# its answer came: the host's clock, the one evacd stamps PITs with): what
# the data checks hold the recovered disks to.
workload_start() {  # SITE_URI
  rm -f "${root}/workload.stop"
  (
    trap '' INT
    while [[ ! -e "${root}/workload.stop" ]]; do
      n=$(( $(cat "${root}/workload.next" 2>/dev/null || echo 0) + 1 ))
      echo "${n}" >"${root}/workload.next"
      sent="$(lab_now_ms)"
      if out="$("${lab_dir}/vm.sh" exec "$1" db01 --timeout 5 -- wget -q -O - "http://127.0.0.1/cgi-bin/write?w${n}" 2>/dev/null)" &&
        [[ "${out}" =~ ^[0-9]+$ ]]; then
        printf '%s %s %s w%s\n' "${sent}" "$(lab_now_ms)" "${out}" "${n}" >>"${root}/workload.acked"
      fi
      sleep 0.3
    done
  ) </dev/null >/dev/null 2>&1 &
  echo $! >"${root}/workload.pid"
}

workload_stop() {
  [[ -f "${root}/workload.pid" ]] || return 0
  local pid
  pid="$(cat "${root}/workload.pid")"
  touch "${root}/workload.stop"
  for _ in $(seq 150); do kill -0 "${pid}" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "${pid}" 2>/dev/null || true
  rm -f "${root}/workload.pid"
}

acked_count() { [[ -f "${root}/workload.acked" ]] && wc -l <"${root}/workload.acked" || echo 0; }

# data_check SITE_URI MODE [REPORT_JSON CUT_MS]: reads db01's
# /data/log.txt at a site and holds it to the acknowledged writes. MODE
# "all": every acknowledged write is there (no data loss). MODE "prefix":
# the log is a prefix of the acknowledged history (nothing acknowledged is
# missing before its last line, nothing is out of order or altered); the
# writes lost and the RPO (last acknowledged write vs last recovered one)
# are printed. With a failover's JSON report and the moment the disaster
# cut the link, the recovered PIT's instant is held to the writes too:
# every write acknowledged before it is there, none sent after it is, the
# protected site's last contact lies between it and the cut, and the loss
# this workload measured is set beside the report's window. Prints one
# verdict line; fails when the data does not hold.
data_check() {
  "${lab_dir}/vm.sh" exec "$1" db01 --timeout 30 -- cat /data/log.txt >"${root}/recovered-log.txt" ||
    lab_die "cannot read db01's /data/log.txt at $1"
  python3 - "${root}/workload.acked" "${root}/recovered-log.txt" "$2" "${3:-}" "${4:-}" <<'PY'
import json, sys
acked_file, log_file, mode, report_file, cut_ms = sys.argv[1:6]
acked = []  # (ack_ms, n, text, sent_ms)
for line in open(acked_file):
    sent, ms, n, text = line.split()
    acked.append((int(ms), int(n), text, int(sent)))
lines = open(log_file).read().split("\n")
if lines and lines[-1] == "":
    lines.pop()
log, torn = [], 0
for i, line in enumerate(lines):
    parts = line.split(" ")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
        if i == len(lines) - 1:
            torn = 1  # a crash-consistent copy may end in a torn last line
            break
        print(f"CORRUPT: line {i + 1} of the recovered log is damaged: {line!r}")
        sys.exit(1)
    log.append((int(parts[0]), parts[2]))
for i, (n, _) in enumerate(log):
    if n != i + 1:
        print(f"CORRUPT: line {i + 1} of the recovered log is numbered {n}")
        sys.exit(1)
text_at = {n: t for n, t in log}
last = len(log)
missing = [a for a in acked if a[1] <= last and text_at.get(a[1]) != a[2]]
if missing:
    print(f"CORRUPT: {len(missing)} acknowledged writes are missing or altered before the log's end, first {missing[0][2]} (#{missing[0][1]})")
    sys.exit(1)
lost = [a for a in acked if a[1] > last]
if mode == "all":
    if lost:
        print(f"DATA LOSS: {len(lost)} acknowledged writes are missing, first {lost[0][2]} (#{lost[0][1]})")
        sys.exit(1)
    print(f"OK: all {len(acked)} acknowledged writes are there, in order ({last} lines)")
    sys.exit(0)
recovered = [a for a in acked if a[1] <= last]
rpo_ms = (acked[-1][0] - recovered[-1][0]) if recovered and acked else 0
against = ""
if report_file:
    # The report's claim: the PIT holds every write acknowledged before its
    # instant and nothing written after it; the protected site was last
    # heard from at `seen`, so what it lost lies in [instant, seen] (and in
    # whatever it took unseen between then and the cut).
    g = json.load(open(report_file))["rpo"][0]
    instant, seen, window = g.get("pit_created_at_ms"), g.get("protected_site_last_seen_ms"), g.get("loss_window_seconds")
    if not isinstance(instant, int) or not isinstance(seen, int) or window is None:
        print(f"REPORT: the failover report gives no millisecond instant, last contact and window: {g}")
        sys.exit(1)
    early = [a for a in lost if a[0] < instant]
    if early:
        print(f"DATA LOSS: {early[0][2]} was acknowledged at {early[0][0]}, before the recovered instant {instant}, and is missing")
        sys.exit(1)
    late = [a for a in recovered if a[3] > instant]
    if late:
        print(f"INSTANT WRONG: {late[-1][2]} was sent at {late[-1][3]}, after the PIT's instant {instant}, yet it was recovered")
        sys.exit(1)
    if not instant <= seen <= int(cut_ms):
        print(f"LAST CONTACT WRONG: site-a last heard from at {seen}, not between the instant {instant} and the cut {cut_ms}")
        sys.exit(1)
    measured = (lost[-1][0] - instant) / 1000 if lost else 0.0
    against = (f"; evac's window {window:.3f} s (instant to last contact), measured {measured:.3f} s "
               f"(instant to the last lost write's ack, {(int(cut_ms) - seen) / 1000:.3f} s of it after the last contact)")
# The log goes on from its last recovered line: later checks hold it to the
# writes acknowledged up to there and after.
with open(acked_file, "w") as f:
    for ms, n, text, sent in recovered:
        f.write(f"{sent} {ms} {n} {text}\n")
print(f"OK: the recovered log is a prefix of the acknowledged writes ({last} lines{', a torn last line' if torn else ''}); "
      f"{len(lost)} acknowledged writes lost; RPO {rpo_ms / 1000:.1f} s (last acknowledged write vs last recovered one){against}")
PY
}

# verdict NAME COMMAND...: runs a data check, keeps its verdict for the summary.
verdict() {
  local name="$1" out
  shift
  if out="$("$@")"; then
    echo "${out}"
    summary+=("$(printf '%-44s %s' "${name}" "${out}")")
  else
    echo "${out}"
    summary+=("$(printf '%-44s %s' "${name}" "FAILED: ${out}")")
    verdicts_failed=$((verdicts_failed + 1))
  fi
}

# A site that lost power comes back: its libvirtd starts again (every domain
# shut off), its networks and pool are started, and its evacd.
site_back() {  # SITE
  local uri
  link_restore
  uri="$("${lab_dir}/site.sh" up "$1" --root "${sites_root}" --netns "$(ns_of "$1")")"
  for net in $(virsh -q -c "${uri}" net-list --inactive --name); do virsh -q -c "${uri}" net-start "${net}" >/dev/null; done
  for pool in $(virsh -q -c "${uri}" pool-list --inactive --name); do virsh -q -c "${uri}" pool-start "${pool}" >/dev/null; done
  start_evacd "$1"
}

# Mappings from site-b back to site-a, for a reprotect toward site-a: the
# recovered VMs' networks and storage there lead back to where they were.
reverse_mappings() {
  show --context site-b mapping create network recovery-prod prod --test-network test-isolated
  show --context site-b mapping create network recovery-edge "bridge:${br}-prod" --test-network test-isolated
  show --context site-b mapping create network "direct:${br}-mv" "direct:${br}-mv" --test-network "bridge:${br}-tbr"
  show --context site-b mapping create storage replicas images
}

# The demo's recovery plan over GROUP: db01, then app01, then web01, a
# check inside db01, and IP rules both ways (a rule names the network at
# the site the VMs leave, so the way back needs its own).
plan_yaml() {  # NAME GROUP
  cat <<YAML
kind: RecoveryPlan
name: $1
groups: [$2]
vms:
  - vm: db01
    priority: 1
    wait_for_guest: 2m
    checks:
      - command: [/bin/sh, -c, "wget -q -O /dev/null http://127.0.0.1/"]
  - {vm: app01, priority: 2, depends_on: [db01], wait_for_guest: 2m}
  - {vm: web01, priority: 3, depends_on: [app01], wait_for_guest: 2m}
ip_rules:
  - {network: prod, from: 10.77.0.0/24, to: 10.78.0.0/24}
  - {network: ${br}-prod, from: 10.77.0.0/24, to: 10.78.0.0/24}
  - {network: recovery-prod, from: 10.78.0.0/24, to: 10.77.0.0/24}
  - {network: recovery-edge, from: 10.78.0.0/24, to: 10.77.0.0/24}
YAML
}

# planned_move SITE OPERATION PHASE CHECK DB01_URI: a migration or failback
# run while db01 takes writes, then the check that no acknowledged write
# was lost where db01 runs now.
planned_move() {
  local t
  t="$(lab_now_ms)"
  run_op "$1" "$2" --confirm demo-dr
  workload_stop
  phase_done "$3" "${t}" "$(rto_of "$1")"
  echo "running at site-a: $(running_at "$(site_uri site-a)")| at site-b: $(running_at "$(site_uri site-b)")"
  verdict "$4" data_check "$5" all
}

fenced_events() {  # SITE: how many `fenced` events it has raised
  evac_cli --context "$1" -o json events list --limit 1000 |
    python3 -c 'import json, sys; print(sum(e["kind"] == "fenced" for e in json.load(sys.stdin)))'
}

running_at() { virsh -q -c "$1" list --name --state-running | sed '/^$/d' | sort | tr '\n' ' '; }

# Ctrl-C (or a TERM) mid-story: the workload stops; the sites, their
# evacd's (started in the background, so a terminal's Ctrl-C does not reach
# them) and the guests stay up as they were, for a look; the message says
# how to remove them (the next `up` also starts with `down`).
story_interrupted() {
  trap - INT TERM
  workload_stop || true
  printf '\n%s: interrupted; the lab is left as it was (see %s, evacd logs under it)\n' "${lab_prog}" "${root}" >&2
  printf '%s: remove it with: make demo-down   (or lab/demo.sh down)\n' "${lab_prog}" >&2
  exit 130
}

story() {
  in_story=1
  trap story_interrupted INT TERM
  up
  local uri_a uri_b t0 t
  uri_a="$(site_uri site-a)"
  uri_b="$(site_uri site-b)"
  t0="$(lab_now_ms)"
  rm -f "${root}/workload."*

  step "A recovery plan at site-b: db01, then app01, then web01; db01 is checked from inside"
  plan_yaml demo-dr demo >"${root}/demo-dr.yaml"
  cat "${root}/demo-dr.yaml"
  show --context site-b apply -f "${root}/demo-dr.yaml"
  show --context site-b plan check demo-dr
  echo "workload: db01's counter written every ~0.3 s through its guest agent (every acknowledged write logged)"
  workload_start "${uri_a}"
  sleep 3
  show group sync demo  # a point in time with some of the workload's writes for the test to recover

  step "Test recovery at site-b: copies on the isolated test network while production keeps serving"
  t="$(lab_now_ms)"
  local acked_before
  acked_before="$(acked_count)"
  run_op site-b test
  printf '$ virsh -c site-b list\n'
  virsh -c "${uri_b}" list
  printf '$ lab/vm.sh exec site-b db01-test -- ip -4 -o addr show dev eth0\n'
  "${lab_dir}/vm.sh" exec "${uri_b}" db01-test -- ip -4 -o addr show dev eth0
  # The test copies reach each other on the isolated network (web01-test
  # asks db01-test's counter at its test address), and nothing else.
  printf '$ lab/vm.sh exec site-b web01-test -- wget -q -O - http://10.78.0.11/cgi-bin/read\n'
  local test_read
  test_read="$("${lab_dir}/vm.sh" exec "${uri_b}" web01-test --timeout 20 -- wget -q -O - http://10.78.0.11/cgi-bin/read)" ||
    lab_die "db01-test does not answer web01-test on the isolated test network"
  echo "${test_read}"
  echo "db01-test answers on the isolated network with the last write of its point in time (#${test_read}); production goes on writing"
  phase_done "Test recovery (3 VMs in 3 tiers)" "${t}" "$(rto_of site-b)"
  echo "production at site-a: $(running_at "${uri_a}")— acknowledged writes during the test: $(( $(acked_count) - acked_before ))"
  [[ $(( $(acked_count) - acked_before )) -gt 0 ]] || lab_die "production stopped writing during the test"

  step "Cleanup: every trace of the test goes"
  t="$(lab_now_ms)"
  run_op site-b cleanup
  phase_done "Cleanup" "${t}"
  echo "at site-b now: $(virsh -q -c "${uri_b}" list --all --name | sed '/^$/d' | tr '\n' ' ')"

  step "Planned migration to site-b while db01 takes writes: no acknowledged write may be lost"
  planned_move site-b migrate "Planned migration" "Migration data check (db01 at site-b)" "${uri_b}"

  step "Reprotect at site-b: site-a's copies become placeholders, replication runs back (only what changed)"
  t="$(lab_now_ms)"
  reverse_mappings
  run_op site-b reprotect
  phase_done "Reprotect (site-b protects, to site-a)" "${t}"
  show --context site-b group show demo
  workload_start "${uri_b}"
  sleep 3

  step "Failback from site-a while db01 takes writes at site-b: a planned migration home, then reprotect"
  planned_move site-a failback "Failback home" "Failback data check (db01 at site-a)" "${uri_a}"
  workload_start "${uri_a}"
  sleep 3
  show --context site-a group sync demo
  sleep 2

  local fenced_before
  fenced_before="$(fenced_events site-a)"

  step "Disaster at site-a mid-workload: the link cut, evacd, libvirtd and every guest killed at once"
  echo "acknowledged writes so far: $(acked_count)"
  link_cut
  kill -KILL "$(cat "${root}/site-a/evacd.pid")"
  "${lab_dir}/site.sh" crash site-a --root "${sites_root}"
  local gone_ms
  gone_ms="$(lab_now_ms)"  # nothing of site-a runs, or reaches site-b, after this
  rm -f "${root}/site-a/evacd.pid"
  workload_stop
  echo "site-a is gone: $(virsh -q -c "${uri_a}" list --name 2>&1 | head -1)"

  step "Failover at site-b, with site-a gone: the newest point in time comes up"
  t="$(lab_now_ms)"
  run_op site-b failover --confirm demo-dr
  phase_done "Failover (site-a gone)" "${t}" "$(rto_of site-b)"
  echo "running at site-b: $(running_at "${uri_b}")"
  evac_cli --context site-b -o json run report "${run_id}" --format json >"${root}/failover-report.json" ||
    lab_die "no JSON report for run ${run_id}"
  python3 -c 'import json,sys; g = json.load(open(sys.argv[1]))["rpo"][0]; print("RPO: " + g["text"])' \
    "${root}/failover-report.json"
  verdict "Failover data check (db01 at site-b)" data_check "${uri_b}" prefix "${root}/failover-report.json" "${gone_ms}"

  step "Site-a comes back: its stale copies stay fenced (never started)"
  t="$(lab_now_ms)"
  site_back site-a
  # It fences once it hears from site-b (a new `fenced` event), before any
  # operator acts: the returning site never runs its stale copies. (A
  # reprotect that reached it first would fence it as well.)
  local fenced=no
  for _ in $(seq 150); do
    [[ "$(fenced_events site-a)" -gt "${fenced_before}" ]] && { fenced=yes; break; }
    sleep 0.2
  done
  show --context site-a events list --limit 3
  [[ "${fenced}" == yes ]] || lab_die "site-a did not fence its stale copy"
  [[ -z "$(running_at "${uri_a}")" ]] || lab_die "site-a runs VMs after coming back: $(running_at "${uri_a}")"
  echo "running at site-a: none (fenced)"
  # The fence holds at the storage too: the stale disks are immutable, so
  # even an operator starting a VM there by hand gets no second live copy.
  if virsh -q -c "${uri_a}" start db01 >/dev/null 2>"${root}/start-fenced.err"; then
    lab_die "db01 started at site-a from its stale copy"
  fi
  echo "starting db01 by hand at site-a: refused ($(grep -o 'Operation not permitted' "${root}/start-fenced.err" | head -1 || true)): its disks are read-only"
  phase_done "Site-a back, fenced" "${t}"

  step "Reprotect at site-b, then failback from site-a: everything home"
  t="$(lab_now_ms)"
  run_op site-b reprotect
  phase_done "Reprotect (site-b protects, to site-a)" "${t}"
  workload_start "${uri_b}"
  sleep 3
  planned_move site-a failback "Failback home" "Failback data check (db01 at site-a)" "${uri_a}"
  show --context site-a group show demo
  echo "running at site-a: $(running_at "${uri_a}")| at site-b: $(running_at "${uri_b}")"

  step "Summary ($(lab_secs_since "${t0}") s for the story)"
  printf '%-44s %10s  %s\n' "phase" "time" "result"
  printf '%s\n' "${summary[@]}"
  echo "reports (HTML): ${reports}/"
  ls -1 "${reports}"
  echo "evacd logs: ${root}/site-a/evacd.log, ${root}/site-b/evacd.log"
  echo "Stop everything: make demo-down   (or lab/demo.sh down)"
  [[ ${verdicts_failed} -eq 0 ]] || lab_die "${verdicts_failed} data checks failed"
}

case "${1:-}" in
  up) up ;;
  story) story ;;
  down) down ;;
  status) status ;;
  # For tests that drive a lab `up` made: the CLI from the operator's
  # namespace, and a site's evacd (re)started in its own.
  evac) shift; evac_cli "$@" ;;
  start-evacd) [[ $# -eq 2 ]] || lab_die "usage: lab/demo.sh start-evacd SITE"; start_evacd "$2" ;;
  plan-yaml) [[ $# -eq 3 ]] || lab_die "usage: lab/demo.sh plan-yaml NAME GROUP"; plan_yaml "$2" "$3" ;;
  *) echo "usage: lab/demo.sh story|up|down|status|evac ARGS...|start-evacd SITE|plan-yaml NAME GROUP" >&2; exit 2 ;;
esac
