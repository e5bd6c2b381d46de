// Status and Result<T>: the error values that cross module boundaries.
//
// Exceptions never cross a module boundary in evac; every fallible call
// returns a Status (or a Result<T> holding either a value or a Status). A
// Status carries a machine-readable code, a message that says what went
// wrong, and a hint that tells the operator what to do about it: the REST API
// turns all three into its JSON error body, the CLI prints them.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace evac {

enum class StatusCode {
  kOk,
  kInvalidArgument,     // bad input from the caller: fix the request
  kNotFound,            // a named thing does not exist
  kAlreadyExists,       // a name is taken
  kFailedPrecondition,  // the request is valid but the system is not in a state to do it
  kUnauthenticated,     // missing or wrong credentials
  kPermissionDenied,    // credentials valid but not allowed here
  kUnavailable,         // a dependency (peer, hypervisor) cannot be reached; retrying may help
  kUnsupported,         // the backend cannot do this at all
  kInternal,            // a bug or an unexpected failure of evac itself
};

// Stable, lower-case names used in the REST API's `code` field.
std::string_view status_code_name(StatusCode code);
std::optional<StatusCode> status_code_from_name(std::string_view name);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message, std::string hint = {})
      : code_(code), message_(std::move(message)), hint_(std::move(hint)) {}

  static Status ok() { return {}; }

  bool is_ok() const { return code_ == StatusCode::kOk; }
  explicit operator bool() const { return is_ok(); }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  const std::string& hint() const { return hint_; }

  // Prefixes the message with context ("adding VM web01: ...") while keeping
  // code and hint, so errors read as a path from the operation to the cause.
  Status with_context(std::string_view context) const;
  Status with_hint(std::string hint) const;

  // "not_found: message (hint: ...)", for logs and test failures.
  std::string to_string() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
  std::string hint_;
};

inline Status invalid_argument(std::string m, std::string h = {}) { return {StatusCode::kInvalidArgument, std::move(m), std::move(h)}; }
inline Status not_found(std::string m, std::string h = {}) { return {StatusCode::kNotFound, std::move(m), std::move(h)}; }
inline Status already_exists(std::string m, std::string h = {}) { return {StatusCode::kAlreadyExists, std::move(m), std::move(h)}; }
inline Status failed_precondition(std::string m, std::string h = {}) { return {StatusCode::kFailedPrecondition, std::move(m), std::move(h)}; }
inline Status unauthenticated(std::string m, std::string h = {}) { return {StatusCode::kUnauthenticated, std::move(m), std::move(h)}; }
inline Status permission_denied(std::string m, std::string h = {}) { return {StatusCode::kPermissionDenied, std::move(m), std::move(h)}; }
inline Status unavailable(std::string m, std::string h = {}) { return {StatusCode::kUnavailable, std::move(m), std::move(h)}; }
inline Status unsupported(std::string m, std::string h = {}) { return {StatusCode::kUnsupported, std::move(m), std::move(h)}; }
inline Status internal_error(std::string m, std::string h = {}) { return {StatusCode::kInternal, std::move(m), std::move(h)}; }

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {  // NOLINT: implicit by design
    assert(!std::get<Status>(v_).is_ok() && "a Result holding an error needs a non-ok Status");
  }

  bool is_ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return is_ok(); }

  const Status& status() const {
    static const Status kOk;
    return is_ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace evac

// Early return of a failed Status or Result's Status.
#define EVAC_RETURN_IF_ERROR(expr)              \
  do {                                          \
    if (auto _st = (expr); !_st.is_ok()) {      \
      return ::evac::detail::status_of(_st);    \
    }                                           \
  } while (0)

// Declares (or assigns) `lhs` from a Result's value, or returns its Status:
//   EVAC_ASSIGN_OR_RETURN(auto group, store.get_group(name));
// The Result is moved from, so `lhs` may be a value or a move-only type. The
// macro expands to two statements: do not use it as the body of an
// unbraced if/else.
#define EVAC_ASSIGN_OR_RETURN(lhs, expr) \
  EVAC_ASSIGN_OR_RETURN_IMPL_(EVAC_STATUS_CONCAT_(_evac_result_, __LINE__), lhs, expr)
#define EVAC_ASSIGN_OR_RETURN_IMPL_(result, lhs, expr) \
  auto result = (expr);                                 \
  if (!result.is_ok()) return result.status();          \
  lhs = std::move(result).value()
#define EVAC_STATUS_CONCAT_(a, b) EVAC_STATUS_CONCAT_INNER_(a, b)
#define EVAC_STATUS_CONCAT_INNER_(a, b) a##b

namespace evac::detail {
inline const Status& status_of(const Status& s) { return s; }
template <typename T>
const Status& status_of(const Result<T>& r) { return r.status(); }
}  // namespace evac::detail
