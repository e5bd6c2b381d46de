// FakeReplicationAdapter: a replication engine in memory for unit tests of
// the layers above the adapter interface (scheduling, progress, lag, alarms,
// metrics). It records every call, can be told to fail or to block a cycle
// until released, reports the progress it is given, and keeps the PITs it
// "made" per group.
//
// ReplicationService makes one adapter per cycle through its factory; every
// adapter factory() makes forwards to this one object, which holds the state.
//
// A recovery site keeps its PITs in its own receiving half, whatever engine
// the protected site runs (ReplicationService::pits_held_here, test copies,
// promote). Told to deliver_through() a transport, this fake also ships each
// cycle there, as an engine reading disks of zeros would: the recovery site
// then holds real PITs that runs can test and recover from.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <vector>

#include "core/replication_adapter.h"
#include "replication/builtin/block_codec.h"
#include "service/replication_service.h"

namespace evac::testing {

class FakeReplicationAdapter : public ReplicationAdapter {
 public:
  // `clock` stamps the PITs (unix seconds): the instant a cycle captures.
  explicit FakeReplicationAdapter(std::function<std::int64_t()> clock) : clock_(std::move(clock)) {}

  AdapterFactory factory() {
    return [this](const CycleResources& r) -> std::unique_ptr<ReplicationAdapter> {
      std::lock_guard lock(mu_);
      recovery_sites_.push_back(r.recovery_site.site);
      recovery_site_ = r.recovery_site;
      limiter_ = r.limiter;
      stopping_ = r.stopping;
      return std::make_unique<Forwarder>(*this);
    };
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
  // Cycles from now on also stage and commit a cycle at the recovery site
  // through `transport` (the paired channel to its receiving half), every
  // disk `disk_bytes` of zeros, and answer the PIT it made there. A disk
  // whose storage pool has no replica folder there fails the cycle.
  void deliver_through(PeerTransport* transport, std::uint64_t disk_bytes = 1 << 20) {
    std::lock_guard lock(mu_);
    deliver_ = transport;
    delivered_disk_bytes_ = disk_bytes;
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
  // The rate limit the newest cycle was given (bytes per second, 0 = none).
  std::uint64_t limiter_rate() const {
    std::lock_guard lock(mu_);
    return limiter_ ? limiter_->rate() : 0;
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
      for (const auto& d : vm.disks) out.push_back(ReplicatedDevice{vm.uuid, vm.name, d.target, d.path, d.format, "", 0});
    return out;
  }
  Result<PointInTime> sync_now(const ReplicationGroupSpec& spec, const ProgressCallback& progress) override {
    std::int64_t created_at = clock_();  // the instant the cycle captures: its start
    std::vector<SyncProgress> steps;
    {
      std::unique_lock lock(mu_);
      ++sync_calls_;
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
      while (blocking_ && !(stopping_ && stopping_->load())) cv_.wait_for(lock, std::chrono::milliseconds(10));
      blocked_ = false;
      if (stopping_ && stopping_->load()) return unavailable("evacd is shutting down: the cycle was aborted");
    }
    if (failure_) return *failure_;
    if (deliver_) {
      PeerTransport* transport = deliver_;
      const std::string cycle_id = "fake-cycle-" + std::to_string(++pit_counter_);
      const std::uint64_t disk_bytes = delivered_disk_bytes_, bytes_sent = bytes_sent_;
      const PeerRecord peer = recovery_site_;
      lock.unlock();  // the recovery site is called in this thread
      auto pit = deliver(*transport, peer, spec, cycle_id, disk_bytes, created_at, bytes_sent);
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
  Result<std::vector<PointInTime>> list_pits(const std::string& group) override { return pits(group); }
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
  Result<std::vector<PitDisk>> failover(const std::string&, const std::string&, const std::string&) override {
    return unsupported("fake");
  }
  // Counted apart from sync_now, then a cycle like it.
  Result<PointInTime> reverse(const ReplicationGroupSpec& spec, const ProgressCallback& progress) override {
    {
      std::lock_guard lock(mu_);
      ++reverse_calls_;
    }
    return sync_now(spec, progress);
  }

 private:
  // One cycle at the recovery site: staged, no block sent (its disks are
  // zeros, as is a new replica), committed with the digest of zeros and
  // the bytes set_bytes_sent() says.
  Result<PointInTime> deliver(PeerTransport& transport, const PeerRecord& peer, const ReplicationGroupSpec& spec,
                              const std::string& cycle_id, std::uint64_t disk_bytes, std::int64_t created_at,
                              std::uint64_t bytes_sent) {
    std::vector<ReplicatedDevice> disks;
    std::vector<builtin::DiskDigest> digests;
    const std::string zeros = builtin::to_hex(builtin::Manifest::empty(disk_bytes).digest());
    for (const auto& vm : spec.vms)
      for (const auto& d : vm.disks) {
        auto dir = spec.replica_dirs.find(d.storage_pool.value_or(""));
        if (dir == spec.replica_dirs.end())
          return failed_precondition("disk " + d.target + " of " + vm.name + " has no replica folder (fake)");
        disks.push_back(ReplicatedDevice{vm.uuid, vm.name, d.target, d.path, d.format, dir->second, disk_bytes, ""});
        digests.push_back(builtin::DiskDigest{disks.back().key(), zeros});
      }
    auto channel = make_peer_channel(transport, peer, nullptr, nullptr);
    EVAC_RETURN_IF_ERROR(channel->begin_cycle(spec.group, cycle_id, disks));
    return channel->commit_cycle(spec.group, cycle_id, digests, created_at * 1000, bytes_sent, spec.retention);
  }

  class Forwarder : public ReplicationAdapter {
   public:
    explicit Forwarder(FakeReplicationAdapter& f) : f_(f) {}
    std::string kind() const override { return f_.kind(); }
    ReplicationCapabilities capabilities() const override { return f_.capabilities(); }
    Result<std::vector<ReplicatedDevice>> discover(const ReplicationGroupSpec& s) override { return f_.discover(s); }
    Result<PointInTime> sync_now(const ReplicationGroupSpec& s, const ProgressCallback& p) override { return f_.sync_now(s, p); }
    Result<std::vector<PointInTime>> list_pits(const std::string& g) override { return f_.list_pits(g); }
    Result<TestCopy> create_test_copy(const std::string& g, const std::string& p, const std::string& o) override {
      return f_.create_test_copy(g, p, o);
    }
    Status drop_test_copy(const std::string& g, const std::string& t) override { return f_.drop_test_copy(g, t); }
    Status prepare_failover(const ReplicationGroupSpec& s) override { return f_.prepare_failover(s); }
    Status release_source(const ReplicationGroupSpec& s) override { return f_.release_source(s); }
    Result<std::vector<PitDisk>> failover(const std::string& g, const std::string& p, const std::string& o) override {
      return f_.failover(g, p, o);
    }
    Result<PointInTime> reverse(const ReplicationGroupSpec& s, const ProgressCallback& p) override { return f_.reverse(s, p); }

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
  PeerRecord recovery_site_;  // the newest cycle's
  PeerTransport* deliver_ = nullptr;
  std::uint64_t delivered_disk_bytes_ = 0;
  TokenBucket* limiter_ = nullptr;
  const std::atomic<bool>* stopping_ = nullptr;
  std::map<std::string, std::vector<PointInTime>> pits_;
};

}  // namespace evac::testing
