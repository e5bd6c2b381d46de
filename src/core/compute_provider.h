// The compute provider interface: evac's one narrow door to a hypervisor
// manager. libvirt implements it first; a vSphere provider comes later.
//
// Implementations must be safe to call from several threads at once (evacd
// serves requests on a thread pool). Operations a backend cannot do return
// StatusCode::kUnsupported rather than pretending.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/change_tracking.h"
#include "core/model.h"
#include "core/status.h"

namespace evac {

class ComputeProvider {
 public:
  virtual ~ComputeProvider() = default;

  virtual const std::string& name() const = 0;
  virtual std::string kind() const = 0;  // "libvirt"
  virtual std::string uri() const = 0;   // where it connects, for display

  // Checks that the hypervisor manager answers; the error says why not.
  virtual Status ping() = 0;

  virtual Result<std::vector<VmInfo>> list_vms() = 0;
  // By name or UUID.
  virtual Result<VmInfo> get_vm(const std::string& name_or_uuid) = 0;
  virtual Result<std::vector<NetworkInfo>> list_networks() = 0;
  virtual Result<std::vector<StoragePoolInfo>> list_storage_pools() = 0;

  // Registers a powered-off VM marked as evac's placeholder. Never starts it.
  virtual Result<PlaceholderInfo> define_placeholder(const PlaceholderSpec& spec) = 0;
  // Removes a placeholder; refuses (kFailedPrecondition) a VM that is not one
  // of evac's placeholders or that is running. Removing one that is already
  // gone succeeds, so a retried cleanup converges.
  virtual Status remove_placeholder(const std::string& uuid) = 0;
  virtual Result<std::vector<PlaceholderInfo>> list_placeholders() = 0;

  // Change tracking for replicating running VMs; nullptr where the backend
  // has none (the built-in replicator then refuses running VMs).
  virtual ChangeTracking* change_tracking() { return nullptr; }
};

struct ProviderConfig {
  std::string name;
  std::string kind;  // "libvirt"
  std::string uri;
};

// Factory registry by kind, so the core never includes a backend's headers.
using ProviderFactory = std::function<Result<std::unique_ptr<ComputeProvider>>(const ProviderConfig&)>;

class ProviderRegistry {
 public:
  static ProviderRegistry& instance();
  void add(const std::string& kind, ProviderFactory factory);
  Result<std::unique_ptr<ComputeProvider>> create(const ProviderConfig& config) const;
  std::vector<std::string> kinds() const;

 private:
  std::map<std::string, ProviderFactory> factories_;
};

}  // namespace evac
