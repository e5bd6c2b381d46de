// Default bodies of ComputeProvider's optional operations: each answers
// kUnsupported naming the provider, so a backend grows into them one by one.
#include "core/compute_provider.h"

namespace evac {

namespace {
Status not_supported_by(const ComputeProvider& p, const std::string& what) {
  return unsupported("compute provider '" + p.name() + "' (" + p.kind() + ") cannot " + what,
                     "recover onto a provider that can, e.g. libvirt");
}
}  // namespace

Result<TestVmInfo> ComputeProvider::define_test_vm(const TestVmSpec& spec) {
  return not_supported_by(*this, "register test VM " + spec.name);
}
Result<std::vector<TestVmInfo>> ComputeProvider::list_test_vms() { return not_supported_by(*this, "list test VMs"); }
Status ComputeProvider::remove_test_vm(const std::string& uuid) { return not_supported_by(*this, "remove test VM " + uuid); }
Result<VmInfo> ComputeProvider::recover_placeholder(const std::string& uuid, const std::map<std::string, std::string>&,
                                                   const std::string&) {
  return not_supported_by(*this, "recover onto placeholder " + uuid);
}
Result<PlaceholderInfo> ComputeProvider::adopt_as_placeholder(const std::string& uuid, const PlaceholderInfo&) {
  return not_supported_by(*this, "make VM " + uuid + " a placeholder");
}
Result<std::vector<std::string>> ComputeProvider::flatten_disks(const std::string& uuid) {
  return not_supported_by(*this, "flatten the disks of VM " + uuid + " while it runs");
}
Status ComputeProvider::power_on(const std::string& uuid) { return not_supported_by(*this, "power on VM " + uuid); }
Result<std::vector<std::string>> ComputeProvider::start_problems(const std::string& uuid) {
  return not_supported_by(*this, "tell whether VM " + uuid + " would start");
}
Result<ComputeProvider::HostCapacity> ComputeProvider::host_capacity() {
  return not_supported_by(*this, "report its host's capacity");
}
Status ComputeProvider::power_off(const std::string& uuid, bool, std::chrono::seconds) {
  return not_supported_by(*this, "power off VM " + uuid);
}
Status ComputeProvider::guest_ping(const std::string& uuid) { return not_supported_by(*this, "reach the guest agent of VM " + uuid); }
Result<GuestCommandResult> ComputeProvider::guest_exec(const std::string& uuid, const std::vector<std::string>&,
                                                       std::chrono::seconds) {
  return not_supported_by(*this, "run commands in the guest of VM " + uuid);
}
Result<std::vector<GuestInterface>> ComputeProvider::guest_interfaces(const std::string& uuid) {
  return not_supported_by(*this, "read the network interfaces in the guest of VM " + uuid);
}
Result<std::vector<std::string>> ComputeProvider::guest_addresses(const std::string& uuid) {
  return not_supported_by(*this, "read the addresses of VM " + uuid);
}

}  // namespace evac
