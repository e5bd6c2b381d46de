#include "core/status.h"

#include <gtest/gtest.h>

namespace evac {
namespace {

Result<int> parse_positive(int v) {
  if (v <= 0) return invalid_argument("value must be positive", "pass a number above zero");
  return v;
}

Status twice(int v) {
  EVAC_RETURN_IF_ERROR(parse_positive(v));
  return Status::ok();
}

TEST(StatusTest, OkByDefault) {
  Status s;
  EXPECT_TRUE(s.is_ok());
  EXPECT_EQ(s.to_string(), "ok");
}

TEST(StatusTest, ContextKeepsCodeAndHint) {
  Status s = not_found("VM web01 does not exist", "check `evac inventory vms`").with_context("creating group g1");
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "creating group g1: VM web01 does not exist");
  EXPECT_EQ(s.hint(), "check `evac inventory vms`");
}

TEST(StatusTest, CodeNamesRoundTrip) {
  for (auto c : {StatusCode::kOk, StatusCode::kInvalidArgument, StatusCode::kNotFound, StatusCode::kAlreadyExists,
                 StatusCode::kFailedPrecondition, StatusCode::kUnauthenticated, StatusCode::kPermissionDenied,
                 StatusCode::kUnavailable, StatusCode::kUnsupported, StatusCode::kInternal}) {
    EXPECT_EQ(status_code_from_name(status_code_name(c)), c);
  }
  EXPECT_FALSE(status_code_from_name("bogus").has_value());
}

TEST(ResultTest, ValueOrError) {
  auto ok = parse_positive(3);
  ASSERT_TRUE(ok.is_ok());
  EXPECT_EQ(*ok, 3);
  auto bad = parse_positive(-1);
  ASSERT_FALSE(bad.is_ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(twice(-2).is_ok());
  EXPECT_TRUE(twice(2).is_ok());
}

}  // namespace
}  // namespace evac
