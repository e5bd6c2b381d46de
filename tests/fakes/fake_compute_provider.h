// FakeComputeProvider: an in-memory compute provider for unit tests of the
// layers above providers. Not a hypervisor: it only remembers what it is told.
#pragma once

#include <algorithm>
#include <mutex>

#include "core/compute_provider.h"

namespace evac::testing {

class FakeComputeProvider : public ComputeProvider {
 public:
  explicit FakeComputeProvider(std::string name) : name_(std::move(name)) {}

  // ---- test set-up
  void add_vm(VmInfo vm) {
    std::lock_guard lock(mu_);
    vm.provider = name_;
    vms_.push_back(std::move(vm));
  }
  void add_network(std::string name, bool isolated = false) {
    std::lock_guard lock(mu_);
    NetworkInfo n;
    n.provider = name_;
    n.name = std::move(name);
    n.active = true;
    n.forward_mode = isolated ? "" : "nat";
    n.isolated = isolated;
    n.isolation = isolated ? "fake: no forward mode" : "fake: forward mode 'nat'";
    networks_.push_back(std::move(n));
  }
  // A host bridge ("bridge:NAME") or host device ("direct:NAME") NICs attach to.
  void add_host_attachment(std::string kind, std::string name, bool isolated = false) {
    std::lock_guard lock(mu_);
    NetworkInfo n;
    n.provider = name_;
    n.kind = kind;
    n.name = Attachment{kind, name}.key();
    if (kind == "bridge") n.bridge = name;
    n.active = true;
    n.isolated = isolated;
    n.isolation = isolated ? "fake: a bridge with no uplink" : "fake: an uplink";
    networks_.push_back(std::move(n));
  }
  void add_pool(std::string name, std::string path) {
    std::lock_guard lock(mu_);
    pools_.push_back(StoragePoolInfo{name_, std::move(name), "", "dir", std::move(path), true, 0, 0});
  }
  void set_down(bool down) { down_ = down; }
  // What start_problems answers for a VM (by name), and the host's free memory.
  void set_start_problems(const std::string& vm_name, std::vector<std::string> problems) {
    std::lock_guard lock(mu_);
    start_problems_[vm_name] = std::move(problems);
  }
  void set_free_memory_kib(std::uint64_t kib) {
    std::lock_guard lock(mu_);
    free_memory_kib_ = kib;
  }
  // The next define_placeholder calls fail after `n` more successes.
  void fail_placeholders_after(int n) { placeholder_budget_ = n; }
  std::vector<PlaceholderSpec> defined_specs() const {
    std::lock_guard lock(mu_);
    return defined_specs_;
  }

  // ---- ComputeProvider
  const std::string& name() const override { return name_; }
  std::string kind() const override { return "fake"; }
  std::string uri() const override { return "fake://" + name_; }
  Status ping() override { return down_ ? unavailable("fake provider " + name_ + " is down", "bring it up") : Status::ok(); }

  Result<std::vector<VmInfo>> list_vms() override {
    EVAC_RETURN_IF_ERROR(ping());
    std::lock_guard lock(mu_);
    return vms_;
  }
  Result<VmInfo> get_vm(const std::string& ref) override {
    EVAC_RETURN_IF_ERROR(ping());
    std::lock_guard lock(mu_);
    for (const auto& vm : vms_)
      if (vm.name == ref || vm.uuid == ref) return vm;
    return not_found("no VM " + ref);
  }
  Result<std::vector<NetworkInfo>> list_networks() override {
    EVAC_RETURN_IF_ERROR(ping());
    std::lock_guard lock(mu_);
    return networks_;
  }
  Result<std::vector<StoragePoolInfo>> list_storage_pools() override {
    EVAC_RETURN_IF_ERROR(ping());
    std::lock_guard lock(mu_);
    return pools_;
  }

  Result<PlaceholderInfo> define_placeholder(const PlaceholderSpec& spec) override {
    EVAC_RETURN_IF_ERROR(ping());
    std::lock_guard lock(mu_);
    if (placeholder_budget_ == 0) return unavailable("fake provider refuses placeholders now");
    if (placeholder_budget_ > 0) --placeholder_budget_;
    for (const auto& vm : vms_)
      if (vm.name == spec.vm.name) return already_exists("a VM named " + vm.name + " exists");
    VmInfo vm = spec.vm;
    vm.provider = name_;
    vm.uuid = "ph-" + std::to_string(++counter_) + "-" + spec.source_uuid;
    vm.state = PowerState::kShutOff;
    vm.is_placeholder = true;
    vms_.push_back(vm);
    defined_specs_.push_back(spec);
    return PlaceholderInfo{name_, vm.name, vm.uuid, spec.group, spec.source_site, spec.source_uuid};
  }
  Status remove_placeholder(const std::string& uuid) override {
    EVAC_RETURN_IF_ERROR(ping());
    std::lock_guard lock(mu_);
    auto it = std::find_if(vms_.begin(), vms_.end(), [&](const VmInfo& v) { return v.uuid == uuid; });
    if (it == vms_.end()) return Status::ok();
    if (!it->is_placeholder) return failed_precondition("not a placeholder");
    vms_.erase(it);
    return Status::ok();
  }
  Result<std::vector<std::string>> start_problems(const std::string& uuid) override {
    EVAC_RETURN_IF_ERROR(ping());
    std::lock_guard lock(mu_);
    for (const auto& vm : vms_)
      if (vm.uuid == uuid) {
        auto it = start_problems_.find(vm.name);
        return it == start_problems_.end() ? std::vector<std::string>{} : it->second;
      }
    return not_found("no VM " + uuid);
  }
  Result<HostCapacity> host_capacity() override {
    EVAC_RETURN_IF_ERROR(ping());
    std::lock_guard lock(mu_);
    return HostCapacity{64ull << 20, free_memory_kib_, 16};
  }
  Result<std::vector<PlaceholderInfo>> list_placeholders() override {
    EVAC_RETURN_IF_ERROR(ping());
    std::lock_guard lock(mu_);
    std::vector<PlaceholderInfo> out;
    for (const auto& vm : vms_)
      if (vm.is_placeholder) out.push_back(PlaceholderInfo{name_, vm.name, vm.uuid, "", "", ""});
    return out;
  }

 private:
  std::string name_;
  mutable std::mutex mu_;
  std::vector<VmInfo> vms_;
  std::vector<NetworkInfo> networks_;
  std::vector<StoragePoolInfo> pools_;
  std::vector<PlaceholderSpec> defined_specs_;
  std::map<std::string, std::vector<std::string>> start_problems_;
  std::uint64_t free_memory_kib_ = 32ull << 20;  // 32 GiB
  bool down_ = false;
  int placeholder_budget_ = -1;
  int counter_ = 0;
};

}  // namespace evac::testing
