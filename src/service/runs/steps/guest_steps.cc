#include "service/runs/steps/guest_steps.h"

#include <sstream>

#include "service/host_command.h"
#include "service/runs/probes.h"
#include "service/runs/re_ip.h"

namespace evac {

using engine::Step;
using nlohmann::json;

Result<json> power_on(const Target& t) {
  EVAC_RETURN_IF_ERROR(t.provider->power_on(t.id));
  return json{{"vm", t.id}};
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

Result<json> customize_ip(StepEnv& env, const Step& step, const RunContext& ctx, const RunVm& vm, const Target& t) {
  auto g = ctx.group(vm.group);
  if (!g) return g.status();
  auto provider = env.site.provider(vm.provider);
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

Result<json> host_command(const RunRow& run, const RunContext& ctx, const RunVm& vm, const PlanAction& a,
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

}  // namespace evac
