// The JSON form of a recovery plan: what the REST API takes and returns,
// and (through the CLI's YAML conversion) what `evac apply -f plan.yaml`
// and `evac get plan NAME -o yaml` read and write. One shape for all three,
// so a plan fetched, edited and applied again round-trips.
//
//   name: web-shop
//   description: the shop, database first
//   groups: [shop]
//   ordering: strict-tiers            # or: dependencies
//   vms:
//     - vm: db01
//       priority: 1                   # tier 1-5, default 3
//       depends_on: []
//       startup: power-on             # or: leave-off
//       wait_for_guest: 5m            # or: false
//       checks:
//         - tcp: {port: 5432}
//           timeout: 2m
//         - http: {port: 80, path: /health, status: 200}
//         - command: [/usr/local/bin/db-ready]      # in the guest
//       before_power_on:
//         - prompt: Is the licence server up?
//         - host: [/usr/local/bin/notify, db01]      # on the evacd host
//           timeout: 1m
//       after_power_on:
//         - guest: [/usr/sbin/service, app, restart]
//   ip_rules:
//     - {network: prod, from: 10.0.0.0/24, to: 10.1.0.0/24, gateway: 10.1.0.1, dns: [10.1.0.53]}
//
// Decoding is strict: an unknown key is an error that names it (a typo in a
// runbook must not be silently ignored), and so is a value of the wrong type.
#pragma once

#include <nlohmann/json.hpp>

#include "core/plan.h"
#include "core/status.h"

namespace evac {

nlohmann::json plan_to_json(const RecoveryPlan& plan);
// Shape only (types, known keys, enum spellings, durations); validate_plan
// checks the meaning.
Result<RecoveryPlan> plan_from_json(const nlohmann::json& j);

}  // namespace evac
