#include "core/plan_json.h"

#include <initializer_list>
#include <set>

#include "core/duration.h"

namespace evac {

using nlohmann::json;

namespace {

json duration_json(std::chrono::seconds d) { return format_duration(d); }

json action_json(const PlanAction& a) {
  json j = json::object();
  switch (a.kind) {
    case PlanAction::Kind::kHostCommand:
      j["host"] = a.command;
      j["timeout"] = duration_json(a.timeout);
      break;
    case PlanAction::Kind::kGuestCommand:
      j["guest"] = a.command;
      j["timeout"] = duration_json(a.timeout);
      break;
    case PlanAction::Kind::kPrompt:
      j["prompt"] = a.message;
      break;
  }
  return j;
}

json check_json(const AppCheck& c) {
  json j = json::object();
  switch (c.kind) {
    case AppCheck::Kind::kTcp:
      j["tcp"] = {{"port", c.port}};
      break;
    case AppCheck::Kind::kHttp:
      j["http"] = {{"port", c.port}, {"path", c.path}, {"status", c.expect_status}};
      break;
    case AppCheck::Kind::kCommand:
      j["command"] = c.command;
      break;
  }
  j["timeout"] = duration_json(c.timeout);
  j["interval"] = duration_json(c.interval);
  return j;
}

// A decoding error, with the path to the offending value ("vms[2].checks[0]").
struct Decoder {
  std::string error;

  bool fail(const std::string& where, const std::string& what) {
    if (error.empty()) error = where + ": " + what;
    return false;
  }
  bool object(const json& j, const std::string& where, std::initializer_list<const char*> keys) {
    if (!j.is_object()) return fail(where, "expected a mapping");
    std::set<std::string> allowed;
    for (const char* k : keys) allowed.insert(k);
    for (const auto& [k, _] : j.items()) {
      if (!allowed.count(k)) {
        std::string list;
        for (const char* a : keys) list += std::string(list.empty() ? "" : ", ") + a;
        return fail(where, "unknown key '" + k + "' (known: " + list + ")");
      }
    }
    return true;
  }
  bool string(const json& j, const std::string& where, std::string* out) {
    if (!j.is_string()) return fail(where, "expected a string");
    *out = j.get<std::string>();
    return true;
  }
  bool integer(const json& j, const std::string& where, int* out) {
    if (!j.is_number_integer()) return fail(where, "expected a whole number");
    auto v = j.get<std::int64_t>();
    if (v < -1'000'000 || v > 1'000'000) return fail(where, "number out of range");
    *out = static_cast<int>(v);
    return true;
  }
  bool strings(const json& j, const std::string& where, std::vector<std::string>* out) {
    if (!j.is_array()) return fail(where, "expected a list of strings");
    out->clear();
    for (std::size_t i = 0; i < j.size(); ++i) {
      std::string s;
      if (!string(j[i], where + "[" + std::to_string(i) + "]", &s)) return false;
      out->push_back(std::move(s));
    }
    return true;
  }
  bool duration(const json& j, const std::string& where, std::chrono::seconds* out) {
    // A bare number is refused: 30 could be seconds or minutes.
    if (!j.is_string()) return fail(where, "expected a duration with its unit, such as 30s, 5m or 1h");
    auto d = parse_duration(j.get<std::string>());
    if (!d) return fail(where, d.status().message() + " (" + d.status().hint() + ")");
    // Past a month a step's deadline is no deadline, and far past it the
    // run's times would overflow.
    if (*d < std::chrono::seconds(1) || *d > std::chrono::hours(24 * 30))
      return fail(where, format_duration(*d) + " is out of range (from 1s to 30d)");
    *out = *d;
    return true;
  }

  bool action(const json& j, const std::string& where, PlanAction* a) {
    if (!object(j, where, {"host", "guest", "prompt", "timeout"})) return false;
    int kinds = int(j.contains("host")) + int(j.contains("guest")) + int(j.contains("prompt"));
    if (kinds != 1) return fail(where, "give exactly one of host (a command here), guest (a command in the guest) or prompt");
    if (j.contains("host")) {
      a->kind = PlanAction::Kind::kHostCommand;
      if (!strings(j["host"], where + ".host", &a->command)) return false;
    } else if (j.contains("guest")) {
      a->kind = PlanAction::Kind::kGuestCommand;
      if (!strings(j["guest"], where + ".guest", &a->command)) return false;
    } else {
      a->kind = PlanAction::Kind::kPrompt;
      if (!string(j["prompt"], where + ".prompt", &a->message)) return false;
      if (j.contains("timeout")) return fail(where, "a prompt waits for an operator and takes no timeout");
    }
    if (j.contains("timeout") && !duration(j["timeout"], where + ".timeout", &a->timeout)) return false;
    return true;
  }

  bool check(const json& j, const std::string& where, AppCheck* c) {
    if (!object(j, where, {"tcp", "http", "command", "timeout", "interval"})) return false;
    int kinds = int(j.contains("tcp")) + int(j.contains("http")) + int(j.contains("command"));
    if (kinds != 1) return fail(where, "give exactly one of tcp, http or command");
    if (j.contains("tcp")) {
      c->kind = AppCheck::Kind::kTcp;
      if (!object(j["tcp"], where + ".tcp", {"port"})) return false;
      if (!j["tcp"].contains("port")) return fail(where + ".tcp", "needs a port");
      if (!integer(j["tcp"]["port"], where + ".tcp.port", &c->port)) return false;
    } else if (j.contains("http")) {
      c->kind = AppCheck::Kind::kHttp;
      const json& h = j["http"];
      if (!object(h, where + ".http", {"port", "path", "status"})) return false;
      if (!h.contains("port")) return fail(where + ".http", "needs a port");
      if (!integer(h["port"], where + ".http.port", &c->port)) return false;
      if (h.contains("path") && !string(h["path"], where + ".http.path", &c->path)) return false;
      if (h.contains("status") && !integer(h["status"], where + ".http.status", &c->expect_status)) return false;
    } else {
      c->kind = AppCheck::Kind::kCommand;
      if (!strings(j["command"], where + ".command", &c->command)) return false;
    }
    if (j.contains("timeout") && !duration(j["timeout"], where + ".timeout", &c->timeout)) return false;
    if (j.contains("interval") && !duration(j["interval"], where + ".interval", &c->interval)) return false;
    return true;
  }

  bool vm(const json& j, const std::string& where, PlanVm* v) {
    if (!object(j, where,
                {"vm", "priority", "depends_on", "startup", "wait_for_guest", "checks", "before_power_on", "after_power_on"}))
      return false;
    if (!j.contains("vm")) return fail(where, "needs vm: the VM's name at its protected site");
    if (!string(j["vm"], where + ".vm", &v->vm)) return false;
    if (j.contains("priority") && !integer(j["priority"], where + ".priority", &v->priority)) return false;
    if (j.contains("depends_on") && !strings(j["depends_on"], where + ".depends_on", &v->depends_on)) return false;
    if (j.contains("startup")) {
      std::string s;
      if (!string(j["startup"], where + ".startup", &s)) return false;
      auto a = startup_action_from_name(s);
      if (!a) return fail(where + ".startup", "'" + s + "' is not power-on or leave-off");
      v->startup = *a;
    }
    if (j.contains("wait_for_guest")) {
      const json& w = j["wait_for_guest"];
      if (w.is_boolean()) {
        if (w.get<bool>()) v->wait_for_guest = std::chrono::seconds(300);
        else v->wait_for_guest.reset();
      } else {
        std::chrono::seconds d{};
        if (!duration(w, where + ".wait_for_guest", &d)) return false;
        v->wait_for_guest = d;
      }
    }
    if (j.contains("checks")) {
      if (!j["checks"].is_array()) return fail(where + ".checks", "expected a list");
      for (std::size_t i = 0; i < j["checks"].size(); ++i) {
        AppCheck c;
        if (!check(j["checks"][i], where + ".checks[" + std::to_string(i) + "]", &c)) return false;
        v->checks.push_back(std::move(c));
      }
    }
    for (const char* key : {"before_power_on", "after_power_on"}) {
      if (!j.contains(key)) continue;
      if (!j[key].is_array()) return fail(where + "." + key, "expected a list");
      auto& list = std::string(key) == "before_power_on" ? v->before_power_on : v->after_power_on;
      for (std::size_t i = 0; i < j[key].size(); ++i) {
        PlanAction a;
        if (!action(j[key][i], where + "." + key + "[" + std::to_string(i) + "]", &a)) return false;
        list.push_back(std::move(a));
      }
    }
    return true;
  }

  bool ip_rule(const json& j, const std::string& where, IpRule* r) {
    if (!object(j, where, {"network", "from", "to", "gateway", "dns"})) return false;
    for (const char* key : {"network", "from", "to"})
      if (!j.contains(key)) return fail(where, std::string("needs ") + key);
    if (!string(j["network"], where + ".network", &r->network)) return false;
    if (!string(j["from"], where + ".from", &r->from)) return false;
    if (!string(j["to"], where + ".to", &r->to)) return false;
    if (j.contains("gateway") && !string(j["gateway"], where + ".gateway", &r->gateway)) return false;
    if (j.contains("dns") && !strings(j["dns"], where + ".dns", &r->dns)) return false;
    return true;
  }
};

}  // namespace

json plan_to_json(const RecoveryPlan& plan) {
  json vms = json::array();
  for (const auto& v : plan.vms) {
    json j = {{"vm", v.vm},
              {"priority", v.priority},
              {"depends_on", v.depends_on},
              {"startup", std::string(startup_action_name(v.startup))}};
    j["wait_for_guest"] = v.wait_for_guest ? duration_json(*v.wait_for_guest) : json(false);
    j["checks"] = json::array();
    for (const auto& c : v.checks) j["checks"].push_back(check_json(c));
    j["before_power_on"] = json::array();
    for (const auto& a : v.before_power_on) j["before_power_on"].push_back(action_json(a));
    j["after_power_on"] = json::array();
    for (const auto& a : v.after_power_on) j["after_power_on"].push_back(action_json(a));
    vms.push_back(std::move(j));
  }
  json rules = json::array();
  for (const auto& r : plan.ip_rules) {
    json j = {{"network", r.network}, {"from", r.from}, {"to", r.to}};
    if (!r.gateway.empty()) j["gateway"] = r.gateway;
    if (!r.dns.empty()) j["dns"] = r.dns;
    rules.push_back(std::move(j));
  }
  json out = {{"name", plan.name},
              {"description", plan.description},
              {"groups", plan.groups},
              {"ordering", std::string(plan_ordering_name(plan.ordering))},
              {"vms", std::move(vms)},
              {"ip_rules", std::move(rules)}};
  if (plan.created_at != 0) out["created_at"] = plan.created_at;
  if (plan.updated_at != 0) out["updated_at"] = plan.updated_at;
  return out;
}

Result<RecoveryPlan> plan_from_json(const json& j) {
  Decoder d;
  RecoveryPlan p;
  auto done = [&](bool ok) -> Result<RecoveryPlan> {
    if (ok) return p;
    return invalid_argument("the recovery plan is malformed: " + d.error,
                            "see docs/plans.md for the plan's shape; nothing was changed");
  };
  // created_at/updated_at come back from `get`; accepting them lets a fetched
  // plan be applied again unchanged (the server keeps its own).
  if (!d.object(j, "plan", {"kind", "name", "description", "groups", "ordering", "vms", "ip_rules", "created_at", "updated_at"}))
    return done(false);
  if (j.contains("kind")) {
    std::string kind;
    if (!d.string(j["kind"], "plan.kind", &kind)) return done(false);
    if (kind != "RecoveryPlan") return done(d.fail("plan.kind", "'" + kind + "' is not RecoveryPlan"));
  }
  if (!j.contains("name")) return done(d.fail("plan", "needs a name"));
  if (!d.string(j["name"], "plan.name", &p.name)) return done(false);
  if (j.contains("description") && !d.string(j["description"], "plan.description", &p.description)) return done(false);
  if (j.contains("groups") && !d.strings(j["groups"], "plan.groups", &p.groups)) return done(false);
  if (j.contains("ordering")) {
    std::string s;
    if (!d.string(j["ordering"], "plan.ordering", &s)) return done(false);
    auto o = plan_ordering_from_name(s);
    if (!o) return done(d.fail("plan.ordering", "'" + s + "' is not strict-tiers or dependencies"));
    p.ordering = *o;
  }
  if (j.contains("vms")) {
    if (!j["vms"].is_array()) return done(d.fail("plan.vms", "expected a list"));
    for (std::size_t i = 0; i < j["vms"].size(); ++i) {
      PlanVm v;
      if (!d.vm(j["vms"][i], "plan.vms[" + std::to_string(i) + "]", &v)) return done(false);
      p.vms.push_back(std::move(v));
    }
  }
  if (j.contains("ip_rules")) {
    if (!j["ip_rules"].is_array()) return done(d.fail("plan.ip_rules", "expected a list"));
    for (std::size_t i = 0; i < j["ip_rules"].size(); ++i) {
      IpRule r;
      if (!d.ip_rule(j["ip_rules"][i], "plan.ip_rules[" + std::to_string(i) + "]", &r)) return done(false);
      p.ip_rules.push_back(std::move(r));
    }
  }
  return done(true);
}

}  // namespace evac
