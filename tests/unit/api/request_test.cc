// What the routes read from a request's path and query: whole numbers as
// digits within the route's range.
#include "api/request.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>

namespace evac::testing {
namespace {

// Whole numbers in paths and queries: digits only, within the route's
// range, and an error that names the value and the range.
TEST(RequestHelpers, BoundedIntegersAreDigitsWithinTheRange) {
  EXPECT_EQ(*bounded_integer("42", 1, 1000, "limit"), 42);
  EXPECT_EQ(*bounded_integer("-3", -5, 5, "offset"), -3);
  EXPECT_EQ(*bounded_integer("9223372036854775807", 0, std::numeric_limits<std::int64_t>::max(), "cycle"),
            std::numeric_limits<std::int64_t>::max());
  for (const char* bad : {"", "abc", "1x", " 5", "+5", "5 ", "1.0", "0", "1001", "99999999999999999999"}) {
    auto r = bounded_integer(bad, 1, 1000, "limit");
    ASSERT_FALSE(r.is_ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(r.status().message(), "limit '" + std::string(bad) + "' must be a number from 1 to 1000");
  }
  auto unbounded = bounded_integer("0", 1, std::numeric_limits<std::int64_t>::max(), "mapping id", "see the ids");
  EXPECT_EQ(unbounded.status().message(), "mapping id '0' must be a number of 1 or more");
  EXPECT_EQ(unbounded.status().hint(), "see the ids");
}

}  // namespace
// A flag is true or false: a mistyped value is refused, never read as false
// (a plain unpair instead of a lost site's).
TEST(RequestHelpers, FlagsAreTrueOrFalseAndNothingElse) {
  ApiRequest r;
  EXPECT_EQ(*flag_param(r, "lost"), false) << "absent";
  for (const auto& [text, value] : {std::pair{"true", true}, std::pair{"false", false}, std::pair{"", false}}) {
    r.query["lost"] = text;
    auto flag = flag_param(r, "lost");
    ASSERT_TRUE(flag.is_ok()) << text;
    EXPECT_EQ(*flag, value) << text;
  }
  for (const char* text : {"TRUE", "1", "yes", "true ", "tru"}) {
    r.query["lost"] = text;
    auto flag = flag_param(r, "lost");
    ASSERT_FALSE(flag.is_ok()) << text;
    EXPECT_EQ(flag.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(flag.status().message().find("lost must be true or false"), std::string::npos) << flag.status().message();
  }
}

}  // namespace evac::testing
