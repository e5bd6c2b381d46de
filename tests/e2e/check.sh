# shellcheck shell=bash
# One assertion of an e2e script: `check DESCRIPTION COMMAND...` runs the
# command, prints "ok: ..." or "FAILED: ...", and counts both.
passed=0
failed=0
check() {
  local what="$1"
  shift
  if "$@"; then
    passed=$((passed + 1))
    echo "ok: ${what}"
  else
    failed=$((failed + 1))
    echo "FAILED: ${what}"
  fi
}
