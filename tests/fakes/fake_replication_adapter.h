// FakeReplicationAdapter: a replication engine in memory for unit tests of
// the layers above the adapter interface (scheduling, progress, lag, alarms,
// metrics). It records every call, can be told to fail or to block a cycle
// until released, reports the progress it is given, and keeps the PITs it
// "made" per group.
//
// Registered in a test's ReplicationRegistry (under the kind its groups
// name, "builtin" by default: it stands in for the built-in engine); the
// adapter factory() makes forwards to this one object, which holds the state.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <vector>

#include "core/replication_adapter.h"
#include "core/replication_registry.h"

namespace evac::testing {

class FakeReplicationAdapter : public ReplicationAdapter {
 public:
  // `clock` stamps the PITs (unix seconds): the instant a cycle captures.
  explicit FakeReplicationAdapter(std::function<std::int64_t()> clock) : clock_(std::move(clock)) {}

  ReplicationAdapterFactory factory() {
    return [this](const ReplicationSiteContext&) -> Result<std::unique_ptr<ReplicationAdapter>> {
      return std::unique_ptr<ReplicationAdapter>(std::make_unique<Forwarder>(*this));
    };
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
  Result<std::vector<PointInTime>> list_pits(const std::string& group) override { return pits(group); }
  std::vector<ReplicationPeerRoute> peer_routes() override {
    std::lock_guard lock(mu_);
    return routes_;
  }
  Result<TestCopy> create_test_copy(const std::string&, const std::string&, const std::string&) override {
    return unsupported("fake");
  }
  Status drop_test_copy(const std::string&, const std::string&) override { return unsupported("fake"); }
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
  Result<TestCopy> failover(const std::string&, const std::string&, const std::string&) override {
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
  std::map<std::string, std::vector<PointInTime>> pits_;
};

}  // namespace evac::testing
