#!/bin/bash
# Two single-node Ceph clusters on this machine, with RBD snapshot mirroring
# both ways between them: the lab for evac's Ceph engine (issue 28).
#
#   site-a  mon/mgr/osd/rbd-mirror on 127.0.0.11
#   site-b  mon/mgr/osd/rbd-mirror on 127.0.0.12
#
# Each cluster is one mon, one mgr and one bluestore OSD on a loop device
# over a sparse file; pool `vms` with image-mode mirroring, the two pools
# peered rx-tx, an rbd-mirror daemon at each site, and a cephx user
# client.evac (profile rbd) at each site. No systemd, no containers: every
# path a daemon uses is under DIR, set in the site's own ceph.conf. Both
# clusters are named "ceph"; they are told apart by conf file, fsid and IP.
#
# usage: ceph-lab.sh install                  the Debian packages (idempotent, quiet when present)
#        ceph-lab.sh up DIR                   create both clusters under DIR, or start them again if
#                                             DIR already holds them; wait for HEALTH_OK and mirroring
#        ceph-lab.sh down DIR [--kill]        stop every daemon started under DIR (--kill: SIGKILL at
#                                             once), detach its loop devices, unmount what it mounted
#        ceph-lab.sh stop-site DIR SITE [-9]  stop one site's daemons (-9: SIGKILL, a site dying)
#        ceph-lab.sh start-site DIR SITE      start them again, wait for HEALTH_OK (and for mirroring
#                                             both ways when the other site answers)
#        ceph-lab.sh status DIR               daemons, health, mirroring
#        ceph-lab.sh measure DIR [SECONDS]    RSS and CPU of each daemon over SECONDS (default 30)
#        ceph-lab.sh purge DIR                down --kill, then delete DIR (only a DIR this script made)
#
# Environment: CEPH_LAB_OSD_SIZE (sparse OSD file, default 8G, at least 2G), CEPH_LAB_WAIT
# (seconds to wait for health / mirroring, default 180), CEPH_LAB_TIMEOUT
# (seconds for one ceph/rbd command, default 20).
# After `up`, DIR/env.sh exports CEPH_A / CEPH_B (each site's ceph.conf) and
# a few more names; tests/ceph/lib.sh has time-bounded wrappers around ceph/rbd.
set -euo pipefail

case ":${PATH}:" in
  *:/usr/sbin:*) ;;
  *) PATH="${PATH}:/usr/local/sbin:/usr/sbin:/sbin" ;;
esac
export PATH

prog="${0##*/}"
SITES=(site-a site-b)
POOL=vms
OSD_SIZE="${CEPH_LAB_OSD_SIZE:-8G}"
WAIT_S="${CEPH_LAB_WAIT:-180}"
CMD_TIMEOUT="${CEPH_LAB_TIMEOUT:-20}"

say() { printf '%s: %s\n' "${prog}" "$*" >&2; }
die() { printf '%s: error: %s\n' "${prog}" "$*" >&2; exit 1; }
usage() { sed -n '/^# usage:/,/^# Environment/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

site_ip() {
  case "$1" in
    site-a) echo 127.0.0.11 ;;
    site-b) echo 127.0.0.12 ;;
    *) die "unknown site '$1' (site-a or site-b)" ;;
  esac
}
site_letter() { echo "${1#site-}"; }
other_site() { [[ "$1" == site-a ]] && echo site-b || echo site-a; }

now() { echo "${EPOCHREALTIME}"; }
since() { awk -v a="$1" -v b="${EPOCHREALTIME}" 'BEGIN { printf "%.1f", b - a }'; }

# ---------------------------------------------------------------------------
# install

PACKAGES=(
  # the daemons (ceph-volume is not needed: the OSD is made with ceph-osd --mkfs)
  ceph-mon ceph-mgr ceph-osd rbd-mirror ceph-common
  # what evac's engine links, and what lets libvirt/QEMU open rbd disks
  librbd-dev librados-dev libradospp-dev libvirt-daemon-driver-storage-rbd qemu-block-extra
  # uuidgen (fsid, OSD uuid), losetup, ps/pgrep, python3 (JSON from ceph), qemu-img/qemu-io (test data)
  uuid-runtime util-linux procps python3 qemu-utils
)

cmd_install() {
  [[ "$(id -u)" -eq 0 ]] || die "install: run as root (it installs Debian packages)"
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "${p}" 2>/dev/null | grep -q "install ok installed" || missing+=("${p}")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # another apt may hold the lock (CI images, a neighbour's install): wait for it rather than fail
  apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null ||
    die "install: apt-get update failed"
  apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}" ||
    die "install: apt-get install ${missing[*]} failed"
}

need_tools() {
  local t
  for t in ceph ceph-mon ceph-mgr ceph-osd rbd-mirror rbd monmaptool ceph-authtool uuidgen losetup python3 timeout; do
    command -v "${t}" >/dev/null 2>&1 || die "'${t}' not found: run '${prog} install' first"
  done
}

# ---------------------------------------------------------------------------
# paths and bounded commands

lab_dir() {
  [[ -n "${1:-}" ]] || usage
  realpath -m -- "$1"
}
conf_of() { echo "${LAB}/$1/ceph.conf"; }

# Every ceph/rbd call is bounded twice: by the client's own timeouts (it
# gives up with ETIMEDOUT when the mon does not answer), and by timeout(1)
# in case a call hangs somewhere those do not reach (an OSD gone mid-op).
TO_OPTS=()
set_to_opts() {
  TO_OPTS=(--client-mount-timeout "${CMD_TIMEOUT}" --rados-mon-op-timeout "${CMD_TIMEOUT}")
}
# c_ceph SITE ARGS...: the ceph CLI against SITE as client.admin
c_ceph() {
  local s="$1"; shift
  timeout -k 5 $((CMD_TIMEOUT + 10)) ceph -c "$(conf_of "${s}")" --connect-timeout "${CMD_TIMEOUT}" "${TO_OPTS[@]}" "$@"
}
# c_rbd SITE ARGS...: the rbd CLI against SITE as client.admin
c_rbd() {
  local s="$1"; shift
  timeout -k 5 $((CMD_TIMEOUT + 10)) rbd -c "$(conf_of "${s}")" "${TO_OPTS[@]}" "$@"
}

# Where the output of the steps of `up` goes; shown on failure.
step_log() { echo "${LAB}/$1/log/ceph-lab-steps.log"; }

# fail SITE STEP [DAEMON_LOG...]: say which site and step failed, with what
# its output and the daemons' logs say: the error lines when there are
# (a crash dump's tail says nothing), else the last lines.
fail() {
  local site="$1" step="$2" f
  shift 2
  # one write, so the two sites' reports (they come up in parallel) do not interleave
  local msg
  msg="$({
    printf '%s: error: %s: %s failed\n' "${prog}" "${site}" "${step}"
    f="$(step_log "${site}")"
    if [[ "${CUR_STEP:-}" == "${step}" && -s "${f}" ]]; then
      printf -- '--- output of the step (%s)\n' "${f}"
      # this step's output only: from its "== " line on
      awk '/^== / { buf = ""; n = 0 } { buf = buf $0 "\n"; n++ } END { printf "%s", buf }' "${f}" | excerpt
    fi
    for f in "$@"; do
      [[ -s "${f}" ]] || continue
      printf -- '--- %s\n' "${f}"
      excerpt <"${f}"
    done
  })"
  printf '%s\n' "${msg}" >&2
  exit 1
}
# excerpt: the last 8 error lines of stdin if it has any, else its last 12 lines
excerpt() {
  local text
  text="$(cat)"
  if grep -qE ' -1 |[Ee]rror|[Ff]ailed|abort' <<<"${text}"; then
    grep -E ' -1 |[Ee]rror|[Ff]ailed|abort' <<<"${text}" | grep -v '^ *[0-9]*: (' | tail -n 8 | cut -c1-300
  else
    tail -n 12 <<<"${text}" | cut -c1-300
  fi
}

# step SITE "WHAT" [--log DAEMON_LOG]... -- CMD...: run CMD, its output into the site's step log.
step() {
  local site="$1" what="$2" logs=()
  shift 2
  while [[ "$1" == --log ]]; do logs+=("$2"); shift 2; done
  [[ "$1" == -- ]] && shift
  CUR_STEP="${what}"
  printf '== %s %s: %s\n' "$(date +%T)" "${site}" "${what}" >>"$(step_log "${site}")"
  "$@" >>"$(step_log "${site}")" 2>&1 || fail "${site}" "${what}" "${logs[@]}"
}

daemon_log() { echo "${LAB}/$1/log/ceph-$2.log"; }

# ---------------------------------------------------------------------------
# one site

write_conf() {
  local site="$1" ip fsid d
  ip="$(site_ip "${site}")"
  fsid="$2"
  d="${LAB}/${site}"
  cat >"${d}/ceph.conf" <<EOF
# ${site} of the evac Ceph lab (tests/ceph/ceph-lab.sh); every path under ${d}
[global]
fsid = ${fsid}
mon_host = [v2:${ip}:3300,v1:${ip}:6789]
# both, or the OSDs of both clusters bind 0.0.0.0 and clash
public_addr = ${ip}
cluster_addr = ${ip}
auth_cluster_required = cephx
auth_service_required = cephx
auth_client_required = cephx
# one OSD: pools of size 1, and no warning about it
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_crush_chooseleaf_type = 0
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
mon_max_pg_per_osd = 1000
run_dir = ${d}/run
log_file = ${d}/log/\$cluster-\$name.log
crash_dir = ${d}/crash
mon_data = ${d}/mon/\$cluster-\$id
mgr_data = ${d}/mgr/\$cluster-\$id
osd_data = ${d}/osd/\$cluster-\$id
pid_file = ${d}/run/\$name.pid

[mon]
mon_allow_pool_delete = true
# otherwise HEALTH_WARN "mons are allowing insecure global_id reclaim" for good
auth_allow_insecure_global_id_reclaim = false
# a nearly full root fs would otherwise warn "mon a is low on available space"
mon_data_avail_warn = 5

[osd]
osd_objectstore = bluestore
osd_memory_target = 1073741824
bluestore_block_create = false

[client]
keyring = ${d}/ceph.client.admin.keyring

# rbd-mirror opens its local cluster from CEPH_CONF and finds its key here
[client.rbd-mirror.$(site_letter "${site}")]
keyring = ${d}/ceph.client.rbd-mirror.keyring

[client.evac]
keyring = ${d}/ceph.client.evac.keyring
EOF
}

# attach_loop SITE: the OSD's sparse file on a loop device (the one already
# attached to it, or a free one), and the OSD's block symlink pointed at it.
attach_loop() {
  local site="$1" img dev
  img="${LAB}/${site}/osd0.img"
  dev="$(losetup -j "${img}" -O NAME -n 2>/dev/null | head -n1)"
  if [[ -z "${dev}" ]]; then
    dev="$(losetup -f --show "${img}")" || fail "${site}" "losetup ${img}"
  fi
  echo "${dev}" >"${LAB}/${site}/loopdev"
  if [[ -L "${LAB}/${site}/osd/ceph-0/block" ]]; then
    ln -sfn "${dev}" "${LAB}/${site}/osd/ceph-0/block"
  fi
  echo "${dev}"
}

# pid_alive PID PATTERN: PID runs and its command line names our conf (no
# stranger's process that reused a stale pid).
pid_alive() {
  [[ -n "$1" && -r "/proc/$1/cmdline" ]] || return 1
  grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null && return 1
  tr '\0' ' ' <"/proc/$1/cmdline" | grep -qF -- "$2"
}
pid_of() { # pid_of SITE NAME (mon.a, mgr.x, osd.0, client.rbd-mirror.a)
  local f="${LAB}/$1/run/$2.pid" p
  [[ -s "${f}" ]] || return 1
  p="$(cat "${f}")"
  pid_alive "${p}" "$(conf_of "$1")" && echo "${p}"
}
daemon_names() { echo "mon.a mgr.x osd.0 client.rbd-mirror.$(site_letter "$1")"; }

# start_daemon SITE NAME: start one daemon unless it runs already; wait for its pid file.
start_daemon() {
  local site="$1" name="$2" conf log
  conf="$(conf_of "${site}")"
  log="$(daemon_log "${site}" "${name}")"
  pid_of "${site}" "${name}" >/dev/null && return 0
  if [[ "${name}" == mon.a ]] && (exec 3<>"/dev/tcp/$(site_ip "${site}")/3300") 2>/dev/null; then
    fail "${site}" "start ceph-mon ($(site_ip "${site}"):3300 is taken: another lab on these addresses is up?)"
  fi
  case "${name}" in
    mon.a) step "${site}" "start ceph-mon" --log "${log}" -- ceph-mon -c "${conf}" -i a ;;
    mgr.x) step "${site}" "start ceph-mgr" --log "${log}" -- ceph-mgr -c "${conf}" -i x ;;
    osd.0) step "${site}" "start ceph-osd" --log "${log}" -- ceph-osd -c "${conf}" -i 0 ;;
    client.rbd-mirror.*)
      # rbd-mirror ignores -c for its local-cluster connection: CEPH_CONF is what it reads
      step "${site}" "start rbd-mirror" --log "${log}" -- \
        env CEPH_CONF="${conf}" rbd-mirror -c "${conf}" --id "${name#client.}" ;;
  esac
  local i
  for ((i = 0; i < 100; i++)); do
    pid_of "${site}" "${name}" >/dev/null && return 0
    sleep 0.1
  done
  fail "${site}" "start ${name} (no live pid in ${LAB}/${site}/run/${name}.pid after 10 s)" "${log}"
}

# bootstrap SITE: a new cluster: conf, keys, mon, mgr, OSD on a loop device.
bootstrap_site() {
  local site="$1" d ip fsid dev uuid key id
  d="${LAB}/${site}"
  ip="$(site_ip "${site}")"
  mkdir -p "${d}"/{mon,mgr/ceph-x,osd,run,log,crash}
  : >"$(step_log "${site}")"
  fsid="$(uuidgen)"
  write_conf "${site}" "${fsid}"
  step "${site}" "make keyrings" -- bash -c "
    set -e; cd '${d}'
    ceph-authtool --create-keyring mon.keyring --gen-key -n mon. --cap mon 'allow *'
    ceph-authtool --create-keyring ceph.client.admin.keyring --gen-key -n client.admin \
      --cap mon 'allow *' --cap osd 'allow *' --cap mds 'allow *' --cap mgr 'allow *'
    ceph-authtool mon.keyring --import-keyring ceph.client.admin.keyring
    monmaptool --create --addv a '[v2:${ip}:3300,v1:${ip}:6789]' --fsid ${fsid} monmap"
  step "${site}" "ceph-mon --mkfs" --log "$(daemon_log "${site}" mon.a)" -- \
    ceph-mon -c "${d}/ceph.conf" --mkfs -i a --monmap "${d}/monmap" --keyring "${d}/mon.keyring"
  start_daemon "${site}" mon.a
  step "${site}" "create key mgr.x" --log "$(daemon_log "${site}" mon.a)" -- \
    c_ceph "${site}" auth get-or-create mgr.x mon 'allow profile mgr' osd 'allow *' mds 'allow *' \
    -o "${d}/mgr/ceph-x/keyring"
  start_daemon "${site}" mgr.x
  truncate -s "${OSD_SIZE}" "${d}/osd0.img"
  dev="$(attach_loop "${site}")"
  uuid="$(uuidgen)"
  key="$(ceph-authtool --gen-print-key)"
  id="$(echo "{\"cephx_secret\": \"${key}\"}" | c_ceph "${site}" osd new "${uuid}" -i - 2>>"$(step_log "${site}")")" ||
    fail "${site}" "ceph osd new" "$(daemon_log "${site}" mon.a)"
  [[ "${id}" == 0 ]] || fail "${site}" "ceph osd new (got id '${id}', expected 0)"
  mkdir -p "${d}/osd/ceph-0"
  step "${site}" "osd.0 keyring" -- \
    ceph-authtool --create-keyring "${d}/osd/ceph-0/keyring" --name osd.0 --add-key "${key}"
  step "${site}" "ceph-osd --mkfs on ${dev}" --log "$(daemon_log "${site}" osd.0)" -- \
    ceph-osd -c "${d}/ceph.conf" -i 0 --mkfs --osd-uuid "${uuid}" --bluestore_block_path "${dev}"
  [[ -L "${d}/osd/ceph-0/block" ]] || ln -sfn "${dev}" "${d}/osd/ceph-0/block"
  start_daemon "${site}" osd.0
  touch "${d}/.bootstrapped"
}

# start_site_daemons SITE: mon, mgr, osd (rbd-mirror once mirroring is set up)
start_site_daemons() {
  local site="$1"
  [[ -f "${LAB}/${site}/.bootstrapped" ]] || die "${site}: not bootstrapped under ${LAB} (run '${prog} up ${LAB}')"
  : >>"$(step_log "${site}")"
  attach_loop "${site}" >/dev/null
  start_daemon "${site}" mon.a
  start_daemon "${site}" mgr.x
  start_daemon "${site}" osd.0
  if [[ -f "${LAB}/${site}/.mirroring" ]]; then
    start_daemon "${site}" "client.rbd-mirror.$(site_letter "${site}")"
  fi
}

# wait_healthy SITE: HEALTH_OK, the OSD up and in, an active mgr
wait_healthy() {
  local site="$1" t0 st=""
  t0="$(now)"
  while :; do
    st="$(c_ceph "${site}" status -f json 2>/dev/null | python3 -c '
import json, sys
s = json.load(sys.stdin)
osd = s["osdmap"].get("osdmap", s["osdmap"])
print(s["health"]["status"], osd["num_up_osds"], osd["num_in_osds"], s["mgrmap"]["available"],
      ",".join(s["health"].get("checks", {}).keys()) or "-")' 2>/dev/null)" || st=""
    [[ "${st}" == "HEALTH_OK 1 1 True -" ]] && return 0
    if awk -v a="${t0}" -v b="${EPOCHREALTIME}" -v w="${WAIT_S}" 'BEGIN { exit !(b - a > w) }'; then
      fail "${site}" "wait for HEALTH_OK (${WAIT_S} s; last: health/osds up/in/mgr/checks = ${st:-no answer})" \
        "$(daemon_log "${site}" mon.a)" "$(daemon_log "${site}" osd.0)"
    fi
    sleep 0.5
  done
}

# ---------------------------------------------------------------------------
# mirroring between the two

setup_pool() {
  local site="$1" d l
  d="${LAB}/${site}"
  l="$(site_letter "${site}")"
  step "${site}" "create pool ${POOL}" -- c_ceph "${site}" osd pool create "${POOL}" 8 8
  step "${site}" "rbd pool init ${POOL}" -- c_rbd "${site}" pool init "${POOL}"
  # format-2 clones (of a non-primary image's snapshot, which cannot be protected) need mimic clients
  step "${site}" "set-require-min-compat-client mimic" -- \
    c_ceph "${site}" osd set-require-min-compat-client mimic --yes-i-really-mean-it
  step "${site}" "mirror pool enable (image mode)" -- \
    c_rbd "${site}" mirror pool enable --site-name "${site}" "${POOL}" image
  step "${site}" "key client.rbd-mirror.${l}" -- c_ceph "${site}" auth get-or-create "client.rbd-mirror.${l}" \
    mon 'profile rbd-mirror' osd 'profile rbd' -o "${d}/ceph.client.rbd-mirror.keyring"
  step "${site}" "key client.evac" -- c_ceph "${site}" auth get-or-create client.evac \
    mon 'profile rbd' osd 'profile rbd' mgr 'profile rbd' -o "${d}/ceph.client.evac.keyring"
}

make_token() {
  c_rbd site-a mirror pool peer bootstrap create --site-name site-a "${POOL}" >"${LAB}/site-a/peer-bootstrap.token"
}

setup_mirroring() {
  [[ -f "${LAB}/.mirroring" ]] && return 0
  local s
  for s in "${SITES[@]}"; do setup_pool "${s}"; done
  step site-a "mirror pool peer bootstrap create" -- make_token
  # rx-tx: B pulls from A, and A is told to pull from B with the same token
  step site-b "mirror pool peer bootstrap import (rx-tx)" -- \
    c_rbd site-b mirror pool peer bootstrap import --site-name site-b --direction rx-tx "${POOL}" \
    "${LAB}/site-a/peer-bootstrap.token"
  for s in "${SITES[@]}"; do
    touch "${LAB}/${s}/.mirroring"
    start_daemon "${s}" "client.rbd-mirror.$(site_letter "${s}")"
  done
  touch "${LAB}/.mirroring"
}

# mirror_state SITE: "<health of the live rbd-mirror> <leader?> <peers>" as
# pool status/info report them. A daemon that died stays listed (no
# instance id, WARNING) until the mgr drops it ~60 s later: it is left out.
mirror_state() {
  local site="$1" st info
  st="$(c_rbd "${site}" mirror pool status "${POOL}" --verbose --format json 2>/dev/null)" || { echo "no-answer"; return; }
  info="$(c_rbd "${site}" mirror pool info "${POOL}" --format json 2>/dev/null)" || { echo "no-answer"; return; }
  python3 - "${st}" "${info}" <<'EOF'
import json, sys
st, info = json.loads(sys.argv[1]), json.loads(sys.argv[2])
live = [d for d in st.get("daemons", []) if d.get("instance_id")]
health = ",".join(sorted({d.get("health", "?") for d in live})) or "no-daemon"
leader = "leader" if any(d.get("leader") for d in live) else "no-leader"
peers = ",".join(f'{p.get("site_name")}:{p.get("direction")}:{"uuid" if p.get("mirror_uuid") else "no-uuid"}'
                 for p in info.get("peers", [])) or "no-peer"
print(health, leader, peers)
EOF
}

# wait_mirroring SITE...: at each SITE the live rbd-mirror daemon is reported
# OK (it reaches both clusters) and leading (it replays images: after a
# restart it waits ~30 s for the dead leader's lock to expire), and the peer
# is known by its mirror uuid.
wait_mirroring() {
  local t0 s st ok
  t0="$(now)"
  while :; do
    ok=1
    for s in "$@"; do
      st="$(mirror_state "${s}")"
      [[ "${st}" == "OK leader $(other_site "${s}"):rx-tx:uuid" ]] || { ok=0; break; }
    done
    [[ "${ok}" == 1 ]] && return 0
    if awk -v a="${t0}" -v b="${EPOCHREALTIME}" -v w="${WAIT_S}" 'BEGIN { exit !(b - a > w) }'; then
      fail "${s}" "wait for mirroring (${WAIT_S} s; last: rbd-mirror health/leader/peer = ${st})" \
        "$(daemon_log "${s}" "client.rbd-mirror.$(site_letter "${s}")")"
    fi
    sleep 1
  done
}

write_env() {
  cat >"${LAB}/env.sh" <<EOF
# source me: the evac Ceph lab under ${LAB} (written by tests/ceph/ceph-lab.sh up)
export CEPH_LAB_DIR=${LAB}
export CEPH_A=${LAB}/site-a/ceph.conf
export CEPH_B=${LAB}/site-b/ceph.conf
export CEPH_A_MON=$(site_ip site-a):6789
export CEPH_B_MON=$(site_ip site-b):6789
export CEPH_A_EVAC_KEYRING=${LAB}/site-a/ceph.client.evac.keyring
export CEPH_B_EVAC_KEYRING=${LAB}/site-b/ceph.client.evac.keyring
export CEPH_LAB_POOL=${POOL}
EOF
}

# ---------------------------------------------------------------------------
# stopping

# stop_site SITE SIGNAL: signal each daemon (by its pid file, only if the
# process is ours), then wait for it to exit. A single-OSD cluster does not
# mark a dead OSD down for ~15 min, and a new ceph-osd fails on the pid-file
# lock while the old one still exits: so the wait. rbd-mirror does not exit
# on SIGTERM when a cluster it talks to is gone: SIGKILL after 20 s.
stop_site() {
  local site="$1" sig="$2" n p pids=() names=() i
  [[ -d "${LAB}/${site}/run" ]] || return 0
  # rbd-mirror first: it would log errors while its cluster goes away
  for n in "client.rbd-mirror.$(site_letter "${site}")" osd.0 mgr.x mon.a; do
    p="$(pid_of "${site}" "${n}")" || continue
    kill "-${sig}" "${p}" 2>/dev/null || continue
    pids+=("${p}")
    names+=("${n}")
  done
  for i in "${!pids[@]}"; do
    local k
    for ((k = 0; k < 200; k++)); do
      pid_alive "${pids[i]}" "$(conf_of "${site}")" || break
      sleep 0.1
    done
    if pid_alive "${pids[i]}" "$(conf_of "${site}")"; then
      say "${site}: ${names[i]} (pid ${pids[i]}) still runs 20 s after SIG${sig}: SIGKILL"
      kill -KILL "${pids[i]}" 2>/dev/null || true
      for ((k = 0; k < 50; k++)); do pid_alive "${pids[i]}" "$(conf_of "${site}")" || break; sleep 0.1; done
    fi
    rm -f "${LAB}/${site}/run/${names[i]}.pid"
  done
  [[ ${#pids[@]} -gt 0 ]] && say "${site}: stopped ${names[*]} (SIG${sig})"
  return 0
}

release_site() {
  local site="$1" m dev
  # anything mounted under the site (nothing by default; ceph-volume would mount a tmpfs)
  while read -r m; do
    umount "${m}" && say "${site}: unmounted ${m}"
  done < <(awk -v d="${LAB}/${site}/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r)
  while read -r dev; do
    [[ -n "${dev}" ]] || continue
    losetup -d "${dev}" && say "${site}: detached ${dev}"
  done < <(losetup -j "${LAB}/${site}/osd0.img" -O NAME -n 2>/dev/null)
}

# ---------------------------------------------------------------------------
# subcommands

cmd_up() {
  LAB="$(lab_dir "${1:-}")"
  need_tools
  [[ "$(id -u)" -eq 0 ]] || die "up: run as root (loop devices)"
  set_to_opts
  local t0 s pids=() rc=0 bytes
  # bluestore's mkfs aborts on a small device ("bluefs _allocate allocation failed")
  bytes="$(numfmt --from=iec "${OSD_SIZE}" 2>/dev/null)" || die "CEPH_LAB_OSD_SIZE='${OSD_SIZE}': not a size (e.g. 8G)"
  ((bytes >= 2 * 1024 * 1024 * 1024)) || die "CEPH_LAB_OSD_SIZE=${OSD_SIZE}: bluestore needs at least 2G (the file is sparse)"
  t0="$(now)"
  mkdir -p "${LAB}"
  touch "${LAB}/.ceph-lab"
  # the two sites come up side by side; each stops the lab on its own error
  for s in "${SITES[@]}"; do
    (
      if [[ -f "${LAB}/${s}/.bootstrapped" ]]; then
        start_site_daemons "${s}"
      else
        [[ -e "${LAB}/${s}" ]] && die "${s}: ${LAB}/${s} exists but was never bootstrapped; '${prog} purge ${LAB}' first"
        bootstrap_site "${s}"
      fi
      wait_healthy "${s}"
      say "${s}: HEALTH_OK after $(since "${t0}") s"
    ) &
    pids+=($!)
  done
  for s in "${pids[@]}"; do wait "${s}" || rc=1; done
  [[ "${rc}" == 0 ]] || die "up failed (see above); '${prog} down ${LAB}' stops what did start"
  setup_mirroring
  for s in "${SITES[@]}"; do
    pid_of "${s}" "client.rbd-mirror.$(site_letter "${s}")" >/dev/null || start_daemon "${s}" "client.rbd-mirror.$(site_letter "${s}")"
  done
  wait_mirroring "${SITES[@]}"
  write_env
  say "up: both sites HEALTH_OK, mirroring ${POOL} both ways, in $(since "${t0}") s; source ${LAB}/env.sh"
}

cmd_down() {
  LAB="$(lab_dir "${1:-}")"
  local sig=TERM s
  [[ "${2:-}" == --kill ]] && sig=KILL
  [[ -z "${2:-}" || "${2}" == --kill ]] || usage
  [[ -d "${LAB}" ]] || { say "down: ${LAB} does not exist"; return 0; }
  # both sites at once: a live site's rbd-mirror would otherwise keep waiting for the stopped one
  for s in "${SITES[@]}"; do stop_site "${s}" "${sig}" & done
  wait
  for s in "${SITES[@]}"; do release_site "${s}"; done
}

cmd_stop_site() {
  LAB="$(lab_dir "${1:-}")"
  local site="${2:-}" sig=TERM
  site_ip "${site}" >/dev/null
  [[ "${3:-}" == -9 ]] && sig=KILL
  [[ -z "${3:-}" || "${3}" == -9 ]] || usage
  stop_site "${site}" "${sig}"
}

cmd_start_site() {
  LAB="$(lab_dir "${1:-}")"
  local site="${2:-}" t0
  site_ip "${site}" >/dev/null
  need_tools
  set_to_opts
  t0="$(now)"
  start_site_daemons "${site}"
  wait_healthy "${site}"
  say "${site}: started, HEALTH_OK after $(since "${t0}") s"
  # mirroring can come back only if the other site answers
  if (CMD_TIMEOUT=3 && set_to_opts && c_ceph "$(other_site "${site}")" health >/dev/null 2>&1); then
    wait_mirroring "${SITES[@]}"
    say "${site}: mirroring up both ways after $(since "${t0}") s"
  else
    say "${site}: $(other_site "${site}") does not answer: not waiting for mirroring"
  fi
}

cmd_status() {
  LAB="$(lab_dir "${1:-}")"
  set_to_opts
  CMD_TIMEOUT=5
  set_to_opts
  local s n p
  for s in "${SITES[@]}"; do
    [[ -d "${LAB}/${s}" ]] || { echo "${s}: none"; continue; }
    for n in $(daemon_names "${s}"); do
      if p="$(pid_of "${s}" "${n}")"; then echo "${s}: ${n} pid ${p}"; else echo "${s}: ${n} not running"; fi
    done
    echo "${s}: loop $(losetup -j "${LAB}/${s}/osd0.img" -O NAME -n 2>/dev/null | tr '\n' ' ')"
    echo "${s}: health $(c_ceph "${s}" health 2>/dev/null || echo 'no answer')"
    echo "${s}: mirroring $(mirror_state "${s}")"
  done
}

cmd_measure() {
  LAB="$(lab_dir "${1:-}")"
  local dur="${2:-30}" hz s n p rss t1 tot cpu totcpu
  hz="$(getconf CLK_TCK)"
  declare -A t0
  for s in "${SITES[@]}"; do
    for n in $(daemon_names "${s}"); do
      p="$(pid_of "${s}" "${n}")" || continue
      t0["${s}/${n}"]="$(awk '{ print $14 + $15 }' "/proc/${p}/stat")"
    done
  done
  sleep "${dur}"
  for s in "${SITES[@]}"; do
    tot=0; totcpu=0
    for n in $(daemon_names "${s}"); do
      p="$(pid_of "${s}" "${n}")" || { printf '%s %-20s not running\n' "${s}" "${n}"; continue; }
      rss="$(awk '/^VmRSS/ { print $2 }' "/proc/${p}/status")"
      t1="$(awk '{ print $14 + $15 }' "/proc/${p}/stat")"
      cpu="$(awk -v a="${t0["${s}/${n}"]:-${t1}}" -v b="${t1}" -v hz="${hz}" -v d="${dur}" 'BEGIN { printf "%.1f", (b - a) * 100 / hz / d }')"
      printf '%s %-20s pid %-7s RSS %5d MiB  CPU %5s%%\n' "${s}" "${n}" "${p}" $((rss / 1024)) "${cpu}"
      tot=$((tot + rss)); totcpu="$(awk -v a="${totcpu}" -v b="${cpu}" 'BEGIN { print a + b }')"
    done
    printf '%s %-20s              RSS %5d MiB  CPU %5s%% of one core, over %s s\n' "${s}" total $((tot / 1024)) "${totcpu}" "${dur}"
  done
}

cmd_purge() {
  LAB="$(lab_dir "${1:-}")"
  [[ -d "${LAB}" ]] || return 0
  [[ -f "${LAB}/.ceph-lab" ]] || die "purge: ${LAB} was not made by ${prog} (no .ceph-lab in it): not deleting it"
  cmd_down "${LAB}" --kill
  rm -rf -- "${LAB}"
  say "purged ${LAB}"
}

case "${1:-}" in
  install) cmd_install ;;
  up) shift; cmd_up "$@" ;;
  down) shift; cmd_down "$@" ;;
  stop-site) shift; cmd_stop_site "$@" ;;
  start-site) shift; cmd_start_site "$@" ;;
  status) shift; cmd_status "$@" ;;
  measure) shift; cmd_measure "$@" ;;
  purge) shift; cmd_purge "$@" ;;
  *) usage ;;
esac
