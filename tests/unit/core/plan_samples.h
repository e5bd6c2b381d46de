// A full recovery plan and its VMs, as the plan and plan JSON cases use it.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/plan.h"
#include "core/plan_json.h"

namespace evac {

inline const std::vector<std::string> kVms = {"db01", "app01", "web01", "batch01"};

inline nlohmann::json full_plan() {
  return nlohmann::json::parse(R"({
    "name": "web-shop",
    "description": "the shop, database first",
    "groups": ["shop"],
    "ordering": "strict-tiers",
    "vms": [
      {"vm": "db01", "priority": 1, "wait_for_guest": "2m",
       "checks": [{"tcp": {"port": 5432}, "timeout": "2m"},
                  {"command": ["/usr/local/bin/db-ready"], "interval": "10s"}],
       "before_power_on": [{"prompt": "Is the licence server up?"},
                           {"host": ["/usr/local/bin/notify", "db01"], "timeout": "1m"}]},
      {"vm": "app01", "priority": 2, "depends_on": ["db01"],
       "after_power_on": [{"guest": ["/usr/sbin/service", "app", "restart"]}]},
      {"vm": "web01", "priority": 3, "depends_on": ["app01"],
       "checks": [{"http": {"port": 80, "path": "/health", "status": 204}}]},
      {"vm": "batch01", "startup": "leave-off", "wait_for_guest": false}
    ],
    "ip_rules": [{"network": "prod", "from": "10.0.0.0/24", "to": "10.1.0.0/24",
                  "gateway": "10.1.0.1", "dns": ["10.1.0.53"]}]
  })");
}

inline RecoveryPlan decode(const nlohmann::json& j) {
  auto p = plan_from_json(j);
  EXPECT_TRUE(p.is_ok()) << p.status().to_string();
  return p.is_ok() ? *p : RecoveryPlan{};
}

}  // namespace evac
