// Hand-written YAML means what an operator expects, and what is no YAML is
// refused saying where. What the CLI reads from files is read within
// limits: a small file of aliases ("billion laughs"), deep nesting or a
// huge file is refused quickly with an error naming the limit, never a
// bad_alloc or a crash.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "cli/documents.h"
#include "hostile_documents.h"

namespace evac::cli {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

TEST(CliDocumentsTest, AnAliasBombIsRefusedQuicklyNamingTheLimit) {
  const std::string bomb = alias_bomb();
  ASSERT_LT(bomb.size(), 1000u);
  const auto start = std::chrono::steady_clock::now();
  auto docs = parse_documents(bomb, "bomb.yaml");
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(docs.is_ok());
  EXPECT_LT(took, std::chrono::seconds(2)) << "refused before expanding";
  EXPECT_EQ(docs.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(docs.status().message().find("bomb.yaml"), std::string::npos) << docs.status().message();
  EXPECT_NE(docs.status().message().find("more than 100000 values once its aliases (*name) are expanded"), std::string::npos)
      << docs.status().message();
  EXPECT_NE(docs.status().hint().find("write out once what aliases repeat"), std::string::npos) << docs.status().hint();
}

TEST(CliDocumentsTest, AliasesWithinTheLimitsMeanTheValueTheyName) {
  auto docs = parse_documents(
      "defaults: &d {priority: 2, wait_for_guest: 5m}\n"
      "vms:\n  - &first {vm: db01}\n  - *first\nother: *d\nkeys: {&k name: x}\nagain: {*k : y}\n",
      "plan.yaml");
  ASSERT_TRUE(docs.is_ok()) << docs.status().to_string();
  const json& d = (*docs)[0];
  EXPECT_EQ(d["other"], (json{{"priority", 2}, {"wait_for_guest", "5m"}}));
  EXPECT_EQ(d["vms"][1], (json{{"vm", "db01"}}));
  EXPECT_EQ(d["again"], (json{{"name", "y"}})) << "an alias of a scalar may be a key";
}

TEST(CliDocumentsTest, TheValueBudgetCountsAliasCopies) {
  DocumentLimits small;
  small.max_nodes = 50;
  // 11 values in the anchored list; its copy kept for aliases and each
  // alias cost as much again.
  const std::string list = "a: &a [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n";
  EXPECT_TRUE(parse_documents(list + "b: *a\n", "f", small).is_ok());
  auto over = parse_documents(list + "b: *a\nc: *a\nd: *a\n", "f", small);
  ASSERT_FALSE(over.is_ok());
  EXPECT_NE(over.status().message().find("more than 50 values"), std::string::npos) << over.status().message();
}

TEST(CliDocumentsTest, TextRepeatedByAliasesIsBounded) {
  DocumentLimits small;
  small.max_text_bytes = 10000;
  const std::string text = "big: &b " + std::string(3000, 'x') + "\nlist: [*b, *b, *b, *b]\n";
  auto docs = parse_documents(text, "long.yaml", small);
  ASSERT_FALSE(docs.is_ok());
  EXPECT_NE(docs.status().message().find("more than 10000 bytes of text once its aliases (*name) are expanded"),
            std::string::npos)
      << docs.status().message();
}

TEST(CliDocumentsTest, NestingDeeperThanTheLimitIsRefused) {
  // The document's map is level 1: 63 lists inside it are 64 levels.
  EXPECT_TRUE(parse_documents("d: " + nested(63) + "\n", "ok.yaml").is_ok());
  auto deep = parse_documents("d: " + nested(64) + "\n", "deep.yaml");
  ASSERT_FALSE(deep.is_ok());
  EXPECT_NE(deep.status().message().find("deep.yaml.d[0][0]"), std::string::npos) << deep.status().message();
  EXPECT_NE(deep.status().message().find("nested more than 64 deep"), std::string::npos) << deep.status().message();
  EXPECT_LT(deep.status().message().size(), 300u) << "the path is cut, not printed 64 levels long";

  // Far deeper than the parser's own guard, as JSON: refused, not a crash.
  const auto start = std::chrono::steady_clock::now();
  auto very = parse_documents("{\"d\": " + nested(200000) + "}", "deep.json");
  ASSERT_FALSE(very.is_ok());
  EXPECT_NE(very.status().message().find("nested more than 64 deep"), std::string::npos) << very.status().message();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));

  // Built by an alias: the value it names counts at the depth it is used.
  auto aliased = parse_documents("a: &a " + nested(40) + "\nb: [[[[[[[[[[[[[[[[[[[[[[[[[[*a]]]]]]]]]]]]]]]]]]]]]]]]]]\n",
                                 "alias.yaml");
  ASSERT_FALSE(aliased.is_ok());
  EXPECT_NE(aliased.status().message().find("nested more than 64 deep once its aliases (*name) are expanded"),
            std::string::npos)
      << aliased.status().message();
}

TEST(CliDocumentsTest, AnAliasInsideTheValueItNamesIsRefused) {
  auto docs = parse_documents("a: &a [1, *a]\n", "loop.yaml");
  ASSERT_FALSE(docs.is_ok());
  EXPECT_NE(docs.status().message().find("inside the value it names"), std::string::npos) << docs.status().message();
  auto undefined = parse_documents("a: *nothing\n", "undefined.yaml");
  ASSERT_FALSE(undefined.is_ok());
  EXPECT_NE(undefined.status().message().find("undefined.yaml"), std::string::npos) << undefined.status().message();
}

TEST(CliDocumentsTest, KeysMustBeWordsAndTheLimitsSpanDocuments) {
  auto complex = parse_documents("? [a, b]\n: 1\n", "keys.yaml");
  ASSERT_FALSE(complex.is_ok());
  EXPECT_NE(complex.status().message().find("a key that is not a plain word"), std::string::npos);

  // One budget across documents (and files): many small texts add up.
  DocumentBudget budget;
  budget.limits.max_nodes = 30;
  EXPECT_TRUE(parse_documents("a: [1, 2, 3, 4, 5]\n", "one.yaml", budget).is_ok());
  EXPECT_TRUE(parse_documents("a: [1, 2, 3, 4, 5]\n", "two.yaml", budget).is_ok());
  auto third = parse_documents("a: [1, 2, 3, 4, 5]\n---\na: [1, 2, 3, 4, 5]\n", "three.yaml", budget);
  ASSERT_FALSE(third.is_ok());
  EXPECT_NE(third.status().message().find("three.yaml document 2"), std::string::npos) << third.status().message();
  EXPECT_NE(third.status().message().find("counting the files read before it"), std::string::npos)
      << third.status().message();
}

TEST_F(CliDocumentsFileTest, FilesLargerThanTheLimitAreRefusedBeforeBeingRead) {
  DocumentBudget budget;
  budget.limits.max_file_bytes = 1000;
  const fs::path big = write("big.yaml", std::string(1001, '#'));
  auto text = read_file_limited(big.string(), budget);
  ASSERT_FALSE(text.is_ok());
  EXPECT_NE(text.status().message().find("big.yaml is larger than 1000 bytes"), std::string::npos)
      << text.status().message();
  EXPECT_EQ(budget.bytes_read, 0u);

  // A stream says no size: it is cut at the limit.
  std::istringstream in(std::string(1001, '#'));
  EXPECT_FALSE(read_limited(in, "standard input", budget).is_ok());

  // What was read counts against what is left.
  const fs::path small = write("small.yaml", std::string(600, '#'));
  ASSERT_TRUE(read_file_limited(small.string(), budget).is_ok());
  auto second = read_file_limited(small.string(), budget);
  ASSERT_FALSE(second.is_ok());
  EXPECT_NE(second.status().message().find("what is left of 1000 bytes"), std::string::npos)
      << second.status().message();

  auto folder = read_file_limited(dir_.string(), budget);
  ASSERT_FALSE(folder.is_ok());
  EXPECT_NE(folder.status().message().find("is a folder"), std::string::npos);
}

TEST(CliYamlTest, HandWrittenYamlMeansWhatItSays) {
  auto docs = parse_documents(R"(
kind: RecoveryPlan
name: shop-dr
vms:
  - vm: db01
    priority: 1
    wait_for_guest: false
    checks:
      - tcp: {port: 5432}
    note: "5432"
---
# a second document
kind: RecoveryPlan
name: other
)", "plan.yaml");
  ASSERT_TRUE(docs.is_ok()) << docs.status().to_string();
  ASSERT_EQ(docs->size(), 2u);
  const json& plan = (*docs)[0];
  EXPECT_EQ(plan["vms"][0]["priority"], 1);
  EXPECT_EQ(plan["vms"][0]["wait_for_guest"], false);
  EXPECT_EQ(plan["vms"][0]["checks"][0]["tcp"]["port"], 5432);
  EXPECT_EQ(plan["vms"][0]["note"], "5432") << "quoted stays a string";
  EXPECT_EQ((*docs)[1]["name"], "other");
}

TEST(CliYamlTest, BrokenYamlAndDuplicateKeysAreRefusedWithWhere) {
  auto bad = parse_documents("name: [unclosed\n", "plan.yaml");
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("plan.yaml is not valid YAML or JSON: line "), std::string::npos)
      << bad.status().to_string();

  auto dup = parse_documents("name: a\nvms:\n  - vm: x\n    priority: 1\n    priority: 2\n", "plan.yaml");
  ASSERT_FALSE(dup.is_ok());
  EXPECT_NE(dup.status().message().find("plan.yaml.vms[0]: key 'priority' appears twice"), std::string::npos)
      << dup.status().to_string();
}

}  // namespace
}  // namespace evac::cli
