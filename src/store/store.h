// evacd's durable state: one SQLite database (WAL) per site under its
// state directory, with numbered schema migrations.
//
// Every public method is atomic. `transaction()` groups several calls into
// one, so a multi-step change (a group with its VMs and placeholders) is all
// written or none of it is.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <chrono>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"
#include "store/sqlite.h"

namespace evac {

struct PeerRecord {
  std::string site;
  std::string url;
  std::string pin;  // "sha256//BASE64" of the peer's TLS public key
  std::int64_t paired_at = 0;
  std::optional<std::int64_t> last_seen_at;       // last successful heartbeat either way
  std::optional<std::int64_t> unreachable_since;  // first failure after the last success
  std::string last_error;
  // The last moment this site heard from the peer (a heartbeat either way,
  // or any call it made here: a cycle's blocks), unix milliseconds: how long
  // a lost site is known to have lived.
  std::optional<std::int64_t> last_seen_at_ms;
};

enum class MappingKind { kNetwork, kStorage, kCompute };
std::string_view mapping_kind_name(MappingKind k);
std::optional<MappingKind> mapping_kind_from_name(std::string_view s);

struct MappingRecord {
  std::int64_t id = 0;
  std::string peer_site;  // the recovery site the mapping leads to
  MappingKind kind = MappingKind::kNetwork;
  std::string source;     // resource at this (protected) site
  std::string target;     // resource at the peer (recovery) site
  std::string test_network;  // network mappings only: where test recoveries attach
  std::int64_t created_at = 0;
};

struct GroupVmRecord {
  std::string provider;
  std::string vm_name;
  std::string vm_uuid;
  std::string placeholder_uuid;  // at the recovery site
  std::string placeholder_provider;
};

struct GroupRecord {
  std::string name;
  std::string protected_site;  // owner of the live copies
  std::string recovery_site;
  std::int64_t rpo_seconds = 900;
  int keep_pits = 24;
  std::int64_t epoch = 1;  // grows on every change of owner (a fencing token)
  std::int64_t created_at = 0;
  std::vector<GroupVmRecord> vms;
  std::uint64_t max_rate_bytes = 0;  // bytes per second sent for this group's cycles; 0 = unlimited
  int keep_hourly = 0;  // also keep the newest PIT of each of the last N hours
  int keep_daily = 0;   // ... and of each of the last N days
  // The kind of replication engine the group's PITs live in ("builtin",
  // "rbd", ...). Set when the group is created and kept: another engine
  // would not know the PITs this one holds.
  std::string replication = "builtin";
};

// What the protected site knows of a group's replication on its own, so lag
// and RPO compliance stay known (and keep growing) with the recovery site
// unreachable. One row per group protected here; absent until its first cycle.
struct ReplicationRecord {
  std::string group;
  // The newest cycle that completed: the PIT it made and what it cost.
  std::string last_pit_id;
  std::optional<std::int64_t> last_pit_created_at;  // the instant the PIT captures
  std::uint64_t last_bytes_sent = 0;
  std::int64_t last_duration_ms = 0;
  std::optional<std::int64_t> last_success_at;  // when that cycle ended
  // The newest cycle that failed, and how many failed in a row since the last success.
  std::optional<std::int64_t> last_failure_at;
  std::string last_error;
  int consecutive_failures = 0;
  std::int64_t cycles_succeeded = 0;
  std::int64_t cycles_failed = 0;
  std::uint64_t bytes_sent_total = 0;
  // The compliance state the last alarm reported, so an alarm fires once per
  // change rather than on every check (and survives a restart).
  bool rpo_breached = false;
  // The instant captured by the newest cycle that read every block of the
  // group's disks (no change tracking trusted); unset before the first.
  std::optional<std::int64_t> last_full_read_at;
};

// An alarm or notable event, kept for operators (`evac events list`).
struct EventRecord {
  std::int64_t id = 0;
  std::int64_t at = 0;   // when it was first raised
  std::string severity;  // info, warning, error
  std::string kind;      // rpo_breached, rpo_restored, cycle_failed, cycle_left_cleanup
  std::string group;     // may be empty for site-wide events
  std::string message;   // the newest occurrence's
  std::int64_t count = 1;                // occurrences: a repeat is counted here, not raised again
  std::optional<std::int64_t> last_at;   // the newest occurrence, when it repeated
};

// What makes two events "the same" for counting: the kind, severity and the
// message with what varies between occurrences of one condition (numbers,
// hex names of folders, cycles and PITs) left out.
std::string event_signature(const EventRecord& e);

// A placeholder this site registered for a peer's protection group.
struct HostedPlaceholderRecord {
  std::string uuid;
  std::string provider;
  std::string name;
  std::string group;
  std::string source_site;
  std::string source_uuid;
  std::int64_t created_at = 0;
};

// What a paired site sent us of its protection configuration, kept so a
// recovery can run here with that site gone.
struct PeerCopyRecord {
  std::string peer_site;
  std::int64_t version = 0;
  std::string document;  // JSON
  std::int64_t received_at = 0;
};

// Who owns the live copy of a group, when a recovery moved it: the site
// whose copy runs, and the epoch of that change (it only grows, so an older
// claim never overwrites a newer one and a returning site knows it was
// fenced). No row: the group's protected site owns it, at epoch 1.
struct OwnershipRecord {
  std::string group;
  std::string owner_site;
  std::int64_t epoch = 1;
  std::int64_t changed_at = 0;
  std::string run_id;  // the run that moved it
};

// A recovery plan as its JSON document (core/plan_json.h): the store does
// not interpret it, so the plan's shape can grow without a migration.
struct PlanRecord {
  std::string name;
  std::string document;
  std::int64_t created_at = 0;
  std::int64_t updated_at = 0;
};

// A run of a plan as stored: the engine (src/engine) owns the meaning of
// its strings (operation, state) and JSON documents.
struct RunRow {
  std::string id;
  std::string plan;
  std::string operation;  // test, cleanup, migrate, failover, reprotect, failback
  std::string state;      // running, waiting, failed, succeeded, cancelled
  std::string started_by;
  std::int64_t created_at = 0;
  std::optional<std::int64_t> ended_at;
  std::string plan_document;  // the plan as it was when the run started
  std::string groups;         // JSON: what the run needs of its groups, resolved at its start
  std::string error;
};

struct StepRow {
  std::string run_id;
  int idx = 0;
  std::string name;  // "Power on test VM: web01"
  std::string kind;
  std::string spec;   // JSON: its parameters and the steps it waits for
  std::string state;  // pending, running, waiting, succeeded, failed, skipped
  int attempts = 0;
  std::optional<std::int64_t> started_at_ms;
  std::optional<std::int64_t> ended_at_ms;
  std::string error;
  std::string result;  // JSON: what the step made (ids to undo it by), empty before it ends
};

class Store {
 public:
  // Holds the database while open: another process's open is refused,
  // after waiting up to `wait_for_holder` for it to let go (an evacd
  // restarted right after a kill -9 finds the old process still exiting).
  static Result<std::unique_ptr<Store>> open(const std::string& path,
                                             std::chrono::milliseconds wait_for_holder = std::chrono::milliseconds(0));
  static int schema_version_latest();

  int schema_version();

  // Runs `body` in one transaction: committed if it returns ok, rolled back
  // otherwise. Nested calls join the outer transaction.
  Status transaction(const std::function<Status()>& body);

  // Key/value settings (site identity, counters).
  Result<std::optional<std::string>> get_meta(const std::string& key);
  Status set_meta(const std::string& key, const std::string& value);

  // API bearer tokens, stored as SHA-256 digests only.
  Status add_api_token(const std::string& name, const std::string& token_digest);
  Result<std::optional<std::string>> api_token_name(const std::string& token_digest);
  Result<std::int64_t> api_token_count();

  // One-time pairing tokens.
  Status add_pairing_token(const std::string& secret_digest, std::int64_t expires_at);
  // Marks the token used; kUnauthenticated if unknown, used or expired.
  Status consume_pairing_token(const std::string& secret_digest, std::int64_t now);

  Status add_peer(const PeerRecord& peer);
  Result<std::vector<PeerRecord>> list_peers();
  Result<std::optional<PeerRecord>> find_peer(const std::string& site);
  Result<std::optional<PeerRecord>> find_peer_by_pin(const std::string& pin);
  Status record_peer_contact(const std::string& site, std::int64_t now, std::int64_t now_ms);
  Status record_peer_failure(const std::string& site, std::int64_t now, const std::string& error);
  Status remove_peer(const std::string& site);

  Result<MappingRecord> add_mapping(const MappingRecord& m);
  Result<std::vector<MappingRecord>> list_mappings(const std::optional<std::string>& peer_site = std::nullopt);
  Result<std::optional<MappingRecord>> find_mapping(const std::string& peer_site, MappingKind kind, const std::string& source);
  Status remove_mapping(std::int64_t id);

  Status add_group(const GroupRecord& g);  // with its VMs
  Result<std::vector<GroupRecord>> list_groups();
  Result<std::optional<GroupRecord>> find_group(const std::string& name);
  // The group a VM (by UUID) is protected by, if any.
  Result<std::optional<std::string>> group_of_vm(const std::string& vm_uuid);
  Status add_group_vm(const std::string& group, const GroupVmRecord& vm);
  Status remove_group_vm(const std::string& group, const std::string& vm_uuid);
  Status remove_group(const std::string& name);
  Status set_group_max_rate(const std::string& name, std::uint64_t bytes_per_second);
  Status set_group_retention(const std::string& name, int keep_pits, int keep_hourly, int keep_daily);

  // Replication bookkeeping at the protected site.
  Result<std::optional<ReplicationRecord>> find_replication(const std::string& group);
  Status record_cycle_success(const std::string& group, const std::string& pit_id, std::int64_t pit_created_at,
                              std::uint64_t bytes_sent, std::int64_t duration_ms, std::int64_t finished_at,
                              bool full_read = false);
  Status record_cycle_failure(const std::string& group, std::int64_t at, const std::string& error);
  Status set_rpo_breached(const std::string& group, bool breached);

  // Raises `e`, or counts it on the group's newest event when that one is
  // the same (event_signature): a condition that repeats with nothing else
  // happening in between (retries failing the same way) is one event with a
  // count, its message and last_at the newest occurrence's.
  Result<EventRecord> add_event(const EventRecord& e);
  // Newest first; `group` filters, `limit` caps the count.
  Result<std::vector<EventRecord>> list_events(const std::optional<std::string>& group, int limit);

  Status add_hosted_placeholder(const HostedPlaceholderRecord& p);
  Result<std::vector<HostedPlaceholderRecord>> list_hosted_placeholders();
  Status remove_hosted_placeholder(const std::string& uuid);

  Status put_peer_copy(const PeerCopyRecord& c);
  Result<std::optional<PeerCopyRecord>> find_peer_copy(const std::string& peer_site);
  Result<std::vector<PeerCopyRecord>> list_peer_copies();

  // Recovery plans. put_plan creates or replaces one (keeping its created_at).
  // Keeps the record with the higher epoch: a stale claim changes nothing.
  Status put_ownership(const OwnershipRecord& o);
  Result<std::optional<OwnershipRecord>> find_ownership(const std::string& group);
  Result<std::vector<OwnershipRecord>> list_ownership();

  Status put_plan(const PlanRecord& p);
  Result<std::vector<PlanRecord>> list_plans();
  Result<std::optional<PlanRecord>> find_plan(const std::string& name);
  Status remove_plan(const std::string& name);

  // Runs. add_run writes a run with all its steps at once (their specs in
  // one value: a step's own row is written at its first change); steps'
  // states are then updated before and after their side effects, several
  // in one transaction where the engine records one step's end with the
  // next one's start. run_steps gives every step, changed or not.
  Status add_run(const RunRow& run, const std::vector<StepRow>& steps);
  Status update_steps(const std::vector<StepRow>& steps);  // their state columns; name, kind and spec are kept
  Status update_run(const std::string& id, const std::string& state, const std::optional<std::int64_t>& ended_at,
                    const std::string& error);
  // Newest first.
  Result<std::vector<RunRow>> list_runs(const std::optional<std::string>& plan, int limit);
  Result<std::optional<RunRow>> find_run(const std::string& id);
  Result<std::vector<StepRow>> run_steps(const std::string& run_id);
  // Oldest first: what a restarted evacd picks up again.
  Result<std::vector<RunRow>> runs_in_state(const std::vector<std::string>& states);

  // Protection configuration version: bumped by every change a peer's copy
  // must follow (mappings, groups), inside the same transaction.
  Result<std::int64_t> config_version();
  Status bump_config_version();

 private:
  explicit Store(sqlite::Connection db) : db_(std::move(db)) {}
  Status migrate();
  Result<std::vector<GroupVmRecord>> group_vms(const std::string& group);

  std::recursive_mutex mu_;
  int tx_depth_ = 0;
  sqlite::Connection db_;
  // Prepared once: transactions and step updates are the engine's hot path
  // (a write or two per step), where parsing the SQL each time showed.
  Status run_cached(std::optional<sqlite::Statement>& statement, const char* sql);
  std::optional<sqlite::Statement> begin_, commit_, rollback_;
  std::optional<sqlite::Statement> update_step_;
  // Writes the steps' state columns, creating a step's row at its first
  // change. Holds mu_; the caller brackets several in a transaction.
  Status write_step_states(const std::vector<StepRow>& steps);
};

}  // namespace evac
