// What every command family shares: the global options, the exit codes, how
// a command reaches its site (flags, then the context) and how it prints.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/cli_config.h"
#include "cli/output.h"
#include "core/status.h"
#include "net/https_client.h"

namespace evac::cli {

inline constexpr int kOk = 0;
inline constexpr int kFailed = 1;
inline constexpr int kUsage = 2;

// A command's own option values live in a struct (GroupCreateOptions, ...)
// that its callback holds by std::make_shared, so CLI11 can write them during
// app.parse and the callback read them after; nothing is static.

// The options every command takes, before or after its subcommand.
struct Globals {
  std::string config_path = default_config_path();
  std::string context;
  std::string url, token, token_file, pin;
  std::string output = "table";
  Format format() const { return output == "json" ? Format::kJson : output == "yaml" ? Format::kYaml : Format::kTable; }
};

// Print "error: ..." and its hint to stderr; return kFailed or kUsage.
int report(const Status& s);
int usage_error(const std::string& message, const std::string& hint);
// A failed connect: a missing context or pin is the command line's fault
// (exit 2), an unreachable site is not (exit 1).
int report_error_or_usage(const Status& s);

// A token or pin file's first line, read within a bound.
Result<std::string> read_first_line(const std::string& path);
// A duration flag's value must carry its unit.
Status check_duration_flag(const std::string& flag, const std::string& value);

// Which site the command talks to: flags first, then the named or current context.
Result<HttpsClient> connect(const Globals& g, std::chrono::milliseconds timeout = std::chrono::hours(1));
// Runs one API call and renders its result; the common body of most commands.
int call_and_print(const Globals& g, const std::string& method, const std::string& path,
                   const std::optional<nlohmann::json>& body, const std::function<void(const nlohmann::json&)>& render);

// Renderers for call_and_print, in the format -o asked for.
std::function<void(const nlohmann::json&)> as_list(const Globals& g, std::vector<Column> columns);
std::function<void(const nlohmann::json&)> as_object(const Globals& g, std::vector<Column> columns = {});
// A table prints the sentence, JSON and YAML the whole answer.
std::function<void(const nlohmann::json&)> as_message(const Globals& g,
                                                      std::function<std::string(const nlohmann::json&)> text);
// A column of Unix seconds as a time; "-" when absent.
Column time_column(std::string header, std::string key);

}  // namespace evac::cli
