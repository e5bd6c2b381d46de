# shellcheck shell=bash
# What the e2e scripts share. Source it with the build folder, a name for
# the lab copy and a short prefix for its namespaces:
#   source "$(dirname "$0")/lib.sh" BUILD_DIR NAME PREFIX
# It sets up a private copy of the demo's lab (root /var/tmp/evac-NAME-PID,
# namespaces PREFIXNNN-*), `evac` (the CLI from the lab's operator
# namespace), the sites' libvirt URIs uri_a and uri_b, and check().

repo_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build_dir="${1:?usage: source lib.sh BUILD_DIR NAME PREFIX}"
export EVAC_BUILD_DIR="${build_dir}"
export EVAC_DEMO_ROOT="/var/tmp/evac-${2:?}-$$"
export EVAC_DEMO_PORT_BASE=$((20000 + $$ % 20000))
export EVAC_DEMO_BRIDGE_PREFIX="${3:?}$(( $$ % 1000 ))"
export EVAC_CONFIG="${EVAC_DEMO_ROOT}/cli.yaml"
evac() { "${repo_dir}/lab/demo.sh" evac "$@"; }
export repo_dir
export -f evac  # the checks run in `bash -c`
uri_a="qemu+unix:///system?socket=${EVAC_DEMO_ROOT}/sites/site-a/run/libvirt-sock"
uri_b="qemu+unix:///system?socket=${EVAC_DEMO_ROOT}/sites/site-b/run/libvirt-sock"

# shellcheck source=check.sh
source "${repo_dir}/tests/e2e/check.sh"
