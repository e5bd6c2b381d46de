// PlanService: recovery plans at one site.
//
// A plan may cover groups this site protects and groups a paired site
// protects with this site as their recovery site (known from that site's
// configuration copy), so it can be written where it will run: at the
// recovery site, which must be able to run it with the protected site gone.
// Every plan change bumps the site's configuration version, so the plans
// that concern a peer travel to it with the rest of the protection
// configuration (and are there for failback).
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/plan.h"
#include "core/status.h"
#include "service/replication_service.h"
#include "service/site_service.h"

namespace evac {

// One finding of a readiness check: what was checked, how it stands, and
// what to do about it.
struct ReadinessFinding {
  std::string severity;  // ok, warning (a run can go, with a caveat), error (a run would fail)
  std::string check;     // peer, placeholders, networks, storage, points-in-time, callouts, backups, capacity, mappings
  std::string message;
  std::string hint;
  // The runs it concerns ("test", "migrate", "failover", "reprotect",
  // "failback"); empty: every run. An error stops only the runs it names.
  std::vector<std::string> operations = {};
  bool concerns(const std::string& operation) const;
};

// The operations a plan's readiness answers for.
inline const std::vector<std::string>& readiness_operations() {
  static const std::vector<std::string> ops = {"test", "migrate", "failover", "reprotect", "failback"};
  return ops;
}

struct PlanReadiness {
  bool ready = false;  // every operation that applies now is ready
  std::vector<ReadinessFinding> findings;
  // Operations the plan's groups allow now: test, migrate and failover
  // before a recovery, reprotect after one (at the site the VMs run at).
  std::vector<std::string> applicable;
  // An operation is ready when it applies and no error concerns it.
  bool ready_for(const std::string& operation) const;
  void settle();  // sets `ready` from the findings and `applicable`
};

struct PeerDocument;  // a peer's configuration copy, parsed (plan_service.cc)

// A peer's protection group as this site, its recovery site, knows it from
// the peer's configuration copy: what a run here works from.
struct RecoveredGroup {
  std::string name;
  std::string protected_site;
  std::int64_t rpo_seconds = 900;
  std::int64_t epoch = 1;  // the protected site's ownership epoch
  // Its replication settings, which a reprotect carries over.
  int keep_pits = 24;
  int keep_hourly = 0;
  int keep_daily = 0;
  std::uint64_t max_rate_bytes = 0;
  std::string replication = "builtin";  // the engine kind its PITs live in
  struct Vm {
    std::string name;
    std::string uuid;      // at the protected site
    std::string provider;  // ... and its compute provider there
  };
  std::vector<Vm> vms;
  // Network at this site (a mapping's target) -> its test network, and ->
  // the protected site's network it stands for (IP rules name those).
  std::map<std::string, std::string> test_networks;
  std::map<std::string, std::string> source_networks;
  // Storage pool here (a mapping's target) -> the protected site's pool.
  std::map<std::string, std::string> source_pools;
};

// A VM live at this site after a recovery (its placeholder turned the VM):
// where a reprotect back to the former protected site starts.
struct LiveVm {
  std::string name;
  std::string provider;
  std::string uuid;  // at this site
};

class PlanService {
 public:
  // `replication` (may be null in tests) lists the points in time held here.
  explicit PlanService(SiteService& site, ReplicationService* replication = nullptr)
      : site_(site), replication_(replication) {}

  // Creates a plan from its JSON form; kAlreadyExists if the name is taken.
  Result<RecoveryPlan> create_plan(const nlohmann::json& body);
  // Creates or replaces the plan `name` (declarative `evac apply`); the
  // body's name, if any, must be `name`.
  Result<RecoveryPlan> apply_plan(const std::string& name, const nlohmann::json& body);
  Result<std::vector<RecoveryPlan>> list_plans();
  Result<RecoveryPlan> get_plan(const std::string& name);
  // Plans a paired site's configuration copy carries that this site does
  // not store itself (by the site that stores each): after a reprotect, the
  // plan a failback from here runs.
  Result<std::vector<std::pair<std::string, RecoveryPlan>>> peer_plans();
  // The plan to run here: this site's own, else one a paired site's
  // configuration copy carries (after a reprotect, the plan written at the
  // other site is what a failback from here runs).
  Result<RecoveryPlan> runnable_plan(const std::string& name);
  Status delete_plan(const std::string& name);

  // The VM names of a protection group as this site knows it (its own
  // groups, and its peers' groups it is the recovery site for).
  Result<std::vector<std::string>> group_vm_names(const std::string& group);

  // The plan's groups as recovered here, in plan order. A group this site
  // protects is kFailedPrecondition: runs execute at the recovery site.
  Result<std::vector<RecoveredGroup>> recovered_groups(const RecoveryPlan& plan);

  // Everything a run of the plan at this site would need, checked without
  // side effects: the peer, every VM's placeholder, the mapped networks
  // (and isolated test networks) and storage, each group's newest point in
  // time against its RPO, the host commands of callouts.
  // `probe`: also ask the protected site to try reading the VMs now (a
  // backup begun and ended there); off for plan listings, which only glance.
  Result<PlanReadiness> check_plan(const std::string& name, bool probe = true);
  // The same for a plan as given (a run checks the plan as it started with).
  Result<PlanReadiness> check_plan(const RecoveryPlan& plan, bool probe = true);

  // What a reprotect of `group` (live here) back to its former protected
  // site needs of this site's mappings: one for every network attachment
  // and storage pool its live VMs use here. One finding, with the exact
  // `evac mapping create` commands when some are missing. Concerns
  // reprotect (and the reprotect half of a failback).
  Result<std::vector<ReadinessFinding>> reverse_mapping_findings(const RecoveredGroup& group,
                                                                 const std::vector<LiveVm>& vms);

  // Why the plan's IP rules could not all be applied by a run, one line per
  // problem: a rule naming a network none of the plan's VMs is on at either
  // site, a VM on
  // a rule's network that a run powers on without waiting for its guest
  // (it would come up with its production address). VMs this site cannot
  // look up now are judged by readiness later, not here.
  Result<std::vector<std::string>> ip_rule_problems(const RecoveryPlan& plan);

 private:
  Result<RecoveryPlan> save(RecoveryPlan plan, bool must_be_new);
  // The networks of the plan's VMs that this site can look up now: per VM,
  // those it is on by the protected site's names (those IP rules use in
  // this direction), and all networks on either side of their mappings (a
  // plan that also serves the way back has rules for the recovery side's).
  struct PlanNetworks {
    std::map<std::string, std::set<std::string>> vm_sources;
    std::set<std::string> either_side;
  };
  Result<PlanNetworks> plan_networks(const RecoveryPlan& plan);
  Result<std::vector<std::string>> group_vm_names(const std::string& group, const std::vector<PeerDocument>& peer_docs);

  // The parts of check_plan, one per kind of finding, each appending its
  // findings to the check (and narrowing the runs that apply) in the order
  // check_plan calls them. A Status return fails the whole check: only
  // this site's store and its own queries do that, never a finding.
  struct PlanCheck;       // one check under way (plan_service.cc)
  struct RecoveredCheck;  // a group recovered here, as one check sees it
  // A group protected here: runs execute at its recovery site; does that site answer and hold a fresh PIT?
  Status check_protected_group(PlanCheck& c, const std::string& group, const GroupRecord& g);
  // A group a paired site protects: finds it in that site's copy, then the parts below (or check_live_group).
  Status check_recovered_group(PlanCheck& c, const std::string& group);
  // A group live here after a recovery: only a reprotect applies; the former protected site and mappings back.
  Status check_live_group(PlanCheck& c, const RecoveredCheck& g, const SiteService::Ownership& owner);
  // Does the protected site answer? Planned runs need it; test and failover do not.
  void check_protected_site(PlanCheck& c, const RecoveredCheck& g);
  // The guest agents of the running VMs the plan waits for, asked of the protected site (it answers).
  void check_guest_agents(PlanCheck& c, const RecoveredCheck& g);
  // Can the protected site (it answers) make the group's disks read-only when fenced?
  void check_fencing(PlanCheck& c, const RecoveredCheck& g);
  // Could the protected site (it answers) back the VMs up now? Asked only when the check probes.
  void check_backup_probe(PlanCheck& c, const RecoveredCheck& g);
  // Every VM has a placeholder here, still defined, that would start.
  void check_placeholders(PlanCheck& c, const RecoveredCheck& g);
  // The networks and storage pools the protected site's mappings name here.
  void check_mappings(PlanCheck& c, const RecoveredCheck& g);
  // One network mapping `m`: its target active, its test network active and isolated.
  void check_network_mapping(PlanCheck& c, const RecoveredCheck& g, const nlohmann::json& m);
  // The newest point in time held here against the group's RPO.
  void check_points_in_time(PlanCheck& c, const RecoveredCheck& g);
  // The host commands of the plan's callouts are installed here.
  void check_callouts(PlanCheck& c);
  // The memory the plan's placeholders need at each compute provider against what it has free.
  void check_capacity(PlanCheck& c);
  // The plan's IP rules can all be applied by a run (ip_rule_problems, checked again now).
  Status check_ip_rules(PlanCheck& c);

  SiteService& site_;
  ReplicationService* replication_;
};

}  // namespace evac
