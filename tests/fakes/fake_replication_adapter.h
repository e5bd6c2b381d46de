// FakeReplicationAdapter: a replication engine in memory for unit tests of
// the layers above the adapter interface (scheduling, progress, lag, alarms,
// metrics). It records every call, can be told to fail or to block a cycle
// until released, reports the progress it is given, and keeps the PITs it
// "made" per group.
//
// Registered in a test's ReplicationRegistry (under the kind its groups
// name, "builtin" by default: it stands in for the built-in engine); the
// adapter factory() makes forwards to this one object, which holds the state.
//
// Told to deliver_as_builtin(), it becomes an engine reading disks of
// zeros: each cycle is staged and committed at the recovery site through
// the built-in engine's routes, and this site's recovery half (PITs held,
// test copies, promote, seeds, release, verify, the routes themselves) is a
// real built-in replicator, so runs test and recover from real PITs.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <vector>

#include "core/replication_adapter.h"
#include "core/replication_registry.h"
#include "replication/builtin/block_codec.h"
#include "replication/builtin/builtin_protocol.h"
#include "replication/builtin/builtin_registration.h"

namespace evac::testing {

class FakeReplicationAdapter : public ReplicationAdapter {
 public:
  // `clock` stamps the PITs (unix seconds): the instant a cycle captures.
  explicit FakeReplicationAdapter(std::function<std::int64_t()> clock) : clock_(std::move(clock)) {}

  ReplicationAdapterFactory factory() {
    return [this](const ReplicationSiteContext& site) -> Result<std::unique_ptr<ReplicationAdapter>> {
      std::lock_guard lock(mu_);
      if (delivered_disk_bytes_ > 0) {
        ReplicationRegistry builtin;
        builtin::register_builtin_replicator(builtin);
        auto made = builtin.create("builtin", site);
        if (!made) return made.status();
        receiving_half_ = std::move(*made);
      }
      return std::unique_ptr<ReplicationAdapter>(std::make_unique<Forwarder>(*this));
    };
  }
  // Cycles stage and commit at the recovery site through the built-in
  // engine's routes, every disk `disk_bytes` of zeros (a disk whose storage
  // pool has no replica folder there fails the cycle), and answer the PIT
  // made there; the recovery half is the built-in replicator's. Call it
  // before the service using factory() starts.
  void deliver_as_builtin(std::uint64_t disk_bytes = 1 << 20) {
    std::lock_guard lock(mu_);
    delivered_disk_bytes_ = disk_bytes;
  }
  // A registry with this fake as `kind` (by default the kind groups name
  // when they name none).
  ReplicationRegistry registry(const std::string& kind = kDefaultReplicationKind) {
    ReplicationRegistry r;
    r.add(kind, factory());
    return r;
  }

  // ---- steering ---------------------------------------------------------
  void fail_with(std::optional<Status> s) {
    std::lock_guard lock(mu_);
    failure_ = std::move(s);
  }
  // The progress reported, in order, before a cycle blocks or ends.
  void report(std::vector<SyncProgress> steps) {
    std::lock_guard lock(mu_);
    steps_ = std::move(steps);
  }
  void set_bytes_sent(std::uint64_t bytes) {
    std::lock_guard lock(mu_);
    bytes_sent_ = bytes;
  }
  // Cycles started from now on wait in sync_now until release() (or shutdown).
  void block() {
    std::lock_guard lock(mu_);
    blocking_ = true;
  }
  void release() {
    std::lock_guard lock(mu_);
    blocking_ = false;
    cv_.notify_all();
  }
  // Waits (bounded, so a broken test fails instead of hanging) until `n`
  // cycles have entered sync_now and the newest is blocked.
  bool wait_until_blocked(int n = 1) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(20), [&] { return blocked_ && sync_calls_ >= n; });
  }

  // ---- what happened ----------------------------------------------------
  int sync_calls() const {
    std::lock_guard lock(mu_);
    return sync_calls_;
  }
  int reverse_calls() const {
    std::lock_guard lock(mu_);
    return reverse_calls_;
  }
  std::vector<std::string> synced_groups() const {
    std::lock_guard lock(mu_);
    return synced_groups_;
  }
  // The site each cycle's link reached, in order.
  std::vector<std::string> recovery_sites() const {
    std::lock_guard lock(mu_);
    return recovery_sites_;
  }
  // Whether each sync_now call was asked to read every block (spec.full_read).
  std::vector<bool> full_reads() const {
    std::lock_guard lock(mu_);
    return full_reads_;
  }
  // "<group>:<vm>:<path>" of every disk prepare_failover / release_source named.
  std::vector<std::string> made_read_only() const {
    std::lock_guard lock(mu_);
    return read_only_;
  }
  std::vector<std::string> released() const {
    std::lock_guard lock(mu_);
    return released_;
  }
  // The routes the fake serves a paired site (none by default).
  void serve_routes(std::vector<ReplicationPeerRoute> routes) {
    std::lock_guard lock(mu_);
    routes_ = std::move(routes);
  }
  void fail_storage_with(std::optional<Status> s) {
    std::lock_guard lock(mu_);
    storage_failure_ = std::move(s);
  }
  std::vector<PointInTime> pits(const std::string& group) const {
    std::lock_guard lock(mu_);
    auto it = pits_.find(group);
    return it == pits_.end() ? std::vector<PointInTime>{} : it->second;
  }

  // ---- ReplicationAdapter ------------------------------------------------
  std::string kind() const override { return "fake"; }
  ReplicationCapabilities capabilities() const override {
    ReplicationCapabilities c;
    c.points_in_time = true;
    return c;
  }
  Result<std::vector<ReplicatedDevice>> discover(const ReplicationGroupSpec& spec) override {
    std::vector<ReplicatedDevice> out;
    for (const auto& vm : spec.vms)
      for (const auto& d : vm.disks) out.push_back(ReplicatedDevice{vm.uuid, vm.name, d.target, source_of(d), d.format, "", 0});
    return out;
  }
  Result<PointInTime> sync_now(const ReplicationGroupSpec& spec, ReplicationPeerLink& link,
                               const ProgressCallback& progress) override {
    std::int64_t created_at = clock_();  // the instant the cycle captures: its start
    std::vector<SyncProgress> steps;
    {
      std::unique_lock lock(mu_);
      ++sync_calls_;
      recovery_sites_.push_back(link.site());
      synced_groups_.push_back(spec.group);
      full_reads_.push_back(spec.full_read);
      steps = steps_;
    }
    for (const auto& p : steps)
      if (progress) progress(p);
    std::unique_lock lock(mu_);
    if (blocking_) {
      blocked_ = true;
      cv_.notify_all();
      // Polls the shutdown flag too: nothing notifies this fake of it.
      while (blocking_ && !link.stopping()) cv_.wait_for(lock, std::chrono::milliseconds(10));
      blocked_ = false;
      if (link.stopping()) return unavailable("evacd is shutting down: the cycle was aborted");
    }
    if (failure_) return *failure_;
    if (delivered_disk_bytes_ > 0) {
      const std::string cycle_id = "fake-cycle-" + std::to_string(++pit_counter_);
      const std::uint64_t disk_bytes = delivered_disk_bytes_, bytes_sent = bytes_sent_;
      lock.unlock();  // the recovery site is called in this thread
      auto pit = deliver(link, spec, cycle_id, disk_bytes, created_at, bytes_sent);
      lock.lock();
      if (pit) pits_[spec.group].push_back(*pit);
      return pit;
    }
    PointInTime pit;
    pit.id = "pit-" + std::to_string(++pit_counter_);
    pit.group = spec.group;
    pit.created_at = created_at;
    pit.created_at_ms = created_at * 1000;
    pit.bytes_sent = bytes_sent_;
    pit.full_read = spec.full_read;
    pits_[spec.group].push_back(pit);
    return pit;
  }
  // ---- the recovery half: the built-in replicator's once delivering ------
  Result<std::vector<PointInTime>> list_pits(const std::string& group) override {
    if (ReplicationAdapter* r = receiving_half()) return r->list_pits(group);
    return pits(group);
  }
  std::vector<ReplicationPeerRoute> peer_routes() override {
    if (ReplicationAdapter* r = receiving_half()) return r->peer_routes();
    std::lock_guard lock(mu_);
    return routes_;
  }
  Result<TestCopy> create_test_copy(const std::string& g, const std::string& p, const std::string& o) override {
    if (ReplicationAdapter* r = receiving_half()) return r->create_test_copy(g, p, o);
    return unsupported("fake");
  }
  Status drop_test_copy(const std::string& g, const std::string& t) override {
    if (ReplicationAdapter* r = receiving_half()) return r->drop_test_copy(g, t);
    return unsupported("fake");
  }
  Result<std::vector<TestCopy>> list_test_copies(const std::string& g) override {
    if (ReplicationAdapter* r = receiving_half()) return r->list_test_copies(g);
    return unsupported("fake");
  }
  Status set_seeds(const std::string& g, const std::map<std::string, std::string>& seeds) override {
    if (ReplicationAdapter* r = receiving_half()) return r->set_seeds(g, seeds);
    return Status::ok();
  }
  Result<ReleasedReplicas> release_replicas(const std::string& g) override {
    if (ReplicationAdapter* r = receiving_half()) return r->release_replicas(g);
    return ReleasedReplicas{};
  }
  Result<PitVerification> verify_pit(const std::string& g, const std::string& p) override {
    if (ReplicationAdapter* r = receiving_half()) return r->verify_pit(g, p);
    return unsupported("fake");
  }
  // Records the disk paths each call names ("<vm>:<path>"), then answers
  // what fail_storage_with() said (ok by default).
  Status prepare_failover(const ReplicationGroupSpec& spec) override {
    std::lock_guard lock(mu_);
    for (const auto& vm : spec.vms)
      for (const auto& d : vm.disks) read_only_.push_back(spec.group + ":" + vm.name + ":" + d.path);
    return storage_failure_.value_or(Status::ok());
  }
  Status release_source(const ReplicationGroupSpec& spec) override {
    std::lock_guard lock(mu_);
    for (const auto& vm : spec.vms)
      for (const auto& d : vm.disks) released_.push_back(spec.group + ":" + vm.name + ":" + d.path);
    return Status::ok();
  }
  Result<TestCopy> failover(const std::string& g, const std::string& p, const std::string& o) override {
    if (ReplicationAdapter* r = receiving_half()) return r->failover(g, p, o);
    return unsupported("fake");
  }
  // Counted apart from sync_now, then a cycle like it.
  Result<PointInTime> reverse(const ReplicationGroupSpec& spec, ReplicationPeerLink& link,
                              const ProgressCallback& progress) override {
    {
      std::lock_guard lock(mu_);
      ++reverse_calls_;
    }
    return sync_now(spec, link, progress);
  }

 private:
  ReplicationAdapter* receiving_half() {
    std::lock_guard lock(mu_);
    return receiving_half_.get();
  }
  // One cycle at the recovery site: staged, no block sent (its disks are
  // zeros, as is a new replica), committed with the digest of zeros and
  // the bytes set_bytes_sent() says.
  Result<PointInTime> deliver(ReplicationPeerLink& link, const ReplicationGroupSpec& spec, const std::string& cycle_id,
                              std::uint64_t disk_bytes, std::int64_t created_at, std::uint64_t bytes_sent) {
    std::vector<ReplicatedDevice> disks;
    std::vector<builtin::DiskDigest> digests;
    const std::string zeros = builtin::to_hex(builtin::Manifest::empty(disk_bytes).digest());
    for (const auto& vm : spec.vms)
      for (const auto& d : vm.disks) {
        auto dir = spec.replica_dirs.find(d.storage_pool.value_or(""));
        if (dir == spec.replica_dirs.end())
          return failed_precondition("disk " + d.target + " of " + vm.name + " has no replica folder (fake)");
        disks.push_back(ReplicatedDevice{vm.uuid, vm.name, d.target, source_of(d), d.format, dir->second, disk_bytes, ""});
        digests.push_back(builtin::DiskDigest{disks.back().key(), zeros});
      }
    auto channel = builtin::link_channel(link);
    EVAC_RETURN_IF_ERROR(channel->begin_cycle(spec.group, cycle_id, disks));
    return channel->commit_cycle(spec.group, cycle_id, digests, created_at * 1000, bytes_sent, spec.retention);
  }

  class Forwarder : public ReplicationAdapter {
   public:
    explicit Forwarder(FakeReplicationAdapter& f) : f_(f) {}
    std::string kind() const override { return f_.kind(); }
    ReplicationCapabilities capabilities() const override { return f_.capabilities(); }
    Result<std::vector<ReplicatedDevice>> discover(const ReplicationGroupSpec& s) override { return f_.discover(s); }
    Result<PointInTime> sync_now(const ReplicationGroupSpec& s, ReplicationPeerLink& l, const ProgressCallback& p) override {
      return f_.sync_now(s, l, p);
    }
    Result<std::vector<PointInTime>> list_pits(const std::string& g) override { return f_.list_pits(g); }
    std::vector<ReplicationPeerRoute> peer_routes() override { return f_.peer_routes(); }
    Result<std::vector<TestCopy>> list_test_copies(const std::string& g) override { return f_.list_test_copies(g); }
    Status set_seeds(const std::string& g, const std::map<std::string, std::string>& s) override {
      return f_.set_seeds(g, s);
    }
    Result<ReleasedReplicas> release_replicas(const std::string& g) override { return f_.release_replicas(g); }
    Result<PitVerification> verify_pit(const std::string& g, const std::string& p) override {
      return f_.verify_pit(g, p);
    }
    Result<TestCopy> create_test_copy(const std::string& g, const std::string& p, const std::string& o) override {
      return f_.create_test_copy(g, p, o);
    }
    Status drop_test_copy(const std::string& g, const std::string& t) override { return f_.drop_test_copy(g, t); }
    Status prepare_failover(const ReplicationGroupSpec& s) override { return f_.prepare_failover(s); }
    Status release_source(const ReplicationGroupSpec& s) override { return f_.release_source(s); }
    Result<TestCopy> failover(const std::string& g, const std::string& p, const std::string& o) override {
      return f_.failover(g, p, o);
    }
    Result<PointInTime> reverse(const ReplicationGroupSpec& s, ReplicationPeerLink& l, const ProgressCallback& p) override {
      return f_.reverse(s, l, p);
    }

   private:
    FakeReplicationAdapter& f_;
  };

  std::function<std::int64_t()> clock_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::optional<Status> failure_;
  std::optional<Status> storage_failure_;
  std::vector<bool> full_reads_;
  std::vector<std::string> read_only_;
  std::vector<std::string> released_;
  std::vector<SyncProgress> steps_;
  std::uint64_t bytes_sent_ = 4096;
  bool blocking_ = false;
  bool blocked_ = false;
  int sync_calls_ = 0;
  int reverse_calls_ = 0;  // of which through reverse()
  int pit_counter_ = 0;
  std::vector<std::string> synced_groups_;
  std::vector<std::string> recovery_sites_;
  std::vector<ReplicationPeerRoute> routes_;
  std::uint64_t delivered_disk_bytes_ = 0;                // 0: not delivering
  std::unique_ptr<ReplicationAdapter> receiving_half_;  // the built-in replicator's, once delivering
  std::map<std::string, std::vector<PointInTime>> pits_;
};

}  // namespace evac::testing
