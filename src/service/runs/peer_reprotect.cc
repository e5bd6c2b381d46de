#include <map>
#include <vector>

#include <spdlog/spdlog.h>

#include "core/json_decode.h"
#include "service/run_service.h"

namespace evac {

using nlohmann::json;

Result<json> RunService::handle_peer_reprotect(const PeerRecord& caller, const std::string& group, const json& body) {
  // Everything read, typed and bounded before anything is looked at.
  auto f = JsonFields::of(body, "a reprotect");
  if (!f) return f.status();
  auto epoch_field = f->integer("epoch", 0, kMaxEpoch);
  auto run_field = f->text("run", 256);
  auto vms_field = f->list("vms");
  for (const Status& s : {epoch_field.status(), run_field.status(), vms_field.status(), f->finish()})
    if (!s) return s;
  if (!epoch_field->has_value() || !*vms_field)
    return invalid_argument("a reprotect names the caller's ownership epoch and the group's VMs",
                            "send {epoch, run, vms: [{name, uuid, source_uuid}]}");
  const std::int64_t epoch = **epoch_field;
  const std::string run_id = run_field->value_or("");
  // Our VM's UUID (the caller's source_uuid) -> the caller's live VM's UUID.
  std::map<std::string, std::string> theirs;
  for (const auto& v : **vms_field) {
    auto vm = JsonFields::of(v, "a VM of a reprotect");
    if (!vm) return vm.status();
    auto name = vm->text("name", 256);
    auto uuid = vm->text("uuid", 256);
    auto source_uuid = vm->text("source_uuid", 256);
    for (const Status& s : {name.status(), uuid.status(), source_uuid.status(), vm->finish()})
      if (!s) return s;
    theirs[source_uuid->value_or("")] = uuid->value_or("");
  }
  std::lock_guard lock(start_mu_);  // not while a run here starts over the same group
  auto g = site_.store().find_group(group);
  if (!g) return g.status();
  auto hosted = site_.store().list_hosted_placeholders();
  if (!hosted) return hosted.status();
  auto answer = [&](const std::vector<HostedPlaceholderRecord>& records) {
    json out = json::array();
    for (const auto& h : records)
      if (h.group == group && h.source_site == caller.site)
        out.push_back({{"uuid", h.uuid}, {"provider", h.provider}, {"name", h.name}, {"source_uuid", h.source_uuid}});
    return json{{"group", group}, {"placeholders", out}};
  };
  if (!g->has_value()) {
    // Done before (a step run again): the placeholders are recorded.
    json done = answer(*hosted);
    if (!done["placeholders"].empty()) return done;
    return not_found("site '" + site_.identity().name + "' has no group '" + group + "' to reprotect");
  }
  const GroupRecord& rec = **g;
  if (rec.protected_site != site_.identity().name || rec.recovery_site != caller.site)
    return permission_denied("group '" + group + "' is not protected from here to '" + caller.site + "'");
  auto owner = site_.ownership(rec.name, rec.protected_site, rec.epoch);
  if (!owner) return owner.status();
  if (owner->owner != caller.site && epoch > owner->epoch) {
    // The caller recovered the group at a newer epoch while this site was
    // away, and the configuration that says so has not reached it yet (it
    // travels with the caller's next heartbeat). The reprotect is the same
    // news from the same site: fence here first, as that copy would.
    EVAC_RETURN_IF_ERROR(site_.fence(rec, OwnershipRecord{rec.name, caller.site, epoch, site_.now(), run_id}));
    owner = site_.ownership(rec.name, rec.protected_site, rec.epoch);
    if (!owner) return owner.status();
  }
  if (owner->owner != caller.site || owner->epoch != epoch)
    return failed_precondition("group '" + group + "' is not fenced here for site '" + caller.site + "' at epoch " +
                                   std::to_string(epoch) + " (owner here: '" + owner->owner + "', epoch " +
                                   std::to_string(owner->epoch) + ")",
                               "reprotect follows a migration or failover to '" + caller.site + "'");
  // Every VM of the group, matched with the caller's live VM.
  std::vector<HostedPlaceholderRecord> records;
  std::map<std::string, std::string> seeds;
  for (const auto& vm : rec.vms) {
    auto it = theirs.find(vm.vm_uuid);
    if (it == theirs.end() || it->second.empty())
      return invalid_argument("the reprotect of group '" + group + "' does not name VM '" + vm.vm_name + "'",
                              "both sites must agree on the group's VMs; check `evac group show " + group + "`");
    const std::string& live_uuid = it->second;
    auto provider = site_.provider(vm.provider);
    if (!provider) return provider.status();
    // Fenced already; off again in case someone started it by hand.
    EVAC_RETURN_IF_ERROR((*provider)->power_off(vm.vm_uuid, false, std::chrono::seconds(0)));
    auto adopted = (*provider)->adopt_as_placeholder(vm.vm_uuid, PlaceholderInfo{vm.provider, vm.vm_name, vm.vm_uuid, group,
                                                                                 caller.site, live_uuid});
    if (!adopted) return adopted.status();
    auto info = (*provider)->get_vm(vm.vm_uuid);
    if (!info) return info.status();
    for (const auto& d : info->disks)
      if (!d.path.empty()) seeds[live_uuid + "/" + d.target] = d.path;
    records.push_back(HostedPlaceholderRecord{vm.vm_uuid, vm.provider, adopted->name, group, caller.site, live_uuid,
                                              site_.now()});
  }
  if (replication_) EVAC_RETURN_IF_ERROR(replication_->set_seeds(group, seeds));
  EVAC_RETURN_IF_ERROR(site_.store().transaction([&]() -> Status {
    for (const auto& r : records) EVAC_RETURN_IF_ERROR(site_.store().add_hosted_placeholder(r));
    return site_.store().remove_group(group);  // bumps the configuration version
  }));
  spdlog::info("reprotect: group {} now protected by site {}; its VMs here are placeholders", group, caller.site);
  EVAC_RETURN_IF_ERROR(site_.store().add_event(EventRecord{0, site_.now(), "info", "reprotected", group,
                                                           "site '" + caller.site + "' protects group '" + group +
                                                               "' now; this site's copies are its placeholders (run " +
                                                               run_id + ")"})
                           .status());
  return answer(records);
}

}  // namespace evac
