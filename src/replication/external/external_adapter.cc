#include "replication/external/external_adapter.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

#include <spdlog/spdlog.h>

#include "core/json_decode.h"
#include "core/model_json.h"
#include "core/replication_json.h"
#include "core/retention.h"
#include "process/child_process.h"

namespace evac::external {
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr std::size_t kMaxAnswerBytes = std::size_t{16} << 20;

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// PIT ids sort by their instant and never repeat: the adapter names its
// snapshots after them.
std::string new_pit_id(std::int64_t at_ms) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  char suffix[9];
  std::snprintf(suffix, sizeof suffix, "%08x", static_cast<unsigned>(rng()));
  return "pit-" + std::to_string(at_ms) + "-" + suffix;
}

json source_json(const DiskSource& s) {
  return {{"type", s.type}, {"path", s.path}, {"protocol", s.protocol}, {"name", s.name}};
}

json devices_json(const std::vector<ReplicatedDevice>& devices) {
  json out = json::array();
  for (const auto& d : devices)
    out.push_back({{"key", d.key()},
                   {"vm_uuid", d.vm_uuid},
                   {"disk", d.disk},
                   {"source", source_json(d.source)},
                   {"format", d.format},
                   {"size_bytes", d.size_bytes}});
  return out;
}

// The devices a paired site sends (await, prepare-reverse), decoded
// strictly and written back as the adapter receives them.
Result<json> peer_devices(const json& list) {
  json devices = json::array();
  for (const json& item : list) {
    auto d = JsonFields::of(item, "a device");
    if (!d) return d.status();
    auto key = d->required_text("key", kMaxDeviceKeyLength);
    auto vm_uuid = d->required_text("vm_uuid", kMaxIdLength);
    auto disk = d->required_text("disk", kMaxIdLength);
    const json* source = d->value("source");
    auto format = d->text("format", 64);
    auto size = d->integer_as<std::uint64_t>("size_bytes", 0, kMaxPeerBytes);
    for (const Status& s : {key.status(), vm_uuid.status(), disk.status(), format.status(), size.status(), d->finish()})
      if (!s) return s;
    if (!source) return d->missing("source");
    EVAC_ASSIGN_OR_RETURN(DiskSource src, strict_disk_source(*source));
    devices.push_back({{"key", *key},
                       {"vm_uuid", *vm_uuid},
                       {"disk", *disk},
                       {"source", source_json(src)},
                       {"format", format->value_or("")},
                       {"size_bytes", size->value_or(0)}});
  }
  return devices;
}

// The copy an answer {"copy": {...}} holds (create_test_copy, failover).
Result<TestCopy> copy_of_answer(const json& answer, const std::string& what) {
  auto f = JsonFields::of(answer, "the answer");
  if (!f) return malformed_answer(f.status()).with_context(what);
  const json* copy = f->value("copy");
  if (Status s = f->finish(); !s) return malformed_answer(s).with_context(what);
  if (!copy) return malformed_answer(f->missing("copy")).with_context(what);
  auto decoded = test_copy_from_json(*copy);
  if (!decoded) return decoded.status().with_context(what);
  return decoded;
}

// An operation that answers nothing but success: its result must be {}.
Status expect_empty(const Result<json>& result, const std::string& what) {
  if (!result) return result.status();
  auto f = JsonFields::of(*result, what);
  if (!f) return malformed_answer(f.status());
  if (Status s = f->finish(); !s) return malformed_answer(s);
  return Status::ok();
}

Result<std::vector<PointInTime>> pits_of(const json& result, const std::string& group) {
  auto f = JsonFields::of(result, "the points in time");
  if (!f) return f.status();
  const json* pits = f->value("pits");
  EVAC_RETURN_IF_ERROR(f->finish());
  if (!pits) return f->missing("pits");
  EVAC_ASSIGN_OR_RETURN(auto out, pits_from_json(*pits));
  for (const auto& p : out)
    if (p.group != group)
      return invalid_argument("point in time " + excerpt(p.id) + " is of group " + excerpt(p.group) + ", not '" + group + "'");
  std::sort(out.begin(), out.end(), [](const PointInTime& a, const PointInTime& b) { return a.created_at_ms < b.created_at_ms; });
  return out;
}

// The group's running VMs stand paused for the adapter's snapshot: one
// instant for all of them. A journal of who is paused outlives a crash of
// evacd, so the next start resumes them.
class GroupPause {
 public:
  GroupPause(const ChangeTrackingLookup& lookup, std::string journal) : lookup_(lookup), journal_(std::move(journal)) {}
  ~GroupPause() { resume(); }

  // Pauses every running VM of `spec` whose hypervisor can; the ones that
  // cannot are named in warnings (their disks are crash-consistent on
  // their own, not at the group's instant).
  Status pause(const ReplicationGroupSpec& spec, std::vector<std::string>& warnings) {
    std::vector<std::pair<const VmInfo*, ChangeTracking*>> running;
    json journal = json::array();
    for (const auto& vm : spec.vms) {
      if (vm.state != PowerState::kRunning) continue;
      ChangeTracking* ct = lookup_ ? lookup_(vm.provider) : nullptr;
      if (!ct) {
        warnings.push_back("VM '" + vm.name + "' ran unpaused: its provider '" + vm.provider +
                           "' cannot pause it, so its disks are consistent on their own, not at the group's instant");
        continue;
      }
      running.emplace_back(&vm, ct);
      journal.push_back({{"uuid", vm.uuid}, {"provider", vm.provider}});
    }
    if (running.empty()) return Status::ok();
    EVAC_RETURN_IF_ERROR(write_journal(journal));
    started_ = std::chrono::steady_clock::now();
    for (auto [vm, ct] : running) {
      if (Status s = ct->pause(vm->uuid); !s) return s.with_context("pausing VM '" + vm->name + "' for the group's instant");
      paused_.emplace_back(vm->uuid, ct);
    }
    return Status::ok();
  }

  // Resumes what it paused (every one, even when one fails); the pause's length in µs.
  std::uint64_t resume() {
    if (paused_.empty()) return 0;
    for (auto& [uuid, ct] : paused_)
      if (Status s = ct->resume(uuid); !s) spdlog::error("resuming VM {} after its snapshot: {}", uuid, s.to_string());
    paused_.clear();
    std::error_code ec;
    fs::remove(journal_, ec);
    return static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - started_).count());
  }

 private:
  Status write_journal(const json& vms) {
    std::error_code ec;
    fs::create_directories(fs::path(journal_).parent_path(), ec);
    std::ofstream out(journal_, std::ios::trunc);
    out << vms.dump();
    out.flush();
    if (!out)
      return failed_precondition("cannot write " + journal_ + " before pausing the group's VMs",
                                 "check that evacd's state_dir is writable and not full");
    return Status::ok();
  }

  const ChangeTrackingLookup& lookup_;
  std::string journal_;
  std::vector<std::pair<std::string, ChangeTracking*>> paused_;
  std::chrono::steady_clock::time_point started_;
};

// Resumes the VMs a cycle cut short by a crash left paused.
void resume_after_crash(const std::string& folder, const ChangeTrackingLookup& lookup) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(folder, ec)) {
    if (entry.path().extension() != ".paused") continue;
    std::ifstream in(entry.path());
    std::stringstream text;
    text << in.rdbuf();
    json vms = parse_json_or_discarded(text.str());
    for (const json& vm : vms.is_array() ? vms : json::array()) {
      if (!vm.is_object() || !vm.value("uuid", json()).is_string() || !vm.value("provider", json()).is_string()) continue;
      ChangeTracking* ct = lookup ? lookup(vm["provider"].get<std::string>()) : nullptr;
      const std::string uuid = vm["uuid"];
      if (!ct) continue;
      auto paused = ct->is_paused(uuid);
      if (paused.is_ok() && *paused) {
        Status s = ct->resume(uuid);
        spdlog::warn("resumed VM {}, left paused by a snapshot an evacd crash cut short: {}", uuid, s.to_string());
      }
    }
    fs::remove(entry.path(), ec);
  }
}

}  // namespace

std::chrono::seconds timeout_of(const ExternalAdapterConfig& config, const std::string& operation) {
  auto it = config.timeouts.find(operation);
  return it == config.timeouts.end() ? config.timeout : it->second;
}

Status check_adapter_config(const ExternalAdapterConfig& config) {
  const std::string what = "replication adapter '" + config.kind + "'";
  for (const auto& [operation, limit] : config.timeouts)
    if (!is_operation(operation)) {
      std::string known;
      for (const char* op : kOperations) known += (known.empty() ? "" : ", ") + std::string(op);
      return invalid_argument(what + ": timeouts names operation '" + excerpt(operation) + "', which protocol " +
                                  std::to_string(kProtocolVersion) + " does not have",
                              "operations: " + known);
    }
  if (config.command.empty() || ::access(config.command[0].c_str(), X_OK) != 0)
    return invalid_argument(what + ": its command " + (config.command.empty() ? std::string("is empty") : "'" + config.command[0] + "' is not an executable file here"),
                            "install the adapter on this host, or correct command in evacd.yaml");
  return Status::ok();
}

ExternalAdapter::ExternalAdapter(ExternalAdapterConfig config, const ReplicationSiteContext& site)
    : config_(std::move(config)), site_(site) {
  invocation_site_.name = site.site_name;
  invocation_site_.state_dir = site.state_dir + "/adapters/" + config_.kind;
}

Result<std::unique_ptr<ExternalAdapter>> ExternalAdapter::start(ExternalAdapterConfig config,
                                                                const ReplicationSiteContext& site) {
  std::unique_ptr<ExternalAdapter> adapter(new ExternalAdapter(std::move(config), site));
  std::error_code ec;
  fs::create_directories(adapter->invocation_site_.state_dir, ec);
  if (ec)
    return failed_precondition("cannot create " + adapter->invocation_site_.state_dir + ": " + ec.message(),
                               "check that evacd's state_dir is writable");
  resume_after_crash(adapter->invocation_site_.state_dir, site.change_tracking);
  EVAC_ASSIGN_OR_RETURN(json answer, adapter->invoke("capabilities", json::object()));
  auto caps = capabilities_from_json(answer);
  if (!caps)
    return caps.status().with_context(adapter->named("capabilities"));
  adapter->capabilities_ = *caps;
  return adapter;
}

std::string ExternalAdapter::named(const std::string& operation) const {
  return "replication adapter '" + config_.kind + "' (" + operation + ")";
}

Result<json> ExternalAdapter::invoke(const std::string& operation, json request, const ProgressCallback& progress,
                                     const ReplicationPeerLink* link, std::optional<std::chrono::seconds> timeout) {
  const std::string what = named(operation);
  ChildRequest child;
  child.argv = config_.command;
  child.stdin_data = envelope(operation, config_.kind, invocation_site_, config_.settings, std::move(request)).dump();
  child.timeout = timeout.value_or(timeout_of(config_, operation));
  child.max_stdout = kMaxAnswerBytes;
  std::string last_words;  // the adapter's last plain stderr line, for the error
  child.on_stderr_line = [&](std::string_view line) {
    StderrReport report = decode_stderr_line(line);
    if (report.progress) {
      if (progress) progress(*report.progress);
    } else if (report.log) {
      auto level = spdlog::level::from_str(report.log->first);
      spdlog::log(level == spdlog::level::off ? spdlog::level::info : level, "{}: {}", what, excerpt(report.log->second, 2000));
      if (level >= spdlog::level::warn) last_words = excerpt(report.log->second, 500);
    } else if (!line.empty()) {
      spdlog::debug("{}: {}", what, excerpt(line, 2000));
      last_words = excerpt(line, 500);
    }
  };
  if (link) child.should_stop = [link] { return link->stopping(); };
  auto outcome = run_child(child);
  if (!outcome) return outcome.status().with_context(what);
  const std::string said = last_words.empty() ? "" : "; it said: " + last_words;
  if (outcome->timed_out)
    return unavailable(what + " " + outcome->describe_end(child.timeout) + " (with its process group)" + said,
                       "check the adapter's backend; if the operation needs longer, raise timeouts." + operation +
                           " of adapter '" + config_.kind + "' in evacd.yaml");
  if (!outcome->exited_cleanly())
    return failed_precondition(what + " " + outcome->describe_end(child.timeout) + said,
                               "an adapter exits 0 and reports failures as an \"error\" answer (docs/adapters.md); "
                               "look at its log and its backend");
  auto answer = decode_answer(outcome->stdout_data);
  if (!answer) return answer.status().with_context(what);
  return answer;
}

Result<std::vector<ReplicatedDevice>> ExternalAdapter::discover(const ReplicationGroupSpec& spec) {
  EVAC_ASSIGN_OR_RETURN(json answer, invoke("discover", {{"group", to_json(spec)}}));
  auto devices = devices_from_json(answer, spec);
  if (!devices) return devices.status().with_context(named("discover"));
  return devices;
}

Result<PointInTime> ExternalAdapter::sync_now(const ReplicationGroupSpec& spec, ReplicationPeerLink& recovery_site,
                                              const ProgressCallback& progress) {
  return cycle(spec, recovery_site, progress, false);
}

Result<PointInTime> ExternalAdapter::reverse(const ReplicationGroupSpec& spec, ReplicationPeerLink& recovery_site,
                                             const ProgressCallback& progress) {
  return cycle(spec, recovery_site, progress, true);
}

Result<PointInTime> ExternalAdapter::cycle(const ReplicationGroupSpec& spec, ReplicationPeerLink& recovery_site,
                                           const ProgressCallback& progress, bool reverse) {
  EVAC_ASSIGN_OR_RETURN(auto devices, discover(spec));
  if (reverse) {
    // The former protected site gives up its copies as sources and follows
    // this site's from now on (for Ceph: demote, resync from here).
    json body = {{"devices", devices_json(devices)}};
    auto prepared = recovery_site.call("POST", spec.group + "/prepare-reverse", body);
    if (!prepared) return prepared.status().with_context("preparing site '" + recovery_site.site() + "' to follow this one");
  }
  PointInTime pit;
  pit.group = spec.group;
  SyncProgress state;
  {
    GroupPause pause(site_.change_tracking, invocation_site_.state_dir + "/" + spec.group + ".paused");
    EVAC_RETURN_IF_ERROR(pause.pause(spec, pit.warnings));
    pit.created_at_ms = now_ms();
    pit.created_at = pit.created_at_ms / 1000;
    pit.id = new_pit_id(pit.created_at_ms);
    json request = {{"group", to_json(spec)},
                    {"devices", devices_json(devices)},
                    {"pit", {{"id", pit.id}, {"created_at_ms", pit.created_at_ms}}}};
    auto snapshot = invoke("snapshot", std::move(request), nullptr, &recovery_site);
    state.paused_us = pause.resume();
    EVAC_RETURN_IF_ERROR(expect_empty(snapshot, "the answer to snapshot"));
  }
  for (const auto& d : devices) state.bytes_total += d.size_bytes;
  if (progress) progress(state);

  auto report = [&](const SyncProgress& p) {
    SyncProgress merged = p;
    merged.paused_us = state.paused_us;
    if (merged.bytes_total == 0) merged.bytes_total = state.bytes_total;
    state = merged;
    if (progress) progress(state);
  };
  json ship_request = {{"group", to_json(spec)},
                       {"devices", devices_json(devices)},
                       {"pit", {{"id", pit.id}, {"created_at_ms", pit.created_at_ms}}},
                       {"reverse", reverse}};
  EVAC_ASSIGN_OR_RETURN(json shipped, invoke("ship", std::move(ship_request), report, &recovery_site));
  {
    auto f = JsonFields::of(shipped, "the answer to ship");
    if (!f) return malformed_answer(f.status()).with_context(named("ship"));
    auto sent = f->integer_as<std::uint64_t>("bytes_sent", 0, kMaxPeerBytes);
    if (Status s = !sent ? sent.status() : f->finish(); !s)
      return malformed_answer(s).with_context(named("ship"));
    pit.bytes_sent = sent->value_or(0);
  }
  EVAC_ASSIGN_OR_RETURN(PointInTime complete, await_at_recovery_site(spec, devices, pit, recovery_site, report));
  complete.bytes_sent = pit.bytes_sent;
  complete.warnings = pit.warnings;
  complete.cycle_id = pit.id;
  if (Status s = expire(spec, recovery_site, complete); !s)
    complete.warnings.push_back("older points in time were not expired: " + s.to_string());
  return complete;
}

Result<PointInTime> ExternalAdapter::await_at_recovery_site(const ReplicationGroupSpec& spec,
                                                            const std::vector<ReplicatedDevice>& devices,
                                                            const PointInTime& shipped, ReplicationPeerLink& recovery_site,
                                                            const ProgressCallback& progress) {
  const auto deadline = std::chrono::steady_clock::now() + config_.await_limit;
  const std::string body =
      json{{"pit", {{"id", shipped.id}, {"created_at_ms", shipped.created_at_ms}}}, {"devices", devices_json(devices)}}.dump();
  const std::string where = "site '" + recovery_site.site() + "'";
  for (;;) {
    auto answer = recovery_site.call_bytes("POST", spec.group + "/await", body);
    if (!answer) return answer.status().with_context("waiting for point in time " + shipped.id + " at " + where);
    auto parsed = parse_json(*answer, "the answer of " + where);
    if (!parsed) return parsed.status();
    auto decoded = await_answer_from_json(*parsed);
    if (!decoded) return decoded.status().with_context("the answer of " + where + " to await");
    if (decoded->progress && progress) progress(*decoded->progress);
    if (decoded->complete) {
      PointInTime pit = std::move(*decoded->pit);
      if (pit.id != shipped.id || pit.group != spec.group)
        return failed_precondition(where + " answered point in time " + excerpt(pit.id) + " of group " +
                                       excerpt(pit.group) + " when asked for " + shipped.id + " of '" + spec.group + "'",
                                   "the adapter at " + where + " mixes up its snapshots: run `evac adapter test` on it");
      return pit;
    }
    if (recovery_site.stopping())
      return unavailable("evacd is shutting down: the cycle was aborted", "the next cycle starts over");
    if (std::chrono::steady_clock::now() >= deadline)
      return unavailable("point in time " + shipped.id + " of group '" + spec.group + "' was not complete at " + where +
                             " within " + std::to_string(config_.await_limit.count()) + " s",
                         "check the replication between the two sites' storage (for Ceph: rbd-mirror at " + where +
                             "), or raise await_limit of adapter '" + config_.kind + "'");
  }
}

Status ExternalAdapter::expire(const ReplicationGroupSpec& spec, ReplicationPeerLink& recovery_site,
                               const PointInTime& newest) {
  EVAC_ASSIGN_OR_RETURN(json listing, recovery_site.call("GET", spec.group + "/pits", std::nullopt));
  auto f = JsonFields::of(listing, "the points in time of site '" + recovery_site.site() + "'");
  if (!f) return f.status();
  const json* pits_field = f->value("pits");
  auto pinned_ids = f->text_list("pinned", kMaxListItems, kMaxIdLength);
  if (Status s = !pinned_ids ? pinned_ids.status() : f->finish(); !s) return s;
  if (!pits_field) return f->missing("pits");
  EVAC_ASSIGN_OR_RETURN(auto pits, pits_from_json(*pits_field));
  std::sort(pits.begin(), pits.end(), [](const PointInTime& a, const PointInTime& b) { return a.created_at_ms < b.created_at_ms; });
  std::set<std::string> keep = kept_by(pits, spec.retention);
  keep.insert(newest.id);
  for (const auto& id : pinned_ids->value_or(std::vector<std::string>{})) keep.insert(id);
  json expired = json::array();
  for (const auto& p : pits)
    if (!keep.count(p.id)) expired.push_back(p.id);
  if (expired.empty()) return Status::ok();
  return expect_empty(invoke("expire_pits", {{"group", to_json(spec)}, {"pit_ids", expired}}),
                      "the answer to expire_pits");
}

Result<json> ExternalAdapter::pits_with_pins(const std::string& group) {
  EVAC_ASSIGN_OR_RETURN(auto pits, list_pits(group));
  json pinned = json::array();
  auto copies = list_test_copies(group);
  if (copies.is_ok()) {
    for (const auto& c : *copies) pinned.push_back(c.pit_id);
  } else if (copies.status().code() != StatusCode::kUnsupported) {
    return copies.status();
  }
  return json{{"pits", to_json(pits)}, {"pinned", pinned}};
}

Result<json> ExternalAdapter::handle_await(const ReplicationPeerRequest& r) {
  const std::string& group = r.params.at(0);
  EVAC_ASSIGN_OR_RETURN(json body, parse_json(r.body, "the await request"));
  auto f = JsonFields::of(body, "the await request");
  if (!f) return f.status();
  const json* pit = f->value("pit");
  auto devices = f->required_list("devices");
  if (Status s = !devices ? devices.status() : f->finish(); !s) return s;
  if (!pit) return f->missing("pit");
  auto p = JsonFields::of(*pit, "the awaited point in time");
  if (!p) return p.status();
  auto id = p->required_text("id", kMaxIdLength);
  auto at = p->required(p->integer("created_at_ms", 0, kMaxUnixMillis), "created_at_ms");
  if (Status s = !id ? id.status() : !at ? at.status() : p->finish(); !s) return s;
  EVAC_ASSIGN_OR_RETURN(json checked_devices, peer_devices(**devices));
  json request = {{"group", group},
                  {"devices", std::move(checked_devices)},
                  {"pit", {{"id", *id}, {"created_at_ms", *at}}},
                  {"wait_seconds", kAwaitRound.count()}};
  const std::string what = named("await_pit");
  EVAC_ASSIGN_OR_RETURN(json answer, invoke("await_pit", std::move(request), nullptr, nullptr,
                                            std::min(timeout_of(config_, "await_pit"), kAwaitRound + std::chrono::seconds(60))));
  auto decoded = await_answer_from_json(answer);
  if (!decoded) return decoded.status().with_context(what);
  json out = {{"complete", decoded->complete}};
  if (decoded->pit) {
    if (decoded->pit->id != *id || decoded->pit->group != group)
      return failed_precondition(what + " answered point in time " + excerpt(decoded->pit->id) + " of group " +
                                     excerpt(decoded->pit->group) + " when asked for " + *id + " of '" + group + "'",
                                 "fix the adapter: run `evac adapter test` on it");
    out["pit"] = to_json(*decoded->pit);
  }
  if (decoded->progress)
    out["progress"] = {{"bytes_total", decoded->progress->bytes_total},
                       {"bytes_scanned", decoded->progress->bytes_scanned},
                       {"bytes_sent", decoded->progress->bytes_sent}};
  return out;
}

Result<json> ExternalAdapter::handle_prepare_reverse(const ReplicationPeerRequest& r) {
  EVAC_ASSIGN_OR_RETURN(json body, parse_json(r.body, "the prepare-reverse request"));
  auto f = JsonFields::of(body, "the prepare-reverse request");
  if (!f) return f.status();
  auto list = f->required_list("devices");
  if (Status s = !list ? list.status() : f->finish(); !s) return s;
  EVAC_ASSIGN_OR_RETURN(json devices, peer_devices(**list));
  EVAC_RETURN_IF_ERROR(expect_empty(invoke("prepare_reverse", {{"group", r.params.at(0)}, {"devices", devices}}),
                                    "the answer to prepare_reverse"));
  return json::object();
}

std::vector<ReplicationPeerRoute> ExternalAdapter::peer_routes() {
  return {
      {"POST", "{group}/await", "waits (a while) for a shipped point in time to be complete here", true, false,
       [this](const ReplicationPeerRequest& r) { return handle_await(r); }},
      {"GET", "{group}/pits", "the points in time kept here, and those a copy pins", false, false,
       [this](const ReplicationPeerRequest& r) { return pits_with_pins(r.params.at(0)); }},
      {"POST", "{group}/prepare-reverse", "makes this site's copies follow the paired site's (reprotect)", true, false,
       [this](const ReplicationPeerRequest& r) { return handle_prepare_reverse(r); }},
  };
}

Result<std::vector<PointInTime>> ExternalAdapter::list_pits(const std::string& group) {
  EVAC_ASSIGN_OR_RETURN(json answer, invoke("list_pits", {{"group", group}}));
  auto pits = pits_of(answer, group);
  if (!pits) return malformed_answer(pits.status()).with_context(named("list_pits"));
  return pits;
}

Result<TestCopy> ExternalAdapter::create_test_copy(const std::string& group, const std::string& pit_id,
                                                   const std::string& owner) {
  EVAC_ASSIGN_OR_RETURN(json answer, invoke("create_test_copy", {{"group", group}, {"pit_id", pit_id}, {"owner", owner}}));
  const std::string what = named("create_test_copy");
  EVAC_ASSIGN_OR_RETURN(TestCopy copy, copy_of_answer(answer, what));
  const TestCopy* decoded = &copy;
  if (decoded->pit_id != pit_id || decoded->live || decoded->owner != owner)
    return failed_precondition(what + ": it answered copy " + excerpt(decoded->id) + " of point in time " +
                                   excerpt(decoded->pit_id) + (decoded->live ? " (live)" : "") + " owned by " +
                                   excerpt(decoded->owner) + ", when asked for a test copy of " + pit_id +
                                   " owned by '" + owner + "'",
                               "fix the adapter: run `evac adapter test` on it");
  return copy;
}

Status ExternalAdapter::drop_test_copy(const std::string& group, const std::string& test_copy_id) {
  return expect_empty(invoke("drop_test_copy", {{"group", group}, {"copy_id", test_copy_id}}), "the answer to drop_test_copy");
}

Result<std::vector<TestCopy>> ExternalAdapter::list_test_copies(const std::string& group) {
  EVAC_ASSIGN_OR_RETURN(json answer, invoke("list_test_copies", {{"group", group}}));
  auto copies = test_copies_from_json(answer);
  if (!copies) return copies.status().with_context(named("list_test_copies"));
  return copies;
}

Status ExternalAdapter::prepare_failover(const ReplicationGroupSpec& spec) {
  return expect_empty(invoke("prepare_failover", {{"group", to_json(spec)}}), "the answer to prepare_failover");
}

Status ExternalAdapter::release_source(const ReplicationGroupSpec& spec) {
  return expect_empty(invoke("release_source", {{"group", to_json(spec)}}), "the answer to release_source");
}

Status ExternalAdapter::check_read_only_source(const ReplicationGroupSpec& spec) {
  return expect_empty(invoke("check_read_only_source", {{"group", to_json(spec)}}), "the answer to check_read_only_source");
}

Result<TestCopy> ExternalAdapter::failover(const std::string& group, const std::string& pit_id, const std::string& owner) {
  EVAC_ASSIGN_OR_RETURN(json answer, invoke("failover", {{"group", group}, {"pit_id", pit_id}, {"owner", owner}}));
  const std::string what = named("failover");
  EVAC_ASSIGN_OR_RETURN(TestCopy copy, copy_of_answer(answer, what));
  const TestCopy* decoded = &copy;
  if (!decoded->live || (!pit_id.empty() && decoded->pit_id != pit_id))
    return failed_precondition(what + ": it answered copy " + excerpt(decoded->id) + " of point in time " +
                                   excerpt(decoded->pit_id) + (decoded->live ? "" : ", not live") +
                                   " when asked to make " + (pit_id.empty() ? "the newest" : pit_id) + " live",
                               "fix the adapter: run `evac adapter test` on it");
  return copy;
}

Result<ReleasedReplicas> ExternalAdapter::release_replicas(const std::string& group) {
  EVAC_ASSIGN_OR_RETURN(json answer, invoke("release_replicas", {{"group", group}}));
  auto released = released_from_json(answer);
  if (!released) return released.status().with_context(named("release_replicas"));
  return released;
}

Result<PitVerification> ExternalAdapter::verify_pit(const std::string& group, const std::string& pit_id) {
  EVAC_ASSIGN_OR_RETURN(json answer, invoke("verify", {{"group", group}, {"pit_id", pit_id}}));
  auto verified = verification_from_json(answer);
  if (!verified) return verified.status().with_context(named("verify"));
  if (verified->group != group || (!pit_id.empty() && verified->pit_id != pit_id))
    return failed_precondition(named("verify") + " answered for point in time " +
                                   excerpt(verified->pit_id) + " of group " + excerpt(verified->group),
                               "fix the adapter: run `evac adapter test` on it");
  return verified;
}

void register_external_adapters(ReplicationRegistry& registry, const std::vector<ExternalAdapterConfig>& adapters) {
  for (const auto& config : adapters)
    registry.add(config.kind, [config](const ReplicationSiteContext& site) -> Result<std::unique_ptr<ReplicationAdapter>> {
      EVAC_ASSIGN_OR_RETURN(auto adapter, ExternalAdapter::start(config, site));
      return std::unique_ptr<ReplicationAdapter>(std::move(adapter));
    });
}

}  // namespace evac::external
