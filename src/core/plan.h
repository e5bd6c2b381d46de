// Recovery plans: the runbook a run executes.
//
// A plan covers one or more protection groups. Every VM of those groups is
// in the plan; a PlanVm entry only says how that VM recovers (tier,
// dependencies, startup, checks, actions around its power-on), and a VM
// without one recovers with the defaults (tier 3, powered on, waited for).
// IP rules belong to the plan: they map a protected network's subnet to the
// one its recovered VMs use at the recovery site.
//
// This header is pure data plus validation that needs nothing but the plan
// itself and the VM names of its groups; whether those groups, networks and
// commands exist at a site is the readiness check's business (plan check).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace evac {

// How tiers order the power-ons of a run.
enum class PlanOrdering {
  // SRM's behaviour: every VM of a tier is up (and checked) before any VM of
  // the next tier starts. A dependency must then point at an earlier or the
  // same tier.
  kStrictTiers,
  // Tiers only set priority among VMs that are ready to start; a VM starts
  // as soon as every VM it depends on is up. Shorter RTO.
  kDependencies,
};
std::string_view plan_ordering_name(PlanOrdering o);  // "strict-tiers", "dependencies"
std::optional<PlanOrdering> plan_ordering_from_name(std::string_view s);

enum class StartupAction { kPowerOn, kLeaveOff };
std::string_view startup_action_name(StartupAction a);  // "power-on", "leave-off"
std::optional<StartupAction> startup_action_from_name(std::string_view s);

// One application check, run after the guest answers; it passes once it
// succeeds within its timeout (retried every `interval`).
struct AppCheck {
  enum class Kind { kTcp, kHttp, kCommand };
  Kind kind = Kind::kTcp;
  int port = 0;                      // tcp, http
  std::string path = "/";            // http
  int expect_status = 200;           // http
  std::vector<std::string> command;  // command: argv run in the guest by its agent; passes on exit 0
  std::chrono::seconds timeout{300};
  std::chrono::seconds interval{5};
};

// Something done before or after a VM's power-on: a command on the evacd
// host (with the VM and run in its environment: EVAC_VM, EVAC_RUN, ...), a
// command in the guest through its agent, or a prompt that pauses the run
// until an operator acknowledges it (`evac run ack`).
struct PlanAction {
  enum class Kind { kHostCommand, kGuestCommand, kPrompt };
  Kind kind = Kind::kHostCommand;
  std::vector<std::string> command;  // host/guest commands: argv, no shell
  std::string message;               // prompts
  std::chrono::seconds timeout{300};  // commands; prompts wait as long as it takes
};

struct PlanVm {
  std::string vm;  // the VM's name at its protected site
  int priority = 3;  // tier 1 (first) to 5
  std::vector<std::string> depends_on;  // VM names of this plan
  StartupAction startup = StartupAction::kPowerOn;
  // Wait for the QEMU guest agent to answer after power-on; nullopt: don't.
  std::optional<std::chrono::seconds> wait_for_guest = std::chrono::seconds(300);
  std::vector<AppCheck> checks;
  std::vector<PlanAction> before_power_on;
  std::vector<PlanAction> after_power_on;
};

// Re-IP of recovered VMs: a NIC on `network` (the protected-site network
// name) with an address in `from` gets the same host part in `to`.
struct IpRule {
  std::string network;
  std::string from;  // CIDR, e.g. "10.0.0.0/24"
  std::string to;    // CIDR of the same prefix length
  std::string gateway;  // optional, in `to`
  std::vector<std::string> dns;
};

struct RecoveryPlan {
  std::string name;
  std::string description;
  std::vector<std::string> groups;
  PlanOrdering ordering = PlanOrdering::kStrictTiers;
  std::vector<PlanVm> vms;  // entries for VMs that differ from the defaults
  std::vector<IpRule> ip_rules;
  std::int64_t created_at = 0;
  std::int64_t updated_at = 0;
};

// Checks what the plan says on its own, and against its groups' VM names
// (`group_vms`: every VM name in the plan's groups, in any order): names,
// tiers 1-5, known and unique VMs, dependencies on VMs of the plan without
// cycles (the cycle is named), strict tiers' dependencies not pointing at a
// later tier, checks and actions complete, IP rules well-formed. Every
// problem found is listed in one kInvalidArgument, so a plan is fixed in one
// edit rather than one error at a time.
Status validate_plan(const RecoveryPlan& plan, const std::vector<std::string>& group_vms);

// What a site checks on saving a plan, against the groups it knows: each of
// the plan's groups is known (`vms_of` gives its VM names, nullopt when the
// site knows no such group), no VM name is in two of them, then
// validate_plan over their VMs. `evac apply` runs the same before it
// writes anything.
Status validate_plan_groups(const RecoveryPlan& plan,
                            const std::function<std::optional<std::vector<std::string>>(const std::string&)>& vms_of);

// Valid plan and resource names: 1-63 of [a-z0-9-_.], starting alphanumeric.
bool is_valid_plan_name(std::string_view name);

// The address an IPv4 or IPv6 address becomes under `rule` ("10.1.0.7/24",
// "2001:db8:2::7/64": the same host part in rule.to, with its prefix), or
// nullopt when the address is not in rule.from (another family included).
std::optional<std::string> map_address(const IpRule& rule, const std::string& address);

// The entry for `vm`, or the defaults for a VM the plan has none for.
PlanVm plan_vm_or_default(const RecoveryPlan& plan, const std::string& vm);

}  // namespace evac
