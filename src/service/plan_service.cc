#include "service/plan_service.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <set>
#include <sstream>

#include "core/model_json.h"
#include "core/duration.h"
#include "core/plan_json.h"
#include "core/text.h"

namespace evac {

using nlohmann::json;

// A peer's configuration copy, parsed once per call that needs it.
struct PeerDocument {
  std::string peer_site;
  json document;
};

namespace {

Result<RecoveryPlan> plan_from_record(const PlanRecord& r) {
  auto j = parse_json(r.document, "stored plan '" + r.name + "'");
  if (!j) return j.status();
  auto p = plan_from_json(*j);
  if (!p) return p.status().with_context("stored plan '" + r.name + "'");
  p->created_at = r.created_at;
  p->updated_at = r.updated_at;
  return p;
}

std::vector<PeerDocument> parse_copies(const std::vector<PeerCopyRecord>& copies) {
  std::vector<PeerDocument> out;
  for (const auto& c : copies) {
    auto doc = parse_json_or_discarded(c.document);
    if (doc.is_object() && doc.contains("groups") && doc["groups"].is_array()) out.push_back({c.peer_site, std::move(doc)});
  }
  return out;
}

// A peer's group, as its copy here describes it: which peer, the group's
// entry and the whole document (its mappings).
struct PeerGroup {
  const PeerDocument* peer = nullptr;
  const json* group = nullptr;
};
// A string member of a paired site's document, "" if absent or no string
// (nlohmann's value() throws on a wrong type).
std::string text_in(const json& object, const char* key) {
  if (!object.is_object()) return "";
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : "";
}

PeerGroup find_peer_group(const std::vector<PeerDocument>& docs, const std::string& group) {
  for (const auto& d : docs)
    for (const auto& g : d.document["groups"])
      if (text_in(g, "name") == group) return {&d, &g};
  return {};
}

// A peer's group as site `here`, its recovery site, works from it. Its
// settings are read strictly (peer_group_from_json): a run refuses a group
// whose copy is out of bounds before it does anything.
Result<RecoveredGroup> recovered_group_of(const PeerGroup& found, const std::string& here) {
  auto read = peer_group_from_json(*found.group);
  if (!read) return read.status().with_context("the configuration of site '" + found.peer->peer_site + "'");
  RecoveredGroup g;
  g.name = read->name;
  g.protected_site = found.peer->peer_site;
  g.rpo_seconds = read->rpo_seconds;
  g.epoch = read->epoch;
  g.keep_pits = read->keep_pits;
  g.keep_hourly = read->keep_hourly;
  g.keep_daily = read->keep_daily;
  g.max_rate_bytes = read->max_rate_bytes;
  g.replication = read->replication;
  for (const auto& v : read->vms) g.vms.push_back({v.vm_name, v.vm_uuid, v.provider});
  if (const auto mappings = found.peer->document.find("mappings");
      mappings != found.peer->document.end() && mappings->is_array())
    for (const auto& m : *mappings) {
      if (text_in(m, "peer_site") != here) continue;
      const std::string kind = text_in(m, "kind"), target = text_in(m, "target");
      if (kind == "network") {
        g.test_networks[target] = text_in(m, "test_network");
        g.source_networks[target] = text_in(m, "source");
      } else if (kind == "storage") {
        g.source_pools[target] = text_in(m, "source");
      }
    }
  return g;
}

// One VM's outcome in the protected site's answer to a readiness probe (its
// handle_peer_guest_agents, _fence_check and _backup_probe): {vm, state,
// <ok_key>: bool, error, hint}, read typed; keys not read are not refused.
struct ProbeOutcome {
  std::string vm, state, error, hint;
  bool ok = false;
};
Result<ProbeOutcome> probe_outcome_from_json(const json& j, const char* ok_key, std::string what) {
  auto f = JsonFields::of(j, std::move(what));
  if (!f) return f.status();
  auto vm = f->text("vm", 256);
  auto state = f->text("state", 64);
  auto ok = f->boolean(ok_key);
  auto error = f->text("error");
  auto hint = f->text("hint");
  for (const Status& s : {vm.status(), state.status(), ok.status(), error.status(), hint.status()})
    if (!s) return s;
  return ProbeOutcome{vm->value_or(""), state->value_or(""), error->value_or(""), hint->value_or(""), ok->value_or(false)};
}

// The guest-agent answer: a list of {vm, state, agent, error}.
Result<std::vector<ProbeOutcome>> guest_agents_from_json(const json& j) {
  if (!j.is_array() || j.size() > kMaxListItems)
    return invalid_argument("the guest-agent answer must be a list of at most " + std::to_string(kMaxListItems) + " VMs");
  std::vector<ProbeOutcome> out;
  for (const auto& item : j) {
    auto o = probe_outcome_from_json(item, "agent", "a VM of the guest-agent answer");
    if (!o) return o.status();
    out.push_back(std::move(*o));
  }
  return out;
}

// The backup probe's answer: {busy, vms: [{vm, state, ok, error, hint}]}
// ({skipped: true} stands for a probe not asked for).
struct BackupProbe {
  bool skipped = false, busy = false;
  std::vector<ProbeOutcome> vms;
};
Result<BackupProbe> backup_probe_from_json(const json& j) {
  auto f = JsonFields::of(j, "the backup-probe answer");
  if (!f) return f.status();
  auto skipped = f->boolean("skipped");
  auto busy = f->boolean("busy");
  auto vms = f->list("vms");
  for (const Status& s : {skipped.status(), busy.status(), vms.status()})
    if (!s) return s;
  BackupProbe out{skipped->value_or(false), busy->value_or(false), {}};
  if (*vms)
    for (const auto& item : **vms) {
      auto o = probe_outcome_from_json(item, "ok", "a VM of the backup-probe answer");
      if (!o) return o.status();
      out.vms.push_back(std::move(*o));
    }
  return out;
}

constexpr const char* kAnswerHint =
    "it answered what no evacd of this version sends: check the evacd there (its version, its log)";

}  // namespace

Result<std::vector<std::string>> PlanService::group_vm_names(const std::string& group) {
  auto copies = site_.store().list_peer_copies();
  if (!copies) return copies.status();
  return group_vm_names(group, parse_copies(*copies));
}

Result<std::vector<std::string>> PlanService::group_vm_names(const std::string& group,
                                                             const std::vector<PeerDocument>& peer_docs) {
  auto own = site_.store().find_group(group);
  if (!own) return own.status();
  std::vector<std::string> names;
  if (own->has_value()) {
    for (const auto& v : (*own)->vms) names.push_back(v.vm_name);
    return names;
  }
  if (PeerGroup found = find_peer_group(peer_docs, group); found.group) {
    const json& g = *found.group;
    if (g.contains("vms") && g["vms"].is_array())
      for (const auto& v : g["vms"])
        if (v.is_object() && v.contains("name") && v["name"].is_string()) names.push_back(v["name"]);
    return names;
  }
  return not_found("no protection group named '" + group + "' is protected here or recovered here",
                   "list groups with `evac group list` at either site; a peer's groups appear here once it is paired "
                   "and has sent its configuration");
}

Result<std::vector<RecoveredGroup>> PlanService::recovered_groups(const RecoveryPlan& plan) {
  auto copies = site_.store().list_peer_copies();
  if (!copies) return copies.status();
  const std::vector<PeerDocument> docs = parse_copies(*copies);
  const std::string here = site_.identity().name;
  std::vector<RecoveredGroup> out;
  for (const auto& name : plan.groups) {
    auto own = site_.store().find_group(name);
    if (!own) return own.status();
    if (own->has_value())
      return failed_precondition("site '" + here + "' protects group '" + name + "': plan '" + plan.name +
                                     "' runs at its recovery site, '" + (*own)->recovery_site + "'",
                                 "run it there: `evac --context <that site> plan ...`");
    PeerGroup found = find_peer_group(docs, name);
    if (!found.group)
      return not_found("group '" + name + "' of plan '" + plan.name + "' is neither protected nor recovered here",
                       "check the plan's groups against `evac group list`");
    auto g = recovered_group_of(found, here);
    if (!g) return g.status();
    out.push_back(std::move(*g));
  }
  return out;
}

Result<PlanService::PlanNetworks> PlanService::plan_networks(const RecoveryPlan& plan) {
  PlanNetworks out;
  auto copies = site_.store().list_peer_copies();
  if (!copies) return copies.status();
  const std::vector<PeerDocument> docs = parse_copies(*copies);
  auto hosted = site_.store().list_hosted_placeholders();
  if (!hosted) return hosted.status();
  auto mappings = site_.store().list_mappings();
  if (!mappings) return mappings.status();
  const std::string here = site_.identity().name;
  for (const auto& name : plan.groups) {
    auto own = site_.store().find_group(name);
    if (!own) return own.status();
    if (own->has_value()) {
      // Protected here: the VMs themselves, and where the mappings take them.
      for (const auto& v : (*own)->vms) {
        auto vm = site_.find_vm(v.vm_uuid);
        if (!vm) continue;
        for (const auto& nic : vm->nics) {
          const std::string key = attachment_of(nic).key();
          out.vm_sources[v.vm_name].insert(key);
          out.either_side.insert(key);
          for (const auto& m : *mappings)
            if (m.kind == MappingKind::kNetwork && m.peer_site == (*own)->recovery_site && m.source == key)
              out.either_side.insert(m.target);
        }
      }
      continue;
    }
    PeerGroup found = find_peer_group(docs, name);
    if (!found.group) continue;
    // Recovered here: the placeholders, on networks here, named back.
    auto recovered = recovered_group_of(found, here);
    if (!recovered) return recovered.status();
    const RecoveredGroup& g = *recovered;
    for (const auto& v : g.vms) {
      for (const auto& h : *hosted) {
        if (h.group != name || h.source_uuid != v.uuid) continue;
        auto provider = site_.provider(h.provider);
        if (!provider) continue;
        auto placeholder = (*provider)->get_vm(h.uuid);
        if (!placeholder) continue;
        for (const auto& nic : placeholder->nics) {
          const std::string key = attachment_of(nic).key();
          auto source = g.source_networks.find(key);
          const std::string& named = source == g.source_networks.end() ? key : source->second;
          out.vm_sources[v.name].insert(named);
          out.either_side.insert(named);
          out.either_side.insert(key);
        }
      }
    }
  }
  return out;
}

Result<std::vector<std::string>> PlanService::ip_rule_problems(const RecoveryPlan& plan) {
  std::vector<std::string> problems;
  if (plan.ip_rules.empty()) return problems;
  auto networks = plan_networks(plan);
  if (!networks) return networks.status();
  // A rule names a network by its key ("prod", "bridge:br0") or bare name.
  auto covers = [](const IpRule& rule, const std::string& network) {
    return rule.network == network || rule.network == parse_attachment(network).name;
  };
  const std::set<std::string>& all = networks->either_side;
  if (!networks->vm_sources.empty()) {
    for (const auto& rule : plan.ip_rules) {
      bool used = std::any_of(all.begin(), all.end(), [&](const std::string& n) { return covers(rule, n); });
      if (!used)
        problems.push_back("IP rule for network '" + rule.network + "' names a network none of the plan's VMs is on at either site (" +
                           (all.empty() ? std::string("they have no NICs") : "they are on: " + join(std::vector<std::string>(all.begin(), all.end()), ", ")) +
                           ")");
    }
  }
  for (const auto& [vm, nets] : networks->vm_sources) {
    const PlanVm entry = plan_vm_or_default(plan, vm);
    if (entry.startup != StartupAction::kPowerOn || entry.wait_for_guest) continue;
    for (const auto& rule : plan.ip_rules) {
      auto on = std::find_if(nets.begin(), nets.end(), [&](const std::string& n) { return covers(rule, n); });
      if (on == nets.end()) continue;
      problems.push_back("VM '" + vm + "' is on network '" + *on +
                         "', which an IP rule re-addresses, but a run powers it on without waiting for its guest "
                         "(wait_for_guest: false), so its addresses could not be changed: it would come up with its "
                         "production address");
      break;
    }
  }
  return problems;
}

Result<RecoveryPlan> PlanService::save(RecoveryPlan plan, bool must_be_new) {
  auto copies = site_.store().list_peer_copies();
  if (!copies) return copies.status();
  const std::vector<PeerDocument> peer_docs = parse_copies(*copies);
  Status lookup;  // a store error while looking a group up (not "unknown")
  EVAC_RETURN_IF_ERROR(validate_plan_groups(plan, [&](const std::string& g) -> std::optional<std::vector<std::string>> {
    auto names = group_vm_names(g, peer_docs);
    if (names) return *names;
    if (names.status().code() != StatusCode::kNotFound && lookup.is_ok()) lookup = names.status();
    return std::nullopt;
  }));
  EVAC_RETURN_IF_ERROR(lookup);
  auto ip_problems = ip_rule_problems(plan);
  if (!ip_problems) return ip_problems.status();
  if (!ip_problems->empty())
    return invalid_argument("plan '" + plan.name + "' cannot be saved: " + join(*ip_problems, "; "),
                            "give each VM on a re-addressed network a wait for its guest (wait_for_guest: 5m), and "
                            "name in ip_rules only networks the plan's VMs are on (`evac inventory vms`)");

  const std::int64_t now = site_.now();
  Status st = site_.store().transaction([&]() -> Status {
    auto existing = site_.store().find_plan(plan.name);
    if (!existing) return existing.status();
    if (existing->has_value() && must_be_new)
      return already_exists("a recovery plan named '" + plan.name + "' exists",
                            "change it with `evac apply -f`, or delete it first");
    plan.created_at = existing->has_value() ? (*existing)->created_at : now;
    plan.updated_at = now;
    json doc = plan_to_json(plan);
    doc.erase("created_at");
    doc.erase("updated_at");
    EVAC_RETURN_IF_ERROR(site_.store().put_plan(PlanRecord{plan.name, doc.dump(), plan.created_at, plan.updated_at}));
    return site_.store().bump_config_version();
  });
  if (!st.is_ok()) return st;
  return plan;
}

Result<RecoveryPlan> PlanService::create_plan(const json& body) {
  auto plan = plan_from_json(body);
  if (!plan) return plan.status();
  return save(std::move(*plan), true);
}

Result<RecoveryPlan> PlanService::apply_plan(const std::string& name, const json& body) {
  json named = body;
  if (named.is_object() && !named.contains("name")) named["name"] = name;
  auto plan = plan_from_json(named);
  if (!plan) return plan.status();
  if (plan->name != name)
    return invalid_argument("the plan is named '" + plan->name + "' but was sent to '" + name + "'",
                            "send it to /api/v1/plans/" + plan->name + ", or rename it in the document");
  return save(std::move(*plan), false);
}

Result<std::vector<RecoveryPlan>> PlanService::list_plans() {
  auto records = site_.store().list_plans();
  if (!records) return records.status();
  std::vector<RecoveryPlan> out;
  for (const auto& r : *records) {
    auto p = plan_from_record(r);
    if (!p) return p.status();
    out.push_back(std::move(*p));
  }
  return out;
}

Result<RecoveryPlan> PlanService::get_plan(const std::string& name) {
  auto r = site_.store().find_plan(name);
  if (!r) return r.status();
  if (!r->has_value())
    return not_found("no recovery plan named '" + name + "'", "list plans with `evac plan list`");
  return plan_from_record(**r);
}

Result<std::vector<std::pair<std::string, RecoveryPlan>>> PlanService::peer_plans() {
  auto copies = site_.store().list_peer_copies();
  if (!copies) return copies.status();
  std::vector<std::pair<std::string, RecoveryPlan>> out;
  for (const auto& c : *copies) {
    auto doc = parse_json_or_discarded(c.document);
    if (!doc.is_object()) continue;
    for (const auto& p : doc.value("plans", json::array())) {
      if (!p.is_object()) continue;
      auto plan = plan_from_json(p);
      if (!plan) return plan.status().with_context("a plan in the configuration copy of site '" + c.peer_site + "'");
      auto own = site_.store().find_plan(plan->name);
      if (!own) return own.status();
      if (!own->has_value()) out.emplace_back(c.peer_site, std::move(*plan));
    }
  }
  return out;
}

Result<RecoveryPlan> PlanService::runnable_plan(const std::string& name) {
  auto own = site_.store().find_plan(name);
  if (!own) return own.status();
  if (own->has_value()) return plan_from_record(**own);
  auto theirs = peer_plans();
  if (!theirs) return theirs.status();
  for (auto& [site, plan] : *theirs)
    if (plan.name == name) return std::move(plan);
  return not_found("no recovery plan named '" + name + "' here or in a paired site's configuration",
                   "list plans with `evac plan list` at either site");
}

Status PlanService::delete_plan(const std::string& name) {
  return site_.store().transaction([&]() -> Status {
    auto r = site_.store().find_plan(name);
    if (!r) return r.status();
    if (!r->has_value()) return not_found("no recovery plan named '" + name + "'", "list plans with `evac plan list`");
    EVAC_RETURN_IF_ERROR(site_.store().remove_plan(name));
    return site_.store().bump_config_version();
  });
}

// ---- readiness --------------------------------------------------------------------

bool ReadinessFinding::concerns(const std::string& operation) const {
  return operations.empty() || std::find(operations.begin(), operations.end(), operation) != operations.end();
}

bool PlanReadiness::ready_for(const std::string& operation) const {
  if (std::find(applicable.begin(), applicable.end(), operation) == applicable.end()) return false;
  return std::none_of(findings.begin(), findings.end(),
                      [&](const ReadinessFinding& f) { return f.severity == "error" && f.concerns(operation); });
}

void PlanReadiness::settle() {
  ready = !applicable.empty() &&
          std::all_of(applicable.begin(), applicable.end(), [&](const std::string& op) { return ready_for(op); });
}

namespace {

// Whether argv[0] of a host command can be run: an executable path, or a
// name found on PATH.
bool command_available(const std::string& program) {
  if (program.find('/') != std::string::npos) return ::access(program.c_str(), X_OK) == 0;
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':'))
    if (!dir.empty() && ::access((dir + "/" + program).c_str(), X_OK) == 0) return true;
  return false;
}

std::string age_text(std::int64_t seconds) { return format_duration(std::chrono::seconds(std::max<std::int64_t>(0, seconds))); }

}  // namespace

Result<std::vector<ReadinessFinding>> PlanService::reverse_mapping_findings(const RecoveredGroup& g,
                                                                           const std::vector<LiveVm>& vms) {
  const std::vector<std::string> ops = {"reprotect", "failback"};
  std::vector<ReadinessFinding> out;
  auto mappings = site_.store().list_mappings(g.protected_site);
  if (!mappings) return mappings.status();
  auto mapped = [&](MappingKind kind, const std::string& source) {
    return std::any_of(mappings->begin(), mappings->end(),
                       [&](const MappingRecord& m) { return m.kind == kind && m.source == source; });
  };
  std::set<std::string> missing;
  for (const auto& vm : vms) {
    auto provider = site_.provider(vm.provider);
    if (!provider || vm.uuid.empty()) {
      out.push_back({"error", "placeholders", "VM '" + vm.name + "' has no placeholder here", "protect it again", ops});
      continue;
    }
    auto info = (*provider)->get_vm(vm.uuid);
    if (!info) {
      out.push_back({"error", "placeholders", "VM '" + vm.name + "': " + info.status().message(), info.status().hint(), ops});
      continue;
    }
    for (const auto& nic : info->nics) {
      const std::string here = attachment_of(nic).key();
      if (nic.network.empty() || mapped(MappingKind::kNetwork, here)) continue;
      auto src = g.source_networks.find(here);
      missing.insert("evac mapping create network " + here + " " +
                     (src == g.source_networks.end() ? std::string("<network there>") : src->second) +
                     " --test-network <isolated network there>");
    }
    for (const auto& disk : info->disks) {
      if (!disk.storage_pool || mapped(MappingKind::kStorage, *disk.storage_pool)) continue;
      auto src = g.source_pools.find(*disk.storage_pool);
      missing.insert("evac mapping create storage " + *disk.storage_pool + " " +
                     (src == g.source_pools.end() ? std::string("<pool there>") : src->second));
    }
  }
  const std::string here = site_.identity().name;
  if (missing.empty()) {
    out.push_back({"ok", "mappings", "group '" + g.name + "' has mappings back to '" + g.protected_site + "'", "", ops});
  } else {
    std::string cmds;
    for (const auto& m : missing) cmds += (cmds.empty() ? "" : "; ") + m;
    out.push_back({"error", "mappings", "group '" + g.name + "' lacks mappings from '" + here + "' back to '" + g.protected_site + "'",
                   "at site '" + here + "': " + cmds, ops});
  }
  return out;
}

Result<PlanReadiness> PlanService::check_plan(const std::string& name, bool probe) {
  auto plan = runnable_plan(name);
  if (!plan) return plan.status();
  return check_plan(*plan, probe);
}

namespace {

// What each finding concerns: the runs it would stop (or qualify).
const std::vector<std::string> kRecoveries = {"test", "migrate", "failover", "failback"};
const std::vector<std::string> kLive = {"migrate", "failover", "failback"};  // the placeholders become the VMs
const std::vector<std::string> kTest = {"test"};
const std::vector<std::string> kPlanned = {"migrate", "failback"};  // need the protected site
const std::vector<std::string> kFromPits = {"test", "failover"};    // recover a PIT held here

}  // namespace

// One readiness check under way: the plan, what this site knows (read once,
// for every group), and the findings and applicable runs so far. The
// inventory lists stay Results: a part that needs one that cannot be read
// says so as a finding instead of failing the check.
struct PlanService::PlanCheck {
  const RecoveryPlan& plan;
  bool probe_sources;
  std::string here;
  std::int64_t now;
  std::vector<PeerStatus> peers;
  std::vector<PeerDocument> peer_docs;
  Result<std::vector<VmInfo>> vms;
  Result<std::vector<NetworkInfo>> networks;
  Result<std::vector<StoragePoolInfo>> pools;
  std::vector<HostedPlaceholderRecord> hosted;
  std::set<std::string> defined;  // placeholders still defined in this site's providers
  // The runs the plan's groups allow now (each group narrows them).
  std::set<std::string> applicable;
  PlanReadiness out;

  void add(std::string severity, std::string check, std::string message, std::string hint = {},
           std::vector<std::string> operations = {}) {
    out.findings.push_back(
        {std::move(severity), std::move(check), std::move(message), std::move(hint), std::move(operations)});
  }
  void allow_only(const std::vector<std::string>& ops) {
    std::set<std::string> keep;
    for (const auto& op : ops)
      if (applicable.count(op)) keep.insert(op);
    applicable = std::move(keep);
  }
  const PeerStatus* peer_state(const std::string& site) const {
    for (const auto& p : peers)
      if (p.record.site == site) return &p;
    return nullptr;
  }
};

// A group a paired site protects with this site as its recovery site, as
// one check sees it; every member refers into the check or its caller.
struct PlanService::RecoveredCheck {
  const std::string& group;
  const std::string& protected_site;
  const json& doc;  // the protected site's configuration copy (its mappings)
  const RecoveredGroup& recovered;
  const PeerStatus* peer;  // null: not paired here
  bool answers() const { return peer && peer->connected; }
};

Result<PlanReadiness> PlanService::check_plan(const RecoveryPlan& plan, bool probe_sources) {
  std::string here = site_.identity().name;
  const std::int64_t now = site_.now();
  EVAC_ASSIGN_OR_RETURN(auto peers, site_.peer_statuses());
  EVAC_ASSIGN_OR_RETURN(auto copies, site_.store().list_peer_copies());
  auto vms = site_.list_vms(std::nullopt);
  auto networks = site_.list_networks(std::nullopt);
  auto pools = site_.list_storage_pools(std::nullopt);
  EVAC_ASSIGN_OR_RETURN(auto hosted, site_.store().list_hosted_placeholders());
  PlanCheck c{.plan = plan,
              .probe_sources = probe_sources,
              .here = std::move(here),
              .now = now,
              .peers = std::move(peers),
              .peer_docs = parse_copies(copies),
              .vms = std::move(vms),
              .networks = std::move(networks),
              .pools = std::move(pools),
              .hosted = std::move(hosted),
              .defined = {},
              .applicable = std::set<std::string>(readiness_operations().begin(), readiness_operations().end()),
              .out = {}};
  if (c.vms)
    for (const auto& v : *c.vms)
      if (v.is_placeholder) c.defined.insert(v.uuid);

  for (const auto& group : plan.groups) {
    EVAC_ASSIGN_OR_RETURN(auto own, site_.store().find_group(group));
    if (own.has_value())
      EVAC_RETURN_IF_ERROR(check_protected_group(c, group, *own));
    else
      EVAC_RETURN_IF_ERROR(check_recovered_group(c, group));
  }
  check_callouts(c);
  check_capacity(c);
  EVAC_RETURN_IF_ERROR(check_ip_rules(c));

  c.out.applicable.assign(c.applicable.begin(), c.applicable.end());
  c.out.settle();
  return std::move(c.out);
}

Status PlanService::check_protected_group(PlanCheck& c, const std::string& group, const GroupRecord& g) {
  // Protected here: the plan runs at the recovery site, which holds the
  // copies; from here, what this site knows of them.
  c.allow_only({});
  c.add("ok", "site", "runs of group '" + group + "' execute at its recovery site, '" + g.recovery_site + "'",
        "check the plan there: `evac --context " + g.recovery_site + " plan check " + c.plan.name + "`");
  const PeerStatus* peer = c.peer_state(g.recovery_site);
  if (peer && peer->connected)
    c.add("ok", "peer", "recovery site '" + g.recovery_site + "' of group '" + group + "' answers");
  else
    c.add("warning", "peer", "recovery site '" + g.recovery_site + "' of group '" + group + "' does not answer",
          "a run executes there: check that site and the link; `evac site status`");
  EVAC_ASSIGN_OR_RETURN(auto rep, site_.store().find_replication(group));
  if (!rep.has_value() || !rep->last_pit_created_at)
    c.add("error", "points-in-time", "group '" + group + "' has no point in time at its recovery site",
          "replicate it: `evac group sync " + group + "`");
  else if (c.now - *rep->last_pit_created_at > g.rpo_seconds)
    c.add("warning", "points-in-time",
          "group '" + group + "''s newest point in time is " + age_text(c.now - *rep->last_pit_created_at) +
              " old, past its RPO of " + age_text(g.rpo_seconds),
          "see why cycles fail: `evac group show " + group + "`, `evac events list --group " + group + "`");
  else
    c.add("ok", "points-in-time",
          "group '" + group + "''s newest point in time is " + age_text(c.now - *rep->last_pit_created_at) + " old");
  return Status::ok();
}

Status PlanService::check_recovered_group(PlanCheck& c, const std::string& group) {
  // Recovered here: everything a run needs must be at this site.
  const PeerGroup found = find_peer_group(c.peer_docs, group);
  if (!found.group) {
    c.add("error", "groups", "group '" + group + "' is neither protected nor recovered here", "check the plan's groups");
    return Status::ok();
  }
  const std::string& protected_site = found.peer->peer_site;
  auto recovered = recovered_group_of(found, c.here);
  if (!recovered) {
    c.add("error", "groups", recovered.status().message(),
          "fix the group at '" + protected_site + "'; its next configuration copy replaces this one");
    return Status::ok();
  }
  EVAC_ASSIGN_OR_RETURN(auto owner, site_.ownership(group, protected_site, recovered->epoch));
  const RecoveredCheck g{group, protected_site, found.peer->document, *recovered, c.peer_state(protected_site)};
  // Recovered here already: its placeholders are the live VMs now, and
  // what comes next is a reprotect, not another recovery.
  if (owner.owner == c.here) return check_live_group(c, g, owner);

  c.allow_only(kRecoveries);
  check_protected_site(c, g);
  if (g.answers()) {
    check_guest_agents(c, g);
    check_fencing(c, g);
    check_backup_probe(c, g);
  }
  check_placeholders(c, g);
  check_mappings(c, g);
  check_points_in_time(c, g);
  return Status::ok();
}

Status PlanService::check_live_group(PlanCheck& c, const RecoveredCheck& g, const SiteService::Ownership& owner) {
  // What comes next is a reprotect, which needs the former protected site
  // and mappings from here back to it.
  c.allow_only({"reprotect"});
  c.add("ok", "ownership",
        "group '" + g.group + "' is live here: run " + owner.run + " recovered it (epoch " + std::to_string(owner.epoch) +
            "); what applies now is a reprotect back to '" + g.protected_site + "': `evac plan reprotect " +
            c.plan.name + "`",
        "", {"reprotect"});
  if (g.answers())
    c.add("ok", "peer", "former protected site '" + g.protected_site + "' answers", "", {"reprotect"});
  else
    c.add("error", "peer", "former protected site '" + g.protected_site + "' does not answer",
          "a reprotect makes its copies the placeholders: bring it back (it stays fenced), then reprotect",
          {"reprotect"});
  std::vector<LiveVm> live;
  for (const auto& v : g.recovered.vms) {
    LiveVm vm{v.name, "", ""};
    for (const auto& h : c.hosted)
      if (h.group == g.group && h.source_uuid == v.uuid) {
        vm.provider = h.provider;
        vm.uuid = h.uuid;
      }
    live.push_back(std::move(vm));
  }
  EVAC_ASSIGN_OR_RETURN(auto reverse, reverse_mapping_findings(g.recovered, live));
  c.out.findings.insert(c.out.findings.end(), reverse.begin(), reverse.end());
  return Status::ok();
}

void PlanService::check_protected_site(PlanCheck& c, const RecoveredCheck& g) {
  if (g.answers()) {
    c.add("ok", "peer", "protected site '" + g.protected_site + "' answers");
  } else {
    c.add("warning", "peer", "protected site '" + g.protected_site + "' does not answer", "test and failover run without it",
          kFromPits);
    c.add("error", "peer", "protected site '" + g.protected_site + "' does not answer: a planned migration cannot run",
          "a migration shuts the VMs down there first; with that site lost, run failover instead", kPlanned);
  }
}

void PlanService::check_guest_agents(PlanCheck& c, const RecoveredCheck& g) {
  // The protected VMs' guest agents, where the plan waits for them: a guest
  // without one never sends the heartbeat a run waits for.
  const std::string& site = g.protected_site;
  auto answer = site_.peer_client(site).guest_agents(g.group);
  auto agents = answer ? guest_agents_from_json(*answer) : Result<std::vector<ProbeOutcome>>(answer.status());
  if (answer && !agents)
    c.add("warning", "guest-agents",
          "site '" + site + "' answered the guest-agent check unreadably: " + agents.status().message(), kAnswerHint);
  if (!agents) return;
  int answering = 0, waited = 0;
  for (const auto& a : *agents) {
    if (!plan_vm_or_default(c.plan, a.vm).wait_for_guest || a.state != "running") continue;
    ++waited;
    if (a.ok) {
      ++answering;
    } else {
      c.add("warning", "guest-agents", "VM '" + a.vm + "' at '" + site + "' does not answer its guest agent: " + a.error,
            "install and start qemu-guest-agent in it, or set wait_for_guest: false for it in the plan");
    }
  }
  if (waited > 0 && answering == waited)
    c.add("ok", "guest-agents", "the guest agents of group '" + g.group + "''s running VMs answer at '" + site + "'");
}

void PlanService::check_fencing(PlanCheck& c, const RecoveredCheck& g) {
  // After a recovery the old copy is fenced: powered off, and its disks made
  // read-only so no one starts it by hand. Say now if they cannot be.
  const std::string& site = g.protected_site;
  auto answer = site_.peer_client(site).fence_check(g.group);
  auto fence = answer ? probe_outcome_from_json(*answer, "read_only", "the fence-check answer")
                      : Result<ProbeOutcome>(answer.status());
  if (answer && !fence)
    c.add("warning", "fencing", "site '" + site + "' answered the fence check unreadably: " + fence.status().message(),
          kAnswerHint);
  else if (fence && fence->ok)
    c.add("ok", "fencing", "site '" + site + "' can make group '" + g.group + "''s disks read-only when fenced");
  else if (fence)
    c.add("warning", "fencing",
          "site '" + site + "' could not make group '" + g.group + "''s disks read-only when fenced: " + fence->error,
          fence->hint + (fence->hint.empty() ? "" : "; ") + "a fence there would only power the VMs off");
}

void PlanService::check_backup_probe(PlanCheck& c, const RecoveredCheck& g) {
  // Could the protected site read the VMs now (a backup of each running VM
  // begun and ended there, nothing kept)? A migration's first step is a
  // cycle; without cycles, tests and failovers get older PITs.
  const std::string& site = g.protected_site;
  const std::string& group = g.group;
  auto answer = c.probe_sources
                    ? site_.peer_client(site).backup_probe(group)
                    : Result<json>(json{{"skipped", true}});
  auto probe = answer ? backup_probe_from_json(*answer) : Result<BackupProbe>(answer.status());
  if (probe && probe->skipped) {
    // A listing only glances: no backups are tried for it.
  } else if (!answer) {
    c.add("warning", "backups",
          "site '" + site + "' could not be asked whether it can replicate group '" + group +
              "' now: " + answer.status().message(),
          "an evacd older than this one there has no such probe");
  } else if (!probe) {
    c.add("warning", "backups", "site '" + site + "' answered the backup probe unreadably: " + probe.status().message(),
          kAnswerHint);
  } else if (probe->busy) {
    c.add("ok", "backups", "a cycle of group '" + group + "' runs at '" + site + "' now: its outcome tells");
  } else {
    int ok = 0, failed = 0;
    for (const auto& v : probe->vms) {
      if (v.ok) {
        ++ok;
        continue;
      }
      ++failed;
      c.add("error", "backups",
            "site '" + site + "' cannot replicate VM '" + v.vm + "' (" + v.state + ") of group '" + group +
                "' now: " + v.error,
            v.hint + (v.hint.empty() ? "" : "; ") + "a migration starts with a cycle", kPlanned);
    }
    if (failed > 0)
      c.add("warning", "backups",
            "group '" + group + "' gets no new point in time while that lasts: a test or failover recovers the newest one held here",
            "", kFromPits);
    else
      c.add("ok", "backups",
            "site '" + site + "' can replicate every VM of group '" + group + "' now (" + std::to_string(ok) +
                " probed: a backup begun and ended, nothing kept)");
  }
}

void PlanService::check_placeholders(PlanCheck& c, const RecoveredCheck& g) {
  // Each protected VM has one registered here, still defined, that would
  // start: what a recovery powers on is this definition.
  const std::string& group = g.group;
  int missing = 0;
  for (const auto& v : g.recovered.vms) {
    const HostedPlaceholderRecord* ph = nullptr;
    for (const auto& h : c.hosted)
      if (h.group == group && h.source_uuid == v.uuid) ph = &h;
    if (!ph) {
      ++missing;
      c.add("error", "placeholders", "VM '" + v.name + "' of group '" + group + "' has no placeholder here",
            "protect it again at '" + g.protected_site + "': `evac group remove-vm " + group + " " + v.name +
                "` then `evac group add-vm " + group + " " + v.name + "`",
            kRecoveries);
    } else if (c.vms && !c.defined.count(ph->uuid)) {
      ++missing;
      c.add("error", "placeholders",
            "the placeholder of VM '" + v.name + "' (" + ph->uuid + ") is no longer defined in compute provider '" +
                ph->provider + "'",
            "someone removed it by hand: protect the VM again at '" + g.protected_site + "'", kRecoveries);
    } else if (c.vms) {
      auto provider = site_.provider(ph->provider);
      auto problems =
          provider ? (*provider)->start_problems(ph->uuid) : Result<std::vector<std::string>>(provider.status());
      if (!problems) {
        c.add("warning", "placeholders",
              "cannot tell whether the placeholder of VM '" + v.name + "' would start: " + problems.status().message(),
              problems.status().hint(), kLive);
        continue;
      }
      for (const auto& p : *problems) {
        ++missing;
        c.add("error", "placeholders", "the placeholder of VM '" + v.name + "' would not start: " + p,
              "create or start what it names at this site, or change the mapping at '" + g.protected_site + "'", kLive);
      }
    }
  }
  if (!c.vms)
    c.add("error", "placeholders", "this site's inventory cannot be read: " + c.vms.status().message(),
          c.vms.status().hint());
  else if (missing == 0)
    c.add("ok", "placeholders", "every VM of group '" + group + "' has its placeholder here, and each would start");
}

void PlanService::check_mappings(PlanCheck& c, const RecoveredCheck& g) {
  // The networks and storage pools the protected site's mappings name here.
  for (const auto& m : g.doc.value("mappings", json::array())) {
    if (text_in(m, "peer_site") != c.here) continue;
    const std::string kind = text_in(m, "kind"), target = text_in(m, "target");
    if (kind == "network" && c.networks) {
      check_network_mapping(c, g, m);
    } else if (kind == "storage" && c.pools) {
      bool found = false;
      for (const auto& p : *c.pools)
        if (p.name == target && p.active) found = true;
      if (!found)
        c.add("error", "storage", "storage pool '" + target + "' is missing or inactive here",
              "start it or change the mapping at '" + g.protected_site + "'");
    }
  }
  if (!c.networks)
    c.add("error", "networks", "this site's networks cannot be listed: " + c.networks.status().message(),
          c.networks.status().hint());
  if (!c.pools)
    c.add("error", "storage", "this site's storage pools cannot be listed: " + c.pools.status().message(),
          c.pools.status().hint());
}

void PlanService::check_network_mapping(PlanCheck& c, const RecoveredCheck& g, const json& m) {
  auto find = [&](const std::string& n) -> const NetworkInfo* {
    for (const auto& x : *c.networks)
      if (x.name == n) return &x;
    return nullptr;
  };
  const std::string target = text_in(m, "target");
  const NetworkInfo* net = find(target);
  if (!net || !net->active)
    c.add("error", "networks",
          "network '" + target + "' (for '" + text_in(m, "source") + "') is " + (net ? "not active" : "missing") + " here",
          "create or start it, or change the mapping at '" + g.protected_site + "'", kLive);
  const std::string test = text_in(m, "test_network");
  const NetworkInfo* tnet = find(test);
  if (!tnet || !tnet->active)
    c.add("error", "networks", "test network '" + test + "' is " + (tnet ? "not active" : "missing") + " here",
          "create it (an isolated network, no forwarding) or change the mapping", kTest);
  else if (!tnet->isolated)
    c.add("warning", "networks",
          "test network '" + test + "' can reach other networks (" + tnet->isolation +
              "): test copies could meet production addresses",
          "use a network without forwarding, on a bridge with no uplink, for tests", kTest);
  else if (net && net->active)
    c.add("ok", "networks",
          "networks '" + target + "' and isolated test network '" + test + "' are ready (" + tnet->isolation + ")");
}

void PlanService::check_points_in_time(PlanCheck& c, const RecoveredCheck& g) {
  // The newest point in time held here against the group's RPO.
  const std::string& group = g.group;
  if (!replication_) {
    c.add("warning", "points-in-time", "this site does not replicate: points in time not checked");
    return;
  }
  auto pits = replication_->pits_held_here(group);
  const std::int64_t rpo = g.recovered.rpo_seconds;
  if (!pits && pits.status().code() != StatusCode::kNotFound) {
    c.add("error", "points-in-time",
          "the points in time of group '" + group + "' cannot be listed: " + pits.status().message(),
          pits.status().hint());
  } else if (!pits || pits->empty()) {
    c.add("error", "points-in-time", "group '" + group + "' has no point in time here yet",
          "replicate it at '" + g.protected_site + "': `evac group sync " + group + "`", kFromPits);
  } else {
    std::int64_t age = c.now - pits->back().created_at;
    if (age > rpo)
      c.add("warning", "points-in-time",
            "group '" + group + "''s newest point in time (" + pits->back().id + ") is " + age_text(age) +
                " old, past its RPO of " + age_text(rpo),
            "a recovery would lose more than the RPO allows; see `evac group show " + group + "` at '" +
                g.protected_site + "'");
    else
      c.add("ok", "points-in-time",
            "group '" + group + "''s newest point in time (" + pits->back().id + ") is " + age_text(age) + " old");
  }
}

void PlanService::check_callouts(PlanCheck& c) {
  // Host commands of callouts: present and executable on this host.
  for (const auto& v : c.plan.vms)
    for (const auto* list : {&v.before_power_on, &v.after_power_on})
      for (const auto& a : *list)
        if (a.kind == PlanAction::Kind::kHostCommand && !a.command.empty()) {
          if (command_available(a.command.front()))
            c.add("ok", "callouts", "VM '" + v.vm + "': '" + a.command.front() + "' is installed");
          else
            c.add("error", "callouts",
                  "VM '" + v.vm + "': command '" + a.command.front() + "' is not found or not executable here",
                  "install it on this evacd host, or change the plan");
        }
}

void PlanService::check_capacity(PlanCheck& c) {
  // The memory of every VM the plan powers on at each compute provider here
  // (a test needs as much as a recovery), against what that host has free
  // now. Unreadable inventory: the placeholders check has said so.
  if (!c.vms) return;
  std::map<std::string, std::uint64_t> needed_kib;
  std::map<std::string, int> count;
  for (const auto& group : c.plan.groups)
    for (const auto& h : c.hosted)
      if (h.group == group)
        for (const auto& v : *c.vms)
          if (v.uuid == h.uuid && v.is_placeholder) {
            needed_kib[v.provider] += v.memory_kib;
            ++count[v.provider];
          }
  for (const auto& [provider_name, kib] : needed_kib) {
    auto provider = site_.provider(provider_name);
    auto capacity = provider ? (*provider)->host_capacity() : Result<ComputeProvider::HostCapacity>(provider.status());
    const std::string need = std::to_string(kib / 1024) + " MiB for " + std::to_string(count[provider_name]) + " VMs";
    if (!capacity) {
      c.add("warning", "capacity", "compute provider '" + provider_name + "' cannot tell its free memory (" +
                                       capacity.status().message() + "); the plan's VMs need " + need,
            "", kRecoveries);
      continue;
    }
    const std::string has =
        "compute provider '" + provider_name + "' has " + std::to_string(capacity->memory_free_kib / 1024) + " MiB free";
    if (kib > capacity->memory_free_kib) {
      // libvirt has no admission control and Linux overcommits: the run
      // would power the VMs on, and the guests would meet the OOM killer as
      // they fill their memory. A warning that says so, not a failure the
      // run would not have.
      c.add("warning", "capacity",
            has + "; the plan's VMs need " + need +
                ": they would start, overcommitted, and risk the host's OOM killer as they use their memory",
            "free memory there, or map the compute provider to a larger host", kRecoveries);
    } else if (kib * 10 > capacity->memory_free_kib * 9) {
      c.add("warning", "capacity", has + "; the plan's VMs need " + need + ": less than 10% would be left", "",
            kRecoveries);
    } else {
      c.add("ok", "capacity",
            has + " of " + std::to_string(capacity->memory_total_kib / 1024) + "; the plan's VMs need " + need, "",
            kRecoveries);
    }
  }
}

Status PlanService::check_ip_rules(PlanCheck& c) {
  // IP rules a run could not apply: checked again here, since the
  // placeholders (and their networks) may have changed since the plan was
  // saved.
  if (c.plan.ip_rules.empty()) return Status::ok();
  EVAC_ASSIGN_OR_RETURN(auto problems, ip_rule_problems(c.plan));
  for (const auto& problem : problems)
    c.add("error", "ip-rules", problem,
          "wait for the VM's guest (wait_for_guest: 5m) or fix the rule's network; `evac apply -f` the plan",
          kRecoveries);
  if (problems.empty())
    c.add("ok", "ip-rules",
          std::to_string(c.plan.ip_rules.size()) + " IP rule(s): every VM on a re-addressed network is waited for", "",
          kRecoveries);
  return Status::ok();
}

}  // namespace evac
