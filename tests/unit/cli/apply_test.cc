// `evac apply` of several documents is all or nothing, against a site
// faked at the API: every document is checked before the first is sent,
// and when the site still refuses one (or stops answering), what was
// applied before it is rolled back, and the report says so precisely.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "cli/apply.h"
#include "core/plan_json.h"

namespace evac::cli {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

// site-b: recovers group shop (db01, web01) from its peer site-a, and
// protects its own group office (mail01).
class FakeSite {
 public:
  std::map<std::string, json> plans;  // as stored: the body sent, without kind
  std::vector<std::string> calls;     // "PUT /api/v1/plans/x", ...
  // Answer a call with an error instead: return a non-ok Status.
  std::function<Status(const std::string& method, const std::string& path)> fault = [](const auto&, const auto&) {
    return Status::ok();
  };
  bool store_despite_fault = false;  // a fault after the change was made (a lost answer)

  Result<json> call(const std::string& method, const std::string& path, const std::optional<json>& body) {
    calls.push_back(method + " " + path);
    Status f = fault(method, path);
    if (!f.is_ok() && !store_despite_fault) return f;
    Result<json> answer = serve(method, path, body);
    if (!f.is_ok()) return f;
    return answer;
  }

  std::vector<std::string> writes() const {
    std::vector<std::string> out;
    for (const auto& c : calls)
      if (c.rfind("GET ", 0) != 0) out.push_back(c);
    return out;
  }

 private:
  Result<json> serve(const std::string& method, const std::string& path, const std::optional<json>& body) {
    if (method == "GET" && path == "/api/v1/site") return json{{"name", "site-b"}};
    if (method == "GET" && path == "/api/v1/groups")
      return json::array({{{"name", "office"}, {"vms", json::array({{{"name", "mail01"}}})}}});
    if (method == "GET" && path == "/api/v1/peer-copies")
      return json::array({{{"site", "site-a"},
                           {"document",
                            {{"groups", json::array({{{"name", "shop"},
                                                      {"vms", json::array({{{"name", "db01"}}, {{"name", "web01"}}})}}})},
                             {"plans", json::array({{{"name", "theirs"}, {"groups", {"shop"}}}})}}}}});
    if (method == "GET" && path == "/api/v1/plans") {
      json out = json::array();
      for (const auto& [name, p] : plans) {
        json j = *normal(p);
        j["created_at"] = 1000;
        j["updated_at"] = 2000;
        j["ready"] = false;
        j["stored_at"] = "site-b";
        out.push_back(j);
      }
      // A paired site's plan: not this site's to replace or roll back.
      out.push_back(json{{"name", "theirs"}, {"groups", {"shop"}}, {"stored_at", "site-a"}});
      return out;
    }
    const std::string prefix = "/api/v1/plans/";
    if (path.rfind(prefix, 0) == 0) {
      const std::string name = path.substr(prefix.size());
      if (method == "PUT") {
        auto p = normal(*body);
        if (!p) return p.status();
        plans[name] = *p;
        return *p;
      }
      if (method == "DELETE") {
        if (!plans.erase(name)) return not_found("no recovery plan named '" + name + "'");
        return json{{"deleted", name}};
      }
    }
    return not_found("no route " + method + " " + path);
  }
  static Result<json> normal(json doc) {
    doc.erase("kind");
    auto p = plan_from_json(doc);
    if (!p) return p.status();
    return plan_to_json(*p);
  }
};

SourceDocument doc(const std::string& source, const std::string& yaml) {
  auto docs = parse_documents(yaml, source);
  EXPECT_TRUE(docs.is_ok()) << docs.status().to_string();
  return {source, docs->at(0)};
}

const std::string kShop = "kind: RecoveryPlan\nname: shop-dr\ngroups: [shop]\nvms:\n  - {vm: db01, priority: 1}\n";
const std::string kShopChanged = "kind: RecoveryPlan\nname: shop-dr\ngroups: [shop]\nvms:\n  - {vm: db01, priority: 2}\n";
const std::string kOffice = "kind: RecoveryPlan\nname: office-dr\ngroups: [office]\n";
const std::string kWeb = "kind: RecoveryPlan\nname: web-dr\ngroups: [shop]\nvms:\n  - {vm: web01, priority: 4}\n";

class CliApplyTest : public ::testing::Test {
 protected:
  ApiCall api() {
    return [this](const std::string& m, const std::string& p, const std::optional<json>& b) { return site_.call(m, p, b); };
  }
  // site-b holds shop-dr (tier 1 db01) and office-dr before each test.
  void SetUp() override {
    ASSERT_TRUE(site_.call("PUT", "/api/v1/plans/shop-dr", doc("x", kShop).doc).is_ok());
    ASSERT_TRUE(site_.call("PUT", "/api/v1/plans/office-dr", doc("x", kOffice).doc).is_ok());
    before_ = site_.plans;
    site_.calls.clear();
  }
  std::string printed(const ApplyReport& r, int* rc = nullptr) {
    std::ostringstream out, err;
    int code = print_apply_report(r, out, err, Format::kTable);
    if (rc) *rc = code;
    return out.str() + err.str();
  }
  FakeSite site_;
  std::map<std::string, json> before_;
};

TEST_F(CliApplyTest, EachDocumentSaysWhetherItWasCreatedReplacedOrUnchanged) {
  std::vector<SourceDocument> docs = {doc("plans.yaml document 1", kWeb), doc("plans.yaml document 2", kShopChanged),
                                      doc("plans.yaml document 3", kOffice)};
  ApplyReport r = apply_documents(docs, api());
  int rc = -1;
  const std::string text = printed(r, &rc);
  EXPECT_EQ(rc, 0) << text;
  EXPECT_TRUE(r.error.is_ok()) << r.error.to_string();
  EXPECT_NE(text.find("recovery plan 'web-dr' created (plans.yaml document 1)"), std::string::npos) << text;
  EXPECT_NE(text.find("recovery plan 'shop-dr' replaced (plans.yaml document 2)"), std::string::npos) << text;
  EXPECT_NE(text.find("recovery plan 'office-dr' unchanged (plans.yaml document 3): the site holds it as written"),
            std::string::npos)
      << text;
  // The unchanged one is not sent again.
  EXPECT_EQ(site_.writes(), (std::vector<std::string>{"PUT /api/v1/plans/web-dr", "PUT /api/v1/plans/shop-dr"}));
  EXPECT_EQ(site_.plans["shop-dr"]["vms"][0]["priority"], 2);
}

TEST_F(CliApplyTest, ADryRunSaysWhatWouldChangeAndChangesNothing) {
  ApplyReport r = apply_documents({doc("a.yaml", kWeb), doc("b.yaml", kShopChanged)}, api(), true);
  const std::string text = printed(r);
  EXPECT_NE(text.find("recovery plan 'web-dr' would be created (a.yaml)"), std::string::npos) << text;
  EXPECT_NE(text.find("recovery plan 'shop-dr' would be replaced (b.yaml)"), std::string::npos) << text;
  EXPECT_NE(text.find("dry run: nothing was changed"), std::string::npos) << text;
  EXPECT_TRUE(site_.writes().empty());
}

TEST_F(CliApplyTest, ADocumentWrongInItselfStopsAllBeforeAnyIsSent) {
  std::vector<SourceDocument> docs = {
      doc("plans.yaml document 1", kWeb),
      doc("plans.yaml document 2", "kind: RecoveryPlan\nname: x-dr\ngroups: [shop]\nvms:\n  - {vm: db01, priorty: 1}\n"),
      doc("plans.yaml document 3", "kind: RecoveryPlan\nname: y-dr\ngroups: [shop]\nvms:\n  - {vm: db01, wait_for_guest: 300}\n"),
      doc("plans.yaml document 4", kOffice + "description: again\n")};
  ApplyReport r = apply_documents(docs, api());
  int rc = -1;
  const std::string text = printed(r, &rc);
  EXPECT_EQ(rc, 1);
  EXPECT_NE(text.find("error: 2 problems, in 2 of 4 documents:\n"), std::string::npos) << text;
  EXPECT_NE(text.find("plans.yaml document 2: the recovery plan is malformed: plan.vms[0]"), std::string::npos) << text;
  EXPECT_NE(text.find("priorty"), std::string::npos) << text;
  EXPECT_NE(text.find("plans.yaml document 3: plan.vms[0].wait_for_guest: 300 has no unit: write 300s or 300m"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("nothing was changed"), std::string::npos) << text;
  EXPECT_TRUE(site_.writes().empty()) << "nothing sent but questions";
  EXPECT_EQ(r.documents[0]["result"], "not applied");
  EXPECT_EQ(r.documents[1]["result"], "refused");
  EXPECT_EQ(r.documents[2]["result"], "refused");

  // What the site would refuse is listed with them, in the documents' order.
  ApplyReport both = apply_documents(
      {doc("a.yaml", "kind: RecoveryPlan\nname: ghost-dr\ngroups: [ghost]\n"), doc("b.yaml", kOffice + "ordring: x\n")},
      api());
  EXPECT_EQ(both.error.message().find("2 problems, in 2 of 2 documents:\n  a.yaml: plan 'ghost-dr' cannot be saved: "
                                      "group 'ghost' is not known at this site\n  b.yaml: the recovery plan is malformed"),
            0u)
      << both.error.message();
  // And if the site cannot be asked, what is wrong in the documents still is.
  site_.fault = [](const std::string& m, const std::string&) {
    return m == "GET" ? unavailable("cannot reach the site") : Status::ok();
  };
  ApplyReport offline = apply_documents({doc("a.yaml", kWeb), doc("b.yaml", kOffice + "ordring: x\n")}, api());
  EXPECT_NE(offline.error.message().find("b.yaml: the recovery plan is malformed"), std::string::npos)
      << offline.error.message();
  EXPECT_NE(printed(offline).find("the other documents could not be checked against the site: "), std::string::npos)
      << printed(offline);
  site_.fault = [](const std::string&, const std::string&) { return Status::ok(); };

  // Two documents for one plan: which one wins would be an accident.
  ApplyReport twice = apply_documents({doc("a.yaml", kShop), doc("b.yaml", kShopChanged)}, api());
  EXPECT_NE(twice.error.message().find("b.yaml: recovery plan 'shop-dr' is also in a.yaml: one document per plan"),
            std::string::npos)
      << twice.error.message();
  EXPECT_TRUE(site_.writes().empty());
}

TEST_F(CliApplyTest, WhatTheSiteWouldRefuseIsFoundBeforeAnyIsSent) {
  std::vector<SourceDocument> docs = {
      doc("a.yaml", kWeb),
      doc("b.yaml", "kind: RecoveryPlan\nname: ghost-dr\ngroups: [ghost]\n"),
      doc("c.yaml", "kind: RecoveryPlan\nname: cyc-dr\ngroups: [shop]\nordering: dependencies\nvms:\n"
                    "  - {vm: db01, depends_on: [web01]}\n  - {vm: web01, depends_on: [db01]}\n")};
  ApplyReport r = apply_documents(docs, api());
  const std::string text = printed(r);
  EXPECT_NE(text.find("b.yaml: plan 'ghost-dr' cannot be saved: group 'ghost' is not known at this site"), std::string::npos)
      << text;
  EXPECT_NE(text.find("c.yaml: "), std::string::npos) << text;
  EXPECT_NE(text.find("dependency cycle: "), std::string::npos) << text;
  EXPECT_NE(text.find("nothing was changed"), std::string::npos) << text;
  EXPECT_TRUE(site_.writes().empty());
  EXPECT_EQ(site_.plans, before_);
}

TEST_F(CliApplyTest, ARefusalAfterChangesRollsThemBackAndSaysSo) {
  // The site refuses what the CLI cannot foresee (a limit of its own).
  site_.fault = [](const std::string& m, const std::string& p) {
    return m == "PUT" && p == "/api/v1/plans/web-dr"
               ? invalid_argument("field 'description' is longer than 4096 bytes",
                                  "shorten it; nothing was changed")
               : Status::ok();
  };
  std::vector<SourceDocument> docs = {doc("p.yaml document 1", kShopChanged),
                                      doc("p.yaml document 2", "kind: RecoveryPlan\nname: new-dr\ngroups: [office]\n"),
                                      doc("p.yaml document 3", kOffice), doc("p.yaml document 4", kWeb)};
  ApplyReport r = apply_documents(docs, api());
  int rc = -1;
  const std::string text = printed(r, &rc);
  EXPECT_EQ(rc, 1);
  EXPECT_NE(text.find("error: p.yaml document 4: recovery plan 'web-dr' was refused: field 'description' is longer"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("hint: shorten it\n"), std::string::npos) << "the site's 'nothing was changed' is not the CLI's: " << text;
  EXPECT_NE(text.find("rolled back: recovery plan 'new-dr' (created by this apply from p.yaml document 2): deleted"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("rolled back: recovery plan 'shop-dr' (replaced by this apply from p.yaml document 1): restored "
                      "to the document it had before"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("every plan is as it was before this apply"), std::string::npos) << text;
  EXPECT_EQ(site_.plans, before_);
  EXPECT_EQ(site_.writes(),
            (std::vector<std::string>{"PUT /api/v1/plans/shop-dr", "PUT /api/v1/plans/new-dr", "PUT /api/v1/plans/web-dr",
                                      "DELETE /api/v1/plans/new-dr", "PUT /api/v1/plans/shop-dr"}));
  std::vector<std::string> results;
  for (const auto& d : r.documents) results.push_back(d["result"]);
  EXPECT_EQ(results, (std::vector<std::string>{"rolled back", "rolled back", "unchanged", "refused"}));
  EXPECT_FALSE(r.changed);
}

TEST_F(CliApplyTest, ALostAnswerIsCheckedAndWhatWasStoredRolledBackToo) {
  site_.store_despite_fault = true;
  site_.fault = [](const std::string& m, const std::string& p) {
    return m == "PUT" && p == "/api/v1/plans/web-dr" ? unavailable("cannot reach https://127.0.0.1:8441: timed out")
                                                      : Status::ok();
  };
  ApplyReport r = apply_documents({doc("a.yaml", kShopChanged), doc("b.yaml", kWeb)}, api());
  const std::string text = printed(r);
  EXPECT_NE(text.find("b.yaml: recovery plan 'web-dr' could not be applied: cannot reach"), std::string::npos) << text;
  EXPECT_NE(text.find("rolled back: recovery plan 'web-dr' (created by this apply from b.yaml): deleted"), std::string::npos)
      << text;
  EXPECT_NE(text.find("rolled back: recovery plan 'shop-dr'"), std::string::npos) << text;
  EXPECT_EQ(site_.plans, before_);
}

TEST_F(CliApplyTest, ARollbackThatFailsSaysWhatIsLeftAndKeepsThePreviousDocument) {
  int shop_puts = 0;
  site_.fault = [&](const std::string& m, const std::string& p) {
    if (m == "PUT" && p == "/api/v1/plans/shop-dr" && ++shop_puts == 2) return unavailable("cannot reach the site");
    if (m == "DELETE") return unavailable("cannot reach the site");
    if (m == "PUT" && p == "/api/v1/plans/office-dr") return invalid_argument("refused for the test");
    return Status::ok();
  };
  ApplyReport r = apply_documents(
      {doc("a.yaml", kShopChanged), doc("b.yaml", kWeb), doc("c.yaml", kOffice + "description: changed\n")}, api());
  int rc = -1;
  const std::string text = printed(r, &rc);
  EXPECT_EQ(rc, 1);
  EXPECT_NE(text.find("NOT rolled back: recovery plan 'web-dr' (created by this apply from b.yaml) could not be deleted: "
                      "cannot reach the site; delete it with `evac plan delete web-dr`"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("NOT rolled back: recovery plan 'shop-dr' (replaced by this apply from a.yaml) could not be "
                      "restored: cannot reach the site"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("the site holds some of these documents and not others"), std::string::npos) << text;
  EXPECT_TRUE(r.changed);
  // The document shop-dr had before, ready to apply again.
  const std::string marker = "the document recovery plan 'shop-dr' had before is in ";
  auto at = text.find(marker);
  ASSERT_NE(at, std::string::npos) << text;
  const std::string file = text.substr(at + marker.size(), text.find(':', at + marker.size()) - at - marker.size());
  std::ifstream in(file);
  std::stringstream saved;
  saved << in.rdbuf();
  auto back = parse_documents(saved.str(), file);
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  ASSERT_EQ(back->size(), 1u);
  EXPECT_EQ((*back)[0]["kind"], "RecoveryPlan");
  EXPECT_EQ((*back)[0]["vms"][0]["priority"], 1);
  EXPECT_EQ((fs::status(file).permissions() & fs::perms::others_read), fs::perms::none);
  fs::remove(file);
}

TEST_F(CliApplyTest, APeersPlanOfTheSameNameIsNotThisSitesToRestore) {
  site_.fault = [](const std::string& m, const std::string& p) {
    return m == "PUT" && p == "/api/v1/plans/office-dr" ? invalid_argument("no") : Status::ok();
  };
  ApplyReport r = apply_documents(
      {doc("a.yaml", "kind: RecoveryPlan\nname: theirs\ngroups: [shop]\n"), doc("b.yaml", kOffice + "description: x\n")},
      api());
  EXPECT_EQ(r.documents[0]["result"], "rolled back");
  EXPECT_NE(printed(r).find("recovery plan 'theirs' (created by this apply from a.yaml): deleted"), std::string::npos)
      << printed(r);
  EXPECT_EQ(site_.plans, before_);
}

TEST(CliApplyKindsTest, KindsAndNamesAreCheckedFirst) {
  std::vector<SourceDocument> docs = {{"a.yaml", json{{"kind", "Pizza"}, {"name", "x"}}},
                                      {"b.yaml", json{{"kind", "RecoveryPlan"}}},
                                      {"c.yaml", json::array({1})},
                                      {"d.yaml", json{{"name", "x"}}}};
  Status s = check_kinds(docs);
  ASSERT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("a.yaml is kind: Pizza, which evac apply does not know"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("b.yaml has no name:"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("c.yaml is not a map"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("d.yaml has no kind:"), std::string::npos) << s.message();
  EXPECT_NE(s.hint().find("evac apply knows kind: RecoveryPlan"), std::string::npos);
}

class CliApplyInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("evac-cli-apply-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "sub");
  }
  void TearDown() override { fs::remove_all(dir_); }
  void write(const std::string& name, const std::string& text) { std::ofstream(dir_ / name) << text; }
  fs::path dir_;
};

TEST_F(CliApplyInputTest, AFolderIsItsDocumentFilesInNameOrder) {
  write("b.yml", "name: b1\n---\nname: b2\n");
  write("a.yaml", "name: a\n");
  write("c.json", "{\"name\": \"c\"}");
  write("notes.txt", "name: not read\n");
  write(".hidden.yaml", "name: not read\n");
  write("sub/d.yaml", "name: not read\n");
  std::istringstream none;
  DocumentBudget budget;
  auto docs = read_apply_input(dir_.string(), none, budget);
  ASSERT_TRUE(docs.is_ok()) << docs.status().to_string();
  std::vector<std::string> sources, names;
  for (const auto& d : *docs) {
    sources.push_back(fs::path(d.source).filename().string());
    names.push_back(d.doc["name"]);
  }
  EXPECT_EQ(names, (std::vector<std::string>{"a", "b1", "b2", "c"}));
  EXPECT_EQ(sources, (std::vector<std::string>{"a.yaml", "b.yml document 1", "b.yml document 2", "c.json"}));

  // All the files count against one limit.
  DocumentBudget small;
  small.limits.max_file_bytes = 20;
  auto over = read_apply_input(dir_.string(), none, small);
  ASSERT_FALSE(over.is_ok());
  EXPECT_NE(over.status().message().find("b.yml is larger than what is left of 20 bytes"), std::string::npos)
      << over.status().message();

  auto empty = read_apply_input((dir_ / "sub" / "nothing").string(), none, budget);
  ASSERT_FALSE(empty.is_ok());
  fs::remove(dir_ / "sub/d.yaml");
  auto no_files = read_apply_input((dir_ / "sub").string(), none, budget);
  ASSERT_FALSE(no_files.is_ok());
  EXPECT_NE(no_files.status().message().find("is a folder with no .yaml, .yml or .json file in it"), std::string::npos)
      << no_files.status().message();

  std::istringstream in("name: from stdin\n");
  DocumentBudget fresh;
  auto piped = read_apply_input("-", in, fresh);
  ASSERT_TRUE(piped.is_ok());
  EXPECT_EQ(piped->at(0).source, "standard input");
}

}  // namespace
}  // namespace evac::cli
