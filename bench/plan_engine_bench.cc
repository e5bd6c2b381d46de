// Benchmark of the run engine on a large plan (issue 8, point 7).
//
// A plan of N VMs (default 10,000) in 5 tiers, each VM of tiers 2-5
// depending on one or two VMs of the tier before, is compiled for both
// orderings and run by the real engine with its real SQLite store. Its
// power-on and heartbeat steps call a compute provider: libvirt's test
// driver (test:///, a node of N shut-off domains written for the run),
// behind a wrapper that injects latency — power-on takes 15-25 ms before
// the test driver starts the domain, the guest heartbeat 30-70 ms (the test
// driver has no guest agent, so the wrapper answers it). Either call holds
// one of the provider's `limit` slots (the engine's per-provider limit)
// while it lasts. Real latencies are power-on 1.5-2.5 s and heartbeat 3-7 s;
// the bench divides them by --scale (100 by default, so a run takes seconds
// rather than the 23 minutes of real time). They are fixed per VM by a
// seed, so both modes, every scale and the bound see the same ones. What a
// step costs the engine does not shrink with the scale, so at 1/100 it
// weighs a hundred times what it weighs against real latencies: a smaller
// --scale, with --provider and --ordering to run fewer rows, shows that.
//
// For each mode it prints the makespan against that mode's lower bound,
// computed here from the same latencies: the longer of the longest
// dependency chain (power-on + heartbeat along it) and the total work (all
// calls' latencies) divided by the limit; for strict tiers, that per tier,
// summed. Then the CPU time per step: the process's, and the engine's (the
// process's minus what the test driver itself spent inside power-on: with a
// real hypervisor that work is libvirtd's and QEMU's, not evacd's), the
// same less all CPU spent inside provider calls (the injected sleeps cost
// their syscalls and wake-ups, which a real provider's wait on libvirtd
// would cost the engine's thread too: both are shown), and the peak memory.
// Each mode runs twice: first knowing no durations, then (learned) with the
// first run's, as a plan's second run does. Last come two floors under the
// engine's CPU per step: the store's write of a step's record, back to back
// and spaced as steps come at each scale, and the same spacing's cost on
// work with no evac code in it (arithmetic, a memory read, the least
// SQLite transaction, a file append), which shows what the machine charges any
// code that wakes after a sleep.
//
// usage: plan_engine_bench [VMS] [LIMIT] [--scale N] [--provider latency|driver|both]
//                          [--ordering strict-tiers|dependencies|both] [--first-runs-only]
//        (from a build tree: build/default/bench/plan_engine_bench; --help)
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <ctime>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>

#include <CLI/CLI.hpp>

#include "engine/plan_compiler.h"
#include "engine/run_engine.h"
#include "providers/libvirt/libvirt_provider.h"
#include "store/sqlite.h"
#include "store/store.h"

namespace {

using namespace evac;
using namespace evac::engine;

struct Latency {
  int power_on_us;
  int heartbeat_us;
};

// Sleeps `us` as exactly as the kernel can: a thread's timer slack (50 µs by
// default) is added to every sleep, 0.1-0.3% of these latencies, which
// would show as the engine's.
void sleep_latency(int us) {
  thread_local const bool exact = ::prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL) == 0;
  (void)exact;
  std::this_thread::sleep_for(std::chrono::microseconds(us));
}

// A compute provider that takes as long as a real one: each power-on waits
// its VM's latency, then the wrapped provider starts the VM; each heartbeat
// waits its VM's latency and answers (as a guest agent that just came up).
// Everything else goes straight through.
class LatencyInjectingProvider : public ComputeProvider {
 public:
  // `start_vms` false: the latency alone, no hypervisor behind it (what the
  // engine costs by itself).
  LatencyInjectingProvider(ComputeProvider& inner, const std::map<std::string, Latency>& latency, bool start_vms)
      : inner_(inner), latency_(latency), start_vms_(start_vms) {}
  const std::string& name() const override { return inner_.name(); }
  std::string kind() const override { return inner_.kind(); }
  std::string uri() const override { return inner_.uri(); }
  Status ping() override { return inner_.ping(); }
  Result<std::vector<VmInfo>> list_vms() override { return inner_.list_vms(); }
  Result<VmInfo> get_vm(const std::string& vm) override { return inner_.get_vm(vm); }
  Result<std::vector<NetworkInfo>> list_networks() override { return inner_.list_networks(); }
  Result<std::vector<StoragePoolInfo>> list_storage_pools() override { return inner_.list_storage_pools(); }
  Result<PlaceholderInfo> define_placeholder(const PlaceholderSpec& spec) override { return inner_.define_placeholder(spec); }
  Status remove_placeholder(const std::string& uuid) override { return inner_.remove_placeholder(uuid); }
  Result<std::vector<PlaceholderInfo>> list_placeholders() override { return inner_.list_placeholders(); }
  Status power_on(const std::string& vm) override {
    sleep_latency(latency_.at(vm).power_on_us);
    if (!start_vms_) return Status::ok();
    const double cpu0 = thread_cpu_seconds();
    Status st = inner_.power_on(vm);
    inner_cpu_us_ += static_cast<long>((thread_cpu_seconds() - cpu0) * 1e6);
    return st;
  }
  // CPU the wrapped provider spent in this process (the test driver runs
  // in-process; a real hypervisor's work happens in libvirtd and QEMU).
  double inner_cpu_seconds() const { return inner_cpu_us_.load() / 1e6; }
  static double thread_cpu_seconds() {
    timespec ts{};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
  }
  Status guest_ping(const std::string& vm) override {
    sleep_latency(latency_.at(vm).heartbeat_us);
    return Status::ok();
  }

 private:
  ComputeProvider& inner_;
  const std::map<std::string, Latency>& latency_;
  const bool start_vms_;
  std::atomic<long> inner_cpu_us_{0};
};

// The runner's share of the two step kinds: one provider call each, as
// RunService's runner does for power-on and the heartbeat. It also keeps
// how long each call really took: a sleeping thread wakes a little after
// its latency (timer slack and scheduling, ~0.2 ms here), and through the
// test driver the call does the driver's work too; the bound computed from
// these durations is what the engine itself could have reached.
class ProviderRunner : public StepRunner {
 public:
  explicit ProviderRunner(ComputeProvider& provider) : provider_(provider) {}
  Result<nlohmann::json> run(const RunRow&, const Step& step) override {
    const std::string vm = step.spec.params.value("vm", "");
    const auto t0 = std::chrono::steady_clock::now();
    const double cpu0 = LatencyInjectingProvider::thread_cpu_seconds();
    if (step.spec.kind == engine::StepKind::kPowerOn) EVAC_RETURN_IF_ERROR(provider_.power_on(vm));
    if (step.spec.kind == engine::StepKind::kWaitForGuest) EVAC_RETURN_IF_ERROR(provider_.guest_ping(vm));
    call_cpu_us_ += static_cast<long>((LatencyInjectingProvider::thread_cpu_seconds() - cpu0) * 1e6);
    ++calls_;
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count();
    {
      std::lock_guard lock(mu_);
      Latency& l = took_[vm];
      (step.spec.kind == engine::StepKind::kPowerOn ? l.power_on_us : l.heartbeat_us) = static_cast<int>(us);
    }
    return nlohmann::json{{"vm", vm}};
  }
  // VM -> how long its calls took.
  const std::map<std::string, Latency>& took() const { return took_; }
  // CPU the calling threads spent inside provider calls (the sleep's
  // syscalls and, through the test driver, the driver's work), per call.
  double call_cpu_us_per_call() const { return calls_ ? static_cast<double>(call_cpu_us_.load()) / calls_.load() : 0; }
  double call_cpu_seconds() const { return call_cpu_us_.load() / 1e6; }

 private:
  ComputeProvider& provider_;
  std::atomic<long> call_cpu_us_{0};
  std::atomic<long> calls_{0};
  std::mutex mu_;
  std::map<std::string, Latency> took_;
};

// A test-driver node with every VM of the plan, shut off.
void write_node(const std::filesystem::path& path, const RecoveryPlan& plan) {
  std::ofstream out(path);
  out << "<node>\n";
  for (std::size_t i = 0; i < plan.vms.size(); ++i) {
    char uuid[64];
    std::snprintf(uuid, sizeof uuid, "b0000000-0000-4000-8000-%012zx", i);
    out << "<domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'><name>" << plan.vms[i].vm
        << "</name><uuid>" << uuid
        << "</uuid><memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type>hvm</type></os><test:runstate>5</test:runstate></domain>\n";
  }
  out << "</node>\n";
}

double cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// The store's floor under the engine's CPU per step: the engine's write of
// one step's end with the next one's start, `n` times in one thread with
// nothing else running, back to back or `apart` from each other (as a run's
// steps come when their calls take real time: each write then finds the
// caches cold). Returns CPU microseconds per write.
double step_write_floor_us(Store& store, int n, std::chrono::microseconds apart = {}) {
  static int floors = 0;
  RunRow run;
  run.id = "write-floor-" + std::to_string(++floors);
  run.plan = "bench";
  run.operation = "test";
  run.started_by = "bench";
  run.plan_document = "{}";
  run.groups = "[]";
  std::vector<StepRow> steps;
  for (int i = 0; i < n; ++i)
    steps.push_back(StepRow{run.id, i, "Power on: vm" + std::to_string(i), "power_on", R"({"after":[],"params":{"vm":"vm1"}})",
                            "pending", 0, std::nullopt, std::nullopt, "", ""});
  if (!store.add_run(run, steps).is_ok()) return -1;
  double cpu = 0;  // the writes' own, on this thread's clock: not the sleeps'
  for (int i = 0; i < n; ++i) {
    std::vector<StepRow> rows;
    if (i > 0) rows.push_back(StepRow{run.id, i - 1, "", "", "", "succeeded", 1, i, i + 20, "", R"({"vm":"vm1","state":"running"})"});
    rows.push_back(StepRow{run.id, i, "", "", "", "running", 1, i + 20, std::nullopt, "", ""});
    const double cpu0 = LatencyInjectingProvider::thread_cpu_seconds();
    if (!store.update_steps(rows).is_ok()) return -1;
    cpu += LatencyInjectingProvider::thread_cpu_seconds() - cpu0;
    if (apart.count() > 0) sleep_latency(static_cast<int>(apart.count()));
  }
  return cpu / n * 1e6;
}

// What this machine does to any code that runs after a sleep, evac's or
// not: `work` timed on the thread's CPU clock `n` times back to back, then
// `n` times one every 100 ms. Where the host evicts a sleeping thread's
// caches, the second is several times the first whatever the code; that is
// what separates the engine's own cost per step from the machine's.
struct ColdPenalty {
  double back_to_back_us, apart_us;
};
template <typename Work>
ColdPenalty cold_penalty(int n, Work work) {
  auto timed = [&](std::chrono::milliseconds apart) {
    double cpu = 0;
    for (int i = 0; i < n; ++i) {
      if (apart.count() > 0) sleep_latency(static_cast<int>(std::chrono::microseconds(apart).count()));
      const double cpu0 = LatencyInjectingProvider::thread_cpu_seconds();
      work(i);
      cpu += LatencyInjectingProvider::thread_cpu_seconds() - cpu0;
    }
    return cpu / n * 1e6;
  };
  timed(std::chrono::milliseconds(0));  // first touches (page faults) out of the way
  return {timed(std::chrono::milliseconds(0)), timed(std::chrono::milliseconds(100))};
}

// The machine's penalty on four pieces of work with no evac code in them:
// arithmetic, reading 1 MiB, the least SQLite transaction (two rows of two integers
// appended, with the store's settings), and a 200-byte append to a file.
void print_machine_cold_penalty(const std::filesystem::path& dir) {
  std::vector<char> memory(1 << 20, 1);
  const ColdPenalty walk = cold_penalty(50, [&](int) {
    volatile long sum = 0;
    for (std::size_t i = 0; i < memory.size(); i += 64) sum = sum + memory[i];
  });
  // Arithmetic on registers, no memory: if this slows after a sleep too,
  // it is the clock, not the caches.
  const ColdPenalty arithmetic = cold_penalty(50, [](int i) {
    volatile long sum = i;
    for (long k = 0; k < 100000; ++k) sum = sum + k * k;
  });
  ColdPenalty txn{-1, -1};
  if (auto db = sqlite::Connection::open((dir / "least.db").string());
      db && db->exec("PRAGMA locking_mode=EXCLUSIVE; PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                     "CREATE TABLE t (id INTEGER PRIMARY KEY, a INTEGER, b INTEGER)").is_ok()) {
    auto begin = db->prepare("BEGIN"), insert = db->prepare("INSERT INTO t (a, b) VALUES (?, ?)"), commit = db->prepare("COMMIT");
    if (begin && insert && commit)
      txn = cold_penalty(50, [&](int i) {
        begin->reset();
        (void)begin->run();
        for (int k = 0; k < 2; ++k) {
          insert->reset();
          (void)insert->bind(1, i).bind(2, k).run();
        }
        commit->reset();
        (void)commit->run();
      });
  }
  ColdPenalty append{-1, -1};
  if (std::FILE* f = std::fopen((dir / "append.log").c_str(), "ab")) {
    const int fd = ::fileno(f);
    const std::string record(200, 'x');
    append = cold_penalty(50, [&](int) { (void)!::write(fd, record.data(), record.size()); });
    std::fclose(f);
  }
  std::printf("this machine, no evac code, back to back / one every 100 ms: 100,000 multiply-adds %.1f / %.1f us;\n"
              "reading 1 MiB %.1f / %.1f us; the least SQLite transaction (two rows of two integers appended, the store's\n"
              "settings) %.1f / %.1f us; a 200-byte append to a file %.1f / %.1f us CPU\n",
              arithmetic.back_to_back_us, arithmetic.apart_us, walk.back_to_back_us, walk.apart_us, txn.back_to_back_us,
              txn.apart_us, append.back_to_back_us, append.apart_us);
}

long peak_rss_kib() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss;
}

// The lower bound of a mode's makespan, in microseconds.
double bound_us(const RecoveryPlan& plan, const std::map<std::string, Latency>& latency, int limit) {
  // Longest chain ending at each VM (its power-on + heartbeat included).
  std::map<std::string, double> chain;
  std::map<std::string, const PlanVm*> entry;
  for (const auto& v : plan.vms) entry[v.vm] = &v;
  std::vector<const PlanVm*> order;
  for (const auto& v : plan.vms) order.push_back(&v);
  std::sort(order.begin(), order.end(), [](const PlanVm* a, const PlanVm* b) { return a->priority < b->priority; });
  for (const PlanVm* v : order) {
    double start = 0;
    for (const auto& d : v->depends_on) start = std::max(start, chain[d]);
    const Latency& l = latency.at(v->vm);
    chain[v->vm] = start + l.power_on_us + l.heartbeat_us;
  }
  auto work = [&](int tier) {
    double w = 0;
    for (const auto& v : plan.vms)
      if (tier == 0 || v.priority == tier) w += latency.at(v.vm).power_on_us + latency.at(v.vm).heartbeat_us;
    return w;
  };
  if (plan.ordering == PlanOrdering::kDependencies) {
    double longest = 0;
    for (const auto& [vm, c] : chain) longest = std::max(longest, c);
    return std::max(longest, work(0) / limit);
  }
  // Strict tiers: each tier on its own (its chains only within the tier).
  double total = 0;
  for (int tier = 1; tier <= 5; ++tier) {
    std::map<std::string, double> in_tier;
    double longest = 0;
    for (const PlanVm* v : order) {
      if (v->priority != tier) continue;
      double start = 0;
      for (const auto& d : v->depends_on)
        if (entry[d]->priority == tier) start = std::max(start, in_tier[d]);
      const Latency& l = latency.at(v->vm);
      in_tier[v->vm] = start + l.power_on_us + l.heartbeat_us;
      longest = std::max(longest, in_tier[v->vm]);
    }
    total += std::max(longest, work(tier) / limit);
  }
  return total;
}

}  // namespace

int main(int argc, char** argv) {
  int vms = 10000, limit = 50, scale = 100;
  std::string providers = "both", orderings = "both";
  bool first_runs_only = false;
  CLI::App app{"Benchmark of the run engine on a large plan: makespan against each ordering's lower bound, CPU, memory"};
  app.add_option("vms", vms, "VMs in the plan")->check(CLI::Range(10, 1000000));
  app.add_option("limit", limit, "the provider's concurrency limit (slots)")->check(CLI::Range(1, 10000));
  app.add_option("--scale", scale, "divide the real latencies (power-on 1.5-2.5 s, heartbeat 3-7 s) by this")
      ->check(CLI::Range(1, 1000));
  app.add_option("--provider", providers, "latency: the injected latency alone; driver: in front of libvirt's test driver")
      ->check(CLI::IsMember({"latency", "driver", "both"}));
  app.add_option("--ordering", orderings, "which ordering modes to run")
      ->check(CLI::IsMember({"strict-tiers", "dependencies", "both"}));
  app.add_flag("--first-runs-only", first_runs_only, "skip the learned runs (second runs with the first's durations)");
  CLI11_PARSE(app, argc, argv);
  std::mt19937 rng(8);
  RecoveryPlan plan;
  plan.name = "bench";
  plan.groups = {"bench"};
  std::vector<RecoveryVm> recovery_vms;
  std::map<std::string, Latency> latency;
  std::vector<std::vector<std::string>> by_tier(6);
  for (int i = 0; i < vms; ++i) {
    PlanVm v;
    v.vm = "vm" + std::to_string(i);
    v.priority = 1 + i * 5 / vms;
    if (v.priority > 1) {
      const auto& below = by_tier[static_cast<std::size_t>(v.priority - 1)];
      int deps = 1 + static_cast<int>(rng() % 2);
      for (int k = 0; k < deps; ++k) {
        const std::string& d = below[rng() % below.size()];
        if (std::find(v.depends_on.begin(), v.depends_on.end(), d) == v.depends_on.end()) v.depends_on.push_back(d);
      }
    }
    by_tier[static_cast<std::size_t>(v.priority)].push_back(v.vm);
    // Drawn in units of 1/100 of real time, then scaled: every scale sees
    // the same latencies, in proportion.
    const int power_on = 15000 + static_cast<int>(rng() % 10001), heartbeat = 30000 + static_cast<int>(rng() % 40001);
    latency[v.vm] = Latency{power_on * 100 / scale, heartbeat * 100 / scale};
    recovery_vms.push_back({v.vm, "bench"});
    plan.vms.push_back(std::move(v));
  }

  const auto dir = std::filesystem::temp_directory_path() / ("evac-plan-bench-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto store = Store::open((dir / "evac.db").string());
  if (!store) {
    std::fprintf(stderr, "bench: %s\n", store.status().to_string().c_str());
    return 1;
  }
  const auto node = dir / "node.xml";
  write_node(node, plan);
  std::printf("plan of %d VMs in 5 tiers, 1-2 dependencies each on the tier before; provider limit %d;\n"
              "a latency-injecting provider, alone and in front of libvirt's test driver (%s), 1/%d of real latencies,\n"
              "each call holding one of the provider's slots (the engine's per-resource limit):\n"
              "power-on %g-%g ms, guest heartbeat %g-%g ms\n\n",
              vms, limit, ("test://" + node.string()).c_str(), scale, 1500.0 / scale, 2500.0 / scale, 3000.0 / scale,
              7000.0 / scale);
  std::printf("%-13s %-22s %7s %11s %9s %7s %9s %7s %13s %14s %15s %18s %11s\n", "provider", "ordering", "steps",
              "makespan s", "bound s", "ratio", "bound* s", "ratio*", "process cpu s", "test driver s", "engine us/step",
              "w/o calls us/step", "peak RSS MB");
  double makespan[2] = {0, 0};
  std::map<std::string, std::vector<int>> learned;  // provider and ordering -> each step's duration in its first run
  std::string slot_note;
  for (bool start_vms : {false, true})
  for (PlanOrdering ordering : {PlanOrdering::kStrictTiers, PlanOrdering::kDependencies})
  for (bool with_history : {false, true}) {
    const int m = ordering == PlanOrdering::kStrictTiers ? 0 : 1;
    const std::string mode(plan_ordering_name(ordering));
    if (providers != "both" && providers != (start_vms ? "driver" : "latency")) continue;
    if (orderings != "both" && orderings != mode) continue;
    if (with_history && first_runs_only) continue;
    const std::string learned_key = std::string(start_vms ? "driver " : "latency ") + mode;
    plan.ordering = ordering;
    auto steps = compile_power_on(plan, recovery_vms);
    if (!steps) {
      std::fprintf(stderr, "bench: %s\n", steps.status().to_string().c_str());
      return 1;
    }
    for (auto& step : *steps)
      if (step.kind == engine::StepKind::kPowerOn || step.kind == engine::StepKind::kWaitForGuest) step.resource = "provider:bench";
    // The second run knows how long each step took in the first, as
    // RunService tells the engine from the plan's previous run.
    if (with_history)
      for (std::size_t i = 0; i < steps->size(); ++i) (*steps)[i].expected_ms = learned[learned_key][i];
    // A fresh test-driver connection per mode: every domain shut off again.
    LibvirtProvider libvirt(ProviderConfig{"bench", "libvirt", "test://" + node.string()});
    if (Status s = libvirt.ping(); !s.is_ok()) {
      std::fprintf(stderr, "bench: %s\n", s.to_string().c_str());
      return 1;
    }
    LatencyInjectingProvider provider(libvirt, latency, start_vms);
    ProviderRunner runner(provider);
    // A few workers more than the provider's slots, so barriers never wait
    // behind provider calls; the engine holds provider calls to `limit`.
    RunEngine engine(**store, runner, EngineOptions{limit + 4, 1, std::chrono::milliseconds(1), limit});
    RunRow run;
    run.id = std::string(start_vms ? "driver-" : "latency-") + mode + (with_history ? "-learned" : "");
    run.plan = plan.name;
    run.operation = "test";
    run.started_by = "bench";
    run.plan_document = "{}";
    run.groups = "[]";
    // The engine takes the steps over, as RunService hands them; the bench
    // keeps its own for reading the run afterwards.
    std::vector<StepSpec> to_start = *steps;
    const double cpu0 = cpu_seconds();
    const auto t0 = std::chrono::steady_clock::now();
    const auto t0_unix_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    if (Status s = engine.start(run, std::move(to_start)); !s.is_ok()) {
      std::fprintf(stderr, "bench: %s\n", s.to_string().c_str());
      return 1;
    }
    engine.wait_idle(run.id);
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double cpu = cpu_seconds() - cpu0;
    const double bound = bound_us(plan, latency, limit) / 1e6;
    const double bound_taken = bound_us(plan, runner.took(), limit) / 1e6;
    auto state = (*store)->find_run(run.id);
    if (!state || !state->has_value() || (*state)->state != "succeeded") {
      std::fprintf(stderr, "bench: the run did not succeed: %s\n", state && state->has_value() ? (*state)->error.c_str() : "");
      return 1;
    }
    auto running = libvirt.list_vms();
    long up = 0;
    if (running)
      for (const auto& v : *running) up += v.state == PowerState::kRunning;
    if (start_vms && up != vms) {
      std::fprintf(stderr, "bench: %ld of %d VMs run at the test driver after the run\n", up, vms);
      return 1;
    }
    {
      // How long the provider calls held their slots against the latencies
      // injected: what the slots lose to everything but the latency.
      auto ran = engine.steps(run.id);
      if (!ran) return 1;
      double held_ms = 0, injected_ms = 0, took_ms = 0;
      std::int64_t first_started_ms = std::numeric_limits<std::int64_t>::max();
      for (const auto& st : *ran) {
        if (st.started_at_ms) first_started_ms = std::min(first_started_ms, *st.started_at_ms);
        if (st.spec.kind != engine::StepKind::kPowerOn && st.spec.kind != engine::StepKind::kWaitForGuest) continue;
        held_ms += static_cast<double>(*st.ended_at_ms - *st.started_at_ms);
        const std::string vm = st.spec.params.value("vm", "");
        const bool power_on = st.spec.kind == engine::StepKind::kPowerOn;
        injected_ms += (power_on ? latency.at(vm).power_on_us : latency.at(vm).heartbeat_us) / 1000.0;
        took_ms += (power_on ? runner.took().at(vm).power_on_us : runner.took().at(vm).heartbeat_us) / 1000.0;
      }
      char line[640];
      std::snprintf(line, sizeof line,
                    "%s %s%s: calls took %.4fx the injected latency; steps held their slots %.4fx the calls' time; "
                    "slots busy %.2f%%; first step started %lld ms after the run was asked for; "
                    "%.1f us CPU inside each provider call\n",
                    start_vms ? "test driver" : "latency only", mode.c_str(), with_history ? " (learned)" : "",
                    took_ms / injected_ms, held_ms / took_ms, held_ms / (wall * 1000 * limit) * 100,
                    static_cast<long long>(first_started_ms - t0_unix_ms), runner.call_cpu_us_per_call());
      slot_note += line;
    }
    if (!with_history) {
      auto ran = engine.steps(run.id);
      if (!ran) return 1;
      for (const auto& st : *ran)
        learned[learned_key].push_back(st.started_at_ms && st.ended_at_ms ? static_cast<int>(*st.ended_at_ms - *st.started_at_ms) : 0);
    }
    if (start_vms) makespan[m] = wall;
    const double driver = provider.inner_cpu_seconds();
    std::printf("%-13s %-22s %7zu %11.3f %9.3f %7.3f %9.3f %7.3f %13.3f %14.3f %15.1f %18.1f %11.1f\n",
                start_vms ? "test driver" : "latency only", (mode + (with_history ? " (learned)" : "")).c_str(),
                steps->size(), wall, bound, wall / bound, bound_taken, wall / bound_taken, cpu, driver,
                (cpu - driver) / static_cast<double>(steps->size()) * 1e6,
                (cpu - runner.call_cpu_seconds()) / static_cast<double>(steps->size()) * 1e6, peak_rss_kib() / 1024.0);
  }
  std::printf("\n%s", slot_note.c_str());
  std::printf("a step's record alone (its end and the next one's start, 20,000 in a loop, nothing else running): "
              "%.1f us CPU per write\n",
              step_write_floor_us(**store, 20000));
  std::printf("the same, one every 1 ms / 10 ms / 100 ms (the caches cold by then): %.1f / %.1f / %.1f us CPU per write\n",
              step_write_floor_us(**store, 2000, std::chrono::milliseconds(1)),
              step_write_floor_us(**store, 500, std::chrono::milliseconds(10)),
              step_write_floor_us(**store, 100, std::chrono::milliseconds(100)));
  print_machine_cold_penalty(dir);
  std::printf("\nbound*: the same bound computed from how long each provider call really took (the latency, the\n"
              "sleeping thread's wake-up delay and, through the test driver, the driver's work): what the engine could reach\n");
  std::printf("engine us/step: the process's CPU less the test driver's work inside power-on, per step; w/o calls:\n"
              "less all CPU spent inside provider calls (the injected sleeps' syscalls and wake-ups too), per step\n");
  std::printf("(learned): the second run, whose steps carry the durations of the first (StepSpec::expected_ms)\n");
  if (makespan[0] > 0 && makespan[1] > 0)
    std::printf("dependency-driven ordering finished %.3f s (%.1f%%) sooner than strict tiers (through the test driver, %s)\n",
                makespan[0] - makespan[1], 100.0 * (makespan[0] - makespan[1]) / makespan[0],
                first_runs_only ? "first runs" : "learned");
  std::printf("targets: makespan <= 1.02x the bound in both modes; engine CPU <= 100 us per step; peak memory < 200 MB\n");
  store->reset();
  std::filesystem::remove_all(dir);
  return 0;
}
