#include "core/status.h"

#include <array>

namespace evac {
namespace {
struct CodeName {
  StatusCode code;
  std::string_view name;
};
constexpr std::array<CodeName, 10> kNames = {{
    {StatusCode::kOk, "ok"},
    {StatusCode::kInvalidArgument, "invalid_argument"},
    {StatusCode::kNotFound, "not_found"},
    {StatusCode::kAlreadyExists, "already_exists"},
    {StatusCode::kFailedPrecondition, "failed_precondition"},
    {StatusCode::kUnauthenticated, "unauthenticated"},
    {StatusCode::kPermissionDenied, "permission_denied"},
    {StatusCode::kUnavailable, "unavailable"},
    {StatusCode::kUnsupported, "unsupported"},
    {StatusCode::kInternal, "internal"},
}};
}  // namespace

std::string_view status_code_name(StatusCode code) {
  for (const auto& n : kNames)
    if (n.code == code) return n.name;
  return "internal";
}

std::optional<StatusCode> status_code_from_name(std::string_view name) {
  for (const auto& n : kNames)
    if (n.name == name) return n.code;
  return std::nullopt;
}

Status Status::with_context(std::string_view context) const {
  if (is_ok()) return *this;
  return Status(code_, std::string(context) + ": " + message_, hint_);
}

Status Status::with_hint(std::string hint) const {
  if (is_ok()) return *this;
  return Status(code_, message_, std::move(hint));
}

std::string Status::to_string() const {
  std::string s(status_code_name(code_));
  if (!message_.empty()) s += ": " + message_;
  if (!hint_.empty()) s += " (hint: " + hint_ + ")";
  return s;
}

}  // namespace evac
