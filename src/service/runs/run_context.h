// What a run works on, resolved once when it starts and kept with the run
// (RunRow.groups), so a run resumed after a crash recovers the same point in
// time onto the same placeholders whatever changed meanwhile.
//
// RunService::start builds it from the plan's groups; every step reads it.
// Stored as JSON in the run's row; read back strictly typed (a field of the
// wrong type is an error naming the run), with fields an older evac did not
// write taking their defaults, so runs started before an upgrade resume.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/plan.h"
#include "core/status.h"

namespace evac {

// A VM of the run, by its name at the protected site.
struct RunVm {
  std::string name;
  std::string group;
  std::string source_uuid;       // the VM at the protected site
  std::string source_provider;   // its compute provider there
  std::string placeholder_uuid;  // its placeholder here ("" when it has none)
  std::string provider;          // the placeholder's compute provider here
};

struct RunGroup {
  std::string name;
  std::string protected_site;
  // The PIT to recover; "": the newest when the step runs (a migration's
  // final sync makes it).
  std::string pit;
  std::optional<std::int64_t> pit_created_at, pit_created_at_ms;  // its instant, for the RPO
  // A failover: when the protected site was last heard from (unix ms), the
  // far end of what the recovery may have lost.
  std::optional<std::int64_t> protected_last_seen_ms;
  // The ownership epoch a recovery takes the group over with (a reprotect:
  // the one it holds).
  std::int64_t epoch = 0;
  std::map<std::string, std::string> test_networks;    // network here -> its test network
  std::map<std::string, std::string> source_networks;  // network here -> the protected site's (IP rules' names)
  std::map<std::string, std::string> source_pools;     // storage pool here -> the protected site's
  // rpo_seconds, keep_*, max_rate_bytes, replication_engine: what a
  // reprotect carries over. Kept as written: the reprotect step checks
  // each against its bounds.
  nlohmann::json settings = nlohmann::json::object();
  std::vector<std::string> vms;  // its VMs' names (RunContext::vms), in the group's order
};

struct RunContext {
  std::string operation;  // test, cleanup, migrate, failover, reprotect, failback
  std::string site;       // this site
  RecoveryPlan plan;      // as the run started with it
  std::map<std::string, RunVm> vms;
  std::vector<RunGroup> groups;  // in the plan's order (reports list them so)

  // kInternal when the run has none by that name: a step names what its
  // run's context holds, so a miss is a bug or a damaged store.
  Result<const RunVm*> vm(const std::string& name) const;
  Result<const RunGroup*> group(const std::string& name) const;
};

// The groups and VMs of a context as the run's row keeps them (a JSON array
// of groups, each with its VMs).
nlohmann::json run_groups_json(const RunContext& ctx);

// Reads back a context: `plan_document` and `groups` are the run row's
// columns of those names, `run_id` names the run in errors.
Result<RunContext> run_context_from_row(const std::string& run_id, const std::string& operation, const std::string& site,
                                        const std::string& plan_document, const std::string& groups);

// Only the groups of a run row's `groups` column, as strictly: what a
// listing, a report or a conflict check needs of another run.
Result<std::vector<RunGroup>> run_groups_from_row(const std::string& run_id, const std::string& groups);

}  // namespace evac
