// FakeComputeProvider: an in-memory compute provider for unit tests of the
// layers above providers. Not a hypervisor: it only remembers what it is told.
// What a run does to VMs (test VMs, recovered placeholders, power, the guest
// agent) it keeps as state and as a log of calls, so a test can assert what
// a run did; each can be told to refuse (refuse_power_on) or to answer as a
// guest would (set_guest_interfaces, answer_guest_command).
#pragma once

#include <algorithm>
#include <map>
#include <mutex>
#include <optional>
#include <set>

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
  // power_on of the VM named `vm_name` (a test VM's name for a test) fails
  // with `refusal` until cleared (nullopt).
  void refuse_power_on(const std::string& vm_name, std::optional<Status> refusal) {
    std::lock_guard lock(mu_);
    if (refusal)
      power_on_refusals_[vm_name] = *refusal;
    else
      power_on_refusals_.erase(vm_name);
  }
  // The guest agent of a VM (by name) stays silent (guest_ping unavailable)
  // while set; a running VM's agent answers otherwise.
  void set_agent_silent(const std::string& vm_name, bool silent) {
    std::lock_guard lock(mu_);
    if (silent)
      silent_agents_.insert(vm_name);
    else
      silent_agents_.erase(vm_name);
  }
  // What a guest's agent reports of its interfaces (by VM name); a VM with
  // none set reports none.
  void set_guest_interfaces(const std::string& vm_name, std::vector<GuestInterface> interfaces) {
    std::lock_guard lock(mu_);
    guest_interfaces_[vm_name] = std::move(interfaces);
  }
  // What guest_exec answers for a command whose argv[0] is `program`, in
  // any guest; a command with no answer set exits 0 with no output.
  void answer_guest_command(const std::string& program, GuestCommandResult result) {
    std::lock_guard lock(mu_);
    guest_answers_[program] = std::move(result);
  }
  // What was done to VMs, in order, one line per call that changed
  // something or ran something: "power_on web01", "shutdown db01" (a
  // graceful power_off), "power_off db01", "define_test_vm web01-test",
  // "remove_test_vm web01-test", "recover db01", "adopt web01", "flatten
  // web01", "exec web01-test /bin/x".
  std::vector<std::string> calls() const {
    std::lock_guard lock(mu_);
    return calls_;
  }
  std::vector<std::string> calls_starting(const std::string& prefix) const {
    std::lock_guard lock(mu_);
    std::vector<std::string> out;
    for (const auto& c : calls_)
      if (c.rfind(prefix, 0) == 0) out.push_back(c);
    return out;
  }
  // Every command run in a guest (argv, with the VM's name first).
  std::vector<std::vector<std::string>> guest_commands() const {
    std::lock_guard lock(mu_);
    return guest_commands_;
  }
  // The test VM's spec as it was defined (its disks and test networks).
  std::optional<TestVmSpec> test_vm_spec(const std::string& name) const {
    std::lock_guard lock(mu_);
    for (const auto& [uuid, t] : test_vms_)
      if (t.spec.name == name) return t.spec;
    return std::nullopt;
  }
  // The run a placeholder was recovered by ("" if none).
  std::string recovered_by(const std::string& ref) const {
    std::lock_guard lock(mu_);
    const VmInfo* vm = find_locked(ref);
    if (!vm) return "";
    auto it = recovered_by_.find(vm->uuid);
    return it == recovered_by_.end() ? "" : it->second;
  }
  // The marker a VM was adopted as a placeholder with (a reprotect).
  std::optional<PlaceholderInfo> adopted_as(const std::string& ref) const {
    std::lock_guard lock(mu_);
    const VmInfo* vm = find_locked(ref);
    if (!vm) return std::nullopt;
    auto it = adopted_.find(vm->uuid);
    if (it == adopted_.end()) return std::nullopt;
    return it->second;
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

  // ---- ComputeProvider: recoveries (in memory: the VMs listed above)
  Result<TestVmInfo> define_test_vm(const TestVmSpec& spec) override {
    EVAC_RETURN_IF_ERROR(ping());
    std::lock_guard lock(mu_);
    for (const auto& [uuid, t] : test_vms_)
      if (t.spec.name == spec.name) {
        if (t.spec.run == spec.run && t.spec.source_uuid == spec.source_uuid) return t.info;  // asked again
        return already_exists("test VM " + spec.name + " of run " + t.spec.run + " exists");
      }
    const VmInfo* placeholder = find_locked(spec.placeholder_uuid);
    if (!placeholder || !placeholder->is_placeholder) return not_found("no placeholder " + spec.placeholder_uuid);
    if (find_locked(spec.name)) return already_exists("a VM named " + spec.name + " exists");
    VmInfo vm = *placeholder;
    vm.name = spec.name;
    vm.uuid = "test-" + std::to_string(++counter_) + "-" + spec.source_uuid;
    vm.state = PowerState::kShutOff;
    vm.is_placeholder = false;
    for (auto& d : vm.disks)
      if (auto it = spec.disks.find(d.target); it != spec.disks.end()) d.path = it->second;
    for (auto& n : vm.nics) {
      auto it = spec.networks.find(n.network);
      if (it == spec.networks.end())
        return failed_precondition("NIC " + n.mac + " of " + spec.name + " is on network '" + n.network +
                                   "', which has no test network");
      n.network = it->second;
    }
    vms_.push_back(vm);
    TestVmInfo info{name_, vm.name, vm.uuid, vm.state, spec.run, spec.group, spec.source_site, spec.source_uuid};
    test_vms_[vm.uuid] = TestVm{spec, info};
    calls_.push_back("define_test_vm " + spec.name);
    return info;
  }
  Result<std::vector<TestVmInfo>> list_test_vms() override {
    EVAC_RETURN_IF_ERROR(ping());
    std::lock_guard lock(mu_);
    std::vector<TestVmInfo> out;
    for (const auto& [uuid, t] : test_vms_) {
      TestVmInfo info = t.info;
      if (const VmInfo* vm = find_locked(uuid)) info.state = vm->state;
      out.push_back(info);
    }
    return out;
  }
  Status remove_test_vm(const std::string& uuid) override {
    EVAC_RETURN_IF_ERROR(ping());
    std::lock_guard lock(mu_);
    auto it = std::find_if(vms_.begin(), vms_.end(), [&](const VmInfo& v) { return v.uuid == uuid; });
    if (it == vms_.end()) return Status::ok();
    if (!test_vms_.count(uuid)) return failed_precondition(it->name + " is not one of evac's test VMs");
    calls_.push_back("remove_test_vm " + it->name);
    vms_.erase(it);
    test_vms_.erase(uuid);
    return Status::ok();
  }
  Result<VmInfo> recover_placeholder(const std::string& uuid, const std::map<std::string, std::string>& disks,
                                     const std::string& run) override {
    EVAC_RETURN_IF_ERROR(ping());
    std::lock_guard lock(mu_);
    VmInfo* vm = find_locked(uuid);
    if (!vm) return not_found("no VM " + uuid);
    if (auto it = recovered_by_.find(vm->uuid); it != recovered_by_.end() && it->second == run) return *vm;  // asked again
    if (!vm->is_placeholder) return failed_precondition(vm->name + " is not a placeholder");
    for (auto& d : vm->disks)
      if (auto it = disks.find(d.target); it != disks.end()) d.path = it->second;
    vm->is_placeholder = false;
    recovered_by_[vm->uuid] = run;
    calls_.push_back("recover " + vm->name);
    return *vm;
  }
  Result<PlaceholderInfo> adopt_as_placeholder(const std::string& uuid, const PlaceholderInfo& marker) override {
    EVAC_RETURN_IF_ERROR(ping());
    std::lock_guard lock(mu_);
    VmInfo* vm = find_locked(uuid);
    if (!vm) return not_found("no VM " + uuid);
    if (vm->state == PowerState::kRunning) return failed_precondition(vm->name + " is running: it cannot be a placeholder");
    if (!vm->is_placeholder) calls_.push_back("adopt " + vm->name);
    vm->is_placeholder = true;
    recovered_by_.erase(vm->uuid);
    adopted_[vm->uuid] = marker;
    return PlaceholderInfo{name_, vm->name, vm->uuid, marker.group, marker.source_site, marker.source_uuid};
  }
  // As libvirt: a hypervisor pulls the backing chain into a running VM's
  // disks only; a VM that does not run is left to the replication engine.
  Result<std::vector<std::string>> flatten_disks(const std::string& uuid) override {
    EVAC_RETURN_IF_ERROR(ping());
    std::lock_guard lock(mu_);
    VmInfo* vm = find_locked(uuid);
    if (!vm) return not_found("no VM " + uuid);
    if (vm->state != PowerState::kRunning) return unsupported(vm->name + " does not run: no block pull (fake)");
    calls_.push_back("flatten " + vm->name);
    std::vector<std::string> out;
    for (const auto& d : vm->disks) out.push_back(d.path);
    return out;
  }
  Status power_on(const std::string& ref) override {
    EVAC_RETURN_IF_ERROR(ping());
    std::lock_guard lock(mu_);
    VmInfo* vm = find_locked(ref);
    if (!vm) return not_found("no VM " + ref);
    if (auto it = power_on_refusals_.find(vm->name); it != power_on_refusals_.end()) return it->second;
    if (vm->is_placeholder) return failed_precondition(vm->name + " is a placeholder: recover it first");
    if (vm->state != PowerState::kRunning) calls_.push_back("power_on " + vm->name);
    vm->state = PowerState::kRunning;
    return Status::ok();
  }
  Status power_off(const std::string& ref, bool graceful, std::chrono::seconds) override {
    EVAC_RETURN_IF_ERROR(ping());
    std::lock_guard lock(mu_);
    VmInfo* vm = find_locked(ref);
    if (!vm) return not_found("no VM " + ref);
    if (vm->state != PowerState::kShutOff) calls_.push_back(std::string(graceful ? "shutdown " : "power_off ") + vm->name);
    vm->state = PowerState::kShutOff;
    return Status::ok();
  }
  Status guest_ping(const std::string& ref) override {
    EVAC_RETURN_IF_ERROR(ping());
    std::lock_guard lock(mu_);
    const VmInfo* vm = find_locked(ref);
    if (!vm) return not_found("no VM " + ref);
    if (vm->state != PowerState::kRunning) return unavailable(vm->name + " is not running");
    if (silent_agents_.count(vm->name)) return unavailable("the guest agent of " + vm->name + " does not answer (fake)");
    return Status::ok();
  }
  Result<GuestCommandResult> guest_exec(const std::string& ref, const std::vector<std::string>& argv,
                                        std::chrono::seconds) override {
    EVAC_RETURN_IF_ERROR(guest_ping(ref));
    std::lock_guard lock(mu_);
    const VmInfo* vm = find_locked(ref);
    if (!vm) return not_found("no VM " + ref);
    std::vector<std::string> logged = argv;
    logged.insert(logged.begin(), vm->name);
    guest_commands_.push_back(logged);
    calls_.push_back("exec " + vm->name + " " + (argv.empty() ? "" : argv.front()));
    auto it = argv.empty() ? guest_answers_.end() : guest_answers_.find(argv.front());
    return it == guest_answers_.end() ? GuestCommandResult{} : it->second;
  }
  Result<std::vector<GuestInterface>> guest_interfaces(const std::string& ref) override {
    EVAC_RETURN_IF_ERROR(guest_ping(ref));
    std::lock_guard lock(mu_);
    const VmInfo* vm = find_locked(ref);
    if (!vm) return not_found("no VM " + ref);
    auto it = guest_interfaces_.find(vm->name);
    return it == guest_interfaces_.end() ? std::vector<GuestInterface>{} : it->second;
  }
  Result<std::vector<std::string>> guest_addresses(const std::string& ref) override {
    auto interfaces = guest_interfaces(ref);
    if (!interfaces) return interfaces.status();
    std::vector<std::string> out;
    for (const auto& i : *interfaces)
      for (const auto& a : i.ipv4) out.push_back(a.substr(0, a.find('/')));
    return out;
  }

 private:
  struct TestVm {
    TestVmSpec spec;
    TestVmInfo info;
  };
  // By name or UUID, with mu_ held.
  VmInfo* find_locked(const std::string& ref) {
    for (auto& vm : vms_)
      if (vm.name == ref || vm.uuid == ref) return &vm;
    return nullptr;
  }
  const VmInfo* find_locked(const std::string& ref) const { return const_cast<FakeComputeProvider*>(this)->find_locked(ref); }

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
  std::map<std::string, TestVm> test_vms_;            // by the test VM's UUID
  std::map<std::string, std::string> recovered_by_;   // placeholder UUID -> the run that recovered it
  std::map<std::string, PlaceholderInfo> adopted_;    // VM UUID -> the marker it was adopted with
  std::map<std::string, Status> power_on_refusals_;   // by VM name
  std::set<std::string> silent_agents_;               // by VM name
  std::map<std::string, std::vector<GuestInterface>> guest_interfaces_;  // by VM name
  std::map<std::string, GuestCommandResult> guest_answers_;              // by argv[0]
  std::vector<std::vector<std::string>> guest_commands_;
  std::vector<std::string> calls_;
};

}  // namespace evac::testing
