#include "service/run_service.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include <spdlog/spdlog.h>

#include "core/json_decode.h"
#include "core/plan_json.h"
#include "core/text.h"
#include "engine/plan_compiler.h"
#include "service/host_command.h"
#include "service/peer_cycle.h"

namespace evac {

using engine::Step;
using engine::StepSpec;
using nlohmann::json;

std::string guest_config_rewriter(std::string_view root) {
  // Where Linux distributions keep a NIC's static addresses: ifupdown,
  // netplan, NetworkManager's keyfiles, the Red Hat ifcfg files and
  // systemd-networkd. Whole addresses only: 10.77.0.1 is not in 10.77.0.11.
  const std::string r(root);
  const std::string files = r + "/etc/network/interfaces " + r + "/etc/network/interfaces.d/* " + r + "/etc/netplan/*.yaml " +
                            r + "/etc/NetworkManager/system-connections/* " + r + "/etc/sysconfig/network-scripts/ifcfg-* " +
                            r + "/etc/systemd/network/*.network";
  const std::string edge = "[^0-9A-Fa-f:.]";
  const std::string match = "(^|" + edge + ")$p(" + edge + "|$)";
  // Each substitution runs twice: a match takes the character after the
  // address, which the next address on the line may need as its own edge.
  return "evac_persist() { p=$(printf %s \"$1\" | sed 's/[.]/\\\\./g'); for f in " + files +
         "; do if [ -f \"$f\" ] && grep -qE \"" + match + "\" \"$f\"; then sed -i -E -e \"s/" + match +
         "/\\1$2\\2/g\" -e \"s/" + match + "/\\1$2\\2/g\" \"$f\" || return 1; echo \"persisted $f\"; fi; done; }\n";
}

Result<ReIpScript> re_ip_script(const std::string& vm_name, const std::vector<NicInfo>& nics,
                                const std::map<std::string, std::string>& source_networks,
                                const std::vector<IpRule>& rules, const std::vector<GuestInterface>& interfaces) {
  ReIpScript out;
  for (const auto& nic : nics) {
    const std::string here = attachment_of(nic).key();
    auto src = source_networks.find(here);
    const std::string network = src == source_networks.end() ? here : src->second;
    const std::string& mac = nic.mac;  // lower case, like GuestInterface::mac
    auto iface = std::find_if(interfaces.begin(), interfaces.end(), [&](const GuestInterface& i) { return i.mac == mac; });
    for (const auto& rule : rules) {
      // A rule names the protected site's network, or its bridge or device
      // by its key ("bridge:br0") or bare name.
      if (rule.network != network && rule.network != parse_attachment(network).name) continue;
      if (iface == interfaces.end())
        return failed_precondition("the guest of " + vm_name + " shows no interface with MAC " + mac + " (network '" +
                                       network + "')",
                                   "check the guest's network drivers, or drop the rule");
      std::vector<std::string> addresses = iface->ipv4;
      addresses.insert(addresses.end(), iface->ipv6.begin(), iface->ipv6.end());
      for (const auto& address : addresses) {
        auto moved = map_address(rule, address);
        if (!moved) continue;
        // An IPv6 route needs the family said (ip assumes IPv4 for `default`).
        const std::string ip = moved->find(':') == std::string::npos ? "ip " : "ip -6 ";
        auto bare = [](const std::string& a) { return a.substr(0, a.find('/')); };
        // The guest's configuration files first, then the running address: a
        // step run again after a crash finds the address still in `from`
        // until the files are done, and re-runs both.
        out.script += "evac_persist " + bare(address) + " " + bare(*moved) + " && " + ip + "addr del " + address +
                      " dev " + iface->name + " && " + ip + "addr add " + *moved + " dev " + iface->name + " && ";
        if (!rule.gateway.empty()) {
          // The old default gateway, as the guest routes now, is what its
          // files name; it is replaced there too.
          out.script += "g=$(" + ip + "route show default 2>/dev/null | sed -n 's/^default via \\([^ ]*\\).*/\\1/p' | head -n 1) && "
                        "{ [ -z \"$g\" ] || [ \"$g\" = " + rule.gateway + " ] || evac_persist \"$g\" " + rule.gateway +
                        "; } && " + ip + "route replace default via " + rule.gateway + " && ";
        }
        if (!rule.dns.empty()) {
          out.script += "{ ";
          for (const auto& d : rule.dns) out.script += "echo nameserver " + d + "; ";
          out.script += "} > /etc/resolv.conf && ";
        }
        out.changed.push_back(json{{"interface", iface->name}, {"mac", mac}, {"from", address}, {"to", *moved}});
      }
    }
  }
  if (!out.script.empty()) out.script = guest_config_rewriter("") + out.script + "true";
  return out;
}

std::string test_vm_name(const std::string& vm) { return vm + "-test"; }

namespace {

constexpr std::string_view kOperations[] = {"test", "cleanup", "migrate", "failover", "reprotect", "failback"};

std::string new_run_id() {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&now, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  char suffix[8];
  std::snprintf(suffix, sizeof suffix, "%04x", static_cast<unsigned>(rng() & 0xffff));
  return std::string(stamp) + "-" + suffix;
}

std::vector<std::string> run_group_names(const RunRow& run) {
  std::vector<std::string> out;
  auto j = parse_json_or_discarded(run.groups);
  if (j.is_array())
    for (const auto& g : j)
      if (g.is_object()) out.push_back(g.value("name", ""));
  return out;
}

// Waits for `attempt` to succeed: kUnavailable means "not yet", anything
// else ends the wait. Past `timeout`, the last "not yet" is the answer.
template <typename Attempt>
Status poll_until(std::chrono::seconds timeout, std::chrono::milliseconds interval, Attempt attempt) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    Status st = attempt();
    if (st.is_ok() || st.code() != StatusCode::kUnavailable) return st;
    if (std::chrono::steady_clock::now() + interval > deadline)
      return failed_precondition(st.message() + " (gave up after " + std::to_string(timeout.count()) + " s)", st.hint());
    std::this_thread::sleep_for(interval);
  }
}

// A step following a long operation at the peer asks how it goes this often,
// and gives the peer this long over the wait it asked for to answer.
constexpr std::chrono::seconds kPeerFollowWait{20};
constexpr std::chrono::seconds kPeerAnswerMargin{15};

// What is left of `own` before the step's deadline, in whole seconds (a
// started second counts); an error once the step's time is up.
Result<std::chrono::seconds> within(const Step& step, std::chrono::seconds own) {
  auto left = engine::time_left(step, own, engine::system_millis());
  if (left.count() <= 0)
    return failed_precondition("step '" + step.spec.name + "' ran out of its " + std::to_string(step.spec.timeout_s) + " s",
                               "resume the run to try again");
  return std::chrono::ceil<std::chrono::seconds>(left);
}

Status tcp_connect(const std::string& ip, int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  if (::inet_pton(AF_INET, ip.c_str(), &addr.sin_addr) != 1) return invalid_argument("'" + ip + "' is not an IPv4 address");
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return internal_error("cannot create a socket");
  int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  bool ok = rc == 0;
  if (!ok && errno == EINPROGRESS) {
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, 2000) == 1) {
      int err = 0;
      socklen_t len = sizeof err;
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      ok = err == 0;
    }
  }
  ::close(fd);
  return ok ? Status::ok() : unavailable("nothing answers on " + ip + ":" + std::to_string(port) + " yet");
}

Result<long> http_status(const std::string& url) {
  CURL* curl = curl_easy_init();
  if (!curl) return internal_error("cannot start libcurl");
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, 5L);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, +[](char*, size_t size, size_t n, void*) -> size_t { return size * n; });
  CURLcode rc = curl_easy_perform(curl);
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_cleanup(curl);
  if (rc != CURLE_OK) return unavailable(url + " does not answer yet: " + curl_easy_strerror(rc));
  return status;
}

}  // namespace

// ---- consolidation: shared by reprotect's steps and a lost site's unpair ----

// A recovered VM runs on overlays of the PIT it was recovered from. While
// it runs, only the hypervisor can copy the chain into them (a block
// pull); where it cannot (a VM that is off, libvirt's test driver), the
// replication engine flattens the images offline when it releases them.
Result<json> flatten_vm_disks(ComputeProvider& provider, const std::string& uuid) {
  auto flattened = provider.flatten_disks(uuid);
  if (!flattened) {
    if (flattened.status().code() == StatusCode::kUnsupported)
      return json{{"flattened", json::array()}, {"left_to_the_release", flattened.status().message()}};
    return flattened.status();
  }
  return json{{"flattened", *flattened}};
}

json released_json(const ReleasedReplicas& released) {
  json out{{"flattened", released.flattened},
           {"released_copies", released.released_copies},
           {"removed_pits", released.removed_pits},
           {"kept_pits", released.kept_pits}};
  if (!released.kept_because.empty()) out["kept_because"] = released.kept_because;
  return out;
}

// ---- the step runner ---------------------------------------------------------

class RunService::Steps : public engine::StepRunner {
 public:
  Steps(SiteService& site, PlanService& plans, ReplicationService* replication)
      : site_(site), plans_(plans), replication_(replication) {}

  Result<json> run(const RunRow& run, const Step& step) override {
    auto ctx = context(run);
    if (!ctx) return ctx.status();
    const std::string& kind = step.spec.kind;
    const json& p = step.spec.params;
    if (kind == "readiness") return readiness(**ctx);
    if (kind == "create_test_copy") return create_test_copy(run, **ctx, p.value("group", ""));
    if (kind == "drop_test_copies") return drop_test_copies(p.value("group", ""));
    if (kind == "sync_protected" || kind == "shutdown_protected" || kind == "handover" || kind == "promote" ||
        kind == "take_ownership" || kind == "reprotect_peer" || kind == "protect_here" || kind == "sync_reverse" ||
        kind == "release_replicas") {
      auto g = group(**ctx, p.value("group", ""));
      if (!g) return g.status();
      if (kind == "release_replicas") return release_replicas(**g);
      if (kind == "reprotect_peer") return reprotect_peer(step, run, **ctx, **g);
      if (kind == "protect_here") return protect_here(**ctx, **g);
      if (kind == "sync_reverse") return sync_reverse(**g);
      if (kind == "sync_protected") return sync_protected(run, step, **g);
      if (kind == "shutdown_protected") return shutdown_protected(step, **g, p.value("best_effort", false));
      if (kind == "handover") return handover(run, **ctx, **g, false);
      if (kind == "promote") return promote(run, **g);
      return take_ownership(run, **ctx, **g);
    }
    // The rest act on one VM of the plan.
    auto vm = (*ctx)->vm(p.value("vm", ""));
    if (!vm) return vm.status();
    if (kind == "register_test_vm") return register_test_vm(run, **ctx, **vm);
    if (kind == "recover_vm") return recover_vm(run, **ctx, **vm);
    if (kind == "remove_test_vm") return remove_test_vm(**vm);
    auto target = target_of(**ctx, **vm);
    if (!target) return target.status();
    const PlanVm entry = plan_vm_or_default((*ctx)->plan, (*vm)->name);
    if (kind == "flatten_disks") return flatten_disks(*target);
    if (kind == "power_on") {
      EVAC_RETURN_IF_ERROR(target->provider->power_on(target->id));
      return json{{"vm", target->id}};
    }
    if (kind == "wait_for_guest") {
      auto timeout = within(step, std::chrono::seconds(p.value("timeout_s", 300)));
      if (!timeout) return timeout.status();
      return wait_for_guest(*target, *timeout);
    }
    if (kind == "customize_ip") return customize_ip(step, **ctx, **vm, *target);
    if (kind == "check") {
      std::size_t i = p.value("check", std::size_t{0});
      if (i >= entry.checks.size()) return internal_error("step " + step.spec.name + " names a check the plan lacks");
      return check(step, *target, entry.checks[i]);
    }
    if (kind == "host_command" || kind == "guest_command") {
      const auto& list = p.value("when", "") == "before_power_on" ? entry.before_power_on : entry.after_power_on;
      std::size_t i = p.value("action", std::size_t{0});
      if (i >= list.size()) return internal_error("step " + step.spec.name + " names an action the plan lacks");
      auto timeout = within(step, list[i].timeout);
      if (!timeout) return timeout.status();
      if (kind == "host_command") return host_command(run, **ctx, **vm, list[i], *timeout);
      return guest_command(*target, list[i], *timeout);
    }
    return internal_error("no step runner for step kind '" + kind + "'", "this evacd is older than the run's steps");
  }

  // A running "Synchronize storage" step's cycle at the protected site, as
  // its last answer (at most kPeerFollowWait old) told it; null if none.
  json peer_progress(const std::string& run_id, int idx) const {
    std::lock_guard lock(progress_mu_);
    auto it = peer_progress_.find({run_id, idx});
    return it == peer_progress_.end() ? json() : it->second;
  }

 private:
  mutable std::mutex progress_mu_;
  std::map<std::pair<std::string, int>, json> peer_progress_;  // (run, step) -> the peer's sync_progress

  struct VmCtx {
    std::string name, group, source_uuid, placeholder_uuid, provider;
    std::string source_provider;  // its compute provider at the protected site
  };
  struct GroupCtx {
    std::string name, protected_site, pit;  // pit empty: the newest when the step runs (migrate)
    std::map<std::string, std::string> networks;
    std::int64_t epoch = 0;  // the ownership epoch a recovery takes the group over with (a reprotect: holds)
    std::map<std::string, std::string> source_networks;  // network here -> the protected site's (IP rules' names)
    std::map<std::string, std::string> source_pools;     // storage pool here -> the protected site's
    json settings;  // rpo_seconds, keep_*, max_rate_bytes: what a reprotect carries over
  };
  struct Context {
    std::string operation;
    std::string site;
    RecoveryPlan plan;
    std::map<std::string, VmCtx> vms;
    std::map<std::string, GroupCtx> groups;
    Result<const VmCtx*> vm(const std::string& name) const {
      auto it = vms.find(name);
      if (it == vms.end()) return internal_error("the run has no VM '" + name + "' in its context");
      return &it->second;
    }
  };
  // The VM a step acts on: a test run's test VM, for now.
  struct Target {
    ComputeProvider* provider = nullptr;
    std::string id;  // name or UUID the provider knows it by
    std::string name;
  };

  // The run's plan and context, parsed once per run (and again after a
  // restart): steps of a 10,000-VM run must not parse it 50,000 times.
  Result<std::shared_ptr<const Context>> context(const RunRow& run) {
    {
      std::lock_guard lock(mu_);
      if (auto it = contexts_.find(run.id); it != contexts_.end()) return it->second;
    }
    auto c = std::make_shared<Context>();
    c->operation = run.operation;
    c->site = site_.identity().name;
    auto plan_doc = parse_json_or_discarded(run.plan_document);
    auto plan = plan_from_json(plan_doc);
    if (!plan) return plan.status().with_context("the plan run " + run.id + " started with");
    c->plan = std::move(*plan);
    auto groups = parse_json_or_discarded(run.groups);
    if (!groups.is_array()) return internal_error("run " + run.id + "'s context is unreadable in the store");
    for (const auto& g : groups) {
      GroupCtx gc{g.value("name", ""),
                  g.value("protected_site", ""),
                  g.value("pit", ""),
                  g.value("networks", std::map<std::string, std::string>{}),
                  g.value("epoch", std::int64_t{0}),
                  g.value("source_networks", std::map<std::string, std::string>{}),
                  g.value("source_pools", std::map<std::string, std::string>{}),
                  g.value("settings", json::object())};
      for (const auto& v : g.value("vms", json::array()))
        c->vms[v.value("name", "")] = VmCtx{v.value("name", ""),         gc.name,
                                            v.value("source_uuid", ""),  v.value("placeholder_uuid", ""),
                                            v.value("provider", ""),     v.value("source_provider", "")};
      c->groups[gc.name] = std::move(gc);
    }
    std::lock_guard lock(mu_);
    return contexts_.emplace(run.id, std::move(c)).first->second;
  }

  Result<const GroupCtx*> group(const Context& ctx, const std::string& name) {
    auto it = ctx.groups.find(name);
    if (it == ctx.groups.end()) return internal_error("the run has no group '" + name + "' in its context");
    return &it->second;
  }

  // A VM's disks in a copy of its group's PIT: guest target -> image (the
  // copy's disks are keyed "<source VM uuid>/<target>").
  static std::map<std::string, std::string> disks_of(const VmCtx& vm, const TestCopy& copy) {
    std::map<std::string, std::string> out;
    const std::string prefix = vm.source_uuid + "/";
    for (const auto& d : copy.disks)
      if (d.key.rfind(prefix, 0) == 0) out[d.key.substr(prefix.size())] = d.path;
    return out;
  }

  Result<Target> target_of(const Context& ctx, const VmCtx& vm) {
    if (vm.provider.empty())
      return failed_precondition("VM '" + vm.name + "' has no placeholder here", "protect it again at its protected site");
    auto provider = site_.provider(vm.provider);
    if (!provider) return provider.status();
    if (ctx.operation == "test") return Target{*provider, test_vm_name(vm.name), test_vm_name(vm.name)};
    // A recovery starts the placeholder it turned into the recovered VM.
    return Target{*provider, vm.placeholder_uuid, vm.name};
  }

  Result<json> readiness(const Context& ctx) {
    PlanReadiness r;
    if (ctx.operation != "reprotect") {
      auto checked = plans_.check_plan(ctx.plan);
      if (!checked) return checked.status();
      r = std::move(*checked);
    }
    if (ctx.operation == "reprotect" || ctx.operation == "failback") {
      auto reverse = reprotect_findings(ctx);
      if (!reverse) return reverse.status();
      r.findings.insert(r.findings.end(), reverse->begin(), reverse->end());
    }
    json warnings = json::array();
    std::string errors;
    int ok = 0;
    for (const auto& f : r.findings) {
      // Only what concerns this run stops it (a missing test network stops
      // no failover, a lost protected site no test).
      if (!f.concerns(ctx.operation)) continue;
      if (f.severity == "ok") ++ok;
      if (f.severity == "warning") warnings.push_back(f.message);
      if (f.severity == "error")
        errors += (errors.empty() ? "" : "; ") + f.message + (f.hint.empty() ? "" : " (" + f.hint + ")");
    }
    if (!errors.empty())
      return failed_precondition("plan '" + ctx.plan.name + "' is not ready: " + errors,
                                 "fix what `evac plan check " + ctx.plan.name + "` lists, then `evac run resume`");
    return json{{"ok", ok}, {"warnings", warnings}};
  }

  Result<json> create_test_copy(const RunRow& run, const Context& ctx, const std::string& group_name) {
    if (!replication_) return unsupported("this site does not replicate: no points in time to test");
    auto g = group(ctx, group_name);
    if (!g) return g.status();
    if ((*g)->pit.empty())
      return failed_precondition("group '" + group_name + "' had no point in time here when the run started",
                                 "replicate it at '" + (*g)->protected_site + "', then start a new test");
    auto copy = replication_->create_test_copy(group_name, (*g)->pit, run.id);
    if (!copy) return copy.status();
    return json{{"test_copy", copy->id}, {"pit", copy->pit_id}, {"disks", copy->disks.size()}};
  }

  Result<json> register_test_vm(const RunRow& run, const Context& ctx, const VmCtx& vm) {
    if (!replication_) return unsupported("this site does not replicate: no points in time to test");
    auto g = group(ctx, vm.group);
    if (!g) return g.status();
    if (vm.placeholder_uuid.empty())
      return failed_precondition("VM '" + vm.name + "' has no placeholder here", "protect it again at '" + (*g)->protected_site + "'");
    // Asking again returns the run's own copy (made by the step before).
    auto copy = replication_->create_test_copy(vm.group, (*g)->pit, run.id);
    if (!copy) return copy.status();
    TestVmSpec spec;
    spec.name = test_vm_name(vm.name);
    spec.placeholder_uuid = vm.placeholder_uuid;
    spec.run = run.id;
    spec.group = vm.group;
    spec.source_site = (*g)->protected_site;
    spec.source_uuid = vm.source_uuid;
    spec.networks = (*g)->networks;
    spec.disks = disks_of(vm, *copy);
    auto provider = site_.provider(vm.provider);
    if (!provider) return provider.status();
    auto made = (*provider)->define_test_vm(spec);
    if (!made) return made.status();
    return json{{"test_vm", made->name}, {"uuid", made->uuid}, {"provider", made->provider}, {"disks", spec.disks}};
  }

  // ---- recoveries: the protected site's half, then ours ----

  // The protected site's cycle, followed in bounded waits (peer_cycle.h);
  // the step's own deadline (if it has one) ends the wait. Each answer's
  // progress is kept for the step's view while it runs.
  Result<json> sync_protected(const RunRow& run, const Step& step, const GroupCtx& g) {
    const std::string path = "/api/v1/peer/groups/" + g.name + "/sync";
    const std::pair<std::string, int> key{run.id, step.idx};
    auto followed = follow_peer_cycle(
        [&](const json& body, std::chrono::milliseconds answer_within) {
          return site_.call_paired_site(g.protected_site, "POST", path, body, answer_within);
        },
        [&]() -> Result<std::chrono::milliseconds> {
          auto wait = within(step, kPeerFollowWait);
          if (!wait) return wait.status();
          return std::chrono::milliseconds(*wait);
        },
        kPeerAnswerMargin, 3, [&](const json& progress) {
          std::lock_guard lock(progress_mu_);
          peer_progress_[key] = progress;
        });
    std::lock_guard lock(progress_mu_);
    peer_progress_.erase(key);
    return followed;
  }

  Result<json> shutdown_protected(const Step& step, const GroupCtx& g, bool best_effort) {
    // A disaster: the site is probably gone, so a short, hard try whose
    // outcome is recorded. A migration: a graceful shutdown that must work.
    auto graceful = within(step, std::chrono::seconds(300));
    if (!graceful) return graceful.status();
    json body = best_effort ? json{{"graceful", false}, {"timeout_s", 0}}
                            : json{{"graceful", true}, {"timeout_s", graceful->count()}};
    // A graceful shutdown is waited for as long as the peer may take over it.
    const std::chrono::milliseconds wait = best_effort ? std::chrono::milliseconds(0) : *graceful + kPeerAnswerMargin;
    auto r = site_.call_paired_site(g.protected_site, "POST", "/api/v1/peer/groups/" + g.name + "/shutdown", body, wait);
    // Recorded as the peer said it, never indexed blindly: operator[] throws
    // on an answer that is no object.
    if (r) return json{{"reached", true}, {"stopped", r->is_object() ? r->value("stopped", json()) : json()}};
    if (!best_effort) return r.status();
    return engine::unreached_outcome("protected site '" + g.protected_site + "' did not answer (" +
                                         r.status().message() + "): its VMs of group '" + g.name +
                                         "' were not shut down there; it fences them when it comes back",
                                     json{{"reached", false}});
  }

  Result<json> handover(const RunRow& run, const Context& ctx, const GroupCtx& g, bool best_effort) {
    auto r = site_.call_paired_site(g.protected_site, "POST", "/api/v1/peer/groups/" + g.name + "/handover",
                                    json{{"owner", ctx.site}, {"epoch", g.epoch}, {"run", run.id}});
    if (r) return json{{"reached", true}, {"fenced", true}};
    if (!best_effort) return r.status();
    return engine::unreached_outcome("protected site '" + g.protected_site + "' did not answer (" +
                                         r.status().message() + ")",
                                     json{{"reached", false}});
  }

  Result<std::string> pit_to_recover(const GroupCtx& g) {
    if (!g.pit.empty()) return g.pit;
    if (!replication_) return unsupported("this site does not replicate: no points in time to recover");
    auto pits = replication_->pits_held_here(g.name);
    if (!pits) return pits.status();
    if (pits->empty()) return failed_precondition("group '" + g.name + "' has no point in time here");
    return pits->back().id;
  }

  Result<json> promote(const RunRow& run, const GroupCtx& g) {
    if (!replication_) return unsupported("this site does not replicate: no points in time to recover");
    // Asked again (a crash after it), the run's live copy is found, even if
    // a newer PIT arrived meanwhile: it is the copy the VMs will use.
    auto live = live_copy(run, g);
    if (!live && live.status().code() != StatusCode::kNotFound) return live.status();
    if (!live) {
      auto pit = pit_to_recover(g);
      if (!pit) return pit.status();
      live = replication_->promote(g.name, *pit, run.id);
      if (!live) return live.status();
    }
    json out = {{"pit", live->pit_id}, {"disks", live->disks.size()}};
    // The PIT's instant, for the run report's RPO.
    if (auto pits = replication_->pits_held_here(g.name)) {
      for (const auto& p : *pits) {
        if (p.id != live->pit_id) continue;
        out["pit_created_at"] = p.created_at;
        out["pit_created_at_ms"] = p.created_at_ms;
      }
    }
    return out;
  }

  // The run's promoted copy of the group (kNotFound before promote ran).
  Result<TestCopy> live_copy(const RunRow& run, const GroupCtx& g) {
    auto copies = replication_->test_copies_held_here(g.name);
    if (!copies) return copies.status();
    for (const auto& c : *copies)
      if (c.live && c.owner == run.id) return c;
    return not_found("run " + run.id + " has not promoted group '" + g.name + "' yet");
  }

  Result<json> take_ownership(const RunRow& run, const Context& ctx, const GroupCtx& g) {
    Status st = site_.store().transaction([&]() -> Status {
      EVAC_RETURN_IF_ERROR(site_.store().put_ownership(OwnershipRecord{g.name, ctx.site, g.epoch, site_.now(), run.id}));
      return site_.store().bump_config_version();  // so the protected site learns it when it comes back
    });
    if (!st.is_ok()) return st;
    json out = {{"owner", ctx.site}, {"epoch", g.epoch}};
    // A migration handed over already; a failover tells the old site if it
    // answers, else it learns from our configuration when it is back.
    if (ctx.operation == "failover") {
      auto told = handover(run, ctx, g, true);
      if (told) out["protected_site"] = *told;
    }
    return out;
  }

  Result<json> recover_vm(const RunRow& run, const Context& ctx, const VmCtx& vm) {
    if (!replication_) return unsupported("this site does not replicate: no points in time to recover");
    auto g = group(ctx, vm.group);
    if (!g) return g.status();
    if (vm.placeholder_uuid.empty())
      return failed_precondition("VM '" + vm.name + "' has no placeholder here", "protect it again at '" + (*g)->protected_site + "'");
    auto live = live_copy(run, **g);
    if (!live) return live.status();
    const std::map<std::string, std::string> disks = disks_of(vm, *live);
    auto provider = site_.provider(vm.provider);
    if (!provider) return provider.status();
    // A placeholder that was once this VM's fenced copy (a failback) sits on
    // disks made read-only then. The group is live here now (ownership was
    // taken) and the VM is leaving them: they are released first, so that
    // a crash between the two leaves nothing read-only for good.
    auto before = (*provider)->get_vm(vm.placeholder_uuid);
    if (!before) return before.status();
    VmInfo leaving = *before;
    std::erase_if(leaving.disks, [&](const DiskInfo& d) {
      return std::any_of(disks.begin(), disks.end(), [&](const auto& target_path) { return target_path.second == d.path; });
    });
    Status released = leaving.disks.empty() ? Status::ok()
                                            : replication_->release_old_disks(vm.group, (*g)->protected_site, {leaving});
    auto recovered = (*provider)->recover_placeholder(vm.placeholder_uuid, disks, run.id);
    if (!recovered) return recovered.status();
    json out = {{"vm", recovered->name}, {"uuid", recovered->uuid}, {"pit", live->pit_id}, {"disks", disks}};
    if (!released.is_ok()) out["old_disks"] = released.message();  // recorded; the VM is recovered either way
    return out;
  }

  // ---- reprotect: replication back to the former protected site ----

  // What a reprotect needs beyond a recovery's checks: the former protected
  // site answering (its copies become the placeholders), and mappings from
  // here back to it for every network and storage pool the VMs use here.
  Result<std::vector<ReadinessFinding>> reprotect_findings(const Context& ctx) {
    std::vector<ReadinessFinding> out;
    std::set<std::string> asked;
    for (const auto& [name, g] : ctx.groups) {
      if (ctx.operation == "reprotect") {
        auto owner = site_.ownership(g.name, g.protected_site, g.epoch);
        if (!owner) return owner.status();
        if (owner->owner != ctx.site)
          out.push_back({"error", "ownership", "group '" + g.name + "' is not live here (owner: '" + owner->owner + "')",
                         "reprotect follows a migration or failover to this site"});
        if (!asked.count(g.protected_site)) {
          asked.insert(g.protected_site);
          auto reached = site_.call_paired_site(g.protected_site, "GET", "/api/v1/peer/inventory", std::nullopt);
          if (reached)
            out.push_back({"ok", "peer", "site '" + g.protected_site + "' answers", ""});
          else
            out.push_back({"error", "peer", "site '" + g.protected_site + "' does not answer: " + reached.status().message(),
                           "reprotect makes placeholders there; bring it back (it stays fenced) and run reprotect again"});
        }
      }
      RecoveredGroup back;
      back.name = g.name;
      back.protected_site = g.protected_site;
      back.source_networks = g.source_networks;
      back.source_pools = g.source_pools;
      std::vector<LiveVm> live;
      for (const auto& [vm_name, vm] : ctx.vms)
        if (vm.group == g.name) live.push_back({vm_name, vm.provider, vm.placeholder_uuid});
      auto mappings = plans_.reverse_mapping_findings(back, live);
      if (!mappings) return mappings.status();
      out.insert(out.end(), mappings->begin(), mappings->end());
    }
    return out;
  }

  // The former protected site makes its stale copies the placeholders of
  // the VMs live here, keeps their disks as seeds and stops protecting the
  // group. It answers the same when asked again.
  Result<json> reprotect_peer(const Step& step, const RunRow& run, const Context& ctx, const GroupCtx& g) {
    json vms = json::array();
    for (const auto& [name, vm] : ctx.vms)
      if (vm.group == g.name) vms.push_back({{"name", name}, {"uuid", vm.placeholder_uuid}, {"source_uuid", vm.source_uuid}});
    // It defines a placeholder per VM there: minutes for a large group, but
    // no longer than the step has left.
    auto wait = within(step, std::chrono::duration_cast<std::chrono::seconds>(kBulkCallTimeout));
    if (!wait) return wait.status();
    auto r = site_.call_paired_site(g.protected_site, "POST", "/api/v1/peer/groups/" + g.name + "/reprotect",
                                    json{{"epoch", g.epoch}, {"run", run.id}, {"vms", vms}}, *wait);
    if (!r) return r.status();
    return *r;
  }

  // This site protects the group from now on, toward the former protected
  // site, with the group's settings; the VMs' placeholders there are their
  // old copies (same UUIDs as the VMs had there).
  Result<json> protect_here(const Context& ctx, const GroupCtx& g) {
    auto existing = site_.store().find_group(g.name);
    if (!existing) return existing.status();
    if (existing->has_value()) {
      if ((*existing)->protected_site == ctx.site && (*existing)->recovery_site == g.protected_site)
        return json{{"group", g.name}, {"recovery_site", g.protected_site}, {"epoch", (*existing)->epoch}};
      return failed_precondition("site '" + ctx.site + "' already has a group '" + g.name + "' toward '" +
                                 (*existing)->recovery_site + "'");
    }
    GroupRecord rec;
    rec.name = g.name;
    rec.protected_site = ctx.site;
    rec.recovery_site = g.protected_site;
    // The settings came from the former protected site's configuration,
    // checked when the run started (not by an older evacd, which started
    // runs whose context is read here again): in an operator's bounds, or
    // refused before the group is recorded.
    auto settings = JsonFields::of(g.settings, "the settings of group '" + g.name + "' a reprotect carries over");
    if (!settings) return settings.status();
    auto rpo = settings->integer("rpo_seconds", 1, kMaxRpo.count());
    auto keep_pits = settings->integer_as<int>("keep_pits", 1, kMaxKeptPits);
    auto keep_hourly = settings->integer_as<int>("keep_hourly", 0, kMaxKeptPits);
    auto keep_daily = settings->integer_as<int>("keep_daily", 0, kMaxKeptPits);
    auto max_rate = settings->integer_as<std::uint64_t>("max_rate_bytes", 0, kMaxByteRate);
    for (const Status& s : {rpo.status(), keep_pits.status(), keep_hourly.status(), keep_daily.status(),
                            max_rate.status(), settings->finish()})
      if (!s) return s;
    rec.rpo_seconds = rpo->value_or(rec.rpo_seconds);
    rec.keep_pits = keep_pits->value_or(rec.keep_pits);
    rec.keep_hourly = keep_hourly->value_or(rec.keep_hourly);
    rec.keep_daily = keep_daily->value_or(rec.keep_daily);
    rec.max_rate_bytes = max_rate->value_or(rec.max_rate_bytes);
    rec.epoch = g.epoch;
    rec.created_at = site_.now();
    for (const auto& [name, vm] : ctx.vms)
      if (vm.group == g.name)
        rec.vms.push_back(GroupVmRecord{vm.provider, name, vm.placeholder_uuid, vm.source_uuid, vm.source_provider});
    Status st = site_.store().transaction([&]() -> Status {
      EVAC_RETURN_IF_ERROR(site_.store().add_group(rec));
      // They are protected VMs now, no longer placeholders kept for the peer.
      for (const auto& v : rec.vms) EVAC_RETURN_IF_ERROR(site_.store().remove_hosted_placeholder(v.vm_uuid));
      return site_.store().bump_config_version();
    });
    if (!st.is_ok()) return st;
    return json{{"group", g.name}, {"recovery_site", g.protected_site}, {"epoch", g.epoch}, {"vms", rec.vms.size()}};
  }

  Result<json> flatten_disks(const Target& t) { return flatten_vm_disks(*t.provider, t.id); }

  // This site's PITs of the group are history once its VMs stand on their
  // own disks: the space goes back, and retention never has to work around
  // a recovered VM's chain again.
  Result<json> release_replicas(const GroupCtx& g) {
    if (!replication_) return json{{"released", false}, {"why", "this site does not replicate"}};
    auto released = replication_->release_replicas_here(g.name);
    if (!released) return released.status();
    json out = released_json(*released);
    if (!released->kept_because.empty()) {
      EVAC_RETURN_IF_ERROR(site_.store().add_event(
          EventRecord{0, site_.now(), "warning", "replicas_kept", g.name,
                      "kept " + std::to_string(released->kept_pits.size()) + " PIT(s) of group '" + g.name +
                          "' that a VM still reads through: " + released->kept_because}));
    }
    return out;
  }

  // The first cycle back: the former protected site starts each disk from
  // its seed, so only blocks written since (here, or lost there) travel.
  Result<json> sync_reverse(const GroupCtx& g) {
    if (!replication_) return unsupported("this site does not replicate");
    // The peer accepts cycles of groups its copy of our configuration
    // names: make sure it has the one with this group.
    EVAC_RETURN_IF_ERROR(site_.push_config_to(g.protected_site));
    auto pit = replication_->reverse_group(g.name);
    if (!pit) return pit.status();
    std::uint64_t size = 0;
    for (const auto& d : pit->disks) size += d.size_bytes;
    return json{{"pit", pit->id}, {"bytes_sent", pit->bytes_sent}, {"disk_bytes", size}};
  }

  Result<json> remove_test_vm(const VmCtx& vm) {
    auto provider = site_.provider(vm.provider);
    if (!provider) return provider.status();
    auto test_vms = (*provider)->list_test_vms();
    if (!test_vms) return test_vms.status();
    json removed = json::array();
    for (const auto& t : *test_vms) {
      if (t.group != vm.group || t.source_uuid != vm.source_uuid) continue;
      EVAC_RETURN_IF_ERROR((*provider)->remove_test_vm(t.uuid));
      removed.push_back(json{{"name", t.name}, {"uuid", t.uuid}, {"run", t.run}});
    }
    return json{{"removed", removed}};
  }

  Result<json> drop_test_copies(const std::string& group_name) {
    if (!replication_) return json{{"dropped", json::array()}};
    auto copies = replication_->test_copies_held_here(group_name);
    if (!copies) {
      if (copies.status().code() == StatusCode::kNotFound) return json{{"dropped", json::array()}};  // no PITs at all
      return copies.status();
    }
    json dropped = json::array();
    for (const auto& c : *copies) {
      if (c.live) continue;  // a recovered VM's disks, not a test's
      EVAC_RETURN_IF_ERROR(replication_->drop_test_copy(group_name, c.id));
      dropped.push_back(c.id);
    }
    return json{{"dropped", dropped}};
  }

  Result<json> wait_for_guest(const Target& t, std::chrono::seconds timeout) {
    const auto started = std::chrono::steady_clock::now();
    Status st = poll_until(timeout, std::chrono::milliseconds(1000), [&] { return t.provider->guest_ping(t.id); });
    if (!st.is_ok()) {
      if (st.code() == StatusCode::kUnsupported)
        return st.with_hint("set wait_for_guest: none for this VM in the plan, or recover onto QEMU with a guest agent");
      return st;
    }
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count();
    return json{{"answered_after_ms", ms}};
  }

  // The plan's IP rules applied in the guest: each NIC (found by its MAC)
  // on a network a rule names gets its address's host part in the rule's
  // subnet, and the rule's gateway and DNS. Idempotent: an address already
  // moved matches no rule's `from` any more.
  Result<json> customize_ip(const Step& step, const Context& ctx, const VmCtx& vm, const Target& t) {
    auto g = group(ctx, vm.group);
    if (!g) return g.status();
    auto provider = site_.provider(vm.provider);
    if (!provider) return provider.status();
    auto placeholder = (*provider)->get_vm(vm.placeholder_uuid);
    if (!placeholder) return placeholder.status();
    auto interfaces = t.provider->guest_interfaces(t.id);
    if (!interfaces) return interfaces.status();
    auto re_ip = re_ip_script(t.name, placeholder->nics, (*g)->source_networks, ctx.plan.ip_rules, *interfaces);
    if (!re_ip) return re_ip.status();
    std::string script = std::move(re_ip->script);
    json changed = std::move(re_ip->changed);
    if (script.empty()) return json{{"changed", changed}};
    auto timeout = within(step, std::chrono::seconds(60));
    if (!timeout) return timeout.status();
    auto r = t.provider->guest_exec(t.id, {"/bin/sh", "-c", script}, *timeout);
    if (!r) return r.status();
    if (r->exit_code != 0)
      return failed_precondition("re-addressing " + t.name + " failed (exit " + std::to_string(r->exit_code) + "): " + r->err,
                                 "the guest needs iproute2 or busybox ip, sed and grep; check the rule's subnets");
    json persisted = json::array();
    std::istringstream lines(r->out);
    for (std::string line; std::getline(lines, line);)
      if (line.rfind("persisted ", 0) == 0) persisted.push_back(line.substr(10));
    json result = {{"changed", changed}, {"persisted", persisted}};
    if (persisted.empty())
      result["note"] = "no network configuration file in the guest names its old address (DHCP, or configured "
                       "elsewhere): the new address holds until the guest's network is configured again";
    return result;
  }

  Result<json> check(const Step& step, const Target& t, const AppCheck& c) {
    auto timeout = within(step, c.timeout);
    if (!timeout) return timeout.status();
    json out;
    Status st = poll_until(*timeout, std::chrono::duration_cast<std::chrono::milliseconds>(c.interval), [&]() -> Status {
      if (c.kind == AppCheck::Kind::kCommand) {
        auto r = t.provider->guest_exec(t.id, c.command, *timeout);
        if (!r) return r.status();
        if (r->exit_code != 0)
          return unavailable("'" + c.command.front() + "' in " + t.name + " exited with " + std::to_string(r->exit_code));
        out = json{{"exit_code", 0}};
        return Status::ok();
      }
      auto addresses = t.provider->guest_addresses(t.id);
      if (!addresses) return addresses.status();
      if (addresses->empty()) return unavailable(t.name + " has no IPv4 address yet");
      std::string last;
      for (const auto& ip : *addresses) {
        if (c.kind == AppCheck::Kind::kTcp) {
          Status connected = tcp_connect(ip, c.port);
          if (connected.is_ok()) {
            out = json{{"address", ip}, {"port", c.port}};
            return Status::ok();
          }
          last = connected.message();
        } else {
          std::string url = "http://" + ip + ":" + std::to_string(c.port) + c.path;
          auto status = http_status(url);
          if (status && *status == c.expect_status) {
            out = json{{"url", url}, {"status", *status}};
            return Status::ok();
          }
          last = status ? url + " answered " + std::to_string(*status) + ", not " + std::to_string(c.expect_status)
                        : status.status().message();
        }
      }
      return unavailable(last);
    });
    if (!st.is_ok()) return st;
    return out;
  }

  Result<json> host_command(const RunRow& run, const Context& ctx, const VmCtx& vm, const PlanAction& a,
                            std::chrono::seconds timeout) {
    std::vector<std::string> env = {"EVAC_RUN=" + run.id,     "EVAC_PLAN=" + ctx.plan.name, "EVAC_OPERATION=" + ctx.operation,
                                    "EVAC_VM=" + vm.name,     "EVAC_GROUP=" + vm.group,     "EVAC_SITE=" + ctx.site,
                                    "EVAC_TEST_VM=" + (ctx.operation == "test" ? test_vm_name(vm.name) : "")};
    auto r = run_host_command(a.command, env, timeout);
    if (!r) return r.status();
    if (r->exit_code != 0)
      return failed_precondition("'" + a.command.front() + "' exited with " + std::to_string(r->exit_code) +
                                     (r->output.empty() ? "" : ": " + r->output.substr(r->output.size() > 400 ? r->output.size() - 400 : 0)),
                                 "fix the callout or what it checks, then `evac run resume " + run.id + "`");
    return json{{"exit_code", 0}, {"output", r->output}};
  }

  Result<json> guest_command(const Target& t, const PlanAction& a, std::chrono::seconds timeout) {
    auto r = t.provider->guest_exec(t.id, a.command, timeout);
    if (!r) return r.status();
    if (r->exit_code != 0)
      return failed_precondition("'" + a.command.front() + "' in " + t.name + " exited with " + std::to_string(r->exit_code) +
                                 (r->err.empty() ? "" : ": " + r->err.substr(0, 400)));
    return json{{"exit_code", 0}, {"output", r->out.substr(0, 4096)}};
  }

  SiteService& site_;
  PlanService& plans_;
  ReplicationService* replication_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<const Context>> contexts_;
};

// ---- the service -------------------------------------------------------------------

RunService::RunService(SiteService& site, PlanService& plans, ReplicationService* replication,
                       engine::EngineOptions options)
    : site_(site),
      replication_(replication),
      plans_(plans),
      steps_(std::make_unique<Steps>(site, plans_, replication)),
      engine_(std::make_unique<engine::RunEngine>(site.store(), *steps_, options)) {}

RunService::~RunService() {
  engine_.reset();  // joins the runs' workers before the runner goes
}

Status RunService::resume_interrupted() { return engine_->resume_interrupted(); }

Result<std::vector<std::string>> RunService::check_no_conflicting_run(const std::string& plan, const std::string& operation,
                                                                      const std::vector<std::string>& groups) {
  auto open = site_.store().runs_in_state({"running", "waiting", "failed"});
  if (!open) return open.status();
  std::vector<std::string> failed_tests;
  for (const auto& other : *open) {
    for (const auto& g : run_group_names(other)) {
      if (std::find(groups.begin(), groups.end(), g) == groups.end()) continue;
      // A failed test is what cleanup is for: cleanup closes it.
      if (operation == "cleanup" && other.operation == "test" && other.state == "failed") {
        failed_tests.push_back(other.id);
        break;
      }
      return failed_precondition("run " + other.id + " (" + other.operation + " of plan '" + other.plan + "') over group '" +
                                     g + "' is " + other.state + "; plan '" + plan + "' cannot " + operation + " it meanwhile",
                                 other.state == "failed" ? "resume it (`evac run resume " + other.id + "`) or cancel it (`evac run cancel " +
                                                               other.id + "`)"
                                                         : "wait for it (`evac run show " + other.id + " --follow`) or cancel it");
    }
  }
  return failed_tests;
}

Status RunService::check_no_test_left(const std::vector<RecoveredGroup>& groups) {
  std::set<std::string> names;
  for (const auto& g : groups) names.insert(g.name);
  std::vector<std::string> left;
  if (replication_)
    for (const auto& g : groups) {
      auto copies = replication_->test_copies_held_here(g.name);
      if (copies)
        for (const auto& c : *copies)
          if (!c.live) left.push_back("test copy " + c.id + " of group '" + g.name + "'");
    }
  auto placeholders = site_.store().list_hosted_placeholders();
  if (!placeholders) return placeholders.status();
  std::set<std::string> providers;
  for (const auto& p : *placeholders)
    if (names.count(p.group)) providers.insert(p.provider);
  for (const auto& name : providers) {
    auto provider = site_.provider(name);
    if (!provider) continue;
    auto vms = (*provider)->list_test_vms();
    if (!vms) continue;  // a provider that cannot list them has none of ours
    for (const auto& t : *vms)
      if (names.count(t.group)) left.push_back("test VM " + t.name + " (run " + t.run + ")");
  }
  if (left.empty()) return Status::ok();
  std::string what;
  for (std::size_t i = 0; i < left.size() && i < 5; ++i) what += (i ? ", " : "") + left[i];
  if (left.size() > 5) what += ", and " + std::to_string(left.size() - 5) + " more";
  return failed_precondition("an earlier test is still set up: " + what, "clean it up first: `evac plan cleanup <plan>`");
}

Result<RunRow> RunService::start(const RunRequest& request) {
  const std::string& op = request.operation;
  if (std::find(std::begin(kOperations), std::end(kOperations), op) == std::end(kOperations))
    return invalid_argument("unknown operation '" + op + "'", "use test, cleanup, migrate, failover, reprotect or failback");
  if ((op == "migrate" || op == "failover" || op == "failback") && request.confirm != request.plan)
    return invalid_argument(op + " changes which site runs the VMs of plan '" + request.plan + "': confirm it by naming the plan",
                            "add --confirm " + request.plan);
  auto plan = plans_.runnable_plan(request.plan);
  if (!plan) return plan.status();
  if (op == "reprotect")
    for (const auto& name : plan->groups) {
      auto own = site_.store().find_group(name);
      if (!own) return own.status();
      if (own->has_value())
        return failed_precondition("group '" + name + "' is protected from here to '" + (*own)->recovery_site +
                                       "' already: there is nothing to reprotect",
                                   "to bring its VMs back, run `evac plan failback " + plan->name + "` at '" +
                                       (*own)->recovery_site + "'");
    }
  auto groups = plans_.recovered_groups(*plan);
  if (!groups) return groups.status();
  if (!request.pit.empty() && op != "test" && op != "failover")
    return invalid_argument("--pit applies to test and failover runs only", "a migration recovers the final sync's PIT");

  // The run's context: each group's PIT and test networks, each VM's placeholder.
  auto hosted = site_.store().list_hosted_placeholders();
  if (!hosted) return hosted.status();
  json ctx = json::array();
  std::vector<engine::RecoveryVm> vms;
  std::vector<std::string> group_names;
  for (const auto& g : *groups) {
    json jg = {{"name", g.name},
               {"protected_site", g.protected_site},
               {"networks", g.test_networks},
               {"source_networks", g.source_networks},
               {"source_pools", g.source_pools},
               {"settings",
                {{"rpo_seconds", g.rpo_seconds},
                 {"keep_pits", g.keep_pits},
                 {"keep_hourly", g.keep_hourly},
                 {"keep_daily", g.keep_daily},
                 {"max_rate_bytes", g.max_rate_bytes}}},
               {"pit", ""}};
    // Every operation checks first who owns the group's live copy.
    auto owner = site_.ownership(g.name, g.protected_site, g.epoch);
    if (!owner) return owner.status();
    const bool live_here = owner->owner == site_.identity().name;
    if (op == "reprotect") {
      if (!live_here)
        return failed_precondition("group '" + g.name + "' is not live here: its VMs run at '" + owner->owner + "'",
                                   "reprotect follows a migration or failover to this site: `evac plan migrate` or `failover`");
      jg["epoch"] = owner->epoch;  // reprotect keeps the owner and its epoch
    } else {
      if (live_here && op != "cleanup")
        return failed_precondition("group '" + g.name + "' is already live here, recovered by run " + owner->run +
                                       " (epoch " + std::to_string(owner->epoch) + ")",
                                   "reprotect it to replicate back to '" + g.protected_site + "'");
      jg["epoch"] = owner->epoch + 1;
    }
    if ((op == "test" || op == "failover") && replication_) {
      auto pits = replication_->pits_held_here(g.name);
      if (pits && !pits->empty()) {
        const PointInTime* chosen = &pits->back();
        if (!request.pit.empty()) {
          chosen = nullptr;
          for (const auto& p : *pits)
            if (p.id == request.pit) chosen = &p;
          if (!chosen)
            return not_found("group '" + g.name + "' has no point in time '" + request.pit + "' here",
                             "list them with `evac group pits " + g.name + "`");
        }
        jg["pit"] = chosen->id;
        jg["pit_created_at"] = chosen->created_at;
        jg["pit_created_at_ms"] = chosen->created_at_ms;
      }
    }
    if (op == "failover") {
      // How long the protected site is known to have lived: what a failover
      // loses is at most what it took between the PIT's instant and then.
      auto peer = site_.store().find_peer(g.protected_site);
      if (peer && peer->has_value()) {
        const PeerRecord& p = **peer;
        if (p.last_seen_at_ms)
          jg["protected_last_seen_ms"] = *p.last_seen_at_ms;
        else if (p.last_seen_at)
          jg["protected_last_seen_ms"] = *p.last_seen_at * 1000;
      }
    }
    json jvms = json::array();
    for (const auto& v : g.vms) {
      json jv = {{"name", v.name}, {"source_uuid", v.uuid}, {"source_provider", v.provider}, {"placeholder_uuid", ""},
                 {"provider", ""}};
      for (const auto& h : *hosted)
        if (h.group == g.name && h.source_uuid == v.uuid) {
          jv["placeholder_uuid"] = h.uuid;
          jv["provider"] = h.provider;
        }
      jvms.push_back(jv);
      vms.push_back({v.name, g.name});
    }
    jg["vms"] = jvms;
    ctx.push_back(jg);
    group_names.push_back(g.name);
  }

  auto steps = op == "test"        ? engine::compile_test(*plan, vms)
               : op == "failover"  ? engine::compile_failover(*plan, vms)
               : op == "migrate"   ? engine::compile_migrate(*plan, vms)
               : op == "reprotect" ? engine::compile_reprotect(*plan, vms)
               : op == "failback"  ? engine::compile_failback(*plan, vms)
                                   : engine::compile_cleanup(*plan, vms);
  if (!steps) return steps.status();
  // Steps that call a VM's compute provider hold it: the engine runs at most
  // per_resource_limit of them at once per provider.
  std::map<std::string, std::string> provider_of;
  for (const auto& g : ctx)
    for (const auto& v : g["vms"]) provider_of[v["name"].get<std::string>()] = v["provider"].get<std::string>();
  // How long each step took before (by step name, the newest first): the
  // engine starts the longest chains of a tier first. The plan's own last
  // runs first; then the site's last runs of other plans, since a step's
  // name is its VM's ("Wait for guest heartbeat: db01"), whatever plan ran
  // it: a new plan over VMs drilled under another does not start blind.
  std::map<std::string, int> took;
  auto learn_from = [&](const std::vector<RunRow>& runs) {
    for (const auto& r : runs)
      if (auto done = site_.store().run_steps(r.id))
        for (const auto& st : *done)
          if (st.state == "succeeded" && st.started_at_ms && st.ended_at_ms && !took.count(st.name))
            took[st.name] = static_cast<int>(std::min<std::int64_t>(*st.ended_at_ms - *st.started_at_ms, 86'400'000));
  };
  if (auto own = site_.store().list_runs(plan->name, 3)) learn_from(*own);
  // Other plans' runs are read only for steps the plan's own did not time:
  // reading thousands of step records is on the way to the run's start.
  const bool all_timed = std::all_of(steps->begin(), steps->end(), [&](const StepSpec& s) { return took.count(s.name) > 0; });
  if (!all_timed) {
    if (auto recent = site_.store().list_runs(std::nullopt, 6)) {
      std::vector<RunRow> others;
      for (auto& r : *recent)
        if (r.plan != plan->name && others.size() < 3) others.push_back(std::move(r));
      learn_from(others);
    }
  }
  for (auto& s : *steps) {
    s.timeout_s = engine::default_step_timeout_s(s);
    if (auto t = took.find(s.name); t != took.end()) s.expected_ms = t->second;
    static const std::set<std::string> kProviderKinds = {"register_test_vm", "remove_test_vm", "recover_vm",
                                                         "power_on",         "wait_for_guest", "customize_ip",
                                                         "check",            "guest_command"};
    if (!kProviderKinds.count(s.kind)) continue;
    auto it = provider_of.find(s.params.value("vm", ""));
    if (it != provider_of.end() && !it->second.empty()) s.resource = "provider:" + it->second;
  }

  std::lock_guard lock(start_mu_);
  auto closed_by_cleanup = check_no_conflicting_run(plan->name, op, group_names);
  if (!closed_by_cleanup) return closed_by_cleanup.status();
  if (op == "test") EVAC_RETURN_IF_ERROR(check_no_test_left(*groups));
  RunRow run;
  run.id = new_run_id();
  run.plan = plan->name;
  run.operation = op;
  run.started_by = request.started_by;
  run.created_at = site_.now();
  json doc = plan_to_json(*plan);
  run.plan_document = doc.dump();
  run.groups = ctx.dump();
  EVAC_RETURN_IF_ERROR(engine_->start(run, std::move(*steps)));
  for (const auto& id : *closed_by_cleanup) EVAC_RETURN_IF_ERROR(engine_->cancel(id));
  auto stored = site_.store().find_run(run.id);
  if (!stored) return stored.status();
  if (!stored->has_value()) return internal_error("run " + run.id + " was started but is not in the store");
  return **stored;
}

Result<std::vector<RunRow>> RunService::list_runs(const std::optional<std::string>& plan, int limit) {
  return site_.store().list_runs(plan, limit);
}

Result<RunRow> RunService::get_run(const std::string& id) {
  auto r = site_.store().find_run(id);
  if (!r) return r.status();
  if (!r->has_value()) return not_found("no run " + id, "list runs with `evac run list`");
  return **r;
}

json RunService::step_progress(const std::string& run_id, const Step& step) {
  if (step.state == engine::StepState::kRunning && step.spec.kind == "sync_protected")
    return steps_->peer_progress(run_id, step.idx);
  return evac::step_progress(step, replication_);
}

Result<std::vector<Step>> RunService::steps(const std::string& id) {
  auto run = get_run(id);
  if (!run) return run.status();
  return engine_->steps(id);
}

Status RunService::resume(const std::string& id) {
  auto run = get_run(id);
  if (!run) return run.status();
  // Under start_mu_: a failed run being resumed must not race a new run
  // over its groups.
  std::lock_guard lock(start_mu_);
  return engine_->resume(id);
}

Result<json> RunService::forget_lost_site(const std::string& site) {
  auto peers = site_.store().list_peers();
  if (!peers) return peers.status();
  if (std::none_of(peers->begin(), peers->end(), [&](const PeerRecord& p) { return p.site == site; }))
    return not_found("site '" + site + "' is not paired with this site", "see `evac site status`");
  if (auto reached = site_.call_paired_site(site, "GET", "/api/v1/peer/inventory", std::nullopt); reached)
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
  for (const auto& run : *active)
    for (const auto& [group, vms] : by_group)
      if (run.groups.find("\"" + group + "\"") != std::string::npos)
        return failed_precondition("run " + run.id + " (" + run.operation + ") is still going over group '" + group + "'",
                                   "let it finish, or cancel it, then unpair again");

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

Result<json> RunService::handle_peer_reprotect(const PeerRecord& caller, const std::string& group, const json& body) {
  // Everything read, typed and bounded before anything is looked at.
  auto f = JsonFields::of(body, "a reprotect");
  if (!f) return f.status();
  auto epoch_field = f->integer("epoch", 0, kMaxEpoch);
  auto run_field = f->text("run", 256);
  auto vms_field = f->list("vms");
  for (const Status& s : {epoch_field.status(), run_field.status(), vms_field.status(), f->finish()})
    if (!s) return s;
  if (!epoch_field->has_value() || !*vms_field)
    return invalid_argument("a reprotect names the caller's ownership epoch and the group's VMs",
                            "send {epoch, run, vms: [{name, uuid, source_uuid}]}");
  const std::int64_t epoch = **epoch_field;
  const std::string run_id = run_field->value_or("");
  // Our VM's UUID (the caller's source_uuid) -> the caller's live VM's UUID.
  std::map<std::string, std::string> theirs;
  for (const auto& v : **vms_field) {
    auto vm = JsonFields::of(v, "a VM of a reprotect");
    if (!vm) return vm.status();
    auto name = vm->text("name", 256);
    auto uuid = vm->text("uuid", 256);
    auto source_uuid = vm->text("source_uuid", 256);
    for (const Status& s : {name.status(), uuid.status(), source_uuid.status(), vm->finish()})
      if (!s) return s;
    theirs[source_uuid->value_or("")] = uuid->value_or("");
  }
  std::lock_guard lock(start_mu_);  // not while a run here starts over the same group
  auto g = site_.store().find_group(group);
  if (!g) return g.status();
  auto hosted = site_.store().list_hosted_placeholders();
  if (!hosted) return hosted.status();
  auto answer = [&](const std::vector<HostedPlaceholderRecord>& records) {
    json out = json::array();
    for (const auto& h : records)
      if (h.group == group && h.source_site == caller.site)
        out.push_back({{"uuid", h.uuid}, {"provider", h.provider}, {"name", h.name}, {"source_uuid", h.source_uuid}});
    return json{{"group", group}, {"placeholders", out}};
  };
  if (!g->has_value()) {
    // Done before (a step run again): the placeholders are recorded.
    json done = answer(*hosted);
    if (!done["placeholders"].empty()) return done;
    return not_found("site '" + site_.identity().name + "' has no group '" + group + "' to reprotect");
  }
  const GroupRecord& rec = **g;
  if (rec.protected_site != site_.identity().name || rec.recovery_site != caller.site)
    return permission_denied("group '" + group + "' is not protected from here to '" + caller.site + "'");
  auto owner = site_.ownership(rec.name, rec.protected_site, rec.epoch);
  if (!owner) return owner.status();
  if (owner->owner != caller.site && epoch > owner->epoch) {
    // The caller recovered the group at a newer epoch while this site was
    // away, and the configuration that says so has not reached it yet (it
    // travels with the caller's next heartbeat). The reprotect is the same
    // news from the same site: fence here first, as that copy would.
    EVAC_RETURN_IF_ERROR(site_.fence(rec, OwnershipRecord{rec.name, caller.site, epoch, site_.now(), run_id}));
    owner = site_.ownership(rec.name, rec.protected_site, rec.epoch);
    if (!owner) return owner.status();
  }
  if (owner->owner != caller.site || owner->epoch != epoch)
    return failed_precondition("group '" + group + "' is not fenced here for site '" + caller.site + "' at epoch " +
                                   std::to_string(epoch) + " (owner here: '" + owner->owner + "', epoch " +
                                   std::to_string(owner->epoch) + ")",
                               "reprotect follows a migration or failover to '" + caller.site + "'");
  // Every VM of the group, matched with the caller's live VM.
  std::vector<HostedPlaceholderRecord> records;
  std::map<std::string, std::string> seeds;
  for (const auto& vm : rec.vms) {
    auto it = theirs.find(vm.vm_uuid);
    if (it == theirs.end() || it->second.empty())
      return invalid_argument("the reprotect of group '" + group + "' does not name VM '" + vm.vm_name + "'",
                              "both sites must agree on the group's VMs; check `evac group show " + group + "`");
    const std::string& live_uuid = it->second;
    auto provider = site_.provider(vm.provider);
    if (!provider) return provider.status();
    // Fenced already; off again in case someone started it by hand.
    EVAC_RETURN_IF_ERROR((*provider)->power_off(vm.vm_uuid, false, std::chrono::seconds(0)));
    auto adopted = (*provider)->adopt_as_placeholder(vm.vm_uuid, PlaceholderInfo{vm.provider, vm.vm_name, vm.vm_uuid, group,
                                                                                 caller.site, live_uuid});
    if (!adopted) return adopted.status();
    auto info = (*provider)->get_vm(vm.vm_uuid);
    if (!info) return info.status();
    for (const auto& d : info->disks)
      if (!d.path.empty()) seeds[live_uuid + "/" + d.target] = d.path;
    records.push_back(HostedPlaceholderRecord{vm.vm_uuid, vm.provider, adopted->name, group, caller.site, live_uuid,
                                              site_.now()});
  }
  if (replication_) EVAC_RETURN_IF_ERROR(replication_->set_seeds(group, seeds));
  EVAC_RETURN_IF_ERROR(site_.store().transaction([&]() -> Status {
    for (const auto& r : records) EVAC_RETURN_IF_ERROR(site_.store().add_hosted_placeholder(r));
    return site_.store().remove_group(group);  // bumps the configuration version
  }));
  spdlog::info("reprotect: group {} now protected by site {}; its VMs here are placeholders", group, caller.site);
  EVAC_RETURN_IF_ERROR(site_.store().add_event(EventRecord{0, site_.now(), "info", "reprotected", group,
                                                           "site '" + caller.site + "' protects group '" + group +
                                                               "' now; this site's copies are its placeholders (run " +
                                                               run_id + ")"})
                           .status());
  return answer(records);
}

Status RunService::ack(const std::string& id, int step) { return engine_->ack(id, step); }
Status RunService::cancel(const std::string& id) { return engine_->cancel(id); }
void RunService::wait_idle(const std::string& id) { engine_->wait_idle(id); }

json to_json(const RunRow& run) {
  json j = {{"id", run.id},
            {"plan", run.plan},
            {"operation", run.operation},
            {"state", run.state},
            {"started_by", run.started_by},
            {"created_at", run.created_at},
            {"ended_at", run.ended_at ? json(*run.ended_at) : json()},
            {"error", run.error}};
  auto groups = parse_json_or_discarded(run.groups);
  j["groups"] = json::array();
  if (groups.is_array())
    for (const auto& g : groups)
      j["groups"].push_back({{"name", g.value("name", "")},
                             {"pit", g.value("pit", "")},
                             {"pit_created_at", g.value("pit_created_at", json())},
                             {"pit_created_at_ms", g.value("pit_created_at_ms", json())},
                             {"protected_last_seen_ms", g.value("protected_last_seen_ms", json())}});
  return j;
}

json step_progress(const Step& step, ReplicationService* replication) {
  if (!replication || step.state != engine::StepState::kRunning || step.spec.kind != "sync_reverse") return nullptr;
  json sync = replication->sync_progress(step.spec.params.value("group", ""));
  // Another cycle of the group may still be ending before the reverse one
  // starts: that one is not the resync's progress.
  if (!sync.value("running", false) || sync.value("trigger", "") != "reverse") return nullptr;
  return sync;
}

json to_json(const Step& s, std::int64_t now_ms) {
  json j{{"idx", s.idx},
              {"name", s.spec.name},
              {"kind", s.spec.kind},
              {"state", engine::step_state_name(s.state)},
              {"after", s.spec.after},
              {"resource", s.spec.resource},
              {"timeout_s", s.spec.timeout_s},
              {"expected_ms", s.spec.expected_ms},
              {"attempts", s.attempts},
              {"started_at_ms", s.started_at_ms ? json(*s.started_at_ms) : json()},
              {"ended_at_ms", s.ended_at_ms ? json(*s.ended_at_ms) : json()},
              {"error", s.error},
              {"result", s.result}};
  if (s.state == engine::StepState::kRunning && s.spec.timeout_s > 0 && s.started_at_ms) {
    const std::int64_t past_ms = now_ms - *s.started_at_ms - std::int64_t{s.spec.timeout_s} * 1000;
    if (past_ms > 0) j["overdue_s"] = past_ms / 1000;
  }
  return j;
}

}  // namespace evac
