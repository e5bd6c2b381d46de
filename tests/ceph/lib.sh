# shellcheck shell=bash
# Helpers for tests and experiments against the lab of ceph-lab.sh. Source
# it after DIR/env.sh (CEPH_A, CEPH_B); it defines functions only.
#
# Every call is bounded: the client gives up after CEPH_LAB_TIMEOUT seconds
# (default 20) when a mon does not answer, and timeout(1) ends it 10 s later
# whatever it waits for. Sites are named a or b.

cl_conf() {
  case "$1" in
    a | site-a) echo "${CEPH_A:?source DIR/env.sh first}" ;;
    b | site-b) echo "${CEPH_B:?source DIR/env.sh first}" ;;
    *) echo "cl_conf: unknown site '$1'" >&2; return 2 ;;
  esac
}
cl_to() { echo "${CEPH_LAB_TIMEOUT:-20}"; }

# cl_rbd SITE ARGS...: rbd as client.admin at SITE
cl_rbd() {
  local c
  c="$(cl_conf "$1")" || return
  shift
  timeout -k 5 $(($(cl_to) + 10)) rbd -c "${c}" --client-mount-timeout "$(cl_to)" --rados-mon-op-timeout "$(cl_to)" "$@"
}
# cl_ceph SITE ARGS...: ceph as client.admin at SITE
cl_ceph() {
  local c
  c="$(cl_conf "$1")" || return
  shift
  timeout -k 5 $(($(cl_to) + 10)) ceph -c "${c}" --connect-timeout "$(cl_to)" "$@"
}

cl_now() { echo "${EPOCHREALTIME}"; }
cl_since() { awk -v a="$1" -v b="${EPOCHREALTIME}" 'BEGIN { printf "%.2f", b - a }'; }

# cl_snaps SITE IMG: every snapshot, one a line: id name namespace state primary_snap_id complete
cl_snaps() {
  cl_rbd "$1" snap ls --all "$2" --format json | python3 -c '
import json, sys
for s in json.load(sys.stdin):
    ns = s.get("namespace", {})
    print(s["id"], s["name"], ns.get("type", "?"), ns.get("state", "-"), ns.get("primary_snap_id", "-"),
          ns.get("complete", "-"), ns.get("original_name", "-"))'
}

# cl_mirror_snap SRC DST IMG [TIMEOUT_S]: a mirror snapshot at the primary
# SRC, then wait until the non-primary at DST holds a complete copy of it
# (`rbd mirror image status` lags ~30 s: the non-primary's snapshot list is
# what to look at). Prints "snap ID: create Xs, arrived Ys".
cl_mirror_snap() {
  local src="$1" dst="$2" img="$3" to="${4:-180}" t0 id t1
  t0="$(cl_now)"
  id="$(cl_rbd "${src}" mirror image snapshot "${img}" | awk '/Snapshot ID:/ { print $3 }')"
  [[ -n "${id}" ]] || { echo "cl_mirror_snap: no snapshot id from ${src}" >&2; return 1; }
  t1="$(cl_since "${t0}")"
  cl_wait_mirror_snap "${dst}" "${img}" "${id}" "${to}" "${t0}" || return 1
  echo "snap ${id}: create ${t1}s, arrived $(cl_since "${t0}")s"
}

# cl_wait_mirror_snap DST IMG PRIMARY_SNAP_ID [TIMEOUT_S]: wait for the
# non-primary copy of that mirror snapshot to be complete at DST.
cl_wait_mirror_snap() {
  local dst="$1" img="$2" id="$3" to="${4:-180}" t0
  t0="$(cl_now)"
  while :; do
    cl_snaps "${dst}" "${img}" 2>/dev/null |
      awk -v id="${id}" '$3 == "mirror" && $4 == "non-primary" && $5 == id && $6 == "True" { f = 1 } END { exit !f }' &&
      return 0
    if awk -v a="${t0}" -v b="${EPOCHREALTIME}" -v w="${to}" 'BEGIN { exit !(b - a > w) }'; then
      echo "cl_wait_mirror_snap: ${img} snap ${id} not complete at ${dst} after ${to} s" >&2
      return 1
    fi
    sleep 0.1
  done
}

# cl_last_mirror SITE IMG: state and completeness of the newest mirror snapshot ("demoted True")
cl_last_mirror() {
  cl_snaps "$1" "$2" | awk '$3 == "mirror" { s = $4 " " $6 } END { print s }'
}

# cl_md5 SITE IMG[@SNAP]: md5 of the image's (snapshot's) whole content
cl_md5() {
  cl_rbd "$1" export --no-progress "$2" - | md5sum | cut -d' ' -f1
}

# cl_qemu_uri SITE IMG: the image as a qemu-io/qemu-img rbd: filename, as client.admin
cl_qemu_uri() {
  local c
  c="$(cl_conf "$1")" || return
  echo "rbd:$2:conf=${c}:id=admin"
}
