#include "service/runs/run_context.h"

#include <gtest/gtest.h>

#include "core/plan_json.h"

namespace evac {
namespace {

using nlohmann::json;

RunContext sample() {
  RunContext ctx;
  ctx.operation = "failover";
  ctx.site = "site-b";
  ctx.plan.name = "shop-dr";
  ctx.plan.groups = {"shop", "billing"};
  RunGroup shop;
  shop.name = "shop";
  shop.protected_site = "site-a";
  shop.pit = "pit-00000007-1796643721";
  shop.pit_created_at = 1796643721;
  shop.pit_created_at_ms = 1796643721123;
  shop.protected_last_seen_ms = 1796643800000;
  shop.epoch = 4;
  shop.test_networks = {{"recovery-prod", "test-isolated"}};
  shop.source_networks = {{"recovery-prod", "prod"}};
  shop.source_pools = {{"replicas", "images"}};
  shop.settings = {{"rpo_seconds", 900}, {"keep_pits", 24}};
  shop.vms = {"web01", "db01"};  // the group's order, not the alphabet's
  RunGroup billing;
  billing.name = "billing";
  billing.protected_site = "site-a";
  billing.epoch = 2;
  billing.vms = {"pay01"};
  ctx.groups = {shop, billing};
  ctx.vms["web01"] = RunVm{"web01", "shop", "u-web01", "kvm-a", "p-web01", "kvm-b"};
  ctx.vms["db01"] = RunVm{"db01", "shop", "u-db01", "kvm-a", "p-db01", "kvm-b"};
  ctx.vms["pay01"] = RunVm{"pay01", "billing", "u-pay01", "kvm-a", "", ""};
  return ctx;
}

TEST(RunContextTest, WhatARunStoresReadsBackTheSame) {
  const RunContext ctx = sample();
  auto back = run_context_from_row("run-1", ctx.operation, ctx.site, plan_to_json(ctx.plan).dump(),
                                   run_groups_json(ctx).dump());
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  ASSERT_EQ(back->groups.size(), 2u);
  EXPECT_EQ(back->groups[0].name, "shop") << "groups keep the plan's order";
  EXPECT_EQ(back->groups[1].name, "billing");
  const RunGroup& shop = back->groups[0];
  EXPECT_EQ(shop.pit, "pit-00000007-1796643721");
  EXPECT_EQ(shop.pit_created_at_ms, 1796643721123);
  EXPECT_EQ(shop.protected_last_seen_ms, 1796643800000);
  EXPECT_EQ(shop.epoch, 4);
  EXPECT_EQ(shop.test_networks.at("recovery-prod"), "test-isolated");
  EXPECT_EQ(shop.source_networks.at("recovery-prod"), "prod");
  EXPECT_EQ(shop.source_pools.at("replicas"), "images");
  EXPECT_EQ(shop.settings["keep_pits"], 24);
  EXPECT_EQ(shop.vms, (std::vector<std::string>{"web01", "db01"}));
  EXPECT_FALSE(back->groups[1].pit_created_at.has_value());
  auto db = back->vm("db01");
  ASSERT_TRUE(db.is_ok());
  EXPECT_EQ((*db)->group, "shop");
  EXPECT_EQ((*db)->placeholder_uuid, "p-db01");
  EXPECT_EQ((*db)->source_provider, "kvm-a");
  EXPECT_EQ(back->plan.name, "shop-dr");
  EXPECT_EQ(back->operation, "failover");
}

// Runs started by an evac that did not yet write source_pools, settings or
// a VM's source_provider resume after the upgrade.
TEST(RunContextTest, ARunStoredWithoutLaterFieldsResumes) {
  RunContext ctx = sample();
  json groups = json::array({{{"name", "shop"},
                              {"protected_site", "site-a"},
                              {"networks", {{"recovery-prod", "test-isolated"}}},
                              {"pit", ""},
                              {"epoch", 3},
                              {"vms", json::array({{{"name", "web01"},
                                                    {"source_uuid", "u-web01"},
                                                    {"placeholder_uuid", "p-web01"},
                                                    {"provider", "kvm-b"}}})}}});
  auto back = run_context_from_row("run-1", "test", "site-b", plan_to_json(ctx.plan).dump(), groups.dump());
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_TRUE(back->groups[0].source_pools.empty());
  EXPECT_TRUE(back->groups[0].settings.empty());
  EXPECT_EQ(back->vms.at("web01").source_provider, "");
}

TEST(RunContextTest, ADamagedContextIsRefusedNamingTheRun) {
  const RunContext ctx = sample();
  const std::string plan = plan_to_json(ctx.plan).dump();
  for (const std::string& groups :
       {std::string("not json"), std::string(R"({"name":"shop"})"), std::string(R"([{"name":"shop","epoch":"four"}])"),
        std::string(R"([{"name":"shop","networks":["a"]}])"), std::string(R"([{"name":"shop","vms":[{"name":7}]}])"),
        std::string(R"([{"name":"shop","surprise":1}])"), std::string(R"([{"protected_site":"site-a"}])")}) {
    auto back = run_context_from_row("run-42", "test", "site-b", plan, groups);
    ASSERT_FALSE(back.is_ok()) << groups;
    EXPECT_NE(back.status().message().find("run-42"), std::string::npos) << back.status().message();
    // A listing, a report or a conflict check reads the groups alone, as strictly.
    auto only = run_groups_from_row("run-42", groups);
    ASSERT_FALSE(only.is_ok()) << groups;
    EXPECT_NE(only.status().message().find("run-42"), std::string::npos) << only.status().message();
  }
}

TEST(RunContextTest, TheGroupsAloneReadBackInThePlansOrder) {
  const RunContext ctx = sample();
  auto groups = run_groups_from_row("run-42", run_groups_json(ctx).dump());
  ASSERT_TRUE(groups.is_ok()) << groups.status().to_string();
  ASSERT_EQ(groups->size(), 2u);
  EXPECT_EQ((*groups)[0].name, "shop");
  EXPECT_EQ((*groups)[0].protected_last_seen_ms, 1796643800000);
  EXPECT_EQ((*groups)[0].vms, (std::vector<std::string>{"web01", "db01"}));
  EXPECT_EQ((*groups)[1].name, "billing");
}

TEST(RunContextTest, AStepNamingWhatTheRunLacksIsAnInternalError) {
  const RunContext ctx = sample();
  EXPECT_EQ(ctx.vm("nope").status().code(), StatusCode::kInternal);
  EXPECT_EQ(ctx.group("nope").status().code(), StatusCode::kInternal);
  ASSERT_TRUE(ctx.group("billing").is_ok());
  EXPECT_EQ((*ctx.group("billing"))->epoch, 2);
}

}  // namespace
}  // namespace evac
