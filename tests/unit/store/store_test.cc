#include "store/store.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

namespace evac {
namespace {

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("evac-store-test-" + std::to_string(::getpid()) + "-" +
                                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    auto s = Store::open((dir_ / "evac.db").string());
    ASSERT_TRUE(s.is_ok()) << s.status().to_string();
    store_ = std::move(*s);
    ASSERT_TRUE(store_->add_peer(PeerRecord{"site-b", "https://b", "sha256//b", 1, {}, {}, ""}).is_ok());
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  GroupRecord group(const std::string& name, const std::string& vm_uuid) {
    return GroupRecord{name, "site-a", "site-b", 900, 24, 1, 10, {GroupVmRecord{"p", "vm-" + vm_uuid, vm_uuid, "ph", "q"}}};
  }
  std::filesystem::path dir_;
  std::unique_ptr<Store> store_;
};

TEST_F(StoreTest, MigratesToLatestSchemaAndReopens) {
  EXPECT_EQ(store_->schema_version(), Store::schema_version_latest());
  store_.reset();
  auto again = Store::open((dir_ / "evac.db").string());
  ASSERT_TRUE(again.is_ok());
  EXPECT_EQ((*again)->schema_version(), Store::schema_version_latest());
  auto peers = (*again)->list_peers();
  ASSERT_TRUE(peers.is_ok());
  EXPECT_EQ(peers->size(), 1u);  // data survived the reopen
}

TEST_F(StoreTest, RefusesNewerSchema) {
  store_.reset();
  {
    auto conn = sqlite::Connection::open((dir_ / "evac.db").string());
    ASSERT_TRUE(conn.is_ok());
    ASSERT_TRUE(conn->exec("PRAGMA user_version = 999").is_ok());
  }
  auto s = Store::open((dir_ / "evac.db").string());
  ASSERT_FALSE(s.is_ok());
  EXPECT_EQ(s.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.status().message().find("newer"), std::string::npos);
}

TEST_F(StoreTest, ASecondProcessOnTheSameDatabaseIsRefused) {
  // The open store holds the database; anyone else (here a second open in
  // this process, which SQLite treats like another process) is refused at
  // once, saying what to do, while the first goes on working.
  auto second = Store::open((dir_ / "evac.db").string());
  ASSERT_FALSE(second.is_ok());
  EXPECT_EQ(second.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(second.status().message().find("in use by another process"), std::string::npos) << second.status().to_string();
  EXPECT_NE(second.status().hint().find("state_dir"), std::string::npos);
  EXPECT_TRUE(store_->add_peer(PeerRecord{"site-c", "https://c", "sha256//c", 1, {}, {}, ""}).is_ok());
  store_.reset();
  EXPECT_TRUE(Store::open((dir_ / "evac.db").string()).is_ok()) << "free again once the first is closed";
}

TEST_F(StoreTest, UsesWriteAheadLog) {
  EXPECT_TRUE(std::filesystem::exists(dir_ / "evac.db-wal"));
}

unsigned mode_of(const std::filesystem::path& p) {
  struct stat st {};
  EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
  return st.st_mode & 07777;
}

// Restores the process's umask when the test ends.
struct UmaskForTest {
  explicit UmaskForTest(mode_t mask) : old(::umask(mask)) {}
  ~UmaskForTest() { ::umask(old); }
  mode_t old;
};

TEST_F(StoreTest, TheDatabaseIsTheOwnersAloneWhateverTheUmask) {
  store_.reset();
  std::filesystem::remove_all(dir_);
  std::filesystem::create_directories(dir_);
  UmaskForTest open_to_all(0);
  auto s = Store::open((dir_ / "evac.db").string());
  ASSERT_TRUE(s.is_ok()) << s.status().to_string();
  ASSERT_TRUE((*s)->add_peer(PeerRecord{"site-b", "https://b", "sha256//b", 1, {}, {}, ""}).is_ok());
  EXPECT_EQ(mode_of(dir_ / "evac.db"), 0600u);
  ASSERT_TRUE(std::filesystem::exists(dir_ / "evac.db-wal"));
  EXPECT_EQ(mode_of(dir_ / "evac.db-wal"), 0600u);
  for (const char* other : {"evac.db-shm", "evac.db-journal"}) {
    if (std::filesystem::exists(dir_ / other)) {
      EXPECT_EQ(mode_of(dir_ / other), 0600u) << other;
    }
  }
}

TEST_F(StoreTest, ADatabaseLeftReadableByAllIsClosedAtOpen) {
  // As an older evacd under umask 022 left it when killed: the database
  // and a WAL holding the newest commits, both readable by all.
  ASSERT_GT(std::filesystem::file_size(dir_ / "evac.db-wal"), 0u);
  for (const char* suffix : {"", "-wal"}) {
    std::filesystem::copy_file(dir_ / ("evac.db" + std::string(suffix)), dir_ / ("old.db" + std::string(suffix)));
    std::filesystem::permissions(dir_ / ("old.db" + std::string(suffix)), std::filesystem::perms(0644));
  }
  auto s = Store::open((dir_ / "old.db").string());
  ASSERT_TRUE(s.is_ok()) << s.status().to_string();
  EXPECT_EQ(mode_of(dir_ / "old.db"), 0600u);
  EXPECT_EQ(mode_of(dir_ / "old.db-wal"), 0600u);
  auto peers = (*s)->list_peers();
  ASSERT_TRUE(peers.is_ok());
  EXPECT_EQ(peers->size(), 1u);
}

TEST_F(StoreTest, TransactionRollsBackEverything) {
  Status s = store_->transaction([&]() -> Status {
    EVAC_RETURN_IF_ERROR(store_->add_group(group("g1", "u1")));
    return internal_error("simulated failure after the first write");
  });
  EXPECT_FALSE(s.is_ok());
  auto groups = store_->list_groups();
  ASSERT_TRUE(groups.is_ok());
  EXPECT_TRUE(groups->empty());
  auto owner = store_->group_of_vm("u1");
  ASSERT_TRUE(owner.is_ok());
  EXPECT_FALSE(owner->has_value());
}

TEST_F(StoreTest, VmBelongsToAtMostOneGroup) {
  ASSERT_TRUE(store_->add_group(group("g1", "u1")).is_ok());
  Status s = store_->add_group(group("g2", "u1"));
  EXPECT_EQ(s.code(), StatusCode::kAlreadyExists);
  // The failed group left nothing behind.
  auto g2 = store_->find_group("g2");
  ASSERT_TRUE(g2.is_ok());
  EXPECT_FALSE(g2->has_value());
}

TEST_F(StoreTest, DuplicateGroupName) {
  ASSERT_TRUE(store_->add_group(group("g1", "u1")).is_ok());
  EXPECT_EQ(store_->add_group(group("g1", "u2")).code(), StatusCode::kAlreadyExists);
}

TEST_F(StoreTest, GroupChangesBumpConfigVersion) {
  auto v0 = store_->config_version();
  ASSERT_TRUE(v0.is_ok());
  ASSERT_TRUE(store_->add_group(group("g1", "u1")).is_ok());
  auto v1 = store_->config_version();
  ASSERT_TRUE(v1.is_ok());
  EXPECT_GT(*v1, *v0);
  ASSERT_TRUE(store_->remove_group("g1").is_ok());
  EXPECT_GT(*store_->config_version(), *v1);
  EXPECT_EQ(store_->remove_group("g1").code(), StatusCode::kNotFound);
}

TEST_F(StoreTest, PairingTokenIsOneTimeAndExpires) {
  ASSERT_TRUE(store_->add_pairing_token("d1", 100).is_ok());
  EXPECT_EQ(store_->consume_pairing_token("d1", 101).code(), StatusCode::kUnauthenticated);  // expired
  ASSERT_TRUE(store_->add_pairing_token("d2", 100).is_ok());
  EXPECT_TRUE(store_->consume_pairing_token("d2", 50).is_ok());
  EXPECT_EQ(store_->consume_pairing_token("d2", 51).code(), StatusCode::kUnauthenticated);  // used
  EXPECT_EQ(store_->consume_pairing_token("unknown", 1).code(), StatusCode::kUnauthenticated);
}

TEST_F(StoreTest, PeerHealthTracksFirstFailure) {
  ASSERT_TRUE(store_->record_peer_failure("site-b", 100, "down").is_ok());
  ASSERT_TRUE(store_->record_peer_failure("site-b", 200, "still down").is_ok());
  auto p = store_->find_peer("site-b");
  ASSERT_TRUE(p.is_ok() && p->has_value());
  EXPECT_EQ((*p)->unreachable_since, 100);  // since the first failure, not the latest
  EXPECT_EQ((*p)->last_error, "still down");
  ASSERT_TRUE(store_->record_peer_contact("site-b", 300, 300'456).is_ok());
  p = store_->find_peer("site-b");
  EXPECT_FALSE((*p)->unreachable_since.has_value());
  EXPECT_EQ((*p)->last_seen_at, 300);
  EXPECT_EQ((*p)->last_seen_at_ms, 300'456);
  // Calls that end out of order never move the last contact back.
  ASSERT_TRUE(store_->record_peer_contact("site-b", 300, 300'100).is_ok());
  EXPECT_EQ((*store_->find_peer("site-b"))->last_seen_at_ms, 300'456);
}

TEST_F(StoreTest, MappingUniquePerSourceAndKind) {
  MappingRecord m{0, "site-b", MappingKind::kNetwork, "prod", "rprod", "test", 1};
  auto first = store_->add_mapping(m);
  ASSERT_TRUE(first.is_ok());
  EXPECT_GT(first->id, 0);
  auto dup = store_->add_mapping(m);
  EXPECT_EQ(dup.status().code(), StatusCode::kAlreadyExists);
  m.kind = MappingKind::kStorage;
  EXPECT_TRUE(store_->add_mapping(m).is_ok());  // same name, other kind
  EXPECT_EQ(store_->remove_mapping(9999).code(), StatusCode::kNotFound);
}

TEST_F(StoreTest, MappingNeedsPairedPeer) {
  MappingRecord m{0, "nowhere", MappingKind::kNetwork, "prod", "rprod", "test", 1};
  EXPECT_FALSE(store_->add_mapping(m).is_ok());
}

TEST_F(StoreTest, ApiTokensStoredByDigest) {
  ASSERT_TRUE(store_->add_api_token("admin", "digest-1").is_ok());
  auto name = store_->api_token_name("digest-1");
  ASSERT_TRUE(name.is_ok());
  EXPECT_EQ(name->value_or(""), "admin");
  EXPECT_FALSE(store_->api_token_name("digest-2")->has_value());
}

TEST_F(StoreTest, OwnershipOnlyMovesToANewerEpoch) {
  EXPECT_FALSE(store_->find_ownership("g1")->has_value());
  ASSERT_TRUE(store_->put_ownership(OwnershipRecord{"g1", "site-b", 2, 100, "run-1"}).is_ok());
  ASSERT_TRUE(store_->put_ownership(OwnershipRecord{"g1", "site-a", 1, 200, "stale"}).is_ok());
  auto o = store_->find_ownership("g1");
  ASSERT_TRUE(o.is_ok() && o->has_value());
  EXPECT_EQ((*o)->owner_site, "site-b") << "an older claim changes nothing";
  EXPECT_EQ((*o)->run_id, "run-1");
  ASSERT_TRUE(store_->put_ownership(OwnershipRecord{"g1", "site-a", 3, 300, "run-2"}).is_ok());
  EXPECT_EQ((*store_->find_ownership("g1"))->owner_site, "site-a");
  EXPECT_EQ(store_->list_ownership()->size(), 1u);
}

// Migration 11 undone by hand, for tests that rewind a database further.
constexpr const char* kUndoSchema11 = "ALTER TABLE protection_groups DROP COLUMN replication; ";

TEST_F(StoreTest, AGroupKeepsItsReplicationEngine) {
  GroupRecord g = group("g1", "u1");
  EXPECT_EQ(g.replication, "builtin") << "a group built by position takes the built-in engine";
  g.replication = "rbd";
  ASSERT_TRUE(store_->add_group(g).is_ok());
  ASSERT_TRUE(store_->add_group(group("g2", "u2")).is_ok());
  EXPECT_EQ((*store_->find_group("g1"))->replication, "rbd");
  EXPECT_EQ((*store_->find_group("g2"))->replication, "builtin");
  // Other changes of the group leave it as it was.
  ASSERT_TRUE(store_->set_group_retention("g1", 6, 0, 0).is_ok());
  ASSERT_TRUE(store_->set_group_max_rate("g1", 1).is_ok());
  EXPECT_EQ((*store_->find_group("g1"))->replication, "rbd");
  // The database refuses what no engine can be called.
  GroupRecord unnamed = group("g3", "u3");
  unnamed.replication = "";
  EXPECT_FALSE(store_->add_group(unnamed).is_ok());
  EXPECT_FALSE(store_->find_group("g3")->has_value());
}

TEST_F(StoreTest, GroupsOfADatabaseFromBeforeEnginesReplicateWithTheBuiltInOne) {
  ASSERT_TRUE(store_->add_group(group("g1", "u1")).is_ok());
  store_.reset();
  {
    auto conn = sqlite::Connection::open((dir_ / "evac.db").string());
    ASSERT_TRUE(conn.is_ok());
    ASSERT_TRUE(conn->exec(std::string(kUndoSchema11) + "PRAGMA user_version = 10").is_ok());
  }
  auto s = Store::open((dir_ / "evac.db").string());
  ASSERT_TRUE(s.is_ok()) << s.status().to_string();
  EXPECT_EQ((*s)->schema_version(), Store::schema_version_latest());
  auto g = (*s)->find_group("g1");
  ASSERT_TRUE(g.is_ok() && g->has_value()) << g.status().to_string();
  EXPECT_EQ((*g)->replication, "builtin");
}

TEST_F(StoreTest, MigratesAVersionOneDatabaseKeepingItsGroups) {
  ASSERT_TRUE(store_->add_group(group("g1", "u1")).is_ok());
  store_.reset();
  {
    // Undo migrations 11 to 2 by hand, as a database an older evacd wrote.
    auto conn = sqlite::Connection::open((dir_ / "evac.db").string());
    ASSERT_TRUE(conn.is_ok());
    ASSERT_TRUE(conn->exec(std::string(kUndoSchema11) + "ALTER TABLE peers DROP COLUMN last_seen_at_ms; DROP TABLE run_step_specs; DROP TABLE ownership; DROP TABLE run_steps; DROP TABLE runs; DROP TABLE recovery_plans; "
                           "ALTER TABLE protection_groups DROP COLUMN keep_hourly; "
                           "ALTER TABLE protection_groups DROP COLUMN keep_daily; "
                           "DROP TABLE events; DROP TABLE replication_status; "
                           "ALTER TABLE protection_groups DROP COLUMN max_rate_bytes; PRAGMA user_version = 1")
                    .is_ok());
  }
  auto s = Store::open((dir_ / "evac.db").string());
  ASSERT_TRUE(s.is_ok()) << s.status().to_string();
  EXPECT_EQ((*s)->schema_version(), Store::schema_version_latest());
  EXPECT_TRUE((*s)->list_plans()->empty());
  auto g = (*s)->find_group("g1");
  ASSERT_TRUE(g.is_ok() && g->has_value());
  EXPECT_EQ((*g)->max_rate_bytes, 0u);  // unlimited, as before
  EXPECT_EQ((*g)->keep_hourly, 0);      // no thinning, as before
  EXPECT_EQ((*g)->replication, "builtin");
  ASSERT_TRUE((*s)->set_group_retention("g1", 6, 24, 7).is_ok());
  EXPECT_EQ((*(*s)->find_group("g1"))->keep_daily, 7);
  EXPECT_EQ((*s)->set_group_retention("nope", 6, 0, 0).code(), StatusCode::kNotFound);
}

RunRow run_row(const std::string& id) { return RunRow{id, "shop-dr", "test", "running", "ops", 100, std::nullopt, "{}", "[]", ""}; }

StepRow pending_step(const std::string& run_id, int idx, const std::string& name) {
  // A name with the encoding's own separator and a digit run, and a NUL.
  return StepRow{run_id, idx, name, "power_on", R"({"after":[],"params":{"vm":"v:1"},"tier":1})", "pending", 0,
                 std::nullopt, std::nullopt, "", ""};
}

TEST_F(StoreTest, AStepsRowIsWrittenAtItsFirstChangeAndEveryStepReadsWhole) {
  const std::string odd_name = std::string("Power on: 12:web\0", 17) + "01";
  ASSERT_TRUE(store_->add_run(run_row("r1"), {pending_step("r1", 0, "Checks"), pending_step("r1", 1, odd_name),
                                              pending_step("r1", 2, "Power on: db01")})
                  .is_ok());
  auto steps = store_->run_steps("r1");
  ASSERT_TRUE(steps.is_ok()) << steps.status().to_string();
  ASSERT_EQ(steps->size(), 3u);
  EXPECT_EQ((*steps)[1].name, odd_name);
  EXPECT_EQ((*steps)[1].spec, R"({"after":[],"params":{"vm":"v:1"},"tier":1})");
  EXPECT_EQ((*steps)[2].state, "pending");

  StepRow running = (*steps)[1];
  running.state = "running";
  running.attempts = 1;
  running.started_at_ms = 500;
  running.name = running.kind = running.spec = "";  // the engine writes only the state columns
  ASSERT_TRUE(store_->update_steps({running}).is_ok());
  running.state = "succeeded";
  running.ended_at_ms = 900;
  running.result = R"({"ok":true})";
  StepRow next = (*steps)[2];
  next.state = "running";
  next.started_at_ms = 900;
  ASSERT_TRUE(store_->update_steps({running, next}).is_ok());

  store_.reset();  // what a restarted evacd reads
  auto reopened = Store::open((dir_ / "evac.db").string());
  ASSERT_TRUE(reopened.is_ok());
  store_ = std::move(*reopened);
  steps = store_->run_steps("r1");
  ASSERT_TRUE(steps.is_ok()) << steps.status().to_string();
  ASSERT_EQ(steps->size(), 3u);
  EXPECT_EQ((*steps)[0].state, "pending");
  EXPECT_EQ((*steps)[0].name, "Checks");
  EXPECT_EQ((*steps)[1].state, "succeeded");
  EXPECT_EQ((*steps)[1].name, odd_name) << "a written state keeps the step's name, kind and spec";
  EXPECT_EQ((*steps)[1].kind, "power_on");
  EXPECT_EQ((*steps)[1].spec, R"({"after":[],"params":{"vm":"v:1"},"tier":1})");
  EXPECT_EQ((*steps)[1].started_at_ms, 500);
  EXPECT_EQ((*steps)[1].ended_at_ms, 900);
  EXPECT_EQ((*steps)[1].result, R"({"ok":true})");
  EXPECT_EQ((*steps)[2].state, "running");
  EXPECT_EQ((*steps)[2].name, "Power on: db01");

  // A record of a step the run does not have is refused on reading, not
  // silently shown as another step.
  StepRow stray = running;
  stray.idx = 7;
  ASSERT_TRUE(store_->update_steps({stray}).is_ok());
  EXPECT_EQ(store_->run_steps("r1").status().code(), StatusCode::kInternal);
  // A step of a run that does not exist is refused.
  stray.run_id = "ghost";
  EXPECT_FALSE(store_->update_steps({stray}).is_ok());

  // Steps whose indices are not their places still read back whole.
  ASSERT_TRUE(store_->add_run(run_row("r2"), {pending_step("r2", 3, "Three"), pending_step("r2", 1, "One")}).is_ok());
  ASSERT_TRUE(store_->update_steps({StepRow{"r2", 1, "", "", "", "running", 1, 7, std::nullopt, "", ""}}).is_ok());
  auto shuffled = store_->run_steps("r2");
  ASSERT_TRUE(shuffled.is_ok()) << shuffled.status().to_string();
  ASSERT_EQ(shuffled->size(), 2u);
  EXPECT_EQ((*shuffled)[1].name, "One");
  EXPECT_EQ((*shuffled)[1].state, "running");
  EXPECT_EQ((*shuffled)[0].state, "pending");
}

// Migration 10 undone by hand, for tests that rewind a database further.
constexpr const char* kUndoSchema10 =
    "ALTER TABLE events DROP COLUMN count; ALTER TABLE events DROP COLUMN last_at; "
    "ALTER TABLE events DROP COLUMN signature; ALTER TABLE peers DROP COLUMN last_seen_at_ms; ";

TEST_F(StoreTest, ARunWrittenBeforeStepSpecsKeepsItsWholeRows) {
  store_.reset();
  {
    // An evacd of schema 7 wrote every step's whole row with the run.
    auto conn = sqlite::Connection::open((dir_ / "evac.db").string());
    ASSERT_TRUE(conn.is_ok());
    ASSERT_TRUE(conn->exec(std::string(kUndoSchema11) + kUndoSchema10 + "DROP TABLE run_step_specs; PRAGMA user_version = 7; "
                           "INSERT INTO runs VALUES ('old', 'shop-dr', 'test', 'running', 'ops', 100, NULL, '{}', '[]', ''); "
                           "INSERT INTO run_steps VALUES ('old', 0, 'Checks', 'checks', '{\"after\":[]}', 'succeeded', 1, 1, 2, '', '{}'); "
                           "INSERT INTO run_steps VALUES ('old', 1, 'Power on: db01', 'power_on', '{\"after\":[0]}', 'pending', 0, NULL, NULL, '', '')")
                    .is_ok());
  }
  auto s = Store::open((dir_ / "evac.db").string());
  ASSERT_TRUE(s.is_ok()) << s.status().to_string();
  store_ = std::move(*s);
  StepRow started{"old", 1, "", "", "", "running", 1, 5, std::nullopt, "", ""};
  ASSERT_TRUE(store_->update_steps({started}).is_ok());
  auto steps = store_->run_steps("old");
  ASSERT_TRUE(steps.is_ok()) << steps.status().to_string();
  ASSERT_EQ(steps->size(), 2u);
  EXPECT_EQ((*steps)[0].name, "Checks");
  EXPECT_EQ((*steps)[0].state, "succeeded");
  EXPECT_EQ((*steps)[1].name, "Power on: db01") << "its state changed, its spec stayed";
  EXPECT_EQ((*steps)[1].spec, R"({"after":[0]})");
  EXPECT_EQ((*steps)[1].state, "running");
}

TEST_F(StoreTest, StepRecordsOfSchema8SurviveTheTablesRebuildAndStillGoWithTheirRun) {
  ASSERT_TRUE(store_->add_run(run_row("r8"), {pending_step("r8", 0, "Checks"), pending_step("r8", 1, "Power on: db01")}).is_ok());
  ASSERT_TRUE(store_->update_steps({StepRow{"r8", 0, "", "", "", "succeeded", 1, 1, 2, "", R"({"ok":1})"}}).is_ok());
  store_.reset();
  {
    // Put run_steps back as schema 8 kept it, a table with a rowid and a key
    // index, holding the same records.
    auto conn = sqlite::Connection::open((dir_ / "evac.db").string());
    ASSERT_TRUE(conn.is_ok());
    ASSERT_TRUE(conn->exec(std::string(kUndoSchema11) + kUndoSchema10 + "CREATE TABLE v8 (run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE, "
                           "idx INTEGER NOT NULL, name TEXT NOT NULL, kind TEXT NOT NULL, spec TEXT NOT NULL, "
                           "state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, started_at_ms INTEGER, "
                           "ended_at_ms INTEGER, error TEXT NOT NULL DEFAULT '', result TEXT NOT NULL DEFAULT '', "
                           "PRIMARY KEY (run_id, idx)); INSERT INTO v8 SELECT * FROM run_steps; DROP TABLE run_steps; "
                           "ALTER TABLE v8 RENAME TO run_steps; PRAGMA user_version = 8")
                    .is_ok());
  }
  auto s = Store::open((dir_ / "evac.db").string());
  ASSERT_TRUE(s.is_ok()) << s.status().to_string();
  store_ = std::move(*s);
  auto steps = store_->run_steps("r8");
  ASSERT_TRUE(steps.is_ok()) << steps.status().to_string();
  ASSERT_EQ(steps->size(), 2u);
  EXPECT_EQ((*steps)[0].state, "succeeded");
  EXPECT_EQ((*steps)[0].result, R"({"ok":1})");
  EXPECT_EQ((*steps)[1].state, "pending");
  ASSERT_TRUE(store_->update_steps({StepRow{"r8", 1, "", "", "", "running", 1, 5, std::nullopt, "", ""}}).is_ok());
  steps = store_->run_steps("r8");
  ASSERT_TRUE(steps.is_ok());
  EXPECT_EQ((*steps)[1].state, "running");
  EXPECT_EQ((*steps)[1].name, "Power on: db01");
  // The rebuilt table still refuses a step of a run that does not exist.
  EXPECT_FALSE(store_->update_steps({StepRow{"ghost", 0, "", "", "", "running", 1, 5, std::nullopt, "", ""}}).is_ok());
}

TEST_F(StoreTest, PlansAreReplacedKeepingWhenTheyWereCreated) {
  ASSERT_TRUE(store_->put_plan({"shop-dr", R"({"name":"shop-dr"})", 100, 100}).is_ok());
  ASSERT_TRUE(store_->put_plan({"crm-dr", R"({"name":"crm-dr"})", 150, 150}).is_ok());
  ASSERT_TRUE(store_->put_plan({"shop-dr", R"({"name":"shop-dr","ordering":"dependencies"})", 200, 200}).is_ok());
  auto p = store_->find_plan("shop-dr");
  ASSERT_TRUE(p.is_ok() && p->has_value());
  EXPECT_EQ((*p)->created_at, 100);
  EXPECT_EQ((*p)->updated_at, 200);
  EXPECT_NE((*p)->document.find("dependencies"), std::string::npos);
  auto all = store_->list_plans();
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].name, "crm-dr");  // by name
  ASSERT_TRUE(store_->remove_plan("shop-dr").is_ok());
  EXPECT_FALSE(store_->find_plan("shop-dr")->has_value());
}

TEST_F(StoreTest, ReplicationRecordCountsCyclesAndGoesWithItsGroup) {
  ASSERT_TRUE(store_->add_group(group("g1", "u1")).is_ok());
  EXPECT_FALSE(store_->find_replication("g1")->has_value());
  ASSERT_TRUE(store_->record_cycle_failure("g1", 100, "link down").is_ok());
  ASSERT_TRUE(store_->record_cycle_failure("g1", 130, "still down").is_ok());
  ASSERT_TRUE(store_->record_cycle_success("g1", "pit-1", 200, 5000, 1500, 210).is_ok());
  ASSERT_TRUE(store_->record_cycle_success("g1", "pit-2", 300, 700, 900, 305).is_ok());
  auto r = store_->find_replication("g1");
  ASSERT_TRUE(r.is_ok() && r->has_value());
  EXPECT_EQ((*r)->last_pit_id, "pit-2");
  EXPECT_EQ((*r)->last_pit_created_at, 300);
  EXPECT_EQ((*r)->last_duration_ms, 900);
  EXPECT_EQ((*r)->cycles_succeeded, 2);
  EXPECT_EQ((*r)->cycles_failed, 2);
  EXPECT_EQ((*r)->consecutive_failures, 0);
  EXPECT_EQ((*r)->last_error, "still down");  // the last failure stays visible after a success
  EXPECT_EQ((*r)->bytes_sent_total, 5700u);
  ASSERT_TRUE(store_->set_rpo_breached("g1", true).is_ok());
  EXPECT_TRUE((*store_->find_replication("g1"))->rpo_breached);
  // Unknown groups get no record, and a deleted group's record goes with it.
  EXPECT_FALSE(store_->record_cycle_failure("ghost", 1, "x").is_ok());
  ASSERT_TRUE(store_->remove_group("g1").is_ok());
  EXPECT_FALSE(store_->find_replication("g1")->has_value());
}

TEST_F(StoreTest, EventsNewestFirstFilteredByGroup) {
  ASSERT_TRUE(store_->add_event(EventRecord{0, 1, "warning", "rpo_breached", "g1", "out"}).is_ok());
  ASSERT_TRUE(store_->add_event(EventRecord{0, 2, "error", "cycle_failed", "g2", "failed"}).is_ok());
  ASSERT_TRUE(store_->add_event(EventRecord{0, 3, "info", "rpo_restored", "g1", "back"}).is_ok());
  auto all = store_->list_events(std::nullopt, 10);
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ((*all)[0].kind, "rpo_restored");
  auto g1 = store_->list_events(std::string("g1"), 10);
  ASSERT_EQ(g1->size(), 2u);
  EXPECT_EQ((*g1)[1].message, "out");
  EXPECT_EQ(store_->list_events(std::nullopt, 1)->size(), 1u);
  EXPECT_FALSE(store_->add_event(EventRecord{0, 4, "loud", "x", "", "y"}).is_ok());  // severities are fixed
}

// A condition that repeats (a cycle failing the same way, its message
// naming another random work folder each time) is one event with a count;
// another reason, or anything else happening in between, is a new event.
TEST_F(StoreTest, ARepeatedEventIsCountedNotRaisedAgain) {
  auto failed = [](std::int64_t at, const std::string& folder) {
    return EventRecord{0, at, "error", "cycle_failed", "g1",
                       "cycle failed: Could not open '/s/backup/" + folder + "/vda.scratch': Permission denied (after 3 s)"};
  };
  auto first = store_->add_event(failed(10, "091d3fe9"));
  ASSERT_TRUE(first.is_ok());
  auto again = store_->add_event(failed(40, "a7c2e001"));
  ASSERT_TRUE(again.is_ok());
  EXPECT_EQ(again->id, first->id);
  EXPECT_EQ(again->count, 2);
  ASSERT_TRUE(store_->add_event(failed(70, "ffee0123")).is_ok());
  auto all = store_->list_events(std::nullopt, 10);
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0].count, 3);
  EXPECT_EQ((*all)[0].at, 10) << "first raised";
  EXPECT_EQ((*all)[0].last_at, 70);
  EXPECT_NE((*all)[0].message.find("ffee0123"), std::string::npos) << "the newest occurrence's message";

  // Another group's events do not interrupt a streak; this group's do.
  ASSERT_TRUE(store_->add_event(EventRecord{0, 80, "error", "cycle_failed", "g2", "x"}).is_ok());
  ASSERT_TRUE(store_->add_event(failed(90, "00000001")).is_ok());
  EXPECT_EQ(store_->list_events(std::string("g1"), 10)->size(), 1u);
  ASSERT_TRUE(store_->add_event(EventRecord{0, 100, "warning", "rpo_breached", "g1", "out of RPO"}).is_ok());
  ASSERT_TRUE(store_->add_event(failed(110, "00000002")).is_ok());
  EXPECT_EQ(store_->list_events(std::string("g1"), 10)->size(), 3u);
  // A different reason is a different event.
  ASSERT_TRUE(store_->add_event(EventRecord{0, 120, "error", "cycle_failed", "g1", "cycle failed: disk gone"}).is_ok());
  EXPECT_EQ(store_->list_events(std::string("g1"), 10)->size(), 4u);
  // Words made of hex letters alone are words, not numbers.
  EXPECT_NE(event_signature(EventRecord{0, 0, "error", "k", "", "a bad face"}),
            event_signature(EventRecord{0, 0, "error", "k", "", "a bad cafe"}));
}

TEST_F(StoreTest, MaxRatePerGroup) {
  ASSERT_TRUE(store_->add_group(group("g1", "u1")).is_ok());
  ASSERT_TRUE(store_->set_group_max_rate("g1", 1 << 20).is_ok());
  EXPECT_EQ((*store_->find_group("g1"))->max_rate_bytes, 1u << 20);
  EXPECT_EQ(store_->set_group_max_rate("ghost", 1).code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace evac
