#include "replication/external/adapter_protocol.h"

#include <algorithm>
#include <set>

#include "core/json_decode.h"
#include "core/model_json.h"
#include "core/replication_json.h"

namespace evac::external {
using nlohmann::json;

namespace {

// An adapter's answer is read whole into memory: 16 MiB holds the PITs and
// copies of any group many times over.
constexpr std::size_t kMaxListed = 100000;

Status first_error(std::initializer_list<Status> statuses) {
  for (const Status& s : statuses)
    if (!s) return s;
  return Status::ok();
}

}  // namespace

Status malformed_answer(const Status& cause) {
  return failed_precondition("its answer is malformed: " + cause.message(),
                             "fix the adapter so that it answers as docs/adapters.md says (protocol " +
                                 std::to_string(kProtocolVersion) + ")");
}

namespace {

Status malformed(const Status& cause) { return malformed_answer(cause); }

Result<std::vector<std::string>> id_list(JsonFields& f, std::string_view key) {
  EVAC_ASSIGN_OR_RETURN(auto list, f.text_list(key, kMaxListed, kMaxTextLength));
  return list.value_or(std::vector<std::string>{});
}

}  // namespace

bool is_operation(std::string_view name) {
  return std::any_of(std::begin(kOperations), std::end(kOperations), [&](const char* op) { return name == op; });
}

json envelope(std::string_view operation, std::string_view kind, const InvocationSite& site, const json& settings,
              json request) {
  return {{"protocol", kProtocolVersion},
          {"operation", operation},
          {"kind", kind},
          {"site", {{"name", site.name}, {"state_dir", site.state_dir}}},
          {"settings", settings},
          {"request", std::move(request)}};
}

Result<json> decode_answer(std::string_view stdout_text) {
  if (stdout_text.find_first_not_of(" \t\r\n") == std::string_view::npos)
    return failed_precondition("it printed no answer on stdout",
                               "an adapter prints exactly one JSON answer on stdout, even for an error (docs/adapters.md)");
  auto parsed = parse_json(stdout_text, "its answer on stdout");
  if (!parsed) return malformed(parsed.status());
  auto f = JsonFields::of(*parsed, "the answer");
  if (!f) return malformed(f.status());
  auto protocol = f->required(f->integer("protocol", 0, 1000000), "protocol");
  const json* result = f->value("result");
  const json* error = f->value("error");
  if (Status s = first_error({protocol.status(), f->finish()}); !s) return malformed(s);
  if (*protocol != kProtocolVersion)
    return failed_precondition("it speaks protocol " + std::to_string(*protocol) + ", this evac speaks protocol " +
                                   std::to_string(kProtocolVersion),
                               "install the version of the adapter made for this evac");
  if ((result == nullptr) == (error == nullptr))
    return malformed(invalid_argument("the answer has " + std::string(result ? "both \"result\" and \"error\"" : "neither \"result\" nor \"error\"")));
  if (result) {
    if (!result->is_object()) return malformed(invalid_argument("\"result\" is not an object"));
    return *result;
  }
  auto e = JsonFields::of(*error, "the answer's \"error\"");
  if (!e) return malformed(e.status());
  auto code = e->required_text("code", 64);
  auto message = e->required_text("message");
  auto action = e->text("action");
  if (Status s = first_error({code.status(), message.status(), action.status(), e->finish()}); !s) return malformed(s);
  auto status_code = status_code_from_name(*code);
  if (!status_code || *status_code == StatusCode::kOk)
    return malformed(invalid_argument("the answer's \"error\": code " + excerpt(*code) +
                                      " is not one of invalid_argument, not_found, already_exists, "
                                      "failed_precondition, unavailable, unsupported, internal"));
  return Status(*status_code, *message, action->value_or(""));
}

StderrReport decode_stderr_line(std::string_view line) {
  StderrReport out;
  if (line.empty() || line.front() != '{') return out;
  json j = parse_json_or_discarded(line);
  if (!j.is_object() || j.size() != 1) return out;
  if (auto p = j.find("progress"); p != j.end()) {
    if (auto progress = progress_from_json(*p)) out.progress = *progress;
  } else if (auto l = j.find("log"); l != j.end() && l->is_object()) {
    auto f = JsonFields::of(*l, "a log line");
    if (!f) return out;
    auto level = f->text("level", 16);
    auto message = f->required_text("message");
    if (first_error({level.status(), message.status(), f->finish()}))
      out.log = std::pair{level->value_or("info"), *message};
  }
  return out;
}

json to_json(const ReplicationGroupSpec& spec) {
  json vms = json::array();
  for (const auto& vm : spec.vms) vms.push_back(vm);
  return {{"group", spec.group},
          {"protected_site", spec.protected_site},
          {"recovery_site", spec.recovery_site},
          {"vms", vms},
          {"replica_dirs", spec.replica_dirs},
          {"retention",
           {{"keep_last", spec.retention.keep_last},
            {"keep_hourly", spec.retention.keep_hourly},
            {"keep_daily", spec.retention.keep_daily}}},
          {"full_read", spec.full_read}};
}

json to_json(const TestCopy& copy) {
  json disks = json::array();
  for (const auto& d : copy.disks) disks.push_back({{"key", d.key}, {"path", d.path}, {"size_bytes", d.size_bytes}});
  return {{"id", copy.id}, {"pit_id", copy.pit_id}, {"disks", disks}, {"owner", copy.owner}, {"live", copy.live}};
}

Result<ReplicationCapabilities> capabilities_from_json(const json& result) {
  auto f = JsonFields::of(result, "the capabilities");
  if (!f) return malformed(f.status());
  const json* caps = f->value("capabilities");
  auto version = f->text("adapter_version", 256);
  if (Status s = first_error({version.status(), f->finish()}); !s) return malformed(s);
  if (!caps) return malformed(f->missing("capabilities"));
  auto c = JsonFields::of(*caps, "\"capabilities\"");
  if (!c) return malformed(c.status());
  ReplicationCapabilities out;
  std::pair<const char*, bool*> fields[] = {{"points_in_time", &out.points_in_time},
                                            {"test_copies", &out.test_copies},
                                            {"reverse", &out.reverse},
                                            {"change_tracking", &out.change_tracking},
                                            {"cross_vm_consistency", &out.cross_vm_consistency},
                                            {"app_quiesce", &out.app_quiesce},
                                            {"read_only_source", &out.read_only_source}};
  for (auto [key, target] : fields) {
    auto v = c->boolean(key);
    if (!v) return malformed(v.status());
    *target = v->value_or(false);
  }
  if (Status s = c->finish(); !s) return malformed(s);
  return out;
}

Result<std::vector<ReplicatedDevice>> devices_from_json(const json& result, const ReplicationGroupSpec& spec) {
  auto f = JsonFields::of(result, "the discovered devices");
  if (!f) return malformed(f.status());
  auto list = f->required_list("devices", kMaxListed);
  if (Status s = first_error({list.status(), f->finish()}); !s) return malformed(s);
  std::vector<ReplicatedDevice> out;
  std::set<std::string> seen;
  for (const json& item : **list) {
    auto d = JsonFields::of(item, "a device");
    if (!d) return malformed(d.status());
    auto vm_uuid = d->required_text("vm_uuid", kMaxIdLength);
    auto disk = d->required_text("disk", kMaxIdLength);
    auto size = d->required(d->integer_as<std::uint64_t>("size_bytes", 0, kMaxPeerBytes), "size_bytes");
    if (Status s = first_error({vm_uuid.status(), disk.status(), size.status(), d->finish()}); !s) return malformed(s);
    auto vm = std::find_if(spec.vms.begin(), spec.vms.end(), [&](const VmInfo& v) { return v.uuid == *vm_uuid; });
    if (vm == spec.vms.end())
      return malformed(invalid_argument("device " + excerpt(*vm_uuid) + "/" + excerpt(*disk) +
                                        ": vm_uuid names no VM of group '" + spec.group + "'"));
    auto info = std::find_if(vm->disks.begin(), vm->disks.end(), [&](const DiskInfo& x) { return x.target == *disk; });
    if (info == vm->disks.end())
      return malformed(invalid_argument("device " + *vm_uuid + "/" + excerpt(*disk) + ": VM '" + vm->name +
                                        "' has no disk " + excerpt(*disk)));
    ReplicatedDevice dev;
    dev.vm_uuid = vm->uuid;
    dev.vm_name = vm->name;
    dev.disk = info->target;
    dev.source = source_of(*info);
    dev.format = info->format;
    dev.size_bytes = *size;
    if (!seen.insert(dev.key()).second)
      return malformed(invalid_argument("device " + dev.key() + " is listed twice"));
    out.push_back(std::move(dev));
  }
  return out;
}

Result<TestCopy> test_copy_from_json(const json& j) {
  auto f = JsonFields::of(j, "a copy");
  if (!f) return malformed(f.status());
  auto id = f->required_text("id", kMaxIdLength);
  auto pit_id = f->required_text("pit_id", kMaxIdLength);
  auto owner = f->text("owner", kMaxIdLength);
  auto live = f->boolean("live");
  auto disks = f->required_list("disks", kMaxListed);
  if (Status s = first_error({id.status(), pit_id.status(), owner.status(), live.status(), disks.status(), f->finish()}); !s)
    return malformed(s);
  TestCopy copy;
  copy.id = *id;
  copy.pit_id = *pit_id;
  copy.owner = owner->value_or("");
  copy.live = live->value_or(false);
  for (const json& item : **disks) {
    auto d = JsonFields::of(item, "a disk of copy " + excerpt(copy.id));
    if (!d) return malformed(d.status());
    auto key = d->required_text("key", kMaxDeviceKeyLength);
    auto path = d->required_text("path");
    auto size = d->integer_as<std::uint64_t>("size_bytes", 0, kMaxPeerBytes);
    if (Status s = first_error({key.status(), path.status(), size.status(), d->finish()}); !s) return malformed(s);
    copy.disks.push_back({*key, *path, size->value_or(0)});
  }
  return copy;
}

Result<std::vector<TestCopy>> test_copies_from_json(const json& result) {
  auto f = JsonFields::of(result, "the copies");
  if (!f) return malformed(f.status());
  auto list = f->required_list("copies", kMaxListed);
  if (Status s = first_error({list.status(), f->finish()}); !s) return malformed(s);
  std::vector<TestCopy> out;
  for (const json& item : **list) {
    EVAC_ASSIGN_OR_RETURN(TestCopy copy, test_copy_from_json(item));
    out.push_back(std::move(copy));
  }
  return out;
}

Result<ReleasedReplicas> released_from_json(const json& result) {
  auto f = JsonFields::of(result, "the released replicas");
  if (!f) return malformed(f.status());
  ReleasedReplicas out;
  auto flattened = id_list(*f, "flattened");
  auto released = id_list(*f, "released_copies");
  auto removed = id_list(*f, "removed_pits");
  auto kept = id_list(*f, "kept_pits");
  auto because = f->text("kept_because");
  if (Status s = first_error({flattened.status(), released.status(), removed.status(), kept.status(), because.status(),
                              f->finish()});
      !s)
    return malformed(s);
  out.flattened = *flattened;
  out.released_copies = *released;
  out.removed_pits = *removed;
  out.kept_pits = *kept;
  out.kept_because = because->value_or("");
  return out;
}

Result<PitVerification> verification_from_json(const json& result) {
  auto f = JsonFields::of(result, "the verification");
  if (!f) return malformed(f.status());
  auto group = f->required_text("group", kMaxGroupNameLength);
  auto pit = f->required_text("pit_id", kMaxIdLength);
  auto disks = f->required_list("disks", kMaxListed);
  if (Status s = first_error({group.status(), pit.status(), disks.status(), f->finish()}); !s) return malformed(s);
  PitVerification out;
  out.group = *group;
  out.pit_id = *pit;
  for (const json& item : **disks) {
    auto d = JsonFields::of(item, "a verified disk");
    if (!d) return malformed(d.status());
    auto key = d->required_text("key", kMaxDeviceKeyLength);
    auto checked = d->required(d->integer_as<std::uint64_t>("blocks_checked", 0, kMaxPeerBytes), "blocks_checked");
    auto mismatched =
        d->required(d->integer_as<std::uint64_t>("blocks_mismatched", 0, kMaxPeerBytes), "blocks_mismatched");
    const json* offsets = d->value("first_mismatches");
    if (Status s = first_error({key.status(), checked.status(), mismatched.status(), d->finish()}); !s)
      return malformed(s);
    DiskVerification v{*key, *checked, *mismatched, {}};
    if (offsets) {
      if (!offsets->is_array() || offsets->size() > 16)
        return malformed(invalid_argument("disk " + excerpt(v.key) + ": first_mismatches is not a list of at most 16 offsets"));
      for (const json& o : *offsets) {
        EVAC_ASSIGN_OR_RETURN(auto off, checked_integer(o, "first_mismatches", 0, kMaxPeerBytes));
        v.first_mismatches.push_back(static_cast<std::uint64_t>(off));
      }
    }
    out.disks.push_back(std::move(v));
  }
  return out;
}

Result<SyncProgress> progress_from_json(const json& j) {
  auto f = JsonFields::of(j, "the progress");
  if (!f) return malformed(f.status());
  auto total = f->integer_as<std::uint64_t>("bytes_total", 0, kMaxPeerBytes);
  auto scanned = f->integer_as<std::uint64_t>("bytes_scanned", 0, kMaxPeerBytes);
  auto sent = f->integer_as<std::uint64_t>("bytes_sent", 0, kMaxPeerBytes);
  if (Status s = first_error({total.status(), scanned.status(), sent.status(), f->finish()}); !s) return malformed(s);
  SyncProgress p;
  p.bytes_total = total->value_or(0);
  p.bytes_scanned = scanned->value_or(0);
  p.bytes_sent = sent->value_or(0);
  return p;
}

Result<AwaitAnswer> await_answer_from_json(const json& result) {
  auto f = JsonFields::of(result, "the answer to await_pit");
  if (!f) return malformed(f.status());
  auto complete = f->required(f->boolean("complete"), "complete");
  const json* pit = f->value("pit");
  const json* progress = f->value("progress");
  if (Status s = first_error({complete.status(), f->finish()}); !s) return malformed(s);
  AwaitAnswer out;
  out.complete = *complete;
  if (out.complete) {
    if (!pit) return malformed(f->missing("pit"));
    auto decoded = pit_from_json(*pit);
    if (!decoded) return malformed(decoded.status());
    out.pit = std::move(*decoded);
  }
  if (progress) {
    EVAC_ASSIGN_OR_RETURN(auto p, progress_from_json(*progress));
    out.progress = p;
  }
  return out;
}

}  // namespace evac::external
