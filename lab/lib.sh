# shellcheck shell=bash
# Helpers shared by the lab scripts. Source it; it defines functions and a
# few variables and runs nothing else.

# Daemons and admin tools live in sbin; a non-login root shell may lack it.
case ":${PATH}:" in
  *:/usr/sbin:*) ;;
  *) PATH="${PATH}:/usr/local/sbin:/usr/sbin:/sbin" ;;
esac
export PATH

lab_prog="${0##*/}"

lab_say() { printf '%s: %s\n' "${lab_prog}" "$*" >&2; }
lab_die() { printf '%s: error: %s\n' "${lab_prog}" "$*" >&2; exit 1; }

# lab_need_tool TOOL PACKAGE: stop with the package to install when a tool is missing.
lab_need_tool() {
  command -v "$1" >/dev/null 2>&1 ||
    lab_die "'$1' not found: install the Debian package '$2' (apt-get install $2)"
}

lab_need_root() {
  [[ "$(id -u)" -eq 0 ]] || lab_die "must run as root (it starts libvirtd/QEMU and builds device nodes)"
}

# Milliseconds since the epoch.
lab_now_ms() {
  local ns
  ns="$(date +%s%N)"
  printf '%s\n' "$((ns / 1000000))"
}

# lab_secs_since START_MS: elapsed seconds with millisecond precision, e.g. 1.234
lab_secs_since() {
  local ms
  ms=$(( $(lab_now_ms) - $1 ))
  printf '%d.%03d\n' "$((ms / 1000))" "$((ms % 1000))"
}

# lab_timing LABEL START_MS: one timing line on stderr, in a greppable shape.
lab_timing() {
  printf '%s: timing: %-28s %8s s\n' "${lab_prog}" "$1" "$(lab_secs_since "$2")" >&2
}

# Removes a folder a demo or test made. A fence makes the stale copy's disk
# images immutable (chattr +i) and they stay so until a recovery moves the
# VMs off them: lift that first, or rm cannot remove them.
lab_remove_tree() {
  [[ -e "$1" ]] || return 0
  chattr -R -f -i "$1" 2>/dev/null || true
  rm -rf "$1"
}

# Site names become folder names and part of socket paths.
lab_check_name() {
  [[ "$1" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$ ]] ||
    lab_die "bad name '$1': use letters, digits, '.', '_' or '-' (at most 40, not starting with a symbol)"
}

# Text safe inside an XML attribute or element.
lab_xml_escape() {
  local s="$1"
  s="${s//&/&amp;}"
  s="${s//</&lt;}"
  s="${s//>/&gt;}"
  s="${s//\'/&apos;}"
  s="${s//\"/&quot;}"
  printf '%s' "$s"
}

# A JSON string literal (with the quotes) for $1.
lab_json_string() {
  local s="$1"
  s="${s//\\/\\\\}"
  s="${s//\"/\\\"}"
  s="${s//$'\n'/\\n}"
  s="${s//$'\r'/\\r}"
  s="${s//$'\t'/\\t}"
  printf '"%s"' "$s"
}

# lab_tail_file LABEL FILE [LINES]: show the end of a log, or say it is missing.
lab_tail_file() {
  local lines="${3:-40}"
  if [[ -s "$2" ]]; then
    printf -- '----- %s (%s, last %s lines) -----\n' "$1" "$2" "${lines}" >&2
    tail -n "${lines}" "$2" >&2 || true
    printf -- '----- end of %s -----\n' "$1" >&2
  else
    printf -- '----- %s: %s is missing or empty -----\n' "$1" "$2" >&2
  fi
}
