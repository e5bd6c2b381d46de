#include "core/status.h"

#include <gtest/gtest.h>

#include <memory>

namespace evac {
namespace {

Result<int> parse_positive(int v) {
  if (v <= 0) return invalid_argument("value must be positive", "pass a number above zero");
  return v;
}

// Two assignments on one line would clash if the macro's temporary were not
// unique per line; one per line is what the macro promises.
Result<int> sum_of_positives(int a, int b) {
  EVAC_ASSIGN_OR_RETURN(int x, parse_positive(a));
  EVAC_ASSIGN_OR_RETURN(auto y, parse_positive(b));
  return x + y;
}

Result<std::unique_ptr<int>> boxed(int v) {
  if (v < 0) return not_found("no box for a negative value");
  return std::make_unique<int>(v);
}

Status unbox_into(int v, int& out) {
  std::unique_ptr<int> box;
  EVAC_ASSIGN_OR_RETURN(box, boxed(v));  // assigns an existing variable, move-only
  out = *box;
  return Status::ok();
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

TEST(ResultTest, AssignOrReturnPassesValuesAndStopsAtTheFirstError) {
  auto sum = sum_of_positives(2, 3);
  ASSERT_TRUE(sum.is_ok());
  EXPECT_EQ(*sum, 5);
  auto bad = sum_of_positives(2, -3);
  ASSERT_FALSE(bad.is_ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status().hint(), "pass a number above zero");
  int out = 0;
  EXPECT_TRUE(unbox_into(7, out).is_ok());
  EXPECT_EQ(out, 7);
  auto missing = unbox_into(-1, out);
  EXPECT_EQ(missing.code(), StatusCode::kNotFound);
  EXPECT_EQ(out, 7);
}

}  // namespace
}  // namespace evac
