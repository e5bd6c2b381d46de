#include "service/run_report.h"

#include <algorithm>
#include <ctime>
#include <sstream>

#include "core/json_decode.h"
#include "service/runs/run_context.h"

namespace evac {

using nlohmann::json;

namespace {

std::string iso_time_ms(std::int64_t ms) {
  std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char out[48];
  std::snprintf(out, sizeof out, "%s.%03dZ", buf, static_cast<int>(ms % 1000));
  return out;
}

json time_or_null(const std::optional<std::int64_t>& ms) { return ms ? json(iso_time_ms(*ms)) : json(); }

std::string seconds_text(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f s", s);
  return buf;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string text_of(const json& j) {
  if (j.is_null()) return "";
  if (j.is_string()) return j.get<std::string>();
  return j.dump();
}

json run_section(const RunRow& run) {
  return {{"id", run.id},
          {"plan", run.plan},
          {"operation", run.operation},
          {"state", run.state},
          {"started_by", run.started_by},
          {"started_at", iso_time_ms(run.created_at * 1000)},
          {"ended_at", run.ended_at ? json(iso_time_ms(*run.ended_at * 1000)) : json()},
          {"error", run.error}};
}

// The span the achieved RTO measures: from the first step's start to the
// end of the last step that passed and ends the RTO (power-on, heartbeat,
// check).
struct RtoSpan {
  std::optional<std::int64_t> first, last_milestone;
};

RtoSpan rto_span(const std::vector<engine::Step>& steps) {
  RtoSpan span;
  for (const auto& s : steps) {
    if (s.started_at_ms) span.first = span.first ? std::min(*span.first, *s.started_at_ms) : *s.started_at_ms;
    if (s.state == engine::StepState::kSucceeded && engine::step_kind_info(s.spec.kind).ends_rto && s.ended_at_ms)
      span.last_milestone = span.last_milestone ? std::max(*span.last_milestone, *s.ended_at_ms) : *s.ended_at_ms;
  }
  return span;
}

// Only a run that succeeded achieved an RTO.
json rto_section(const RunRow& run, const RtoSpan& span) {
  const bool finished = run.state == "succeeded";
  if (span.first && span.last_milestone && finished) {
    double secs = static_cast<double>(*span.last_milestone - *span.first) / 1000.0;
    return {{"seconds", secs}, {"text", seconds_text(secs)}, {"from", iso_time_ms(*span.first)},
            {"to", iso_time_ms(*span.last_milestone)}};
  }
  return {{"seconds", nullptr}, {"text", finished ? "no VM was powered on" : "not achieved: the run " + run.state}};
}

// The PIT group `g` (an entry of the run's groups) recovered: chosen at the
// start (test, failover) or by the promote step (migrate, failback), with
// the instant it captures.
json recovered_pit(const RunGroup& g, const std::vector<engine::Step>& steps) {
  const std::string& name = g.name;
  auto optional = [](const std::optional<std::int64_t>& v) { return v ? json(*v) : json(); };
  json entry = {{"group", name},
                {"pit", g.pit},
                {"pit_created_at", optional(g.pit_created_at)},
                {"pit_created_at_ms", optional(g.pit_created_at_ms)}};
  for (const auto& s : steps)
    if (s.spec.kind == engine::StepKind::kPromote && s.spec.params.value("group", "") == name && s.result.is_object()) {
      entry["pit"] = s.result.value("pit", entry["pit"].get<std::string>());
      for (const char* key : {"pit_created_at", "pit_created_at_ms"})
        if (s.result.contains(key)) entry[key] = s.result[key];
    }
  return entry;
}

// The recovered instant to the millisecond (runs recorded before it: the
// second), from a recovered_pit entry.
std::optional<std::int64_t> recovered_instant_ms(const json& entry) {
  if (entry["pit_created_at_ms"].is_number_integer()) return entry["pit_created_at_ms"].get<std::int64_t>();
  if (entry["pit_created_at"].is_number_integer()) return entry["pit_created_at"].get<std::int64_t>() * 1000;
  return std::nullopt;
}

// The achieved RPO of one group into its entry: what the operation loses
// at most, measured from the recovered instant.
void set_rpo(json& entry, const RunRow& run, const RunGroup& g, std::optional<std::int64_t> instant_ms,
             std::int64_t start_ms) {
  const std::optional<std::int64_t>& seen = g.protected_last_seen_ms;
  // A failback starts with a planned migration back: the same final sync.
  if (run.operation == "migrate" || run.operation == "failback") {
    entry["seconds"] = 0;
    entry["text"] = "0 s: the final sync ran after the VMs were shut down";
  } else if (run.operation == "failover" && instant_ms && seen) {
    // Every write acknowledged before the instant is recovered; what the
    // protected site took after it, until it was last heard from, is lost.
    const std::int64_t seen_ms = *seen;
    const double window = static_cast<double>(std::max<std::int64_t>(0, seen_ms - *instant_ms)) / 1000.0;
    const std::string site = g.protected_site.empty() ? std::string("the protected site") : g.protected_site;
    char text[96];
    std::snprintf(text, sizeof text, "at most %.3f s of writes", window);
    entry["protected_site_last_seen"] = iso_time_ms(seen_ms);
    entry["protected_site_last_seen_ms"] = seen_ms;
    entry["loss_window_seconds"] = window;
    entry["seconds"] = window;
    entry["text"] = std::string(text) + ": from the recovered instant " + iso_time_ms(*instant_ms) + " to " + site +
                    "'s last contact " + iso_time_ms(seen_ms) +
                    " (writes it took after that, had it run on unseen, are beyond what this site can know)";
  } else if (instant_ms) {
    double age = static_cast<double>(start_ms - *instant_ms) / 1000.0;
    entry["seconds"] = age;
    entry["text"] = seconds_text(age) + " (the PIT's age when the run started)";
  } else {
    entry["seconds"] = nullptr;
    entry["text"] = run.operation == "cleanup" ? "not applicable" : "unknown: no PIT was recovered";
  }
}

// One entry per group of the run: its recovered PIT and achieved RPO.
// A run whose groups cannot be read has one entry saying so.
json rpo_section(const RunRow& run, const std::vector<engine::Step>& steps, std::int64_t start_ms) {
  json rpo = json::array();
  auto groups = run_groups_from_row(run.id, run.groups);
  if (!groups) {
    rpo.push_back({{"group", nullptr}, {"pit", nullptr}, {"seconds", nullptr}, {"text", "unknown: " + groups.status().message()}});
    return rpo;
  }
  for (const auto& g : *groups) {
    json entry = recovered_pit(g, steps);
    const std::optional<std::int64_t> instant_ms = recovered_instant_ms(entry);
    entry["pit_instant"] = instant_ms ? json(iso_time_ms(*instant_ms)) : json();
    set_rpo(entry, run, g, instant_ms, start_ms);
    rpo.push_back(entry);
  }
  return rpo;
}

// How many steps ended how: an "unreached" step (best effort, its target
// could not be reached) is an outcome of its own, never a success.
json step_counts(const std::vector<engine::Step>& steps) {
  json counts = json::object();
  for (const auto& s : steps) {
    const std::string state(engine::step_state_name(s.state));
    counts[state] = counts.value(state, 0) + 1;
  }
  return counts;
}

json steps_section(const std::vector<engine::Step>& steps) {
  json out = json::array();
  for (const auto& s : steps) {
    json j = {{"idx", s.idx},
              {"name", s.spec.name},
              {"kind", engine::step_kind_name(s.spec.kind)},
              {"state", engine::step_state_name(s.state)},
              {"attempts", s.attempts},
              {"started_at", time_or_null(s.started_at_ms)},
              {"ended_at", time_or_null(s.ended_at_ms)},
              {"seconds", s.started_at_ms && s.ended_at_ms ? json(static_cast<double>(*s.ended_at_ms - *s.started_at_ms) / 1000.0)
                                                          : json()},
              {"error", s.error},
              {"result", s.result}};
    out.push_back(std::move(j));
  }
  return out;
}

}  // namespace

json run_report(const RunRow& run, const std::vector<engine::Step>& steps) {
  json report;
  report["run"] = run_section(run);
  const RtoSpan span = rto_span(steps);
  report["rto"] = rto_section(run, span);
  report["rpo"] = rpo_section(run, steps, span.first ? *span.first : run.created_at * 1000);
  report["step_counts"] = step_counts(steps);
  report["steps"] = steps_section(steps);
  auto plan = parse_json_or_discarded(run.plan_document);
  report["plan"] = plan.is_discarded() ? json() : plan;
  report["ip_customization"] = ip_customization(report["plan"], steps);
  return report;
}

json ip_customization(const json& plan, const std::vector<engine::Step>& steps) {
  json out = json::array();
  if (!plan.is_object() || !plan.contains("ip_rules") || !plan["ip_rules"].is_array() || plan["ip_rules"].empty())
    return out;
  for (const auto& s : steps) {
    if (s.spec.kind != engine::StepKind::kCustomizeIp) continue;
    json entry = {{"vm", s.spec.params.value("vm", "")}, {"step", s.idx}, {"state", engine::step_state_name(s.state)}};
    if (s.state == engine::StepState::kSucceeded && s.result.is_object()) {
      const json changed = s.result.value("changed", json::array());
      entry["applied"] = changed;
      entry["text"] = changed.empty() ? "no address of the guest was in a rule's subnets: nothing to move"
                                      : std::to_string(changed.size()) + " address(es) moved";
      if (s.result.contains("note")) entry["note"] = s.result["note"];
    } else if (s.state == engine::StepState::kFailed) {
      entry["text"] = "not applied: " + s.error;
    } else {
      entry["text"] = "not applied: the step " + std::string(engine::step_state_name(s.state));
    }
    out.push_back(std::move(entry));
  }
  // VMs the plan leaves off get no step: they are not re-addressed, and
  // whoever starts them later must know.
  for (const auto& vm : plan.value("vms", json::array()))
    if (vm.is_object() && vm.value("startup", "") == "leave-off")
      out.push_back({{"vm", vm.value("vm", "")},
                     {"step", nullptr},
                     {"state", "not-run"},
                     {"text", "not applied: the plan leaves this VM off; started by hand, it keeps its production "
                              "addresses"}});
  return out;
}

std::string report_csv(const json& r) {
  std::ostringstream out;
  out << "run,plan,operation,run_state,started_by,rto_seconds,step,name,kind,state,attempts,started_at,ended_at,seconds,error\n";
  const json& run = r["run"];
  for (const auto& s : r["steps"]) {
    out << csv_field(run.value("id", "")) << ',' << csv_field(run.value("plan", "")) << ','
        << csv_field(run.value("operation", "")) << ',' << csv_field(run.value("state", "")) << ','
        << csv_field(run.value("started_by", "")) << ',' << text_of(r["rto"]["seconds"]) << ',' << s["idx"].get<int>() << ','
        << csv_field(s.value("name", "")) << ',' << csv_field(s.value("kind", "")) << ',' << csv_field(s.value("state", ""))
        << ',' << s["attempts"].get<int>() << ',' << text_of(s["started_at"]) << ',' << text_of(s["ended_at"]) << ','
        << text_of(s["seconds"]) << ',' << csv_field(s.value("error", "")) << '\n';
  }
  return out.str();
}

std::string report_html(const json& r) {
  const json& run = r["run"];
  std::ostringstream o;
  auto e = [](const json& j) { return html_escape(text_of(j)); };
  o << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>evac run " << e(run["id"]) << ": "
    << e(run["operation"]) << " of " << e(run["plan"]) << "</title>\n"
    << "<style>body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
       "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}"
       "th{background:#f3f3f3}.succeeded{color:#176b17}.failed{color:#b00020;font-weight:bold}.skipped{color:#777}.unreached{color:#a35d00;font-weight:bold}"
       "pre{background:#f7f7f7;padding:1em;overflow:auto}.big{font-size:1.4em}</style></head><body>\n";
  o << "<h1>" << e(run["operation"]) << " of plan " << e(run["plan"]) << "</h1>\n";
  o << "<table>\n<tr><th>Run</th><td>" << e(run["id"]) << "</td></tr>\n"
    << "<tr><th>Outcome</th><td class=\"" << e(run["state"]) << "\">" << e(run["state"]) << "</td></tr>\n"
    << "<tr><th>Started by</th><td>" << e(run["started_by"]) << "</td></tr>\n"
    << "<tr><th>Started</th><td>" << e(run["started_at"]) << "</td></tr>\n"
    << "<tr><th>Ended</th><td>" << e(run["ended_at"]) << "</td></tr>\n";
  const json step_counts = r.value("step_counts", json::object());
  std::string counts;
  for (const auto& [state, n] : step_counts.items()) counts += (counts.empty() ? "" : ", ") + text_of(n) + " " + state;
  o << "<tr><th>Steps</th><td>" << html_escape(counts) << "</td></tr>\n";
  if (step_counts.contains("unreached"))
    o << "<tr><th>Not reached</th><td class=\"unreached\">best-effort steps whose target could not be reached; "
         "the run went on without them (see each step below)</td></tr>\n";
  if (!text_of(run["error"]).empty()) o << "<tr><th>Error</th><td class=\"failed\">" << e(run["error"]) << "</td></tr>\n";
  o << "<tr><th>Achieved RTO</th><td class=\"big\">" << e(r["rto"]["text"]) << "</td></tr>\n";
  for (const auto& g : r["rpo"])
    o << "<tr><th>RPO, group " << e(g["group"]) << "</th><td class=\"big\">" << e(g["text"]) << "</td></tr>\n";
  o << "</table>\n<h2>Points in time recovered</h2>\n<table><tr><th>Group</th><th>PIT</th><th>Instant it captures (UTC)</th>"
       "<th>Protected site last heard from</th><th>Loss window (s)</th></tr>\n";
  for (const auto& g : r["rpo"])
    o << "<tr><td>" << e(g["group"]) << "</td><td>" << e(g["pit"]) << "</td><td>" << e(g.value("pit_instant", json()))
      << "</td><td>" << e(g.value("protected_site_last_seen", json())) << "</td><td>"
      << e(g.value("loss_window_seconds", json())) << "</td></tr>\n";
  if (!r.value("ip_customization", json::array()).empty()) {
    o << "</table>\n<h2>IP customization</h2>\n<table><tr><th>VM</th><th>Step</th><th>State</th><th>What happened</th></tr>\n";
    for (const auto& c : r["ip_customization"]) {
      std::string what = text_of(c["text"]);
      for (const auto& a : c.value("applied", json::array()))
        what += "; " + text_of(a.value("interface", json())) + ": " + text_of(a.value("from", json())) + " -> " +
                text_of(a.value("to", json()));
      o << "<tr><td>" << e(c["vm"]) << "</td><td>" << e(c["step"]) << "</td><td>" << e(c["state"]) << "</td><td>"
        << html_escape(what) << "</td></tr>\n";
    }
  }
  o << "</table>\n<h2>Steps</h2>\n<table><tr><th>#</th><th>Step</th><th>State</th><th>Attempts</th><th>Started</th>"
       "<th>Ended</th><th>Took (s)</th><th>Result or error</th></tr>\n";
  for (const auto& s : r["steps"]) {
    std::string detail = text_of(s["error"]).empty() ? text_of(s["result"]) : text_of(s["error"]);
    o << "<tr><td>" << e(s["idx"]) << "</td><td>" << e(s["name"]) << "</td><td class=\"" << e(s["state"]) << "\">"
      << e(s["state"]) << "</td><td>" << e(s["attempts"]) << "</td><td>" << e(s["started_at"]) << "</td><td>"
      << e(s["ended_at"]) << "</td><td>" << e(s["seconds"]) << "</td><td>" << html_escape(detail) << "</td></tr>\n";
  }
  o << "</table>\n<h2>The plan as it was when the run started</h2>\n<pre>" << html_escape(r["plan"].dump(2)) << "</pre>\n"
    << "<p>Generated by evac from the run's durable record.</p>\n</body></html>\n";
  return o.str();
}

}  // namespace evac
