#include "replication/conformance/conformance_kit.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <sstream>

#include "core/json_decode.h"
#include "core/replication_registry.h"
#include "process/child_process.h"
#include "replication/builtin/builtin_registration.h"
#include "replication/external/external_adapter.h"

namespace evac::conformance {
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// ----------------------------------------------------------------- links ---

// ---------------------------------------------------------------- images ---

Result<ChildOutcome> run_tool(std::vector<std::string> argv) {
  ChildRequest request;
  request.argv = std::move(argv);
  request.merge_stderr = true;
  request.timeout = std::chrono::minutes(10);
  return run_child(request);
}

std::string tail_of(const std::string& text) {
  std::string t = text;
  while (!t.empty() && (t.back() == '\n' || t.back() == ' ')) t.pop_back();
  return excerpt(t, 400);
}

// How qemu-img and qemu-io name an image of `site`.
std::string image_name(const std::string& path, const KitSite& site) {
  if (path.rfind("rbd:", 0) == 0 && !site.rbd_options.empty()) return path + ":" + site.rbd_options;
  return path;
}
std::string image_name(const DiskSource& source, const KitSite& site) {
  if (source.type == "network" && source.protocol == "rbd") return image_name("rbd:" + source.name, site);
  return source.path;
}

// Writes `len` bytes of `byte` at `offset`. `format` empty: qemu probes it.
Status write_pattern(const std::string& image, const std::string& format, int byte, std::uint64_t offset,
                     std::uint64_t len) {
  std::vector<std::string> argv = {"qemu-io"};
  if (!format.empty()) argv.insert(argv.end(), {"-f", format});
  char cmd[96];
  std::snprintf(cmd, sizeof cmd, "write -P 0x%02x %llu %llu", byte, static_cast<unsigned long long>(offset),
                static_cast<unsigned long long>(len));
  argv.insert(argv.end(), {"-c", cmd, image});
  EVAC_ASSIGN_OR_RETURN(ChildOutcome out, run_tool(argv));
  if (out.exit_code != 0 || out.stdout_data.find("wrote") == std::string::npos)
    return failed_precondition("qemu-io could not write to " + image + ": " + tail_of(out.stdout_data));
  return Status::ok();
}

// The image's content as a raw file, to compare copies with later.
Status save_content(const std::string& image, const std::string& format, const std::string& to) {
  std::vector<std::string> argv = {"qemu-img", "convert"};
  if (!format.empty()) argv.insert(argv.end(), {"-f", format});
  argv.insert(argv.end(), {"-O", "raw", image, to});
  EVAC_ASSIGN_OR_RETURN(ChildOutcome out, run_tool(argv));
  if (out.exit_code != 0) return failed_precondition("qemu-img could not read " + image + ": " + tail_of(out.stdout_data));
  return Status::ok();
}

// kOk when `image` holds exactly the bytes of the raw file `expected`;
// the first differing offset otherwise.
Status same_content(const std::string& expected, const std::string& image) {
  EVAC_ASSIGN_OR_RETURN(ChildOutcome out, run_tool({"qemu-img", "compare", "-f", "raw", expected, image}));
  if (out.exit_code == 0) return Status::ok();
  if (out.exit_code == 1) return failed_precondition(image + " differs from what it should hold: " + tail_of(out.stdout_data));
  return failed_precondition("qemu-img could not compare " + image + ": " + tail_of(out.stdout_data));
}

// qemu-img info of `image` (format empty: probed).
Result<json> image_info(const std::string& image, const std::string& format) {
  std::vector<std::string> argv = {"qemu-img", "info", "-U", "--output=json"};
  if (!format.empty()) argv.insert(argv.end(), {"-f", format});
  argv.push_back(image);
  EVAC_ASSIGN_OR_RETURN(ChildOutcome out, run_tool(argv));
  json info = parse_json_or_discarded(out.stdout_data);
  if (out.exit_code != 0 || !info.is_object() || !info.value("virtual-size", json()).is_number_unsigned() ||
      !info.value("format", json()).is_string())
    return failed_precondition("qemu-img could not read " + image + ": " + tail_of(out.stdout_data));
  return info;
}

Result<std::uint64_t> virtual_size(const std::string& image, const std::string& format) {
  EVAC_ASSIGN_OR_RETURN(json info, image_info(image, format));
  return info["virtual-size"].get<std::uint64_t>();
}

constexpr std::uint64_t kMinDiskBytes = 8u << 20;

std::string short_id() {
  std::random_device rd;
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08x", rd());
  return buf;
}

std::string uuid4() {
  std::random_device rd;
  std::mt19937_64 rng(rd());
  std::uint64_t a = rng(), b = rng();
  char buf[40];
  std::snprintf(buf, sizeof buf, "%08x-%04x-4%03x-%04x-%012llx", static_cast<unsigned>(a >> 32),
                static_cast<unsigned>((a >> 16) & 0xffff), static_cast<unsigned>(a & 0xfff),
                static_cast<unsigned>(0x8000 | ((b >> 48) & 0x3fff)), static_cast<unsigned long long>(b & 0xffffffffffffULL));
  return buf;
}

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string keys_of(const std::vector<PitDisk>& disks) {
  std::string out;
  for (const auto& d : disks) out += (out.empty() ? "" : ", ") + d.key;
  return out;
}

// ------------------------------------------------------------------- kit ---

class Kit {
 public:
  Kit(const KitConfig& config, const std::function<void(const Check&)>& on_check)
      : config_(config), on_check_(on_check) {}

  KitReport run() {
    if (setup()) sequence();
    return report_;
  }

 private:
  using StepBody = std::function<Status(Check&)>;

  // One check: its outcome from the body's Status (kUnsupported: the engine
  // said it cannot). Returns whether the sequence may go on.
  bool step(const std::string& operation, const std::string& asked, const StepBody& body, bool needed = true) {
    Check check;
    check.operation = operation;
    check.asked = asked;
    Status s = body(check);
    if (s.is_ok()) check.outcome = Check::Outcome::kPassed;
    else if (s.code() == StatusCode::kUnsupported) check.outcome = Check::Outcome::kUnsupported;
    if (!s.is_ok()) check.failure = s.to_string();
    report_.checks.push_back(check);
    if (on_check_) on_check_(check);
    return s.is_ok() || (s.code() == StatusCode::kUnsupported && !needed);
  }

  Result<std::unique_ptr<ReplicationAdapter>> make_engine(const KitSite& site) {
    ReplicationRegistry registry;
    builtin::register_builtin_replicator(registry);
    external::register_external_adapters(registry, site.adapters);
    ReplicationSiteContext context;
    context.site_name = site.name;
    context.state_dir = site.state_dir;
    context.change_tracking = [](const std::string&) -> ChangeTracking* { return nullptr; };
    const std::string storage = site.storage;
    context.storage_pool_folders = [storage]() -> Result<std::vector<std::string>> { return std::vector<std::string>{storage}; };
    for (const auto& a : site.adapters)
      if (a.kind == config_.kind) EVAC_RETURN_IF_ERROR(external::check_adapter_config(a));
    return registry.create(config_.kind, context);
  }

  bool setup() {
    group_ = "evac-kit-" + short_id();
    return step("setup", "make the engine of kind '" + config_.kind + "' at both sites and the disks of group " + group_,
                [&](Check& c) -> Status {
                  for (const auto* dir : {&config_.work_dir, &config_.protected_site.storage,
                                          &config_.recovery_site.storage, &config_.protected_site.state_dir,
                                          &config_.recovery_site.state_dir}) {
                    std::error_code ec;
                    fs::create_directories(*dir, ec);
                    if (ec) return failed_precondition("cannot create " + *dir + ": " + ec.message());
                  }
                  EVAC_ASSIGN_OR_RETURN(protected_, make_engine(config_.protected_site));
                  EVAC_ASSIGN_OR_RETURN(recovery_, make_engine(config_.recovery_site));
                  to_recovery_ = std::make_unique<InProcessPeerLink>(config_.recovery_site.name, recovery_->peer_routes());
                  to_protected_ = std::make_unique<InProcessPeerLink>(config_.protected_site.name, protected_->peer_routes());
                  EVAC_RETURN_IF_ERROR(make_group(c));
                  auto caps = protected_->capabilities();
                  std::string listed;
                  for (auto [name, on] : {std::pair{"points_in_time", caps.points_in_time},
                                          std::pair{"test_copies", caps.test_copies}, std::pair{"reverse", caps.reverse},
                                          std::pair{"change_tracking", caps.change_tracking},
                                          std::pair{"cross_vm_consistency", caps.cross_vm_consistency},
                                          std::pair{"app_quiesce", caps.app_quiesce},
                                          std::pair{"read_only_source", caps.read_only_source}})
                    if (on) listed += (listed.empty() ? "" : ", ") + std::string(name);
                  c.answered = "capabilities: " + (listed.empty() ? "none" : listed);
                  return Status::ok();
                });
  }

  Status make_group(Check& c) {
    VmInfo vm;
    vm.provider = "kit";
    vm.name = group_ + "-vm";
    vm.uuid = uuid4();
    vm.state = PowerState::kShutOff;
    for (const auto& d : config_.disks) {
      DiskInfo disk;
      disk.target = d.target;
      disk.format = d.format;
      disk.bus = "virtio";
      disk.device = "disk";
      disk.source = d.source;
      if (disk.source.type == "file" && disk.source.path.empty()) {
        disk.source.path = config_.protected_site.storage + "/" + group_ + "-" + d.target + ".img";
        EVAC_ASSIGN_OR_RETURN(ChildOutcome out, run_tool({"qemu-img", "create", "-f", d.format, disk.source.path,
                                                          std::to_string(d.size_bytes)}));
        if (out.exit_code != 0) return failed_precondition("cannot create " + disk.source.path + ": " + tail_of(out.stdout_data));
        c.checked.push_back("created " + disk.source.path + " (" + d.format + ", " + std::to_string(d.size_bytes) + " bytes)");
      }
      // The kit writes its contents between 1 and 6 MiB into each disk.
      EVAC_ASSIGN_OR_RETURN(auto size, virtual_size(image_name(disk.source, config_.protected_site), d.format));
      if (size < kMinDiskBytes)
        return invalid_argument("disk " + d.target + " is " + std::to_string(size) + " bytes",
                                "give the kit disks of at least 8 MiB: it writes up to 6 MiB into each");
      disk.path = disk.source.type == "network" ? disk.source.protocol + ":" + disk.source.name : disk.source.path;
      disk.storage_pool = "kit-" + config_.protected_site.name;
      vm.disks.push_back(disk);
    }
    spec_.group = group_;
    spec_.protected_site = config_.protected_site.name;
    spec_.recovery_site = config_.recovery_site.name;
    spec_.vms = {vm};
    spec_.replica_dirs = {{"kit-" + config_.protected_site.name, config_.recovery_site.storage}};
    return Status::ok();
  }

  const VmInfo& vm() const { return spec_.vms.front(); }
  std::string key_of(const DiskInfo& d) const { return vm().uuid + "/" + d.target; }

  // Writes `byte` into every source disk and keeps what each then holds.
  Status write_sources(Check& c, int byte, std::uint64_t offset, const std::string& tag) {
    for (const auto& d : vm().disks) {
      const std::string image = image_name(d.source, config_.protected_site);
      EVAC_RETURN_IF_ERROR(write_pattern(image, d.format, byte, offset, 256 * 1024));
      const std::string saved = config_.work_dir + "/" + group_ + "-" + tag + "-" + d.target + ".raw";
      EVAC_RETURN_IF_ERROR(save_content(image, d.format, saved));
      expected_[tag][key_of(d)] = saved;
    }
    char what[128];
    std::snprintf(what, sizeof what, "wrote 256 KiB of 0x%02x at offset %llu of every source disk (content '%s')", byte,
                  static_cast<unsigned long long>(offset), tag.c_str());
    c.checked.push_back(what);
    return Status::ok();
  }

  // Every disk of `disks` holds the content saved as `tag`.
  Status holds(Check& c, const std::vector<PitDisk>& disks, const std::string& tag, const KitSite& site,
               const std::string& whose) {
    if (disks.size() != vm().disks.size())
      return failed_precondition(whose + " has " + std::to_string(disks.size()) + " disks (" + keys_of(disks) +
                                 "), the group's VM has " + std::to_string(vm().disks.size()));
    for (const auto& d : disks) {
      auto it = expected_[tag].find(d.key);
      if (it == expected_[tag].end()) return failed_precondition(whose + " has disk " + d.key + ", which the group's VM does not have");
      EVAC_RETURN_IF_ERROR(same_content(it->second, image_name(d.path, site)).with_context(whose + ", disk " + d.key));
    }
    c.checked.push_back("every disk of " + whose + " holds exactly the content '" + tag + "' (qemu-img compare)");
    return Status::ok();
  }

  Result<PointInTime> find_pit(ReplicationAdapter& engine, const std::string& id) {
    EVAC_ASSIGN_OR_RETURN(auto pits, engine.list_pits(group_));
    for (const auto& p : pits)
      if (p.id == id) return p;
    return failed_precondition("list_pits does not list point in time " + id);
  }

  Status sync_step(Check& c, const std::string& tag, PointInTime& out) {
    const std::int64_t before = now_ms();
    EVAC_ASSIGN_OR_RETURN(out, protected_->sync_now(spec_, *to_recovery_, nullptr));
    const std::int64_t after = now_ms();
    c.answered = "point in time " + out.id + " of group '" + out.group + "' at " + std::to_string(out.created_at_ms) +
                 " ms, disks " + keys_of(out.disks) + ", " + std::to_string(out.bytes_sent) + " bytes sent";
    if (out.id.empty() || out.group != group_)
      return failed_precondition("the point in time names group '" + out.group + "' and id '" + out.id + "'");
    // An instant the cycle did not run at is a lie about the RPO.
    if (out.created_at_ms < before - 1000 || out.created_at_ms > after + 1000)
      return failed_precondition("its instant " + std::to_string(out.created_at_ms) + " ms is outside the cycle (" +
                                 std::to_string(before) + ".." + std::to_string(after) + " ms)");
    c.checked.push_back("its instant lies within the cycle (" + std::to_string(before) + ".." + std::to_string(after) + " ms)");
    return holds(c, out.disks, tag, config_.recovery_site, "point in time " + out.id);
  }

  void sequence() {
    PointInTime first, second;
    TestCopy copy, live;
    if (!step("discover", "the devices of group " + group_ + " (VM " + vm().name + ", " +
                              std::to_string(vm().disks.size()) + " disks)",
              [&](Check& c) { return check_discover(c); }))
      return;
    if (!step("sync", "one cycle of group " + group_ + " after writing content 'A'", [&](Check& c) -> Status {
          EVAC_RETURN_IF_ERROR(write_sources(c, 0xa1, 1 << 20, "A"));
          return sync_step(c, "A", first);
        }))
      return;
    if (!step("list_pits", "the points in time of group " + group_ + " at site " + config_.recovery_site.name,
              [&](Check& c) { return check_listed(c, first); }))
      return;
    if (step("create_test_copy", "a test copy of " + first.id + " owned by 'evac-kit'",
             [&](Check& c) { return check_test_copy(c, first, copy); }, false) &&
        !copy.id.empty())
      step("drop_test_copy", "drop test copy " + copy.id, [&](Check& c) { return check_drop(c, first, copy); });
    if (!step("sync", "a second cycle after writing content 'B'", [&](Check& c) -> Status {
          EVAC_RETURN_IF_ERROR(write_sources(c, 0xb2, 2 << 20, "B"));
          EVAC_RETURN_IF_ERROR(sync_step(c, "B", second));
          if (second.created_at_ms <= first.created_at_ms) return failed_precondition("its instant is not after the first's");
          EVAC_ASSIGN_OR_RETURN(PointInTime older, find_pit(*recovery_, first.id));
          return holds(c, older.disks, "A", config_.recovery_site, "the older point in time " + first.id);
        }))
      return;
    step("verify", "verify the newest point in time", [&](Check& c) { return check_verify(c, second); }, false);
    step("prepare_failover", "make the sources of group " + group_ + " read-only at " + config_.protected_site.name,
         [&](Check& c) { return check_fenced(c); }, false);
    if (!step("failover", "make " + second.id + " live, owned by 'evac-kit-failover'",
              [&](Check& c) { return check_failover(c, second, live); }))
      return;
    bool reversed = step("reverse", "replicate the live copy back to " + config_.protected_site.name +
                                        " after writing content 'C'",
                         [&](Check& c) { return reverse_step(c, live); }, false);
    step("release", "release the replicas at " + config_.recovery_site.name + " and the sources at " +
                        config_.protected_site.name,
         [&](Check& c) { return check_release(c); });
    if (reversed) (void)protected_->release_replicas(group_);
  }

  Status check_discover(Check& c) {
    EVAC_ASSIGN_OR_RETURN(auto devices, protected_->discover(spec_));
    for (const auto& d : devices)
      c.answered += std::string(c.answered.empty() ? "" : ", ") + d.key() + " (" + std::to_string(d.size_bytes) + " bytes)";
    std::set<std::string> keys;
    for (const auto& d : devices) keys.insert(d.key());
    for (const auto& d : vm().disks) {
      if (!keys.count(key_of(d))) return failed_precondition("disk " + d.target + " is not among the devices");
      EVAC_ASSIGN_OR_RETURN(auto size, virtual_size(image_name(d.source, config_.protected_site), d.format));
      auto dev = std::find_if(devices.begin(), devices.end(), [&](const ReplicatedDevice& x) { return x.key() == key_of(d); });
      if (dev->size_bytes != size)
        return failed_precondition("device " + dev->key() + " is " + std::to_string(dev->size_bytes) + " bytes, its source " +
                                   std::to_string(size));
    }
    if (devices.size() != vm().disks.size()) return failed_precondition("devices listed that the VM does not have");
    c.checked.push_back("every disk listed once, with the size qemu-img reads from its source");
    return Status::ok();
  }

  Status check_listed(Check& c, const PointInTime& first) {
    EVAC_ASSIGN_OR_RETURN(PointInTime listed, find_pit(*recovery_, first.id));
    c.answered = "lists " + listed.id + " with disks " + keys_of(listed.disks);
    if (listed.created_at_ms != first.created_at_ms)
      return failed_precondition("listed at " + std::to_string(listed.created_at_ms) + " ms, made at " +
                                 std::to_string(first.created_at_ms) + " ms");
    return holds(c, listed.disks, "A", config_.recovery_site, "listed point in time " + listed.id);
  }

  Status check_test_copy(Check& c, const PointInTime& first, TestCopy& copy) {
    EVAC_ASSIGN_OR_RETURN(copy, recovery_->create_test_copy(group_, first.id, "evac-kit"));
    c.answered = "copy " + copy.id + " of " + copy.pit_id + ", disks " + keys_of(copy.disks);
    if (copy.pit_id != first.id || copy.live) return failed_precondition("not a test copy of " + first.id);
    EVAC_RETURN_IF_ERROR(holds(c, copy.disks, "A", config_.recovery_site, "test copy " + copy.id));
    EVAC_ASSIGN_OR_RETURN(TestCopy again, recovery_->create_test_copy(group_, first.id, "evac-kit"));
    if (again.id != copy.id) return failed_precondition("asked again for the same owner, it made a second copy " + again.id);
    c.checked.push_back("asked again for the same owner, it answered the same copy");
    for (const auto& d : copy.disks)
      EVAC_RETURN_IF_ERROR(write_pattern(image_name(d.path, config_.recovery_site), "", 0xd4, 4 << 20, 256 * 1024)
                               .with_context("writing to test copy " + copy.id));
    c.checked.push_back("the test copy takes writes");
    EVAC_ASSIGN_OR_RETURN(PointInTime after, find_pit(*recovery_, first.id));
    return holds(c, after.disks, "A", config_.recovery_site, "point in time " + first.id + " after writes to its test copy");
  }

  Status check_drop(Check& c, const PointInTime& first, const TestCopy& copy) {
    EVAC_RETURN_IF_ERROR(recovery_->drop_test_copy(group_, copy.id));
    auto copies = recovery_->list_test_copies(group_);
    if (!copies && copies.status().code() == StatusCode::kUnsupported) {
      c.checked.push_back("list_test_copies is unsupported: the drop is taken on its word");
      return Status::ok();
    }
    if (!copies) return copies.status();
    for (const auto& x : *copies)
      if (x.id == copy.id) return failed_precondition("list_test_copies still lists " + copy.id);
    c.checked.push_back("list_test_copies no longer lists it");
    EVAC_RETURN_IF_ERROR(find_pit(*recovery_, first.id).status());
    c.checked.push_back("point in time " + first.id + " is still there");
    return Status::ok();
  }

  Status check_verify(Check& c, const PointInTime& newest) {
    EVAC_ASSIGN_OR_RETURN(PitVerification v, recovery_->verify_pit(group_, ""));
    std::uint64_t checked = 0, bad = 0;
    for (const auto& d : v.disks) checked += d.blocks_checked, bad += d.blocks_mismatched;
    c.answered = "point in time " + v.pit_id + ": " + std::to_string(checked) + " blocks checked, " + std::to_string(bad) +
                 " mismatched";
    if (v.pit_id != newest.id) return failed_precondition("it verified " + v.pit_id + ", not the newest " + newest.id);
    if (!v.ok()) return failed_precondition("it reports mismatches on an intact point in time");
    c.checked.push_back("the newest, intact point in time verifies clean");
    return Status::ok();
  }

  Status check_fenced(Check& c) {
    EVAC_RETURN_IF_ERROR(protected_->prepare_failover(spec_));
    if (!protected_->capabilities().read_only_source) {
      c.checked.push_back("the engine does not claim read_only_source: no write is tried");
      return Status::ok();
    }
    for (const auto& d : vm().disks)
      if (write_pattern(image_name(d.source, config_.protected_site), d.format, 0xee, 5 << 20, 4096).is_ok())
        return failed_precondition("disk " + d.target + " still takes writes");
    c.checked.push_back("a write to every source disk is refused");
    return Status::ok();
  }

  Status check_failover(Check& c, const PointInTime& pit, TestCopy& live) {
    EVAC_ASSIGN_OR_RETURN(live, recovery_->failover(group_, pit.id, "evac-kit-failover"));
    c.answered = "live copy " + live.id + " of " + live.pit_id + ", disks " + keys_of(live.disks);
    if (!live.live || live.pit_id != pit.id) return failed_precondition("not a live copy of " + pit.id);
    EVAC_RETURN_IF_ERROR(holds(c, live.disks, "B", config_.recovery_site, "live copy " + live.id));
    EVAC_ASSIGN_OR_RETURN(TestCopy again, recovery_->failover(group_, pit.id, "evac-kit-failover"));
    if (again.id != live.id) return failed_precondition("asked again, it made a second live copy " + again.id);
    c.checked.push_back("asked again, it answered the same live copy");
    return Status::ok();
  }

  Status check_release(Check& c) {
    EVAC_ASSIGN_OR_RETURN(ReleasedReplicas r, recovery_->release_replicas(group_));
    c.answered = std::to_string(r.removed_pits.size()) + " points in time removed, " + std::to_string(r.kept_pits.size()) +
                 " kept" + (r.kept_because.empty() ? "" : " (" + r.kept_because + ")");
    auto left = recovery_->list_pits(group_);
    if (left.is_ok() && left->size() > r.kept_pits.size())
      return failed_precondition(std::to_string(left->size()) + " points in time are still listed");
    c.checked.push_back("no point in time is listed but the ones it says it kept");
    EVAC_RETURN_IF_ERROR(protected_->release_source(spec_));
    if (!protected_->capabilities().read_only_source) return Status::ok();
    if (reversed_into_sources_) {
      c.checked.push_back("the sources are the reverse replication's target now (they follow the live copy): "
                          "no write is tried");
      return Status::ok();
    }
    for (const auto& d : vm().disks)
      EVAC_RETURN_IF_ERROR(write_pattern(image_name(d.source, config_.protected_site), d.format, 0xef, 5 << 20, 4096)
                               .with_context("after release_source, disk " + d.target));
    c.checked.push_back("every source disk takes writes again");
    return Status::ok();
  }

  Status reverse_step(Check& c, const TestCopy& live) {
    ReplicationGroupSpec back = spec_;
    back.protected_site = config_.recovery_site.name;
    back.recovery_site = config_.protected_site.name;
    back.replica_dirs = {{"kit-" + config_.recovery_site.name, config_.protected_site.storage}};
    std::map<std::string, std::string> seeds;
    VmInfo& v = back.vms.front();
    for (auto& d : v.disks) {
      auto disk = std::find_if(live.disks.begin(), live.disks.end(), [&](const PitDisk& p) { return p.key == key_of(d); });
      if (disk == live.disks.end()) return failed_precondition("the live copy has no disk " + key_of(d));
      if (d.source.type == "file") seeds[key_of(d)] = d.source.path;
      d.path = disk->path;
      d.source = DiskSource{};
      if (disk->path.rfind("rbd:", 0) == 0) {
        d.source.type = "network";
        d.source.protocol = "rbd";
        d.source.name = disk->path.substr(4);
      } else {
        d.source.path = disk->path;
      }
      EVAC_ASSIGN_OR_RETURN(json info, image_info(image_name(d.source, config_.recovery_site), ""));
      d.format = info["format"].get<std::string>();  // what the engine made the live copy
      d.storage_pool = "kit-" + config_.recovery_site.name;
    }
    EVAC_RETURN_IF_ERROR(protected_->set_seeds(group_, seeds));
    for (const auto& d : v.disks) {
      const std::string image = image_name(d.source, config_.recovery_site);
      EVAC_RETURN_IF_ERROR(write_pattern(image, "", 0xc3, 3 << 20, 256 * 1024));
      const std::string saved = config_.work_dir + "/" + group_ + "-C-" + d.target + ".raw";
      EVAC_RETURN_IF_ERROR(save_content(image, "", saved));
      expected_["C"][key_of(d)] = saved;
    }
    c.checked.push_back("wrote 256 KiB of 0xc3 at offset 3 MiB of every disk of the live copy (content 'C')");
    EVAC_ASSIGN_OR_RETURN(PointInTime back_pit, recovery_->reverse(back, *to_protected_, nullptr));
    c.answered = "point in time " + back_pit.id + " at " + config_.protected_site.name + ", disks " + keys_of(back_pit.disks);
    EVAC_ASSIGN_OR_RETURN(auto pits, protected_->list_pits(group_));
    auto found = std::find_if(pits.begin(), pits.end(), [&](const PointInTime& p) { return p.id == back_pit.id; });
    if (found == pits.end()) return failed_precondition(config_.protected_site.name + " does not list " + back_pit.id);
    // An engine that replicates back into the old source images (Ceph's
    // mirroring) keeps them read-only while they follow the live copy.
    for (const auto& d : found->disks)
      for (const auto& src : vm().disks) {
        const std::string source = image_name(src.source, KitSite{});
        if (d.path == source || d.path.rfind(source + "@", 0) == 0) reversed_into_sources_ = true;
      }
    return holds(c, found->disks, "C", config_.protected_site, "point in time " + back_pit.id + " at " + config_.protected_site.name);
  }

  const KitConfig& config_;
  const std::function<void(const Check&)>& on_check_;
  KitReport report_;
  std::string group_;
  ReplicationGroupSpec spec_;
  std::unique_ptr<ReplicationAdapter> protected_, recovery_;
  std::unique_ptr<InProcessPeerLink> to_recovery_, to_protected_;
  std::map<std::string, std::map<std::string, std::string>> expected_;  // tag -> key -> raw file
  bool reversed_into_sources_ = false;
};

}  // namespace

Result<json> InProcessPeerLink::call(const std::string& method, const std::string& path, const std::optional<json>& body) {
  return dispatch(method, path, body ? body->dump() : std::string());
}

Result<std::string> InProcessPeerLink::call_bytes(const std::string& method, const std::string& path,
                                                  const std::string& body) {
  EVAC_ASSIGN_OR_RETURN(json answer, dispatch(method, path, body));
  if (answer.is_binary()) return std::string(answer.get_binary().begin(), answer.get_binary().end());
  return answer.dump();
}

Result<json> InProcessPeerLink::dispatch(const std::string& method, const std::string& path, const std::string& body) {
  auto split = [](const std::string& text) {
    std::vector<std::string> parts;
    std::stringstream in(text);
    for (std::string part; std::getline(in, part, '/');) parts.push_back(part);
    return parts;
  };
  const auto parts = split(path);
  for (const auto& route : routes_) {
    const auto pattern = split(route.path);
    if (route.method != method || pattern.size() != parts.size()) continue;
    std::vector<std::string> params;
    bool match = true;
    for (std::size_t i = 0; i < parts.size() && match; ++i) {
      if (pattern[i].size() > 2 && pattern[i].front() == '{') params.push_back(parts[i]);
      else match = pattern[i] == parts[i];
    }
    if (match) return route.handle(ReplicationPeerRequest{params, body});
  }
  return not_found("site '" + site_ + "' serves no " + method + " " + path);
}

std::string_view outcome_name(Check::Outcome o) {
  switch (o) {
    case Check::Outcome::kPassed: return "PASS";
    case Check::Outcome::kFailed: return "FAIL";
    case Check::Outcome::kUnsupported: return "UNSUPPORTED";
  }
  return "FAIL";
}

bool KitReport::passed() const {
  return !checks.empty() &&
         std::none_of(checks.begin(), checks.end(), [](const Check& c) { return c.outcome == Check::Outcome::kFailed; });
}

KitReport run_kit(const KitConfig& config, const std::function<void(const Check&)>& on_check) {
  return Kit(config, on_check).run();
}

}  // namespace evac::conformance
