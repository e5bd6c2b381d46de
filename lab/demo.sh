#!/bin/bash
# evac's main job on its embedded default, on this machine: two real libvirt
# sites (each its own libvirtd + QEMU), two evacd's paired over mutual TLS,
# three real QEMU VMs at the protected site in one protection group, and
# their placeholders registered at the recovery site.
#
# usage: lab/demo.sh up     build the lab and run the story (tears down a previous one first)
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
evac_cli() { EVAC_CONFIG="${root}/cli.yaml" "${bin}/cli/evac" "$@"; }
site_uri() { printf 'qemu+unix:///system?socket=%s/%s/run/libvirt-sock' "${sites_root}" "$1"; }
port_base="${EVAC_DEMO_PORT_BASE:-8441}"
port_of() { case "$1" in site-a) echo "${port_base}" ;; site-b) echo $((port_base + 1)) ;; esac; }
# Bridges live in the host's network namespace: a prefix keeps a test's lab
# apart from a demo running at the same time.
br="${EVAC_DEMO_BRIDGE_PREFIX:-evac}"

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
  for site in site-a site-b; do
    stop_evacd "${site}"
    destroy_networks "${site}"
    "${lab_dir}/site.sh" down "${site}" --root "${sites_root}" >/dev/null 2>&1 || true
  done
  for bridge in "${br}-a-prod" "${br}-a-test" "${br}-b-prod" "${br}-b-test"; do ip link del "${bridge}" 2>/dev/null || true; done
  lab_say "demo lab is down"
}

status() {
  for site in site-a site-b; do
    "${lab_dir}/site.sh" status "${site}" --root "${sites_root}" || true
    if [[ -f "${root}/${site}/evacd.pid" ]] && kill -0 "$(cat "${root}/${site}/evacd.pid")" 2>/dev/null; then
      echo "evacd ${site}: running (pid $(cat "${root}/${site}/evacd.pid"), https://127.0.0.1:$(port_of "${site}"))"
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

# A libvirt network over a bridge the lab makes itself: libvirt's own
# bridges need iptables and dnsmasq, which this machine does not have.
define_network() {  # URI NAME BRIDGE
  local xml="${root}/$2-$3.xml"
  ip link show "$3" >/dev/null 2>&1 || ip link add "$3" type bridge
  ip link set "$3" up
  printf "<network><name>%s</name><forward mode='bridge'/><bridge name='%s'/></network>\n" "$2" "$3" >"${xml}"
  virsh -q -c "$1" net-define "${xml}" >/dev/null
  virsh -q -c "$1" net-start "$2" >/dev/null
}

start_evacd() {  # SITE PROVIDER URI
  local site="$1" dir="${root}/$1"
  mkdir -p "${dir}"
  cat >"${dir}/evacd.yaml" <<YAML
site: ${site}
listen: 127.0.0.1:$(port_of "${site}")
state_dir: ${dir}/state
heartbeat_interval: 2s
log: {format: json, level: info}
compute_providers:
  - {name: $2, kind: libvirt, uri: "$3"}
YAML
  "${bin}/daemon/evacd" --config "${dir}/evacd.yaml" >>"${dir}/evacd.log" 2>&1 &
  echo $! >"${dir}/evacd.pid"
  for _ in $(seq 100); do
    [[ -s "${dir}/state/pin" ]] && curl -sk --max-time 1 "https://127.0.0.1:$(port_of "${site}")/api/v1/health" >/dev/null && return 0
    kill -0 "$(cat "${dir}/evacd.pid")" 2>/dev/null || { lab_tail_file "evacd ${site}" "${dir}/evacd.log"; lab_die "evacd ${site} exited"; }
    sleep 0.1
  done
  lab_tail_file "evacd ${site}" "${dir}/evacd.log"
  lab_die "evacd ${site} did not answer within 10 s"
}

up() {
  lab_need_root
  [[ -x "${bin}/daemon/evacd" && -x "${bin}/cli/evac" ]] || lab_die "evac is not built: run 'make build' first"
  down 2>/dev/null
  rm -rf "${root}"
  mkdir -p "${root}"
  local t0
  t0="$(lab_now_ms)"

  step "Two libvirt sites on this machine, each its own libvirtd and QEMU"
  "${lab_dir}/build-guest.sh" "${guest_dir}" >/dev/null
  local uri_a uri_b
  uri_a="$("${lab_dir}/site.sh" up site-a --root "${sites_root}")"
  uri_b="$("${lab_dir}/site.sh" up site-b --root "${sites_root}")"
  echo "site-a: ${uri_a}"
  echo "site-b: ${uri_b}"
  define_pool "${uri_a}" images "${root}/site-a/images"
  define_network "${uri_a}" prod "${br}-a-prod"
  define_network "${uri_a}" test-isolated "${br}-a-test"  # for tests of the way back, after a reprotect
  define_pool "${uri_b}" replicas "${root}/site-b/replicas"
  define_network "${uri_b}" recovery-prod "${br}-b-prod"
  define_network "${uri_b}" test-isolated "${br}-b-test"

  step "Three real QEMU VMs at the protected site: db01, app01, web01"
  local ip=10
  for vm in db01 app01 web01; do
    ip=$((ip + 1))
    "${lab_dir}/make-data-disk.sh" "${root}/site-a/images/${vm}.qcow2" 64M >/dev/null
    "${lab_dir}/vm.sh" define "${uri_a}" "${vm}" "${guest_dir}" "${root}/site-a/images/${vm}.qcow2" \
      --network prod --ip "10.77.0.${ip}/24" >/dev/null
    virsh -q -c "${uri_a}" start "${vm}" >/dev/null
  done
  for vm in db01 app01 web01; do
    "${lab_dir}/vm.sh" wait-agent "${uri_a}" "${vm}" 120 >/dev/null
    echo "${vm}: running, guest agent answers"
  done

  step "One evacd per site, HTTPS with a self-signed identity and an admin token"
  start_evacd site-a kvm-a "${uri_a}"
  start_evacd site-b kvm-b "${uri_b}"
  for site in site-a site-b; do
    evac_cli context add "${site}" --url "https://127.0.0.1:$(port_of "${site}")" \
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

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: lab/demo.sh up|down|status" >&2; exit 2 ;;
esac
