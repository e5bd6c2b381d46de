#include <algorithm>
#include <map>
#include <vector>

#include <spdlog/spdlog.h>

#include "core/json_decode.h"
#include "core/plan_json.h"
#include "core/text.h"
#include "service/run_service.h"
#include "service/runs/step_support.h"

namespace evac {

using nlohmann::json;

Result<json> RunService::forget_lost_site(const std::string& site) {
  auto peers = site_.store().list_peers();
  if (!peers) return peers.status();
  if (std::none_of(peers->begin(), peers->end(), [&](const PeerRecord& p) { return p.site == site; }))
    return not_found("site '" + site + "' is not paired with this site", "see `evac site status`");
  if (auto reached = site_.peer_client(site).inventory(); reached)
    return failed_precondition("site '" + site + "' answers: it is not lost",
                               "unpair it without --lost (delete the protection groups between the sites first)");
  auto recovering_there = site_.groups_recovering_to(site);
  if (!recovering_there) return recovering_there.status();
  if (!recovering_there->empty())
    return failed_precondition("protection groups here still recover to site '" + site + "': " + join(*recovering_there, ", "),
                               "delete each with `evac group delete NAME --force` (its placeholders there go with the "
                               "site), then unpair again");
  auto hosted = site_.store().list_hosted_placeholders();
  if (!hosted) return hosted.status();
  std::map<std::string, std::vector<HostedPlaceholderRecord>> by_group;
  for (const auto& h : *hosted)
    if (h.source_site == site) by_group[h.group].push_back(h);
  for (const auto& [group, vms] : by_group) {
    auto owner = site_.store().find_ownership(group);
    if (!owner) return owner.status();
    if (!owner->has_value() || (*owner)->owner_site != site_.identity().name)
      return failed_precondition("group '" + group + "' of site '" + site +
                                     "' was never recovered here: its VMs exist only as the replicas at this site",
                                 "recover them first (`evac plan failover PLAN --confirm PLAN`), then unpair again");
  }
  auto active = site_.store().runs_in_state({"running", "waiting"});
  if (!active) return active.status();
  for (const auto& run : *active) {
    EVAC_ASSIGN_OR_RETURN(auto run_groups, run_groups_from_row(run.id, run.groups));
    for (const auto& entry : by_group) {
      const std::string& group = entry.first;
      if (std::any_of(run_groups.begin(), run_groups.end(), [&](const RunGroup& g) { return g.name == group; }))
        return failed_precondition("run " + run.id + " (" + run.operation + ") is still going over group '" + group + "'",
                                   "let it finish, or cancel it, then unpair again");
    }
  }

  json out{{"unpaired", site}, {"lost", true}, {"groups", json::array()}};
  for (const auto& [group, vms] : by_group) {
    json g{{"group", group}, {"vms", json::array()}};
    // The recovered VMs stop reading through the PITs they came from, as a
    // reprotect would have them; then those PITs go.
    for (const auto& vm : vms) {
      json v{{"vm", vm.name}};
      auto provider = site_.provider(vm.provider);
      if (!provider) return provider.status();
      auto flattened = flatten_vm_disks(**provider, vm.uuid);
      if (flattened) {
        v.update(*flattened);
      } else if (flattened.status().code() == StatusCode::kNotFound) {
        // A VM removed by hand since has nothing left to flatten; its
        // replicas' chain is then released offline or kept, named.
        v["flattened"] = json::array();
        v["missing"] = true;
      } else {
        return flattened.status().with_context("flattening the disks of VM '" + vm.name + "'");
      }
      g["vms"].push_back(v);
    }
    if (replication_) {
      auto released = replication_->release_replicas_here(group);
      if (!released) return released.status();
      g.update(released_json(*released));
    }
    out["groups"].push_back(g);
  }
  EVAC_RETURN_IF_ERROR(site_.store().transaction([&]() -> Status {
    for (const auto& [group, vms] : by_group)
      for (const auto& vm : vms) EVAC_RETURN_IF_ERROR(site_.store().remove_hosted_placeholder(vm.uuid));
    return site_.store().remove_peer(site);
  }));
  std::vector<std::string> names;
  for (const auto& [group, vms] : by_group) names.push_back(group);
  // The plans here that recover those groups now cover VMs that are live
  // here and protected nowhere: the operator carries them to the next
  // recovery site (and deletes them here), which evac cannot do without one.
  out["plans"] = json::array();
  if (auto plans = site_.store().list_plans())
    for (const auto& record : *plans) {
      auto plan = plan_from_json(parse_json_or_discarded(record.document));
      if (plan && std::any_of(plan->groups.begin(), plan->groups.end(), [&](const std::string& g) { return by_group.count(g) > 0; }))
        out["plans"].push_back(record.name);
    }
  EVAC_RETURN_IF_ERROR(site_.store().add_event(EventRecord{
      0, site_.now(), "warning", "site_lost", "",
      "site '" + site + "' was unpaired as lost for good" +
          (names.empty() ? std::string() : "; its groups live here (" + join(names, ", ") + ") are no longer protected")}));
  spdlog::warn("unpaired site {} as lost; groups now unprotected here: {}", site, join(names, ", "));
  return out;
}

}  // namespace evac
