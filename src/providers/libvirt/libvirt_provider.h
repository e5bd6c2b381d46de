// The libvirt compute provider: any libvirt URI (qemu:///system,
// qemu+ssh://host/system, test:///path/node.xml, ...) as an evac site's
// hypervisor manager.
//
// This header stays free of libvirt's own headers so that evacd can register
// the provider without the rest of evac seeing libvirt.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/compute_provider.h"

namespace evac {

namespace libvirt {
class Connection;
class LibvirtChangeTracking;
}

class LibvirtProvider : public ComputeProvider {
 public:
  // Does not connect: the first call does (see libvirt::Connection).
  explicit LibvirtProvider(ProviderConfig config);
  ~LibvirtProvider() override;

  const std::string& name() const override { return config_.name; }
  std::string kind() const override { return "libvirt"; }
  std::string uri() const override { return config_.uri; }

  Status ping() override;
  Result<std::vector<VmInfo>> list_vms() override;
  Result<VmInfo> get_vm(const std::string& name_or_uuid) override;
  Result<std::vector<NetworkInfo>> list_networks() override;
  Result<std::vector<std::string>> start_problems(const std::string& uuid) override;
  Result<HostCapacity> host_capacity() override;
  Result<std::vector<StoragePoolInfo>> list_storage_pools() override;

  Result<PlaceholderInfo> define_placeholder(const PlaceholderSpec& spec) override;
  Status remove_placeholder(const std::string& uuid) override;
  Result<std::vector<PlaceholderInfo>> list_placeholders() override;

  Result<TestVmInfo> define_test_vm(const TestVmSpec& spec) override;
  Result<std::vector<TestVmInfo>> list_test_vms() override;
  Status remove_test_vm(const std::string& uuid) override;
  Result<VmInfo> recover_placeholder(const std::string& uuid, const std::map<std::string, std::string>& disks,
                                     const std::string& run) override;
  Result<PlaceholderInfo> adopt_as_placeholder(const std::string& uuid, const PlaceholderInfo& marker) override;
  Result<std::vector<std::string>> flatten_disks(const std::string& uuid) override;
  Status power_on(const std::string& uuid) override;
  Status power_off(const std::string& uuid, bool graceful, std::chrono::seconds timeout) override;
  // Through the QEMU guest agent (libvirt-qemu); other drivers answer
  // kUnsupported.
  Status guest_ping(const std::string& uuid) override;
  Result<GuestCommandResult> guest_exec(const std::string& uuid, const std::vector<std::string>& argv,
                                        std::chrono::seconds timeout) override;
  Result<std::vector<GuestInterface>> guest_interfaces(const std::string& uuid) override;
  Result<std::vector<std::string>> guest_addresses(const std::string& uuid) override;

  // Checkpoints and pull-mode backups (QEMU only; other drivers answer
  // kUnsupported when asked to back up).
  ChangeTracking* change_tracking() override;

 private:
  ProviderConfig config_;
  std::unique_ptr<libvirt::Connection> connection_;
  std::unique_ptr<libvirt::LibvirtChangeTracking> tracking_;
};

// Checks the config (a URI is required) and builds the provider, unconnected.
Result<std::unique_ptr<ComputeProvider>> make_libvirt_provider(const ProviderConfig& config);

// Makes kind "libvirt" available from ProviderRegistry::instance()
// (core/provider_registry.h); evacd calls it at start-up.
void register_libvirt_provider();

}  // namespace evac
