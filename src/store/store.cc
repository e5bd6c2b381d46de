#include "store/store.h"

#include <algorithm>
#include <array>
#include <cctype>

namespace evac {
namespace {

// Each entry moves the schema from version i to i+1. Never edit a released
// entry: add a new one, so every site's database upgrades the same way.
constexpr std::array<const char*, 11> kMigrations = {
    R"sql(
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE api_tokens (
  token_sha256 TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  created_at INTEGER NOT NULL DEFAULT (unixepoch()));
CREATE TABLE pairing_tokens (
  secret_sha256 TEXT PRIMARY KEY,
  created_at INTEGER NOT NULL DEFAULT (unixepoch()),
  expires_at INTEGER NOT NULL,
  used_at INTEGER);
CREATE TABLE peers (
  site TEXT PRIMARY KEY,
  url TEXT NOT NULL,
  pin TEXT NOT NULL UNIQUE,
  paired_at INTEGER NOT NULL,
  last_seen_at INTEGER,
  unreachable_since INTEGER,
  last_error TEXT NOT NULL DEFAULT '');
CREATE TABLE mappings (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  peer_site TEXT NOT NULL REFERENCES peers(site),
  kind TEXT NOT NULL CHECK (kind IN ('network', 'storage', 'compute')),
  source TEXT NOT NULL,
  target TEXT NOT NULL,
  test_network TEXT NOT NULL DEFAULT '',
  created_at INTEGER NOT NULL,
  UNIQUE (peer_site, kind, source));
CREATE TABLE protection_groups (
  name TEXT PRIMARY KEY,
  protected_site TEXT NOT NULL,
  recovery_site TEXT NOT NULL REFERENCES peers(site),
  rpo_seconds INTEGER NOT NULL CHECK (rpo_seconds > 0),
  keep_pits INTEGER NOT NULL CHECK (keep_pits > 0),
  epoch INTEGER NOT NULL DEFAULT 1,
  created_at INTEGER NOT NULL);
CREATE TABLE group_vms (
  group_name TEXT NOT NULL REFERENCES protection_groups(name) ON DELETE CASCADE,
  provider TEXT NOT NULL,
  vm_name TEXT NOT NULL,
  vm_uuid TEXT NOT NULL UNIQUE,
  placeholder_uuid TEXT NOT NULL,
  placeholder_provider TEXT NOT NULL,
  PRIMARY KEY (group_name, vm_uuid));
CREATE TABLE hosted_placeholders (
  uuid TEXT PRIMARY KEY,
  provider TEXT NOT NULL,
  name TEXT NOT NULL,
  group_name TEXT NOT NULL,
  source_site TEXT NOT NULL,
  source_uuid TEXT NOT NULL UNIQUE,
  created_at INTEGER NOT NULL);
CREATE TABLE peer_copies (
  peer_site TEXT PRIMARY KEY,
  version INTEGER NOT NULL,
  document TEXT NOT NULL,
  received_at INTEGER NOT NULL);
)sql",
    // 2: replication operations — rate limits, the protected site's own record
    // of each group's cycles (lag without asking the peer), and alarms.
    R"sql(
ALTER TABLE protection_groups ADD COLUMN max_rate_bytes INTEGER NOT NULL DEFAULT 0 CHECK (max_rate_bytes >= 0);
CREATE TABLE replication_status (
  group_name TEXT PRIMARY KEY REFERENCES protection_groups(name) ON DELETE CASCADE,
  last_pit_id TEXT NOT NULL DEFAULT '',
  last_pit_created_at INTEGER,
  last_bytes_sent INTEGER NOT NULL DEFAULT 0,
  last_duration_ms INTEGER NOT NULL DEFAULT 0,
  last_success_at INTEGER,
  last_failure_at INTEGER,
  last_error TEXT NOT NULL DEFAULT '',
  consecutive_failures INTEGER NOT NULL DEFAULT 0,
  cycles_succeeded INTEGER NOT NULL DEFAULT 0,
  cycles_failed INTEGER NOT NULL DEFAULT 0,
  bytes_sent_total INTEGER NOT NULL DEFAULT 0,
  rpo_breached INTEGER NOT NULL DEFAULT 0);
CREATE TABLE events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  at INTEGER NOT NULL,
  severity TEXT NOT NULL CHECK (severity IN ('info', 'warning', 'error')),
  kind TEXT NOT NULL,
  group_name TEXT NOT NULL DEFAULT '',
  message TEXT NOT NULL);
CREATE INDEX events_by_group ON events (group_name, id);
)sql",
    // 3: thinning of retained PITs (newest per hour and per day).
    R"sql(
ALTER TABLE protection_groups ADD COLUMN keep_hourly INTEGER NOT NULL DEFAULT 0 CHECK (keep_hourly >= 0);
ALTER TABLE protection_groups ADD COLUMN keep_daily INTEGER NOT NULL DEFAULT 0 CHECK (keep_daily >= 0);
)sql",
    // 4: recovery plans, each kept as its JSON document (core/plan_json.h).
    R"sql(
CREATE TABLE recovery_plans (
  name TEXT PRIMARY KEY,
  document TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
)sql",
    // 5: runs of plans and their steps, written before and after each side
    // effect so a restarted evacd resumes them.
    R"sql(
CREATE TABLE runs (
  id TEXT PRIMARY KEY,
  plan TEXT NOT NULL,
  operation TEXT NOT NULL,
  state TEXT NOT NULL,
  started_by TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  ended_at INTEGER,
  plan_document TEXT NOT NULL,
  groups TEXT NOT NULL,
  error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX runs_by_plan ON runs (plan, created_at);
CREATE TABLE run_steps (
  run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  idx INTEGER NOT NULL,
  name TEXT NOT NULL,
  kind TEXT NOT NULL,
  spec TEXT NOT NULL,
  state TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  started_at_ms INTEGER,
  ended_at_ms INTEGER,
  error TEXT NOT NULL DEFAULT '',
  result TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (run_id, idx)
);
)sql",
    // 6: which site owns the live copy of a group, as this site last
    // learned it (a failover or migration moves it; the epoch fences).
    R"sql(
CREATE TABLE ownership (
  grp TEXT PRIMARY KEY,
  owner_site TEXT NOT NULL,
  epoch INTEGER NOT NULL,
  changed_at INTEGER NOT NULL,
  run_id TEXT NOT NULL DEFAULT ''
);
)sql",
    // 7: when a cycle last read every block of the group's disks rather
    // than trusting change tracking (a periodic full read is due after it).
    R"sql(
ALTER TABLE replication_status ADD COLUMN last_full_read_at INTEGER;
)sql",
    // 8: every step of a run, as it was compiled, in one value written with
    // the run: a run's first step need not wait for thousands of rows. A
    // step's row in run_steps is written at its first change of state (its
    // name, kind and spec left empty there: they are here). Runs written
    // before keep their full rows and have none.
    R"sql(
CREATE TABLE run_step_specs (
  run_id TEXT PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
  specs TEXT NOT NULL
);
)sql",
    // 9: run_steps keyed by its primary key alone (WITHOUT ROWID): a step's
    // state change then touches one B-tree instead of the table and its key
    // index, about a third less CPU per write on the engine's hot path.
    R"sql(
CREATE TABLE run_steps_by_key (
  run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  idx INTEGER NOT NULL,
  name TEXT NOT NULL,
  kind TEXT NOT NULL,
  spec TEXT NOT NULL,
  state TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  started_at_ms INTEGER,
  ended_at_ms INTEGER,
  error TEXT NOT NULL DEFAULT '',
  result TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (run_id, idx)
) WITHOUT ROWID;
INSERT INTO run_steps_by_key (run_id, idx, name, kind, spec, state, attempts, started_at_ms, ended_at_ms, error, result)
  SELECT run_id, idx, name, kind, spec, state, attempts, started_at_ms, ended_at_ms, error, result FROM run_steps;
DROP TABLE run_steps;
ALTER TABLE run_steps_by_key RENAME TO run_steps;
)sql",
    // 10: an event that repeats is counted on the first occurrence (its
    // signature says what "the same" is), not raised again; a peer's last
    // contact to the millisecond (the end of a lost site's known life).
    R"sql(
ALTER TABLE events ADD COLUMN count INTEGER NOT NULL DEFAULT 1;
ALTER TABLE events ADD COLUMN last_at INTEGER;
ALTER TABLE events ADD COLUMN signature TEXT NOT NULL DEFAULT '';
ALTER TABLE peers ADD COLUMN last_seen_at_ms INTEGER;
)sql",
    // 11: the replication engine each group's PITs live in; the groups of
    // before there was a choice replicate with the built-in one.
    R"sql(
ALTER TABLE protection_groups ADD COLUMN replication TEXT NOT NULL DEFAULT 'builtin'
  CHECK (length(replication) BETWEEN 1 AND 32);
)sql",
};

}  // namespace

std::string_view mapping_kind_name(MappingKind k) {
  switch (k) {
    case MappingKind::kNetwork: return "network";
    case MappingKind::kStorage: return "storage";
    case MappingKind::kCompute: return "compute";
  }
  return "network";
}

std::optional<MappingKind> mapping_kind_from_name(std::string_view s) {
  if (s == "network") return MappingKind::kNetwork;
  if (s == "storage") return MappingKind::kStorage;
  if (s == "compute") return MappingKind::kCompute;
  return std::nullopt;
}

int Store::schema_version_latest() { return static_cast<int>(kMigrations.size()); }

Result<std::unique_ptr<Store>> Store::open(const std::string& path, std::chrono::milliseconds wait_for_holder) {
  auto conn = sqlite::Connection::open(path);
  if (!conn) return conn.status();
  std::unique_ptr<Store> store(new Store(std::move(*conn)));
  // One process per state database, holding it for as long as it runs: a
  // second evacd on the same state folder is refused here rather than
  // running the same runs twice, and with nobody to share the file with,
  // SQLite takes no file lock per transaction (a run writes one per step).
  // The lock goes with the process, so a killed evacd's restart finds it
  // free. WAL makes a crash mid-write lose nothing that was committed.
  Status locked = store->db_.exec(
      "PRAGMA busy_timeout=" + std::to_string(wait_for_holder.count()) + "; PRAGMA locking_mode=EXCLUSIVE; PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
      "PRAGMA foreign_keys=ON; BEGIN IMMEDIATE; COMMIT; PRAGMA busy_timeout=5000;");
  if (locked.code() == StatusCode::kUnavailable && locked.message().find("locked") != std::string::npos)  // SQLITE_BUSY
    return failed_precondition("state database " + path + " is in use by another process (" + locked.message() + ")",
                               "another evacd runs with this state folder: stop it, or give this one its own state_dir");
  EVAC_RETURN_IF_ERROR(locked);
  EVAC_RETURN_IF_ERROR(store->migrate());
  return store;
}

int Store::schema_version() {
  std::lock_guard lock(mu_);
  auto st = db_.prepare("PRAGMA user_version");
  if (!st || !st->step().is_ok()) return -1;
  return static_cast<int>(st->int64(0));
}

Status Store::migrate() {
  int current = schema_version();
  if (current < 0) return internal_error("cannot read the state database's schema version");
  if (current > schema_version_latest())
    return failed_precondition("the state database has schema version " + std::to_string(current) +
                                   ", newer than this evacd knows (" + std::to_string(schema_version_latest()) + ")",
                               "run the newer evacd that wrote it, or restore a backup");
  for (int v = current; v < schema_version_latest(); ++v) {
    EVAC_RETURN_IF_ERROR(transaction([&]() -> Status {
      EVAC_RETURN_IF_ERROR(db_.exec(kMigrations[v]));
      return db_.exec("PRAGMA user_version = " + std::to_string(v + 1));
    }).with_context("migrating the state database to version " + std::to_string(v + 1)));
  }
  return Status::ok();
}

Status Store::transaction(const std::function<Status()>& body) {
  std::lock_guard lock(mu_);
  if (tx_depth_ > 0) {
    ++tx_depth_;
    Status s = body();
    --tx_depth_;
    return s;
  }
  EVAC_RETURN_IF_ERROR(run_cached(begin_, "BEGIN IMMEDIATE"));
  ++tx_depth_;
  Status s = body();
  --tx_depth_;
  if (!s.is_ok()) {
    (void)run_cached(rollback_, "ROLLBACK");
    return s;
  }
  if (Status c = run_cached(commit_, "COMMIT"); !c.is_ok()) {
    (void)run_cached(rollback_, "ROLLBACK");
    return c;
  }
  return Status::ok();
}

Status Store::run_cached(std::optional<sqlite::Statement>& statement, const char* sql) {
  if (!statement) {
    auto st = db_.prepare(sql);
    if (!st) return st.status();
    statement.emplace(std::move(*st));
  }
  statement->reset();
  return statement->run();
}

// ---- meta -------------------------------------------------------------

Result<std::optional<std::string>> Store::get_meta(const std::string& key) {
  std::lock_guard lock(mu_);
  auto st = db_.prepare("SELECT value FROM meta WHERE key = ?");
  if (!st) return st.status();
  st->bind(1, key);
  return st->first([](const sqlite::Statement& s) { return s.text(0); });
}

Status Store::set_meta(const std::string& key, const std::string& value) {
  std::lock_guard lock(mu_);
  auto st = db_.prepare("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value");
  if (!st) return st.status();
  return st->bind(1, key).bind(2, value).run();
}

Result<std::int64_t> Store::config_version() {
  auto v = get_meta("config_version");
  if (!v) return v.status();
  return v->has_value() ? std::stoll(**v) : 0;
}

Status Store::bump_config_version() {
  return transaction([&]() -> Status {
    auto v = config_version();
    if (!v) return v.status();
    return set_meta("config_version", std::to_string(*v + 1));
  });
}

// ---- tokens -----------------------------------------------------------

Status Store::add_api_token(const std::string& name, const std::string& token_digest) {
  std::lock_guard lock(mu_);
  auto st = db_.prepare("INSERT INTO api_tokens (token_sha256, name) VALUES (?, ?)");
  if (!st) return st.status();
  return st->bind(1, token_digest).bind(2, name).run();
}

Result<std::optional<std::string>> Store::api_token_name(const std::string& token_digest) {
  std::lock_guard lock(mu_);
  auto st = db_.prepare("SELECT name FROM api_tokens WHERE token_sha256 = ?");
  if (!st) return st.status();
  st->bind(1, token_digest);
  return st->first([](const sqlite::Statement& s) { return s.text(0); });
}

Result<std::int64_t> Store::api_token_count() {
  std::lock_guard lock(mu_);
  auto st = db_.prepare("SELECT count(*) FROM api_tokens");
  if (!st) return st.status();
  auto row = st->step();
  if (!row) return row.status();
  return st->int64(0);
}

Status Store::add_pairing_token(const std::string& secret_digest, std::int64_t expires_at) {
  std::lock_guard lock(mu_);
  auto st = db_.prepare("INSERT INTO pairing_tokens (secret_sha256, expires_at) VALUES (?, ?)");
  if (!st) return st.status();
  return st->bind(1, secret_digest).bind(2, expires_at).run();
}

Status Store::consume_pairing_token(const std::string& secret_digest, std::int64_t now) {
  std::lock_guard lock(mu_);
  auto st = db_.prepare(
      "UPDATE pairing_tokens SET used_at = ? WHERE secret_sha256 = ? AND used_at IS NULL AND expires_at > ?");
  if (!st) return st.status();
  EVAC_RETURN_IF_ERROR(st->bind(1, now).bind(2, secret_digest).bind(3, now).run());
  if (db_.changes() != 1)
    return unauthenticated("the pairing token is unknown, already used or expired",
                           "create a new one at the other site with `evac site pairing-token`");
  return Status::ok();
}

// ---- peers ------------------------------------------------------------

namespace {
constexpr const char* kPeerColumns = "site, url, pin, paired_at, last_seen_at, unreachable_since, last_error, last_seen_at_ms";
PeerRecord read_peer(const sqlite::Statement& st) {
  return PeerRecord{st.text(0),           st.text(1),           st.text(2), st.int64(3),
                    st.optional_int64(4), st.optional_int64(5), st.text(6), st.optional_int64(7)};
}
}  // namespace

Status Store::add_peer(const PeerRecord& p) {
  std::lock_guard lock(mu_);
  auto st = db_.prepare("INSERT INTO peers (site, url, pin, paired_at, last_seen_at) VALUES (?, ?, ?, ?, ?)");
  if (!st) return st.status();
  Status s = st->bind(1, p.site).bind(2, p.url).bind(3, p.pin).bind(4, p.paired_at).bind(5, p.last_seen_at).run();
  if (s.code() == StatusCode::kAlreadyExists)
    return already_exists("site '" + p.site + "' (or a site with the same certificate) is already paired",
                          "unpair it first with `evac site unpair " + p.site + "`");
  return s;
}

Result<std::vector<PeerRecord>> Store::list_peers() {
  std::lock_guard lock(mu_);
  auto st = db_.prepare(std::string("SELECT ") + kPeerColumns + " FROM peers ORDER BY site");
  if (!st) return st.status();
  return st->all([](const sqlite::Statement& s) { return read_peer(s); });
}

Result<std::optional<PeerRecord>> Store::find_peer(const std::string& site) {
  std::lock_guard lock(mu_);
  auto st = db_.prepare(std::string("SELECT ") + kPeerColumns + " FROM peers WHERE site = ?");
  if (!st) return st.status();
  st->bind(1, site);
  return st->first([](const sqlite::Statement& s) { return read_peer(s); });
}

Result<std::optional<PeerRecord>> Store::find_peer_by_pin(const std::string& pin) {
  std::lock_guard lock(mu_);
  auto st = db_.prepare(std::string("SELECT ") + kPeerColumns + " FROM peers WHERE pin = ?");
  if (!st) return st.status();
  st->bind(1, pin);
  return st->first([](const sqlite::Statement& s) { return read_peer(s); });
}

Status Store::record_peer_contact(const std::string& site, std::int64_t now, std::int64_t now_ms) {
  std::lock_guard lock(mu_);
  // Concurrent calls may end out of order: the newest contact wins.
  auto st = db_.prepare(
      "UPDATE peers SET last_seen_at = max(coalesce(last_seen_at, 0), ?1), "
      "last_seen_at_ms = max(coalesce(last_seen_at_ms, 0), ?2), unreachable_since = NULL, last_error = '' WHERE site = ?3");
  if (!st) return st.status();
  return st->bind(1, now).bind(2, now_ms).bind(3, site).run();
}

Status Store::record_peer_failure(const std::string& site, std::int64_t now, const std::string& error) {
  std::lock_guard lock(mu_);
  auto st = db_.prepare(
      "UPDATE peers SET unreachable_since = coalesce(unreachable_since, ?), last_error = ? WHERE site = ?");
  if (!st) return st.status();
  return st->bind(1, now).bind(2, error).bind(3, site).run();
}

Status Store::remove_peer(const std::string& site) {
  return transaction([&]() -> Status {
    for (const char* sql : {"DELETE FROM mappings WHERE peer_site = ?", "DELETE FROM peer_copies WHERE peer_site = ?",
                            "DELETE FROM peers WHERE site = ?"}) {
      auto st = db_.prepare(sql);
      if (!st) return st.status();
      EVAC_RETURN_IF_ERROR(st->bind(1, site).run());
    }
    return Status::ok();
  });
}

// ---- mappings ---------------------------------------------------------

namespace {
constexpr const char* kMappingColumns = "id, peer_site, kind, source, target, test_network, created_at";
MappingRecord read_mapping(const sqlite::Statement& st) {
  return MappingRecord{st.int64(0), st.text(1), mapping_kind_from_name(st.text(2)).value_or(MappingKind::kNetwork),
                       st.text(3),  st.text(4), st.text(5), st.int64(6)};
}
}  // namespace

Result<MappingRecord> Store::add_mapping(const MappingRecord& m) {
  std::lock_guard lock(mu_);
  MappingRecord out = m;
  Status s = transaction([&]() -> Status {
    auto st = db_.prepare("INSERT INTO mappings (peer_site, kind, source, target, test_network, created_at) VALUES (?, ?, ?, ?, ?, ?)");
    if (!st) return st.status();
    Status ins = st->bind(1, m.peer_site).bind(2, mapping_kind_name(m.kind)).bind(3, m.source).bind(4, m.target)
                     .bind(5, m.test_network).bind(6, m.created_at).run();
    if (ins.code() == StatusCode::kAlreadyExists)
      return already_exists(std::string(mapping_kind_name(m.kind)) + " '" + m.source + "' is already mapped for site '" +
                                m.peer_site + "'",
                            "delete the existing mapping first (`evac mapping list` shows its id)");
    EVAC_RETURN_IF_ERROR(ins);
    out.id = db_.last_insert_rowid();
    return bump_config_version();
  });
  if (!s) return s;
  return out;
}

Result<std::vector<MappingRecord>> Store::list_mappings(const std::optional<std::string>& peer_site) {
  std::lock_guard lock(mu_);
  auto st = db_.prepare(std::string("SELECT ") + kMappingColumns +
                        " FROM mappings WHERE (?1 IS NULL OR peer_site = ?1) ORDER BY kind, source");
  if (!st) return st.status();
  st->bind(1, peer_site);
  return st->all([](const sqlite::Statement& s) { return read_mapping(s); });
}

Result<std::optional<MappingRecord>> Store::find_mapping(const std::string& peer_site, MappingKind kind,
                                                         const std::string& source) {
  std::lock_guard lock(mu_);
  auto st = db_.prepare(std::string("SELECT ") + kMappingColumns + " FROM mappings WHERE peer_site = ? AND kind = ? AND source = ?");
  if (!st) return st.status();
  st->bind(1, peer_site).bind(2, mapping_kind_name(kind)).bind(3, source);
  return st->first([](const sqlite::Statement& s) { return read_mapping(s); });
}

Status Store::remove_mapping(std::int64_t id) {
  return transaction([&]() -> Status {
    auto st = db_.prepare("DELETE FROM mappings WHERE id = ?");
    if (!st) return st.status();
    EVAC_RETURN_IF_ERROR(st->bind(1, id).run());
    if (db_.changes() == 0) return not_found("no mapping with id " + std::to_string(id), "list them with `evac mapping list`");
    return bump_config_version();
  });
}

// ---- protection groups --------------------------------------------------

Status Store::add_group(const GroupRecord& g) {
  return transaction([&]() -> Status {
    auto st = db_.prepare(
        "INSERT INTO protection_groups (name, protected_site, recovery_site, rpo_seconds, keep_pits, epoch, created_at, "
        "max_rate_bytes, keep_hourly, keep_daily, replication) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    if (!st) return st.status();
    Status s = st->bind(1, g.name).bind(2, g.protected_site).bind(3, g.recovery_site).bind(4, g.rpo_seconds)
                   .bind(5, g.keep_pits).bind(6, g.epoch).bind(7, g.created_at)
                   .bind(8, static_cast<std::int64_t>(g.max_rate_bytes)).bind(9, g.keep_hourly).bind(10, g.keep_daily)
                   .bind(11, g.replication)
                   .run();
    if (s.code() == StatusCode::kAlreadyExists)
      return already_exists("protection group '" + g.name + "' already exists", "choose another name");
    EVAC_RETURN_IF_ERROR(s);
    for (const auto& vm : g.vms) EVAC_RETURN_IF_ERROR(add_group_vm(g.name, vm));
    return bump_config_version();
  });
}

Result<std::vector<GroupVmRecord>> Store::group_vms(const std::string& group) {
  auto st = db_.prepare(
      "SELECT provider, vm_name, vm_uuid, placeholder_uuid, placeholder_provider FROM group_vms WHERE group_name = ? "
      "ORDER BY vm_name");
  if (!st) return st.status();
  st->bind(1, group);
  return st->all([](const sqlite::Statement& s) { return GroupVmRecord{s.text(0), s.text(1), s.text(2), s.text(3), s.text(4)}; });
}

Result<std::vector<GroupRecord>> Store::list_groups() {
  std::lock_guard lock(mu_);
  auto st = db_.prepare(
      "SELECT name, protected_site, recovery_site, rpo_seconds, keep_pits, epoch, created_at, max_rate_bytes, "
      "keep_hourly, keep_daily, replication "
      "FROM protection_groups ORDER BY name");
  if (!st) return st.status();
  auto out = st->all([](const sqlite::Statement& s) {
    GroupRecord g{s.text(0),  s.text(1), s.text(2), s.int64(3), static_cast<int>(s.int64(4)), s.int64(5), s.int64(6),
                  {},         static_cast<std::uint64_t>(s.int64(7))};
    g.keep_hourly = static_cast<int>(s.int64(8));
    g.keep_daily = static_cast<int>(s.int64(9));
    g.replication = s.text(10);
    return g;
  });
  if (!out) return out.status();
  for (auto& g : *out) {
    auto vms = group_vms(g.name);
    if (!vms) return vms.status();
    g.vms = std::move(*vms);
  }
  return out;
}

Result<std::optional<GroupRecord>> Store::find_group(const std::string& name) {
  auto all = list_groups();
  if (!all) return all.status();
  for (auto& g : *all)
    if (g.name == name) return std::optional<GroupRecord>(std::move(g));
  return std::optional<GroupRecord>();
}

Result<std::optional<std::string>> Store::group_of_vm(const std::string& vm_uuid) {
  std::lock_guard lock(mu_);
  auto st = db_.prepare("SELECT group_name FROM group_vms WHERE vm_uuid = ?");
  if (!st) return st.status();
  st->bind(1, vm_uuid);
  return st->first([](const sqlite::Statement& s) { return s.text(0); });
}

Status Store::add_group_vm(const std::string& group, const GroupVmRecord& vm) {
  return transaction([&]() -> Status {
    auto st = db_.prepare(
        "INSERT INTO group_vms (group_name, provider, vm_name, vm_uuid, placeholder_uuid, placeholder_provider) "
        "VALUES (?, ?, ?, ?, ?, ?)");
    if (!st) return st.status();
    Status s = st->bind(1, group).bind(2, vm.provider).bind(3, vm.vm_name).bind(4, vm.vm_uuid).bind(5, vm.placeholder_uuid)
                   .bind(6, vm.placeholder_provider).run();
    if (s.code() == StatusCode::kAlreadyExists)
      return already_exists("VM '" + vm.vm_name + "' already belongs to a protection group",
                            "a VM belongs to at most one group: remove it from the other group first");
    EVAC_RETURN_IF_ERROR(s);
    return bump_config_version();
  });
}

Status Store::remove_group_vm(const std::string& group, const std::string& vm_uuid) {
  return transaction([&]() -> Status {
    auto st = db_.prepare("DELETE FROM group_vms WHERE group_name = ? AND vm_uuid = ?");
    if (!st) return st.status();
    EVAC_RETURN_IF_ERROR(st->bind(1, group).bind(2, vm_uuid).run());
    if (db_.changes() == 0) return not_found("the VM is not in protection group '" + group + "'", "see `evac group show " + group + "`");
    return bump_config_version();
  });
}

Status Store::remove_group(const std::string& name) {
  return transaction([&]() -> Status {
    auto st = db_.prepare("DELETE FROM protection_groups WHERE name = ?");
    if (!st) return st.status();
    EVAC_RETURN_IF_ERROR(st->bind(1, name).run());
    if (db_.changes() == 0) return not_found("no protection group named '" + name + "'", "list them with `evac group list`");
    return bump_config_version();
  });
}

Status Store::set_group_max_rate(const std::string& name, std::uint64_t bytes_per_second) {
  std::lock_guard lock(mu_);
  auto st = db_.prepare("UPDATE protection_groups SET max_rate_bytes = ? WHERE name = ?");
  if (!st) return st.status();
  EVAC_RETURN_IF_ERROR(st->bind(1, static_cast<std::int64_t>(bytes_per_second)).bind(2, name).run());
  if (db_.changes() == 0) return not_found("no protection group named '" + name + "'", "list them with `evac group list`");
  return Status::ok();
}

Status Store::set_group_retention(const std::string& name, int keep_pits, int keep_hourly, int keep_daily) {
  return transaction([&]() -> Status {
    auto st = db_.prepare("UPDATE protection_groups SET keep_pits = ?, keep_hourly = ?, keep_daily = ? WHERE name = ?");
    if (!st) return st.status();
    EVAC_RETURN_IF_ERROR(st->bind(1, keep_pits).bind(2, keep_hourly).bind(3, keep_daily).bind(4, name).run());
    if (db_.changes() == 0) return not_found("no protection group named '" + name + "'", "list them with `evac group list`");
    // The recovery site applies retention: its copy of the protection follows.
    return bump_config_version();
  });
}

// ---- replication bookkeeping ----------------------------------------------

namespace {
constexpr const char* kReplicationColumns =
    "group_name, last_pit_id, last_pit_created_at, last_bytes_sent, last_duration_ms, last_success_at, last_failure_at, "
    "last_error, consecutive_failures, cycles_succeeded, cycles_failed, bytes_sent_total, rpo_breached, last_full_read_at";
ReplicationRecord read_replication(const sqlite::Statement& s) {
  ReplicationRecord r;
  r.group = s.text(0);
  r.last_pit_id = s.text(1);
  r.last_pit_created_at = s.optional_int64(2);
  r.last_bytes_sent = static_cast<std::uint64_t>(s.int64(3));
  r.last_duration_ms = s.int64(4);
  r.last_success_at = s.optional_int64(5);
  r.last_failure_at = s.optional_int64(6);
  r.last_error = s.text(7);
  r.consecutive_failures = static_cast<int>(s.int64(8));
  r.cycles_succeeded = s.int64(9);
  r.cycles_failed = s.int64(10);
  r.bytes_sent_total = static_cast<std::uint64_t>(s.int64(11));
  r.rpo_breached = s.int64(12) != 0;
  r.last_full_read_at = s.optional_int64(13);
  return r;
}
}  // namespace

Result<std::optional<ReplicationRecord>> Store::find_replication(const std::string& group) {
  std::lock_guard lock(mu_);
  auto st = db_.prepare(std::string("SELECT ") + kReplicationColumns + " FROM replication_status WHERE group_name = ?");
  if (!st) return st.status();
  st->bind(1, group);
  return st->first([](const sqlite::Statement& s) { return read_replication(s); });
}

// Rows appear on a group's first cycle; a group deleted meanwhile has no row
// to write (the foreign key refuses it), which is what we want.
Status Store::record_cycle_success(const std::string& group, const std::string& pit_id, std::int64_t pit_created_at,
                                   std::uint64_t bytes_sent, std::int64_t duration_ms, std::int64_t finished_at,
                                   bool full_read) {
  std::lock_guard lock(mu_);
  // ?7: the cycle's start instant if it read every block, else the row's as it was.
  auto st = db_.prepare(
      "INSERT INTO replication_status (group_name, last_pit_id, last_pit_created_at, last_bytes_sent, last_duration_ms, "
      "last_success_at, cycles_succeeded, bytes_sent_total, last_full_read_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?4, ?7) "
      "ON CONFLICT(group_name) DO UPDATE SET last_pit_id = ?2, last_pit_created_at = ?3, last_bytes_sent = ?4, "
      "last_duration_ms = ?5, last_success_at = ?6, consecutive_failures = 0, cycles_succeeded = cycles_succeeded + 1, "
      "bytes_sent_total = bytes_sent_total + ?4, last_full_read_at = COALESCE(?7, last_full_read_at)");
  if (!st) return st.status();
  st->bind(1, group).bind(2, pit_id).bind(3, pit_created_at).bind(4, static_cast<std::int64_t>(bytes_sent))
      .bind(5, duration_ms).bind(6, finished_at);
  if (full_read)
    st->bind(7, pit_created_at);
  else
    st->bind_null(7);
  return st->run();
}

Status Store::record_cycle_failure(const std::string& group, std::int64_t at, const std::string& error) {
  std::lock_guard lock(mu_);
  auto st = db_.prepare(
      "INSERT INTO replication_status (group_name, last_failure_at, last_error, consecutive_failures, cycles_failed) "
      "VALUES (?1, ?2, ?3, 1, 1) ON CONFLICT(group_name) DO UPDATE SET last_failure_at = ?2, last_error = ?3, "
      "consecutive_failures = consecutive_failures + 1, cycles_failed = cycles_failed + 1");
  if (!st) return st.status();
  return st->bind(1, group).bind(2, at).bind(3, error).run();
}

Status Store::set_rpo_breached(const std::string& group, bool breached) {
  std::lock_guard lock(mu_);
  auto st = db_.prepare(
      "INSERT INTO replication_status (group_name, rpo_breached) VALUES (?1, ?2) "
      "ON CONFLICT(group_name) DO UPDATE SET rpo_breached = ?2");
  if (!st) return st.status();
  return st->bind(1, group).bind(2, breached ? 1 : 0).run();
}

std::string event_signature(const EventRecord& e) {
  // Runs of hex digits that hold a digit (numbers, random folder names,
  // cycle ids) vary between occurrences; words do not.
  std::string out = e.severity + "|" + e.kind + "|";
  const std::string& m = e.message;
  for (std::size_t i = 0; i < m.size();) {
    std::size_t j = i;
    bool digit = false;
    while (j < m.size() && std::isxdigit(static_cast<unsigned char>(m[j]))) {
      digit = digit || std::isdigit(static_cast<unsigned char>(m[j]));
      ++j;
    }
    if (j > i) {
      out += digit ? std::string("#") : m.substr(i, j - i);
      i = j;
    } else {
      out += m[i++];
    }
  }
  return out;
}

namespace {
EventRecord event_row(const sqlite::Statement& s) {
  EventRecord e{s.int64(0), s.int64(1), s.text(2), s.text(3), s.text(4), s.text(5)};
  e.count = s.int64(6);
  e.last_at = s.optional_int64(7);
  return e;
}
constexpr const char* kEventColumns = "id, at, severity, kind, group_name, message, count, last_at";
}  // namespace

Result<EventRecord> Store::add_event(const EventRecord& e) {
  std::lock_guard lock(mu_);
  const std::string signature = event_signature(e);
  auto newest = db_.prepare(std::string("SELECT ") + kEventColumns + ", signature FROM events WHERE group_name = ? "
                            "ORDER BY id DESC LIMIT 1");
  if (!newest) return newest.status();
  newest->bind(1, e.group);
  auto last = newest->all([](const sqlite::Statement& s) { return std::pair{event_row(s), s.text(8)}; });
  if (!last) return last.status();
  if (!last->empty() && last->front().second == signature) {
    EventRecord out = last->front().first;
    out.count += 1;
    out.last_at = e.at;
    out.message = e.message;
    auto st = db_.prepare("UPDATE events SET count = ?, last_at = ?, message = ? WHERE id = ?");
    if (!st) return st.status();
    EVAC_RETURN_IF_ERROR(st->bind(1, out.count).bind(2, e.at).bind(3, e.message).bind(4, out.id).run());
    return out;
  }
  auto st = db_.prepare("INSERT INTO events (at, severity, kind, group_name, message, signature) VALUES (?, ?, ?, ?, ?, ?)");
  if (!st) return st.status();
  EVAC_RETURN_IF_ERROR(
      st->bind(1, e.at).bind(2, e.severity).bind(3, e.kind).bind(4, e.group).bind(5, e.message).bind(6, signature).run());
  EventRecord out = e;
  out.id = db_.last_insert_rowid();
  out.count = 1;
  out.last_at.reset();
  return out;
}

Result<std::vector<EventRecord>> Store::list_events(const std::optional<std::string>& group, int limit) {
  std::lock_guard lock(mu_);
  auto st = db_.prepare(std::string("SELECT ") + kEventColumns +
                        " FROM events WHERE (?1 IS NULL OR group_name = ?1) ORDER BY id DESC LIMIT ?2");
  if (!st) return st.status();
  st->bind(1, group).bind(2, limit);
  return st->all(event_row);
}

// ---- placeholders hosted here ---------------------------------------------

Status Store::add_hosted_placeholder(const HostedPlaceholderRecord& p) {
  std::lock_guard lock(mu_);
  auto st = db_.prepare(
      "INSERT INTO hosted_placeholders (uuid, provider, name, group_name, source_site, source_uuid, created_at) "
      "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(source_uuid) DO UPDATE SET uuid = excluded.uuid, provider = excluded.provider, "
      "name = excluded.name, group_name = excluded.group_name");
  if (!st) return st.status();
  return st->bind(1, p.uuid).bind(2, p.provider).bind(3, p.name).bind(4, p.group).bind(5, p.source_site)
      .bind(6, p.source_uuid).bind(7, p.created_at).run();
}

Result<std::vector<HostedPlaceholderRecord>> Store::list_hosted_placeholders() {
  std::lock_guard lock(mu_);
  auto st = db_.prepare(
      "SELECT uuid, provider, name, group_name, source_site, source_uuid, created_at FROM hosted_placeholders ORDER BY name");
  if (!st) return st.status();
  return st->all([](const sqlite::Statement& s) {
    return HostedPlaceholderRecord{s.text(0), s.text(1), s.text(2), s.text(3), s.text(4), s.text(5), s.int64(6)};
  });
}

Status Store::remove_hosted_placeholder(const std::string& uuid) {
  std::lock_guard lock(mu_);
  auto st = db_.prepare("DELETE FROM hosted_placeholders WHERE uuid = ?");
  if (!st) return st.status();
  return st->bind(1, uuid).run();
}

// ---- copies of peers' configuration ---------------------------------------

Status Store::put_peer_copy(const PeerCopyRecord& c) {
  std::lock_guard lock(mu_);
  auto st = db_.prepare(
      "INSERT INTO peer_copies (peer_site, version, document, received_at) VALUES (?, ?, ?, ?) "
      "ON CONFLICT(peer_site) DO UPDATE SET version = excluded.version, document = excluded.document, "
      "received_at = excluded.received_at");
  if (!st) return st.status();
  return st->bind(1, c.peer_site).bind(2, c.version).bind(3, c.document).bind(4, c.received_at).run();
}

Result<std::vector<PeerCopyRecord>> Store::list_peer_copies() {
  std::lock_guard lock(mu_);
  auto st = db_.prepare("SELECT peer_site, version, document, received_at FROM peer_copies ORDER BY peer_site");
  if (!st) return st.status();
  return st->all([](const sqlite::Statement& s) { return PeerCopyRecord{s.text(0), s.int64(1), s.text(2), s.int64(3)}; });
}

Result<std::optional<PeerCopyRecord>> Store::find_peer_copy(const std::string& peer_site) {
  auto all = list_peer_copies();
  if (!all) return all.status();
  for (auto& c : *all)
    if (c.peer_site == peer_site) return std::optional<PeerCopyRecord>(std::move(c));
  return std::optional<PeerCopyRecord>();
}

// ---- ownership ------------------------------------------------------------------

namespace {
OwnershipRecord ownership_from_row(const sqlite::Statement& s) {
  return OwnershipRecord{s.text(0), s.text(1), s.int64(2), s.int64(3), s.text(4)};
}
}  // namespace

Status Store::put_ownership(const OwnershipRecord& o) {
  std::lock_guard lock(mu_);
  auto st = db_.prepare(
      "INSERT INTO ownership (grp, owner_site, epoch, changed_at, run_id) VALUES (?, ?, ?, ?, ?) "
      "ON CONFLICT(grp) DO UPDATE SET owner_site = excluded.owner_site, epoch = excluded.epoch, "
      "changed_at = excluded.changed_at, run_id = excluded.run_id WHERE excluded.epoch >= ownership.epoch");
  if (!st) return st.status();
  return st->bind(1, o.group).bind(2, o.owner_site).bind(3, o.epoch).bind(4, o.changed_at).bind(5, o.run_id).run();
}

Result<std::optional<OwnershipRecord>> Store::find_ownership(const std::string& group) {
  std::lock_guard lock(mu_);
  auto st = db_.prepare("SELECT grp, owner_site, epoch, changed_at, run_id FROM ownership WHERE grp = ?");
  if (!st) return st.status();
  st->bind(1, group);
  return st->first(ownership_from_row);
}

Result<std::vector<OwnershipRecord>> Store::list_ownership() {
  std::lock_guard lock(mu_);
  auto st = db_.prepare("SELECT grp, owner_site, epoch, changed_at, run_id FROM ownership ORDER BY grp");
  if (!st) return st.status();
  return st->all(ownership_from_row);
}

// ---- recovery plans ---------------------------------------------------------

Status Store::put_plan(const PlanRecord& p) {
  std::lock_guard lock(mu_);
  auto st = db_.prepare(
      "INSERT INTO recovery_plans (name, document, created_at, updated_at) VALUES (?, ?, ?, ?) "
      "ON CONFLICT(name) DO UPDATE SET document = excluded.document, updated_at = excluded.updated_at");
  if (!st) return st.status();
  return st->bind(1, p.name).bind(2, p.document).bind(3, p.created_at).bind(4, p.updated_at).run();
}

Result<std::vector<PlanRecord>> Store::list_plans() {
  std::lock_guard lock(mu_);
  auto st = db_.prepare("SELECT name, document, created_at, updated_at FROM recovery_plans ORDER BY name");
  if (!st) return st.status();
  return st->all([](const sqlite::Statement& s) { return PlanRecord{s.text(0), s.text(1), s.int64(2), s.int64(3)}; });
}

Result<std::optional<PlanRecord>> Store::find_plan(const std::string& name) {
  std::lock_guard lock(mu_);
  auto st = db_.prepare("SELECT name, document, created_at, updated_at FROM recovery_plans WHERE name = ?");
  if (!st) return st.status();
  st->bind(1, name);
  return st->first([](const sqlite::Statement& s) { return PlanRecord{s.text(0), s.text(1), s.int64(2), s.int64(3)}; });
}

Status Store::remove_plan(const std::string& name) {
  std::lock_guard lock(mu_);
  auto st = db_.prepare("DELETE FROM recovery_plans WHERE name = ?");
  if (!st) return st.status();
  return st->bind(1, name).run();
}

// ---- runs ------------------------------------------------------------------------

namespace {

RunRow read_run(const sqlite::Statement& s) {
  return RunRow{s.text(0), s.text(1), s.text(2), s.text(3), s.text(4), s.int64(5), s.optional_int64(6), s.text(7),
                s.text(8), s.text(9)};
}
constexpr const char* kRunColumns =
    "id, plan, operation, state, started_by, created_at, ended_at, plan_document, groups, error";

StepRow read_step(const sqlite::Statement& s) {
  return StepRow{s.text(0),  static_cast<int>(s.int64(1)), s.text(2), s.text(3), s.text(4),
                 s.text(5),  static_cast<int>(s.int64(6)), s.optional_int64(7), s.optional_int64(8), s.text(9),
                 s.text(10)};
}
constexpr const char* kStepColumns =
    "run_id, idx, name, kind, spec, state, attempts, started_at_ms, ended_at_ms, error, result";

// run_step_specs.specs: per step its index, name, kind and spec, each field
// written as <decimal length>:<bytes>, so any byte may appear in a field.
void append_field(std::string& out, std::string_view field) {
  out += std::to_string(field.size());
  out += ':';
  out += field;
}

std::string encode_step_specs(const std::vector<StepRow>& steps) {
  std::size_t size = 0;
  for (const auto& s : steps) size += s.name.size() + s.kind.size() + s.spec.size() + 24;
  std::string out;
  out.reserve(size);
  for (const auto& s : steps) {
    append_field(out, std::to_string(s.idx));
    append_field(out, s.name);
    append_field(out, s.kind);
    append_field(out, s.spec);
  }
  return out;
}

// Every step of the run as "pending" with its name, kind and spec; nullopt
// if the value is not one encode_step_specs wrote.
std::optional<std::vector<StepRow>> decode_step_specs(const std::string& run_id, std::string_view in) {
  // 1-9 decimal digits: a field's length or a step's index.
  auto decimal = [](std::string_view digits) -> std::optional<int> {
    if (digits.empty() || digits.size() > 9) return std::nullopt;
    int n = 0;
    for (char c : digits) {
      if (c < '0' || c > '9') return std::nullopt;
      n = n * 10 + (c - '0');
    }
    return n;
  };
  auto field = [&]() -> std::optional<std::string_view> {
    const auto colon = in.find(':');
    if (colon == std::string_view::npos) return std::nullopt;
    const auto n = decimal(in.substr(0, colon));
    if (!n || in.size() - colon - 1 < static_cast<std::size_t>(*n)) return std::nullopt;
    std::string_view f = in.substr(colon + 1, static_cast<std::size_t>(*n));
    in.remove_prefix(colon + 1 + static_cast<std::size_t>(*n));
    return f;
  };
  std::vector<StepRow> out;
  while (!in.empty()) {
    auto idx = field(), name = field(), kind = field(), spec = field();
    const auto index = idx ? decimal(*idx) : std::nullopt;
    if (!index || !name || !kind || !spec) return std::nullopt;
    StepRow row;
    row.run_id = run_id;
    row.idx = *index;
    row.name = std::string(*name);
    row.kind = std::string(*kind);
    row.spec = std::string(*spec);
    row.state = "pending";
    out.push_back(std::move(row));
  }
  return out;
}

bool untouched(const StepRow& s) {
  return s.state == "pending" && s.attempts == 0 && !s.started_at_ms && !s.ended_at_ms && s.error.empty() && s.result.empty();
}
}  // namespace

Status Store::add_run(const RunRow& run, const std::vector<StepRow>& steps) {
  const std::string specs = encode_step_specs(steps);
  return transaction([&]() -> Status {
    std::lock_guard lock(mu_);
    auto st = db_.prepare(std::string("INSERT INTO runs (") + kRunColumns + ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    if (!st) return st.status();
    EVAC_RETURN_IF_ERROR(st->bind(1, run.id)
                             .bind(2, run.plan)
                             .bind(3, run.operation)
                             .bind(4, run.state)
                             .bind(5, run.started_by)
                             .bind(6, run.created_at)
                             .bind(7, run.ended_at)
                             .bind(8, run.plan_document)
                             .bind(9, run.groups)
                             .bind(10, run.error)
                             .run());
    auto spec_st = db_.prepare("INSERT INTO run_step_specs (run_id, specs) VALUES (?, ?)");
    if (!spec_st) return spec_st.status();
    EVAC_RETURN_IF_ERROR(spec_st->bind(1, run.id).bind(2, specs).run());
    // A step already past "pending" (a caller's own record) gets its row now;
    // the others get theirs when they first change.
    std::vector<StepRow> started;
    for (const auto& s : steps)
      if (!untouched(s)) started.push_back(s);
    return started.empty() ? Status::ok() : write_step_states(started);
  });
}

Status Store::update_steps(const std::vector<StepRow>& steps) {
  if (steps.empty()) return Status::ok();
  std::lock_guard lock(mu_);
  if (steps.size() == 1) return write_step_states(steps);  // its own implicit transaction
  return transaction([&]() -> Status { return write_step_states(steps); });
}

Status Store::write_step_states(const std::vector<StepRow>& steps) {
  if (!update_step_) {
    // The row exists once the step has changed before (or for a run written
    // before run_step_specs): only its state columns change.
    auto st = db_.prepare(
        "INSERT INTO run_steps (run_id, idx, name, kind, spec, state, attempts, started_at_ms, ended_at_ms, error, result) "
        "VALUES (?, ?, '', '', '', ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, idx) DO UPDATE SET state = excluded.state, "
        "attempts = excluded.attempts, started_at_ms = excluded.started_at_ms, ended_at_ms = excluded.ended_at_ms, "
        "error = excluded.error, result = excluded.result");
    if (!st) return st.status();
    update_step_.emplace(std::move(*st));
  }
  for (const auto& s : steps) {
    sqlite::Statement* st = &*update_step_;
    st->reset();
    EVAC_RETURN_IF_ERROR(st->bind(1, s.run_id)
                             .bind(2, s.idx)
                             .bind(3, s.state)
                             .bind(4, s.attempts)
                             .bind(5, s.started_at_ms)
                             .bind(6, s.ended_at_ms)
                             .bind(7, s.error)
                             .bind(8, s.result)
                             .run());
  }
  return Status::ok();
}

Status Store::update_run(const std::string& id, const std::string& state, const std::optional<std::int64_t>& ended_at,
                         const std::string& error) {
  std::lock_guard lock(mu_);
  auto st = db_.prepare("UPDATE runs SET state = ?, ended_at = ?, error = ? WHERE id = ?");
  if (!st) return st.status();
  EVAC_RETURN_IF_ERROR(st->bind(1, state).bind(2, ended_at).bind(3, error).bind(4, id).run());
  if (db_.changes() != 1) return not_found("no run " + id);
  return Status::ok();
}

Result<std::vector<RunRow>> Store::list_runs(const std::optional<std::string>& plan, int limit) {
  std::lock_guard lock(mu_);
  auto st = db_.prepare(std::string("SELECT ") + kRunColumns + " FROM runs" + (plan ? " WHERE plan = ?" : "") +
                        " ORDER BY created_at DESC, id DESC LIMIT ?");
  if (!st) return st.status();
  int at = 1;
  if (plan) st->bind(at++, *plan);
  st->bind(at, limit);
  return st->all(read_run);
}

Result<std::optional<RunRow>> Store::find_run(const std::string& id) {
  std::lock_guard lock(mu_);
  auto st = db_.prepare(std::string("SELECT ") + kRunColumns + " FROM runs WHERE id = ?");
  if (!st) return st.status();
  st->bind(1, id);
  return st->first(read_run);
}

Result<std::vector<StepRow>> Store::run_steps(const std::string& run_id) {
  std::lock_guard lock(mu_);
  auto spec_st = db_.prepare("SELECT specs FROM run_step_specs WHERE run_id = ?");
  if (!spec_st) return spec_st.status();
  spec_st->bind(1, run_id);
  auto specs = spec_st->first([](const sqlite::Statement& s) { return s.text(0); });
  if (!specs) return specs.status();
  auto st = db_.prepare(std::string("SELECT ") + kStepColumns + " FROM run_steps WHERE run_id = ? ORDER BY idx");
  if (!st) return st.status();
  st->bind(1, run_id);
  auto rows = st->all(read_step);
  if (!rows || !specs->has_value()) return rows;  // a run written before run_step_specs: its rows are whole
  auto steps = decode_step_specs(run_id, **specs);
  if (!steps) return internal_error("the steps of run " + run_id + " are unreadable in the store");
  for (auto& row : *rows) {
    // Steps are written in index order, so a step's place is its index.
    const bool in_place = row.idx >= 0 && static_cast<std::size_t>(row.idx) < steps->size() &&
                          (*steps)[static_cast<std::size_t>(row.idx)].idx == row.idx;
    auto it = in_place ? steps->begin() + row.idx
                       : std::find_if(steps->begin(), steps->end(), [&](const StepRow& s) { return s.idx == row.idx; });
    if (it == steps->end())
      return internal_error("run " + run_id + " has a record of step " + std::to_string(row.idx) + ", which it does not have");
    StepRow& step = *it;
    step.state = std::move(row.state);
    step.attempts = row.attempts;
    step.started_at_ms = row.started_at_ms;
    step.ended_at_ms = row.ended_at_ms;
    step.error = std::move(row.error);
    step.result = std::move(row.result);
  }
  return std::move(*steps);
}

Result<std::vector<RunRow>> Store::runs_in_state(const std::vector<std::string>& states) {
  std::lock_guard lock(mu_);
  auto st = db_.prepare(std::string("SELECT ") + kRunColumns + " FROM runs ORDER BY created_at, id");
  if (!st) return st.status();
  auto all = st->all(read_run);
  if (!all) return all.status();
  std::vector<RunRow> out;
  for (auto& r : *all)
    if (std::find(states.begin(), states.end(), r.state) != states.end()) out.push_back(std::move(r));
  return out;
}

}  // namespace evac
