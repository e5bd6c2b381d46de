#include "core/plan.h"

#include <arpa/inet.h>

#include <algorithm>
#include <functional>
#include <map>
#include <set>

namespace evac {

std::string_view plan_ordering_name(PlanOrdering o) {
  return o == PlanOrdering::kStrictTiers ? "strict-tiers" : "dependencies";
}

std::optional<PlanOrdering> plan_ordering_from_name(std::string_view s) {
  if (s == "strict-tiers") return PlanOrdering::kStrictTiers;
  if (s == "dependencies") return PlanOrdering::kDependencies;
  return std::nullopt;
}

std::string_view startup_action_name(StartupAction a) { return a == StartupAction::kPowerOn ? "power-on" : "leave-off"; }

std::optional<StartupAction> startup_action_from_name(std::string_view s) {
  if (s == "power-on") return StartupAction::kPowerOn;
  if (s == "leave-off") return StartupAction::kLeaveOff;
  return std::nullopt;
}

bool is_valid_plan_name(std::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!alnum(name.front())) return false;
  return std::all_of(name.begin(), name.end(), [&](char c) { return alnum(c) || c == '-' || c == '_' || c == '.'; });
}

PlanVm plan_vm_or_default(const RecoveryPlan& plan, const std::string& vm) {
  for (const auto& v : plan.vms)
    if (v.vm == vm) return v;
  PlanVm d;
  d.vm = vm;
  return d;
}

namespace {

// "10.0.0.0/24" -> prefix length, or -1 when it is not an IPv4 or IPv6 CIDR
// whose host bits are zero.
int cidr_prefix(const std::string& cidr, int* family) {
  auto slash = cidr.find('/');
  if (slash == std::string::npos || slash + 1 >= cidr.size()) return -1;
  std::string addr = cidr.substr(0, slash);
  int prefix = 0;
  for (char c : cidr.substr(slash + 1)) {
    if (c < '0' || c > '9') return -1;
    prefix = prefix * 10 + (c - '0');
    if (prefix > 128) return -1;
  }
  unsigned char bytes[16] = {};
  std::size_t len = 0;
  if (::inet_pton(AF_INET, addr.c_str(), bytes) == 1) {
    *family = AF_INET;
    len = 4;
  } else if (::inet_pton(AF_INET6, addr.c_str(), bytes) == 1) {
    *family = AF_INET6;
    len = 16;
  } else {
    return -1;
  }
  if (static_cast<std::size_t>(prefix) > len * 8) return -1;
  for (std::size_t bit = static_cast<std::size_t>(prefix); bit < len * 8; ++bit)
    if (bytes[bit / 8] & (0x80 >> (bit % 8))) return -1;
  return prefix;
}

bool is_ip(const std::string& s) {
  unsigned char bytes[16];
  return ::inet_pton(AF_INET, s.c_str(), bytes) == 1 || ::inet_pton(AF_INET6, s.c_str(), bytes) == 1;
}

void check_actions(const std::vector<PlanAction>& actions, const std::string& where, std::vector<std::string>& problems) {
  for (std::size_t i = 0; i < actions.size(); ++i) {
    const auto& a = actions[i];
    std::string at = where + " action " + std::to_string(i + 1);
    switch (a.kind) {
      case PlanAction::Kind::kHostCommand:
      case PlanAction::Kind::kGuestCommand:
        if (a.command.empty() || a.command.front().empty()) problems.push_back(at + " has no command");
        if (a.timeout.count() <= 0) problems.push_back(at + " needs a positive timeout");
        break;
      case PlanAction::Kind::kPrompt:
        if (a.message.empty()) problems.push_back(at + " is a prompt without a message");
        break;
    }
  }
}

void check_checks(const std::vector<AppCheck>& checks, const std::string& vm, std::vector<std::string>& problems) {
  for (std::size_t i = 0; i < checks.size(); ++i) {
    const auto& c = checks[i];
    std::string at = "VM '" + vm + "' check " + std::to_string(i + 1);
    if ((c.kind == AppCheck::Kind::kTcp || c.kind == AppCheck::Kind::kHttp) && (c.port < 1 || c.port > 65535))
      problems.push_back(at + " needs a port from 1 to 65535");
    if (c.kind == AppCheck::Kind::kHttp && (c.path.empty() || c.path.front() != '/'))
      problems.push_back(at + " needs a path starting with '/'");
    if (c.kind == AppCheck::Kind::kHttp && (c.expect_status < 100 || c.expect_status > 599))
      problems.push_back(at + " expects an HTTP status that does not exist");
    if (c.kind == AppCheck::Kind::kCommand && (c.command.empty() || c.command.front().empty()))
      problems.push_back(at + " has no command");
    if (c.timeout.count() <= 0 || c.interval.count() <= 0)
      problems.push_back(at + " needs a positive timeout and interval");
  }
}

// A dependency cycle as "a -> b -> c -> a", or empty when there is none.
std::string find_cycle(const std::map<std::string, std::vector<std::string>>& deps) {
  enum class Mark { kNone, kOnPath, kDone };
  std::map<std::string, Mark> mark;
  std::vector<std::string> path;
  std::string found;
  std::function<bool(const std::string&)> visit = [&](const std::string& v) {
    mark[v] = Mark::kOnPath;
    path.push_back(v);
    if (auto it = deps.find(v); it != deps.end()) {
      for (const auto& d : it->second) {
        if (!deps.count(d)) continue;  // unknown VMs are reported on their own
        if (mark[d] == Mark::kOnPath) {
          auto start = std::find(path.begin(), path.end(), d);
          for (auto p = start; p != path.end(); ++p) found += *p + " -> ";
          found += d;
          return true;
        }
        if (mark[d] == Mark::kNone && visit(d)) return true;
      }
    }
    path.pop_back();
    mark[v] = Mark::kDone;
    return false;
  };
  for (const auto& [v, _] : deps)
    if (mark[v] == Mark::kNone && visit(v)) return found;
  return {};
}

}  // namespace

Status validate_plan_groups(const RecoveryPlan& plan,
                            const std::function<std::optional<std::vector<std::string>>(const std::string&)>& vms_of) {
  std::vector<std::string> vms, problems;
  for (const auto& g : plan.groups) {
    auto names = vms_of(g);
    if (!names) {
      problems.push_back("group '" + g + "' is not known at this site");
      continue;
    }
    vms.insert(vms.end(), names->begin(), names->end());
  }
  // The same VM name in two groups would make the plan's entries ambiguous.
  std::map<std::string, int> times;
  for (const auto& vm : vms) ++times[vm];
  for (const auto& [vm, n] : times)
    if (n > 1) problems.push_back("VM name '" + vm + "' appears in more than one of the plan's groups");
  if (!problems.empty()) {
    std::string message = "plan '" + plan.name + "' cannot be saved: ";
    for (std::size_t i = 0; i < problems.size(); ++i) message += (i ? "; " : "") + problems[i];
    return invalid_argument(message, "cover only groups listed by `evac group list`, each VM name once");
  }
  return validate_plan(plan, vms);
}

Status validate_plan(const RecoveryPlan& plan, const std::vector<std::string>& group_vms) {
  std::vector<std::string> problems;
  if (!is_valid_plan_name(plan.name))
    problems.push_back("plan name '" + plan.name + "' is not 1-63 of a-z, 0-9, '-', '_', '.' starting with a letter or digit");
  if (plan.groups.empty()) problems.push_back("the plan covers no protection group");
  std::set<std::string> groups;
  for (const auto& g : plan.groups)
    if (!groups.insert(g).second) problems.push_back("group '" + g + "' is listed twice");

  const std::set<std::string> known(group_vms.begin(), group_vms.end());
  std::map<std::string, const PlanVm*> entries;
  for (const auto& v : plan.vms) {
    if (!known.count(v.vm)) {
      problems.push_back("VM '" + v.vm + "' is not in the plan's groups");
      continue;
    }
    if (!entries.emplace(v.vm, &v).second) problems.push_back("VM '" + v.vm + "' has two entries");
  }
  auto tier_of = [&](const std::string& vm) {
    auto it = entries.find(vm);
    return it == entries.end() ? 3 : it->second->priority;
  };
  std::map<std::string, std::vector<std::string>> deps;
  for (const auto& vm : known) deps[vm];
  for (const auto& [name, v] : entries) {
    std::string at = "VM '" + name + "'";
    if (v->priority < 1 || v->priority > 5) problems.push_back(at + " has priority " + std::to_string(v->priority) + "; tiers are 1 to 5");
    if (v->wait_for_guest && v->wait_for_guest->count() <= 0) problems.push_back(at + " waits for its guest with a timeout that is not positive");
    if (v->startup == StartupAction::kLeaveOff && (!v->checks.empty() || !v->after_power_on.empty()))
      problems.push_back(at + " is left off, so it can have no checks or after-power-on actions");
    std::set<std::string> seen;
    for (const auto& d : v->depends_on) {
      if (d == name) {
        problems.push_back(at + " depends on itself");
      } else if (!known.count(d)) {
        problems.push_back(at + " depends on '" + d + "', which is not in the plan's groups");
      } else if (!seen.insert(d).second) {
        problems.push_back(at + " names dependency '" + d + "' twice");
      } else {
        deps[name].push_back(d);
        if (plan.ordering == PlanOrdering::kStrictTiers && tier_of(d) > tier_of(name))
          problems.push_back(at + " (tier " + std::to_string(tier_of(name)) + ") depends on '" + d + "' (tier " +
                             std::to_string(tier_of(d)) +
                             "), which strict tiers start later; move one of them or use ordering: dependencies");
        auto dep = entries.find(d);
        if (dep != entries.end() && dep->second->startup == StartupAction::kLeaveOff)
          problems.push_back(at + " depends on '" + d + "', which the plan leaves off");
      }
    }
    check_checks(v->checks, name, problems);
    check_actions(v->before_power_on, at + " before-power-on", problems);
    check_actions(v->after_power_on, at + " after-power-on", problems);
  }
  if (std::string cycle = find_cycle(deps); !cycle.empty()) problems.push_back("dependency cycle: " + cycle);

  std::set<std::string> rule_networks;
  for (std::size_t i = 0; i < plan.ip_rules.size(); ++i) {
    const auto& r = plan.ip_rules[i];
    std::string at = "IP rule " + std::to_string(i + 1);
    if (r.network.empty()) problems.push_back(at + " names no network");
    else if (!rule_networks.insert(r.network + "|" + r.from).second)
      problems.push_back(at + " repeats network '" + r.network + "' with subnet " + r.from);
    int from_family = 0, to_family = 0;
    int from = cidr_prefix(r.from, &from_family), to = cidr_prefix(r.to, &to_family);
    if (from < 0) problems.push_back(at + " has 'from' " + (r.from.empty() ? "missing" : "'" + r.from + "'") + "; expected a subnet such as 10.0.0.0/24");
    if (to < 0) problems.push_back(at + " has 'to' " + (r.to.empty() ? "missing" : "'" + r.to + "'") + "; expected a subnet such as 10.1.0.0/24");
    if (from >= 0 && to >= 0 && (from != to || from_family != to_family))
      problems.push_back(at + " maps " + r.from + " to " + r.to + ": both subnets need the same family and prefix length");
    if (!r.gateway.empty() && !is_ip(r.gateway)) problems.push_back(at + " has gateway '" + r.gateway + "', which is not an IP address");
    for (const auto& d : r.dns)
      if (!is_ip(d)) problems.push_back(at + " has DNS server '" + d + "', which is not an IP address");
  }

  if (problems.empty()) return Status::ok();
  std::string message = "plan '" + plan.name + "' is not valid: ";
  for (std::size_t i = 0; i < problems.size(); ++i) message += (i ? "; " : "") + problems[i];
  return invalid_argument(message, "fix the plan and submit it again; nothing was changed");
}

std::optional<std::string> map_address(const IpRule& rule, const std::string& address) {
  // An address or subnet as its family and 16 bytes (IPv4 in the first 4).
  struct Parsed {
    int family = 0;
    unsigned char bytes[16] = {};
  };
  auto parse = [](const std::string& text, Parsed* out) {
    const std::string addr = text.substr(0, text.find('/'));
    if (::inet_pton(AF_INET, addr.c_str(), out->bytes) == 1) {
      out->family = AF_INET;
      return true;
    }
    if (::inet_pton(AF_INET6, addr.c_str(), out->bytes) == 1) {
      out->family = AF_INET6;
      return true;
    }
    return false;
  };
  Parsed from, to, in;
  int from_family = 0, to_family = 0;
  const int from_len = cidr_prefix(rule.from, &from_family);
  const int to_len = cidr_prefix(rule.to, &to_family);
  if (from_len < 0 || from_len != to_len || from_family != to_family) return std::nullopt;
  if (!parse(rule.from, &from) || !parse(rule.to, &to) || !parse(address, &in) || in.family != from_family)
    return std::nullopt;
  const std::size_t len = from_family == AF_INET ? 4 : 16;
  // In the subnet: the first from_len bits agree. Then the network part
  // becomes rule.to's and the host part stays.
  for (std::size_t bit = 0; bit < static_cast<std::size_t>(from_len); ++bit) {
    const unsigned char m = static_cast<unsigned char>(0x80 >> (bit % 8));
    if ((in.bytes[bit / 8] & m) != (from.bytes[bit / 8] & m)) return std::nullopt;
    in.bytes[bit / 8] = static_cast<unsigned char>((in.bytes[bit / 8] & ~m) | (to.bytes[bit / 8] & m));
  }
  char text[INET6_ADDRSTRLEN];
  if (::inet_ntop(from_family, in.bytes, text, sizeof text) == nullptr || len == 0) return std::nullopt;
  return std::string(text) + "/" + std::to_string(to_len);
}

}  // namespace evac
