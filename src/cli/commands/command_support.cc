// What every command family shares: reporting errors, reaching the site,
// running one call and rendering its answer.
#include "cli/commands/command_support.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <iostream>

#include "core/duration.h"

namespace evac::cli {
using nlohmann::json;

int report(const Status& s) {
  std::cerr << "error: " << s.message() << "\n";
  if (!s.hint().empty()) std::cerr << "hint: " << s.hint() << "\n";
  return kFailed;
}

int usage_error(const std::string& message, const std::string& hint) {
  std::cerr << "error: " << message << "\n";
  if (!hint.empty()) std::cerr << "hint: " << hint << "\n";
  return kUsage;
}

// A token or pin file's first line. Read within a bound: a wrong path (a
// device, a huge file without newlines) must not take the memory.
Result<std::string> read_first_line(const std::string& path) {
  constexpr std::size_t kMaxLine = 64 * 1024;
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return invalid_argument("cannot read " + path, "check the path and that you may read it (tokens are mode 0600)");
  std::string line;
  char c;
  while (line.size() <= kMaxLine && in.get(c) && c != '\n') line += c;
  if (line.size() > kMaxLine)
    return invalid_argument(path + " does not start with a line of at most 64 KiB",
                            "name the file that holds the token or the pin (a single line)");
  if (line.empty() && !in) return invalid_argument("cannot read " + path, "check the path and that it is not empty");
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
  return line;
}

// A duration given on the command line, with its unit: a bare "15" could
// mean seconds or minutes, and the site refuses it too.
Status check_duration_flag(const std::string& flag, const std::string& value) {
  const bool bare = !value.empty() && std::all_of(value.begin(), value.end(), [](unsigned char c) { return std::isdigit(c); });
  if (bare)
    return invalid_argument(flag + " " + value + " has no unit: write " + value + "s or " + value + "m",
                            "durations take a unit: s, m, h or d, as in 90s, 15m, 1h30m or 2d");
  auto d = parse_duration(value);
  if (!d) return invalid_argument(flag + ": " + d.status().message(), d.status().hint());
  return Status::ok();
}

Result<HttpsClient> connect(const Globals& g, std::chrono::milliseconds timeout) {
  Context ctx;
  auto cfg = load_cli_config(g.config_path);
  if (!cfg) return cfg.status();
  std::string name = g.context.empty() ? cfg->current : g.context;
  if (!name.empty()) {
    auto it = cfg->contexts.find(name);
    if (it == cfg->contexts.end())
      return invalid_argument("no context named '" + name + "' in " + g.config_path, "list them with `evac context list`");
    ctx = it->second;
  }
  if (!g.url.empty()) ctx.url = g.url;
  if (!g.token.empty()) ctx.token = g.token;
  if (!g.token_file.empty()) {
    auto t = read_first_line(g.token_file);
    if (!t) return t.status();
    ctx.token = *t;
  }
  if (!g.pin.empty()) ctx.pin = g.pin;
  if (ctx.url.empty())
    return invalid_argument("no site to talk to",
                            "add one with `evac context add NAME --url https://HOST:PORT --token-file FILE --pin-file FILE`, "
                            "or pass --url, --token and --pin");
  if (ctx.pin.empty())
    return invalid_argument("no key pin for " + ctx.url,
                            "evac only talks to a site it can recognise: pass --pin (the site's state_dir/pin file holds it)");
  HttpsClientOptions options;
  options.base_url = ctx.url;
  options.server_pin = ctx.pin;
  options.bearer_token = ctx.token;
  // A dead site is caught by the connect timeout; this bounds a call that
  // connected (a sync waits for its cycle, which may take long).
  options.timeout = timeout;
  return HttpsClient(options);
}

int report_error_or_usage(const Status& s) {
  return s.code() == StatusCode::kInvalidArgument ? usage_error(s.message(), s.hint()) : report(s);
}

int call_and_print(const Globals& g, const std::string& method, const std::string& path,
                   const std::optional<json>& body, const std::function<void(const json&)>& render) {
  auto client = connect(g);
  if (!client) return report_error_or_usage(client.status());
  auto result = client->call(method, path, body);
  if (!result) return report(result.status());
  render(*result);
  return kOk;
}

std::function<void(const json&)> as_list(const Globals& g, std::vector<Column> columns) {
  return [&g, columns](const json& j) { print_list(std::cout, j, g.format(), columns); };
}
std::function<void(const json&)> as_object(const Globals& g, std::vector<Column> columns) {
  return [&g, columns](const json& j) { print_object(std::cout, j, g.format(), columns); };
}
std::function<void(const json&)> as_message(const Globals& g, std::function<std::string(const json&)> text) {
  return [&g, text](const json& j) {
    if (g.format() == Format::kTable)
      std::cout << text(j) << "\n";
    else
      print_object(std::cout, j, g.format());
  };
}

Column time_column(std::string header, std::string key) {
  return Column{std::move(header), [key](const json& j) {
                  return j.contains(key) && j[key].is_number() ? format_time(j[key].get<std::int64_t>()) : std::string("-");
                }};
}

}  // namespace evac::cli
