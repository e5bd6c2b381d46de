#include "core/json_decode.h"

#include <gtest/gtest.h>

#include "core/duration.h"

namespace evac {
namespace {

using nlohmann::json;

TEST(ParseJson, RefusesNestingDeeperThanTheLimitWithoutBuildingIt) {
  // Deep enough to overflow the stack of anything that copies it recursively.
  std::string deep(200'000, '[');
  deep += std::string(200'000, ']');
  auto r = parse_json(deep, "the request body");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("deeper than 64 levels"), std::string::npos) << r.status().message();
  EXPECT_TRUE(parse_json_or_discarded(deep).is_discarded());
  // Objects count the same as arrays.
  std::string objects;
  for (int i = 0; i < 65; ++i) objects += "{\"a\":";
  objects += "1" + std::string(65, '}');
  EXPECT_FALSE(parse_json(objects, "x"));
}

TEST(ParseJson, CountsOnlyStructureNotBracketsInStrings) {
  std::string text = R"({"note": ")" + std::string(1000, '[') + R"(\"{{{", "list": [[1]]})";
  EXPECT_EQ(json_nesting_depth(text, 64), 3u);
  auto r = parse_json(text, "x");
  ASSERT_TRUE(r) << r.status().to_string();
  EXPECT_EQ((*r)["list"][0][0], 1);
  std::string at_limit = std::string(64, '[') + std::string(64, ']');
  EXPECT_TRUE(parse_json(at_limit, "x"));
  EXPECT_FALSE(parse_json(at_limit + "[", "x"));  // not JSON, refused all the same
}

TEST(ParseJson, RefusesWhatIsNotJson) {
  EXPECT_FALSE(parse_json("{not json", "x"));
  EXPECT_FALSE(parse_json("", "x"));
  EXPECT_TRUE(parse_json_or_discarded("{]").is_discarded());
}

TEST(CheckedInteger, RefusesWhatDoesNotFitInsteadOfNarrowing) {
  // 2^32 + 5 would be 5 as an int.
  auto big = checked_integer(json(4294967301ULL), "keep_pits", 0, 1000);
  ASSERT_FALSE(big);
  EXPECT_NE(big.status().message().find("4294967301"), std::string::npos);
  EXPECT_NE(big.status().hint().find("from 0 to 1000"), std::string::npos);
  EXPECT_FALSE(checked_integer(json(18446744073709551615ULL), "n", 0, INT64_MAX));
  EXPECT_FALSE(checked_integer(json(-1), "n", 0, 10));
  EXPECT_FALSE(checked_integer(json(2.5), "n", 0, 10));
  EXPECT_FALSE(checked_integer(json("3"), "n", 0, 10));
  EXPECT_EQ(*checked_integer(json(10), "n", 0, 10), 10);
  EXPECT_EQ(*checked_integer(json(-7), "n", -10, 10), -7);
}

TEST(JsonFields, RefusesUnknownKeysAndNamesTheKnownOnes) {
  json body = {{"name", "g"}, {"rop", "5m"}};
  auto f = JsonFields::of(body, "a protection group");
  ASSERT_TRUE(f);
  EXPECT_EQ(*f->required_text("name"), "g");
  EXPECT_FALSE(f->duration("rpo", std::chrono::seconds(1), std::chrono::hours(1))->has_value());
  Status s = f->finish();
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("unknown field 'rop' in a protection group"), std::string::npos) << s.message();
  EXPECT_NE(s.hint().find("name, rpo"), std::string::npos) << s.hint();
  json exact = {{"name", "g"}};
  auto g = JsonFields::of(exact, "a group");
  ASSERT_TRUE(g->required_text("name"));
  EXPECT_TRUE(g->finish());
  EXPECT_FALSE(JsonFields::of(json::array(), "a group"));
}

TEST(JsonFields, ChecksTypesLengthsAndRanges) {
  json body = {{"text", std::string(5000, 'x')},
               {"number", 1u << 31},
               {"flag", "yes"},
               {"list", {"a", 1}},
               {"long_list", json::array()},
               {"empty", ""}};
  for (int i = 0; i < 11; ++i) body["long_list"].push_back("v");
  auto f = JsonFields::of(body, "a request");
  EXPECT_FALSE(f->text("text"));
  EXPECT_TRUE(f->text("text", 5000));
  EXPECT_FALSE(f->integer_as<int>("number", 0, INT32_MAX));
  EXPECT_EQ(**f->integer("number", 0, INT64_MAX), std::int64_t{1} << 31);
  EXPECT_FALSE(f->boolean("flag"));
  EXPECT_FALSE(f->text_list("list"));
  EXPECT_FALSE(f->text_list("long_list", 10));
  EXPECT_EQ((*f->text_list("long_list", 11))->size(), 11u);
  EXPECT_FALSE(f->required_text("empty"));
  EXPECT_FALSE(f->required_text("absent"));
  EXPECT_FALSE(f->text("absent")->has_value());
}

// Lists of objects (each read by its own JsonFields) are bounded like
// lists of text; a field that must be there is named when it is not.
TEST(JsonFields, ListsAreBoundedAndRequiredFieldsNamed) {
  json body = {{"disks", json::array({{{"key", "a"}}, {{"key", "b"}}})}, {"scalar", 3}, {"nothing", nullptr}};
  auto f = JsonFields::of(body, "a commit");
  auto disks = f->list("disks");
  ASSERT_TRUE(disks) << disks.status().to_string();
  ASSERT_NE(*disks, nullptr);
  EXPECT_EQ((*disks)->size(), 2u);
  auto short_list = f->list("disks", 1);
  ASSERT_FALSE(short_list);
  EXPECT_NE(short_list.status().message().find("has 2 items"), std::string::npos) << short_list.status().message();
  EXPECT_FALSE(f->list("scalar"));
  EXPECT_EQ(*f->list("absent"), nullptr);
  EXPECT_EQ(*f->list("nothing"), nullptr);  // null reads as absent, as everywhere

  auto absent = f->required(f->integer("created_at", 0, 10), "created_at");
  ASSERT_FALSE(absent);
  EXPECT_EQ(absent.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(absent.status().message().find("field 'created_at' of a commit is required"), std::string::npos)
      << absent.status().message();
  auto wrong = f->required(f->integer("scalar", 0, 2), "scalar");
  ASSERT_FALSE(wrong);
  EXPECT_NE(wrong.status().message().find("out of range"), std::string::npos) << "the reader's own error comes first";
  EXPECT_EQ(*f->required(f->integer("scalar", 0, 10), "scalar"), 3);
  // Present and empty is present: a reader that refuses empty text says so.
  json empty = {{"path", ""}};
  auto e = JsonFields::of(empty, "a disk");
  EXPECT_EQ(*e->required(e->text("path"), "path"), "");
  EXPECT_TRUE(e->finish());
}

TEST(JsonFields, DurationsNeedTheirUnitAndARange) {
  json body = {{"bare", "15"}, {"number", 15}, {"huge", "99999999d"}, {"ok", "1h30m"}};
  auto f = JsonFields::of(body, "a group");
  auto bare = f->duration("bare", std::chrono::seconds(1), std::chrono::hours(24));
  ASSERT_FALSE(bare);
  EXPECT_NE(bare.status().message().find("has no unit"), std::string::npos) << bare.status().message();
  EXPECT_NE(bare.status().hint().find("15s, 15m"), std::string::npos);
  EXPECT_FALSE(f->duration("number", std::chrono::seconds(1), std::chrono::hours(24)));
  auto huge = f->duration("huge", std::chrono::seconds(1), std::chrono::hours(24 * 30));
  ASSERT_FALSE(huge);
  EXPECT_NE(huge.status().hint().find("from 1s to 30d"), std::string::npos) << huge.status().hint();
  EXPECT_EQ(**f->duration("ok", std::chrono::seconds(1), std::chrono::hours(24)), std::chrono::seconds(5400));
}

TEST(Excerpt, BoundsWhatIsEchoed) {
  EXPECT_EQ(excerpt("short"), "short");
  std::string huge(1'000'000, 'a');
  std::string e = excerpt(huge, 10);
  EXPECT_EQ(e, "aaaaaaaaaa...(1000000 bytes)");
}

}  // namespace
}  // namespace evac
