#include "api/router.h"

#include <charconv>
#include <limits>

#include "core/duration.h"
#include "core/json_decode.h"
#include "core/model_json.h"
#include "core/plan_json.h"
#include "core/text.h"
#include "service/rate_limit.h"
#include "service/run_report.h"

namespace evac {
using nlohmann::json;

namespace {

constexpr const char* kApiVersion = "v1";

std::optional<std::string> query_param(const ApiRequest& r, const std::string& key) {
  auto it = r.query.find(key);
  if (it == r.query.end() || it->second.empty()) return std::nullopt;
  return it->second;
}

// Keep in step with what evac's own documents need (see core/json_decode.h).
// (The RPO's bound, kMaxRpo, is the service's: a paired site's is checked too.)
constexpr auto kMaxPairingTokenTtl = std::chrono::hours(24 * 7);
// Retention counts: only what fits an int gets to the service, which
// judges the value itself (and names the CLI flag in its answer).
constexpr int kMinKept = std::numeric_limits<int>::min();
constexpr int kMaxKept = std::numeric_limits<int>::max();

// A request body that a service or the plan decoder reads itself (their
// own decoders are strict); empty is {}.
Result<json> body_object(const ApiRequest& r) {
  auto j = parse_json(r.body.empty() ? "{}" : r.body, "the request body");
  if (!j) return j.status();
  if (!j->is_object()) return invalid_argument("the request body must be a JSON object", "see /api/v1/openapi.json");
  return j;
}

// Rates arrive as "50MiB/s" strings (or "0", "none") or as whole bytes per second.
Result<std::optional<std::uint64_t>> rate_field(JsonFields& fields, const char* key) {
  const json* v = fields.value(key);
  if (!v) return std::optional<std::uint64_t>();
  if (v->is_number()) {
    // Up to 1 TiB/s: beyond any link, and far from overflowing a byte count.
    auto n = checked_integer(*v, std::string("field '") + key + "'", 0, std::int64_t{1} << 40);
    if (!n) return n.status();
    return std::optional<std::uint64_t>(static_cast<std::uint64_t>(*n));
  }
  if (!v->is_string())
    return invalid_argument(std::string("field '") + key + "' must be a rate like \"50MiB/s\", or 0 for unlimited");
  auto r = parse_byte_rate(v->get<std::string>());
  if (!r) return r.status().with_context(std::string("field '") + key + "'");
  return std::optional<std::uint64_t>(*r);
}

// "?limit=N": a whole number from 1 to `max`, else `fallback`.
Result<int> limit_param(const ApiRequest& r, int fallback, int max) {
  auto l = query_param(r, "limit");
  if (!l) return fallback;
  int v = 0;
  const char* end = l->data() + l->size();
  if (std::from_chars(l->data(), end, v).ptr != end || v < 1 || v > max)
    return invalid_argument("limit '" + excerpt(*l) + "' must be a number from 1 to " + std::to_string(max));
  return v;
}

// "/api/v1/groups/g1" → {"", "api", "v1", "groups", "g1"}.
std::vector<std::string> split_path(std::string_view path) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (;;) {
    std::size_t slash = path.find('/', start);
    out.emplace_back(path.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start));
    if (slash == std::string_view::npos) return out;
    start = slash + 1;
  }
}

template <typename T>
json list_json(const std::vector<T>& items) {
  json out = json::array();
  for (const auto& i : items) out.push_back(to_json(i));
  return out;
}

}  // namespace

int http_status_for(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return 200;
    case StatusCode::kInvalidArgument: return 400;
    case StatusCode::kUnauthenticated: return 401;
    case StatusCode::kPermissionDenied: return 403;
    case StatusCode::kNotFound: return 404;
    case StatusCode::kAlreadyExists: return 409;
    case StatusCode::kFailedPrecondition: return 412;
    case StatusCode::kUnsupported: return 501;
    case StatusCode::kUnavailable: return 503;
    case StatusCode::kInternal: return 500;
  }
  return 500;
}

ApiResponse error_response(const Status& s) {
  // Messages may quote outside input: bounded, so a huge name sent is not a
  // huge answer (or log line) back.
  constexpr std::size_t kMaxMessage = 1024;
  std::string hint = s.hint().empty() ? "see /api/v1/openapi.json for the API" : s.hint();
  return ApiResponse{http_status_for(s.code()),
                     json{{"code", status_code_name(s.code())},
                          {"message", excerpt(s.message(), kMaxMessage)},
                          {"hint", excerpt(hint, kMaxMessage)}},
                     "",
                     {}};
}

ApiRouter::ApiRouter(RouteServices services, ApiLimits limits)
    : limits_(limits),
      service_(services.site),
      replication_(services.replication),
      runs_(services.runs),
      plans_(services.plans) {
  add_routes();
  add_replication_routes();
  add_operations_routes();
  add_plan_routes();
  add_run_routes();
}

void ApiRouter::add_run_routes() {
  auto runs = [this]() -> Result<RunService*> {
    if (!runs_) return unsupported("this evacd runs no recovery plans");
    return runs_;
  };
  // Called once runs() answered: runs_ is set.
  auto with_steps = [this](const RunRow& run, const std::vector<engine::Step>& steps) {
    json j = to_json(run);
    j["steps"] = json::array();
    const std::int64_t now_ms = engine::system_millis();  // the clock the steps' times come from
    for (const auto& s : steps) {
      json step = to_json(s, now_ms);
      if (json progress = runs_->step_progress(run.id, s); !progress.is_null()) step["progress"] = std::move(progress);
      j["steps"].push_back(std::move(step));
    }
    return j;
  };
  add("POST", "/api/v1/plans/{name}/runs", Access::kOperator,
      "Start a run of the plan: {operation: test|cleanup|migrate|failover|reprotect|failback, confirm, pit}",
      [runs, with_steps](Context& c) -> Result<json> {
        auto r = runs();
        if (!r) return r.status();
        auto body = body_object(c.request);
        if (!body) return body.status();
        auto f = JsonFields::of(*body, "a run request");
        if (!f) return f.status();
        RunRequest req;
        req.plan = c.params[0];
        req.started_by = c.caller;
        auto operation = f->required_text("operation", 64);
        auto confirm = f->text("confirm", 256);
        auto pit = f->text("pit", 256);
        for (const Status& s : {operation.status(), confirm.status(), pit.status(), f->finish()})
          if (!s) return s;
        req.operation = *operation;
        req.confirm = confirm->value_or("");
        req.pit = pit->value_or("");
        auto run = (*r)->start(req);
        if (!run) return run.status();
        auto steps = (*r)->steps(run->id);
        if (!steps) return steps.status();
        return with_steps(*run, *steps);
      },
      202);
  add("GET", "/api/v1/runs", Access::kOperator, "Runs, newest first (?plan=NAME, ?limit=N up to 1000, default 50)",
      [runs](Context& c) -> Result<json> {
        auto r = runs();
        if (!r) return r.status();
        auto limit = limit_param(c.request, 50, 1000);
        if (!limit) return limit.status();
        auto list = (*r)->list_runs(query_param(c.request, "plan"), *limit);
        if (!list) return list.status();
        json out = json::array();
        for (const auto& run : *list) out.push_back(to_json(run));
        return out;
      });
  add("GET", "/api/v1/runs/{id}", Access::kOperator, "One run with its steps, their states, times and errors",
      [runs, with_steps](Context& c) -> Result<json> {
        auto r = runs();
        if (!r) return r.status();
        auto run = (*r)->get_run(c.params[0]);
        if (!run) return run.status();
        auto steps = (*r)->steps(run->id);
        if (!steps) return steps.status();
        return with_steps(*run, *steps);
      });
  add("GET", "/api/v1/runs/{id}/report", Access::kOperator,
      "The run's report (?format=json|csv|html): every step with times, achieved RTO and RPO, who ran it, the plan",
      [runs](Context& c) -> Result<json> {
        auto r = runs();
        if (!r) return r.status();
        const std::string format = query_param(c.request, "format").value_or("json");
        if (format != "json" && format != "csv" && format != "html")
          return invalid_argument("report format '" + excerpt(format) + "' is not json, csv or html");
        auto run = (*r)->get_run(c.params[0]);
        if (!run) return run.status();
        auto steps = (*r)->steps(run->id);
        if (!steps) return steps.status();
        json report = run_report(*run, *steps);
        if (format == "json") return report;
        std::string text = format == "csv" ? report_csv(report) : report_html(report);
        c.content_type = format == "csv" ? "text/csv; charset=utf-8" : "text/html; charset=utf-8";
        return json::binary(std::vector<std::uint8_t>(text.begin(), text.end()));
      });
  add("POST", "/api/v1/runs/{id}/ack", Access::kOperator, "Acknowledge the prompt a run waits at ({step: N} optional)",
      [runs](Context& c) -> Result<json> {
        auto r = runs();
        if (!r) return r.status();
        auto body = body_object(c.request);
        if (!body) return body.status();
        auto f = JsonFields::of(*body, "an acknowledgement");
        if (!f) return f.status();
        auto step = f->integer_as<int>("step", 0, 1'000'000);
        if (!step) return step.status();
        EVAC_RETURN_IF_ERROR(f->finish());
        EVAC_RETURN_IF_ERROR((*r)->ack(c.params[0], step->value_or(-1)));
        return json{{"acknowledged", c.params[0]}};
      });
  add("POST", "/api/v1/runs/{id}/cancel", Access::kOperator, "Start no more steps of a run; the rest are skipped",
      [runs](Context& c) -> Result<json> {
        auto r = runs();
        if (!r) return r.status();
        EVAC_RETURN_IF_ERROR((*r)->cancel(c.params[0]));
        return json{{"cancelled", c.params[0]}};
      });
  add("POST", "/api/v1/peer/groups/{group}/reprotect", Access::kPeer,
      "The caller owns the group's live copy and reprotects it ({epoch, run, vms}): this site's copies become its "
      "placeholders and seeds, and this site stops protecting the group",
      [runs](Context& c) -> Result<json> {
        auto r = runs();
        if (!r) return r.status();
        auto body = body_object(c.request);
        if (!body) return body.status();
        return (*r)->handle_peer_reprotect(*c.peer, c.params[0], *body);
      });
  add("POST", "/api/v1/runs/{id}/resume", Access::kOperator, "Retry a failed run's failed steps and go on",
      [runs](Context& c) -> Result<json> {
        auto r = runs();
        if (!r) return r.status();
        EVAC_RETURN_IF_ERROR((*r)->resume(c.params[0]));
        return json{{"resumed", c.params[0]}};
      });
}

void ApiRouter::add_plan_routes() {
  auto readiness_json = [](const PlanReadiness& r) {
    json findings = json::array();
    for (const auto& f : r.findings)
      findings.push_back({{"severity", f.severity},
                          {"check", f.check},
                          {"message", f.message},
                          {"hint", f.hint},
                          {"operations", f.operations}});
    // Per operation: whether it applies now, and whether it would run.
    json operations = json::object();
    for (const auto& op : readiness_operations())
      operations[op] = {{"applicable", std::find(r.applicable.begin(), r.applicable.end(), op) != r.applicable.end()},
                        {"ready", r.ready_for(op)}};
    return json{{"ready", r.ready}, {"operations", operations}, {"findings", findings}};
  };
  add("GET", "/api/v1/plans", Access::kOperator, "Recovery plans, each with whether it is ready to run here",
      [this](Context&) -> Result<json> {
        auto plans = plans_.list_plans();
        if (!plans) return plans.status();
        json out = json::array();
        auto add_plan = [&](const RecoveryPlan& p, const std::string& stored_at) {
          json j = plan_to_json(p);
          auto r = plans_.check_plan(p, false);
          j["ready"] = r ? json(r->ready) : json(nullptr);
          j["stored_at"] = stored_at;
          out.push_back(std::move(j));
        };
        for (const auto& p : *plans) add_plan(p, service_.identity().name);
        // A paired site's plans too (after a reprotect, a failback runs
        // here from the plan the other site stores).
        auto theirs = plans_.peer_plans();
        if (!theirs) return theirs.status();
        for (const auto& [site, p] : *theirs) add_plan(p, site);
        return out;
      });
  add("GET", "/api/v1/plans/{name}/readiness", Access::kOperator,
      "Check, without side effects, everything a run of the plan at this site needs",
      [this, readiness_json](Context& c) -> Result<json> {
        auto r = plans_.check_plan(c.params[0]);
        if (!r) return r.status();
        json out = readiness_json(*r);
        out["plan"] = c.params[0];
        return out;
      });
  add("POST", "/api/v1/plans", Access::kOperator, "Create a recovery plan (its JSON form; see docs/plans.md)",
      [this](Context& c) -> Result<json> {
        auto body = body_object(c.request);
        if (!body) return body.status();
        auto p = plans_.create_plan(*body);
        if (!p) return p.status();
        return plan_to_json(*p);
      },
      201);
  add("GET", "/api/v1/plans/{name}", Access::kOperator, "One recovery plan (this site's, else a paired site's)",
      [this](Context& c) -> Result<json> {
    auto p = plans_.runnable_plan(c.params[0]);
    if (!p) return p.status();
    return plan_to_json(*p);
  });
  add("PUT", "/api/v1/plans/{name}", Access::kOperator,
      "Create or replace a recovery plan (declarative: `evac apply -f`)", [this](Context& c) -> Result<json> {
        auto body = body_object(c.request);
        if (!body) return body.status();
        auto p = plans_.apply_plan(c.params[0], *body);
        if (!p) return p.status();
        return plan_to_json(*p);
      });
  add("DELETE", "/api/v1/plans/{name}", Access::kOperator, "Delete a recovery plan", [this](Context& c) -> Result<json> {
    EVAC_RETURN_IF_ERROR(plans_.delete_plan(c.params[0]));
    return json{{"deleted", c.params[0]}};
  });
}

void ApiRouter::add_operations_routes() {
  add("GET", "/api/v1/events", Access::kOperator,
      "Alarms and notable events, newest first (?group=NAME, ?limit=N up to 1000, default 100)",
      [this](Context& c) -> Result<json> {
        auto group = query_param(c.request, "group");
        auto limit = limit_param(c.request, 100, 1000);
        if (!limit) return limit.status();
        auto events = service_.list_events(group, *limit);
        if (!events) return events.status();
        json out = json::array();
        for (const auto& e : *events)
          out.push_back({{"id", e.id}, {"at", e.at}, {"severity", e.severity}, {"kind", e.kind}, {"group", e.group},
                         {"message", e.message}, {"count", e.count}, {"last_at", e.last_at ? json(*e.last_at) : json()}});
        return out;
      });
  add("GET", "/metrics", Access::kOperator, "Prometheus metrics (text exposition format; bearer token)",
      [this](Context&) -> Result<json> {
        std::string text = replication_ ? replication_->prometheus_metrics() : std::string();
        return json::binary(std::vector<std::uint8_t>(text.begin(), text.end()));
      });
}

void ApiRouter::add_replication_routes() {
  // Every replication route needs the service; without it the site says so.
  auto with = [this](auto body) {
    return [this, body](Context& c) -> Result<json> {
      if (!replication_) return unsupported("site '" + service_.identity().name + "' runs without replication");
      return body(*replication_, c);
    };
  };
  add("POST", "/api/v1/groups/{name}/sync", Access::kOperator,
      "Start a replication cycle of the group (202 with its number; a cycle already running is followed by one more), "
      "or follow one (?cycle=N). ?wait=true: return the new point in time (200) once the cycle ends, or 202 with "
      "{done: false} if it still runs after 5 minutes: follow it again",
      with([](ReplicationService& r, Context& c) -> Result<json> {
        const std::string& group = c.params[0];
        auto wait = query_param(c.request, "wait");
        if (wait && *wait != "true" && *wait != "false")
          return invalid_argument("wait must be true or false, not '" + excerpt(*wait) + "'");
        std::optional<std::uint64_t> follow;
        if (auto text = query_param(c.request, "cycle")) {
          std::uint64_t n = 0;
          const char* end = text->data() + text->size();
          if (text->empty() || std::from_chars(text->data(), end, n).ptr != end)
            return invalid_argument("cycle must be a cycle number this site gave, not '" + excerpt(*text) + "'");
          follow = n;
        }
        if (!follow && wait != "true") {
          auto cycle = r.request_sync(group, SyncTrigger::kManual);
          if (!cycle) return cycle.status();
          c.status = 202;
          return json{{"group", group}, {"cycle", *cycle}, {"done", false}};
        }
        // Bounded by the service: a cycle still running then is followed by the next call.
        auto out = r.follow_cycle(group, follow, wait == "true" ? std::chrono::milliseconds::max() : std::chrono::milliseconds(0));
        if (!out) return out.status();
        if ((*out)["done"] == true) {
          c.status = 200;
        } else {
          c.status = 202;
          (*out)["group"] = group;
        }
        return out;
      }),
      202);
  add("GET", "/api/v1/groups/{name}/replication", Access::kOperator,
      "The group's replication as this site knows it: lag, RPO compliance, last cycles, the running cycle's progress",
      with([this](ReplicationService& r, Context& c) -> Result<json> {
        auto g = service_.get_group(c.params[0]);
        if (!g) return g.status();
        return r.replication_state(*g);
      }));
  add("GET", "/api/v1/groups/{name}/pits", Access::kOperator, "The group's points in time at its recovery site",
      with([this](ReplicationService& r, Context& c) -> Result<json> {
        auto pits = r.group_pits(c.params[0]);
        if (!pits) return pits.status();
        // Asked here, at the protected site, which is alive: what a recovery
        // to each PIT would lose is the writes since its instant.
        const std::int64_t now_ms = service_.now_ms();
        json out = json::array();
        for (const auto& p : *pits) {
          json j = to_json(p);
          j["age_seconds"] = static_cast<double>(std::max<std::int64_t>(0, now_ms - p.created_at_ms)) / 1000.0;
          out.push_back(std::move(j));
        }
        return out;
      }));
  add("POST", "/api/v1/groups/{name}/verify", Access::kOperator,
      "Re-read a point in time (?pit=ID, default the newest) and compare every block with the source hashes its "
      "cycle recorded; at a recovery site this works with the protected site gone",
      with([](ReplicationService& r, Context& c) -> Result<json> {
        return r.verify_group(c.params[0], query_param(c.request, "pit").value_or(""));
      }));
  add("POST", "/api/v1/peer/replication/{group}/cycles", Access::kPeer, "Begin a replication cycle",
      with([](ReplicationService& r, Context& c) -> Result<json> {
        auto body = body_object(c.request);
        if (!body) return body.status();
        return r.handle_begin(*c.peer, c.params[0], *body);
      }),
      201);
  add("GET", "/api/v1/peer/replication/{group}/manifests/{vm}/{disk}", Access::kPeer,
      "Block hashes of a disk's newest point in time (binary; empty if none)",
      with([](ReplicationService& r, Context& c) -> Result<json> {
        return r.handle_manifest(*c.peer, c.params[0], c.params[1] + "/" + c.params[2]);
      }));
  add("POST", "/api/v1/peer/replication/{group}/cycles/{cycle}/blocks", Access::kPeer,
      "Apply a batch of changed blocks (binary)", with([](ReplicationService& r, Context& c) -> Result<json> {
        return r.handle_batch(*c.peer, c.params[0], c.params[1], c.request.body);
      }));
  routes_.back().max_body = limits_.max_block_batch;
  add("POST", "/api/v1/peer/replication/{group}/cycles/{cycle}/commit", Access::kPeer,
      "Commit a cycle: digests must match what was applied", with([](ReplicationService& r, Context& c) -> Result<json> {
        auto body = body_object(c.request);
        if (!body) return body.status();
        return r.handle_commit(*c.peer, c.params[0], c.params[1], *body);
      }));
  add("DELETE", "/api/v1/peer/replication/{group}/cycles/{cycle}", Access::kPeer, "Abort a cycle",
      with([](ReplicationService& r, Context& c) -> Result<json> {
        return r.handle_abort(*c.peer, c.params[0], c.params[1]);
      }));
  add("POST", "/api/v1/peer/replication/{group}/verify", Access::kPeer,
      "Verify a point in time held here (?pit=ID, default the newest)",
      with([](ReplicationService& r, Context& c) -> Result<json> {
        return r.handle_verify(*c.peer, c.params[0], query_param(c.request, "pit").value_or(""));
      }));
  add("GET", "/api/v1/peer/replication/{group}/pits", Access::kPeer, "Points in time held here for a group",
      with([](ReplicationService& r, Context& c) -> Result<json> { return r.handle_pits(*c.peer, c.params[0]); }));
  add("POST", "/api/v1/peer/groups/{group}/sync", Access::kPeer,
      "Run one cycle of a group now, or follow one ({cycle}), waiting up to {wait_ms} (at most 5 minutes) for its "
      "PIT; {done: false} if it is still going then (the group's recovery site, migrating)",
      with([](ReplicationService& r, Context& c) -> Result<json> {
        auto body = body_object(c.request);
        if (!body) return body.status();
        return r.handle_peer_sync(*c.peer, c.params[0], *body);
      }));
  add("GET", "/api/v1/peer/groups/{group}/backup-probe", Access::kPeer,
      "Whether the next cycle could read each VM of the group now (the group's recovery site, checking readiness)",
      with([](ReplicationService& r, Context& c) -> Result<json> {
        return r.handle_peer_backup_probe(*c.peer, c.params[0]);
      }));
  add("GET", "/api/v1/peer/groups/{group}/fence-check", Access::kPeer,
      "Whether a fence here could make the group's disks read-only (the group's recovery site, checking readiness)",
      with([](ReplicationService& r, Context& c) -> Result<json> {
        return r.handle_peer_fence_check(*c.peer, c.params[0]);
      }));
}

void ApiRouter::add(std::string method, std::string pattern, Access access, std::string summary, Handler handler,
                    int success_status) {
  std::vector<std::string> segments = split_path(pattern);
  routes_.push_back(Route{std::move(method), std::move(pattern), std::move(segments), access, std::move(summary),
                          success_status, std::move(handler)});
}

Status ApiRouter::authorize(const Route& route, Context& ctx) {
  switch (route.access) {
    case Access::kPublic: return Status::ok();
    case Access::kOperator: {
      if (ctx.request.bearer_token.empty())
        return unauthenticated("this call needs a bearer token",
                               "pass --token or set up a context: `evac context add NAME --url URL --token-file FILE`");
      auto name = service_.api_token_name(ctx.request.bearer_token);
      if (!name) return name.status();
      if (!name->has_value())
        return unauthenticated("the bearer token is not valid at site '" + service_.identity().name + "'",
                               "use the admin token from the site's state directory (admin.token)");
      ctx.caller = **name;
      return Status::ok();
    }
    case Access::kPairing:
      if (ctx.request.client_pin.empty())
        return unauthenticated("pairing needs a TLS client certificate", "pair with `evac site pair TOKEN`");
      ctx.caller = "pairing";
      return Status::ok();
    case Access::kPeer: {
      if (ctx.request.client_pin.empty())
        return unauthenticated("site-to-site calls need the paired site's TLS client certificate");
      auto peer = service_.paired_site_with_pin(ctx.request.client_pin);
      if (!peer) return peer.status();
      if (!peer->has_value())
        return permission_denied("the client certificate does not belong to a site paired with '" +
                                     service_.identity().name + "'",
                                 "pair the sites first, or re-pair if a site's certificate changed");
      ctx.peer = **peer;
      ctx.caller = "site:" + (*peer)->site;
      return Status::ok();
    }
  }
  return internal_error("unknown access rule");
}

ApiRouter::Match ApiRouter::match(const std::string& method, const std::string& path) const {
  Match out;
  std::vector<std::string> allowed;
  const std::vector<std::string> segments = split_path(path);
  for (const auto& route : routes_) {
    if (route.segments.size() != segments.size()) continue;
    std::vector<std::string> params;
    bool matched = true;
    for (std::size_t i = 0; matched && i < segments.size(); ++i) {
      const std::string& want = route.segments[i];
      if (!want.empty() && want.front() == '{') {
        matched = !segments[i].empty();
        params.push_back(segments[i]);
      } else {
        matched = want == segments[i];
      }
    }
    if (!matched) continue;
    if (route.method != method) {
      allowed.push_back(route.method);
      continue;
    }
    out.route = &route;
    out.params = std::move(params);
    return out;
  }
  if (allowed.empty()) {
    out.refusal = error_response(
        not_found("no API endpoint " + excerpt(path), "see /api/v1/openapi.json for the endpoints"));
    return out;
  }
  std::string allow = join(allowed, ", ");
  ApiResponse refusal = error_response(invalid_argument(
      "method " + excerpt(method, 16) + " is not allowed on " + excerpt(path), "this endpoint takes " + allow));
  refusal.status = 405;
  refusal.body["code"] = "method_not_allowed";
  refusal.headers.emplace_back("Allow", allow);
  out.refusal = std::move(refusal);
  return out;
}

std::size_t ApiRouter::body_limit(const std::string& method, const std::string& path) const {
  Match m = match(method, path);
  return m.route && m.route->max_body ? m.route->max_body : limits_.max_body;
}

std::optional<ApiResponse> ApiRouter::admit(const ApiRequest& head, std::optional<std::size_t> announced_body) {
  Match m = match(head.method, head.path);
  if (m.refusal) return m.refusal;
  Context ctx{head, m.params, std::nullopt, "", 0, ""};
  if (Status s = authorize(*m.route, ctx); !s.is_ok()) return error_response(s);
  const std::size_t limit = m.route->max_body ? m.route->max_body : limits_.max_body;
  if (announced_body && *announced_body > limit) {
    ApiResponse refusal = error_response(invalid_argument(
        "the request body is " + std::to_string(*announced_body) + " bytes, more than the " + std::to_string(limit) +
            " this endpoint takes",
        "send less; the limit is api.max_request_body in evacd's configuration"));
    refusal.status = 413;
    refusal.body["code"] = "payload_too_large";
    return refusal;
  }
  return std::nullopt;
}

ApiResponse ApiRouter::handle(const ApiRequest& request) {
  Match m = match(request.method, request.path);
  if (m.refusal) return *m.refusal;
  const Route& route = *m.route;
  Context ctx{request, std::move(m.params), std::nullopt, "", 0, ""};
  if (Status s = authorize(route, ctx); !s.is_ok()) return error_response(s);
  // Alive now: a lost site's last contact bounds what a failover lost.
  // Recorded here, once per request, not in admit() as well: it is a store
  // write, and a paired site's block batches come many a second.
  if (ctx.peer) service_.heard_from(ctx.peer->site);
  Result<json> result = [&]() -> Result<json> {
    try {
      return route.handler(ctx);
    } catch (const std::exception& e) {  // a bug: never let it take the server down
      return internal_error(std::string("unexpected error: ") + e.what(), "this is a bug in evac; please report it");
    }
  }();
  if (!result) return error_response(result.status());
  ApiResponse response{ctx.status ? ctx.status : route.success_status, std::move(*result), "", {}};
  if (route.pattern == "/metrics") response.content_type = "text/plain; version=0.0.4; charset=utf-8";
  if (!ctx.content_type.empty()) response.content_type = ctx.content_type;
  return response;
}

json ApiRouter::openapi() const {
  json paths = json::object();
  for (const auto& r : routes_) {
    std::string method = r.method;
    for (auto& c : method) c = static_cast<char>(std::tolower(c));
    json op = {{"summary", r.summary},
               {"responses",
                {{std::to_string(r.success_status), {{"description", "success"}}},
                 {"default", {{"description", "error: {code, message, hint}"}, {"content", {{"application/json", {{"schema", {{"$ref", "#/components/schemas/Error"}}}}}}}}}}}};
    if (r.access == Access::kOperator) op["security"] = json::array({{{"bearer", json::array()}}});
    if (r.access == Access::kPeer || r.access == Access::kPairing) {
      op["security"] = json::array({{{"mutualTLS", json::array()}}});
      op["tags"] = json::array({"site-to-site"});
    }
    json params = json::array();
    for (const auto& segment : r.segments)
      if (!segment.empty() && segment.front() == '{')
        params.push_back({{"name", segment.substr(1, segment.size() - 2)},
                          {"in", "path"},
                          {"required", true},
                          {"schema", {{"type", "string"}}}});
    if (!params.empty()) op["parameters"] = params;
    paths[r.pattern][method] = op;
  }
  return {{"openapi", "3.1.0"},
          {"info", {{"title", "evac site recovery API"}, {"version", kApiVersion}}},
          {"paths", paths},
          {"components",
           {{"securitySchemes",
             {{"bearer", {{"type", "http"}, {"scheme", "bearer"}}}, {"mutualTLS", {{"type", "mutualTLS"}}}}},
            {"schemas",
             {{"Error",
               {{"type", "object"},
                {"required", {"code", "message"}},
                {"properties",
                 {{"code", {{"type", "string"}}}, {"message", {{"type", "string"}}}, {"hint", {{"type", "string"}}}}}}}}}}}};
}

void ApiRouter::add_routes() {
  auto& svc = service_;
  // ---- public
  add("GET", "/api/v1/health", Access::kPublic, "Liveness: the site's name and API version", [&svc](Context&) -> Result<json> {
    return json{{"status", "ok"}, {"site", svc.identity().name}, {"api", kApiVersion}};
  });
  add("GET", "/api/v1/openapi.json", Access::kOperator, "This document",
      [this](Context&) -> Result<json> { return openapi(); });

  // ---- site and pairing
  add("GET", "/api/v1/site", Access::kOperator, "This site's identity", [&svc](Context&) -> Result<json> {
    return json{{"name", svc.identity().name},
                {"url", svc.identity().url},
                {"pin", svc.identity().pin},
                {"schema_version", svc.schema_version()}};
  });
  add("POST", "/api/v1/pairing-tokens", Access::kOperator, "Create a one-time pairing token for another site",
      [&svc](Context& c) -> Result<json> {
        auto body = body_object(c.request);
        if (!body) return body.status();
        auto f = JsonFields::of(*body, "a pairing token request");
        if (!f) return f.status();
        auto ttl = f->duration("ttl", std::chrono::minutes(1), kMaxPairingTokenTtl);
        if (!ttl) return ttl.status();
        EVAC_RETURN_IF_ERROR(f->finish());
        return svc.create_pairing_token(ttl->value_or(std::chrono::minutes(15)));
      },
      201);
  add("GET", "/api/v1/pairings", Access::kOperator, "Paired sites and their health", [&svc](Context&) -> Result<json> {
    auto peers = svc.peer_statuses();
    if (!peers) return peers.status();
    return list_json(*peers);
  });
  add("POST", "/api/v1/pairings", Access::kOperator, "Pair with the site that issued a pairing token",
      [&svc](Context& c) -> Result<json> {
        auto body = body_object(c.request);
        if (!body) return body.status();
        auto f = JsonFields::of(*body, "a pairing");
        if (!f) return f.status();
        auto token = f->required_text("token");
        auto url = f->text("url", 2048);
        for (const Status& s : {token.status(), url.status(), f->finish()})
          if (!s) return s;
        auto peer = svc.pair(*token, *url);
        if (!peer) return peer.status();
        return to_json(PeerStatus{*peer, true});
      },
      201);
  add("DELETE", "/api/v1/pairings/{site}", Access::kOperator,
      "Unpair a site (?lost=true: one gone for good, whose groups live here)", [this, &svc](Context& c) -> Result<json> {
        if (query_param(c.request, "lost").value_or("false") == "true") {
          if (!runs_) return unsupported("this evacd runs no recoveries", "unpair at a full evacd");
          return runs_->forget_lost_site(c.params[0]);
        }
        EVAC_RETURN_IF_ERROR(svc.unpair(c.params[0]));
        return json{{"unpaired", c.params[0]}};
      });

  // ---- inventory
  add("GET", "/api/v1/inventory/providers", Access::kOperator, "Compute providers and whether they answer",
      [&svc](Context&) -> Result<json> { return svc.providers_status(); });
  add("GET", "/api/v1/inventory/vms", Access::kOperator, "VMs of every compute provider (?provider=NAME)",
      [&svc](Context& c) -> Result<json> {
        auto vms = svc.list_vms(query_param(c.request, "provider"));
        if (!vms) return vms.status();
        json out = *vms;
        for (auto& vm : out) vm.erase("native");  // the native definition is for sites, not listings
        return out;
      });
  add("GET", "/api/v1/inventory/vms/{vm}", Access::kOperator, "One VM by name, UUID or PROVIDER/NAME",
      [&svc](Context& c) -> Result<json> {
        auto vm = svc.find_vm(c.params[0]);
        if (!vm) return vm.status();
        return json(*vm);
      });
  add("GET", "/api/v1/inventory/networks", Access::kOperator, "Networks (?provider=NAME)", [&svc](Context& c) -> Result<json> {
    auto nets = svc.list_networks(query_param(c.request, "provider"));
    if (!nets) return nets.status();
    return json(*nets);
  });
  add("GET", "/api/v1/inventory/storage-pools", Access::kOperator, "Storage pools (?provider=NAME)",
      [&svc](Context& c) -> Result<json> {
        auto pools = svc.list_storage_pools(query_param(c.request, "provider"));
        if (!pools) return pools.status();
        return json(*pools);
      });

  // ---- mappings
  add("GET", "/api/v1/mappings", Access::kOperator, "Inventory mappings", [&svc](Context&) -> Result<json> {
    auto m = svc.list_mappings();
    if (!m) return m.status();
    return list_json(*m);
  });
  add("POST", "/api/v1/mappings", Access::kOperator, "Create an inventory mapping (kind: network, storage or compute)",
      [&svc](Context& c) -> Result<json> {
        auto body = body_object(c.request);
        if (!body) return body.status();
        auto f = JsonFields::of(*body, "a mapping");
        if (!f) return f.status();
        // Sources and targets are inventory names ("bridge:br0" included).
        constexpr std::size_t kMaxInventoryName = 256;
        auto kind = f->required_text("kind", 32);
        auto source = f->required_text("source", kMaxInventoryName);
        auto target = f->required_text("target", kMaxInventoryName);
        auto peer = f->text("peer_site", 64);
        auto test_network = f->text("test_network", kMaxInventoryName);
        for (const Status& s : {kind.status(), source.status(), target.status(), peer.status(), test_network.status(),
                                f->finish()})
          if (!s) return s;
        auto k = mapping_kind_from_name(*kind);
        if (!k) return invalid_argument("mapping kind '" + *kind + "' is unknown", "use network, storage or compute");
        auto m = svc.create_mapping(MappingCreateRequest{*k, *peer, *source, *target, test_network->value_or("")});
        if (!m) return m.status();
        return to_json(*m);
      },
      201);
  add("DELETE", "/api/v1/mappings/{id}", Access::kOperator, "Delete an inventory mapping", [&svc](Context& c) -> Result<json> {
    std::int64_t id = 0;
    const std::string& text = c.params[0];
    if (std::from_chars(text.data(), text.data() + text.size(), id).ptr != text.data() + text.size() || id < 1)
      return invalid_argument("mapping id '" + excerpt(text) + "' is not a number", "`evac mapping list` shows the ids");
    EVAC_RETURN_IF_ERROR(svc.delete_mapping(id));
    return json{{"deleted", id}};
  });

  // ---- protection groups
  add("GET", "/api/v1/groups", Access::kOperator, "Protection groups", [&svc](Context&) -> Result<json> {
    auto groups = svc.list_groups();
    if (!groups) return groups.status();
    json out = json::array();
    for (const auto& g : *groups) {
      auto j = svc.group_json(g);
      if (!j) return j.status();
      out.push_back(std::move(*j));
    }
    return out;
  });
  add("POST", "/api/v1/groups", Access::kOperator, "Create a protection group and register its placeholders",
      [&svc](Context& c) -> Result<json> {
        auto body = body_object(c.request);
        if (!body) return body.status();
        auto f = JsonFields::of(*body, "a protection group");
        if (!f) return f.status();
        GroupCreateRequest req;
        auto name = f->required_text("name", 64);
        if (!name) return name.status();
        req.name = *name;
        // VMs by name, UUID or PROVIDER/NAME.
        auto vms = f->text_list("vms", kMaxListItems, 256);
        if (!vms) return vms.status();
        if (!vms->has_value()) return invalid_argument("field 'vms' must be a list of VM names");
        req.vms = std::move(**vms);
        auto peer = f->text("recovery_site", 64);
        if (!peer) return peer.status();
        req.recovery_site = *peer;
        auto rpo = f->duration("rpo", std::chrono::seconds(1), kMaxRpo);
        if (!rpo) return rpo.status();
        req.rpo_seconds = rpo->value_or(std::chrono::minutes(15)).count();
        for (auto [key, field] : {std::pair{"keep_pits", &req.keep_pits}, std::pair{"keep_hourly", &req.keep_hourly},
                                  std::pair{"keep_daily", &req.keep_daily}}) {
          auto n = f->integer_as<int>(key, kMinKept, kMaxKept);
          if (!n) return n.status();
          if (*n) *field = **n;
        }
        auto max_rate = rate_field(*f, "max_rate");
        if (!max_rate) return max_rate.status();
        req.max_rate_bytes = max_rate->value_or(0);
        EVAC_RETURN_IF_ERROR(f->finish());
        auto g = svc.create_group(req);
        if (!g) return g.status();
        return svc.group_json(*g);
      },
      201);
  add("GET", "/api/v1/groups/{name}", Access::kOperator, "One protection group, with its replication status",
      [this, &svc](Context& c) -> Result<json> {
        auto g = svc.get_group(c.params[0]);
        if (!g) return g.status();
        auto out = svc.group_json(*g);
        if (!out) return out.status();
        if (replication_) (*out)["replication"] = replication_->group_replication_status(*g);
        return out;
      });
  add("PUT", "/api/v1/groups/{name}/settings", Access::kOperator,
      "Change the group's operational settings: max_rate (\"50MiB/s\"; 0 or \"none\": unlimited), keep_pits, "
      "keep_hourly, keep_daily (retention, applied at the recovery site from the next cycle)",
      [this, &svc](Context& c) -> Result<json> {
        auto body = body_object(c.request);
        if (!body) return body.status();
        constexpr const char* kSettable = "settable: max_rate, keep_pits, keep_hourly, keep_daily";
        auto f = JsonFields::of(*body, "the group's settings");
        if (!f) return f.status();
        // Everything is parsed before anything changes.
        auto max_rate = rate_field(*f, "max_rate");
        if (!max_rate) return max_rate.status();
        auto keep_pits = f->integer_as<int>("keep_pits", kMinKept, kMaxKept);
        if (!keep_pits) return keep_pits.status();
        auto keep_hourly = f->integer_as<int>("keep_hourly", kMinKept, kMaxKept);
        if (!keep_hourly) return keep_hourly.status();
        auto keep_daily = f->integer_as<int>("keep_daily", kMinKept, kMaxKept);
        if (!keep_daily) return keep_daily.status();
        if (Status unknown = f->finish(); !unknown)
          return invalid_argument(unknown.message() + ": it cannot be changed here", kSettable);
        if (!max_rate->has_value() && !*keep_pits && !*keep_hourly && !*keep_daily)
          return invalid_argument("nothing to change", std::string("pass e.g. {\"max_rate\": \"50MiB/s\"}; ") + kSettable);
        Result<GroupRecord> g = svc.get_group(c.params[0]);
        if (*keep_pits || *keep_hourly || *keep_daily) {
          g = svc.set_group_retention(c.params[0], *keep_pits, *keep_hourly, *keep_daily);
          if (!g) return g.status();
        }
        if (max_rate->has_value()) {
          g = svc.set_group_max_rate(c.params[0], **max_rate);
          if (!g) return g.status();
          if (replication_) replication_->rate_changed(g->name, g->max_rate_bytes);
        }
        if (!g) return g.status();
        return to_json(*g);
      });
  add("DELETE", "/api/v1/groups/{name}", Access::kOperator, "Delete a protection group and its placeholders (?force=true: even if the recovery site is gone)",
      [&svc](Context& c) -> Result<json> {
        auto force = query_param(c.request, "force");
        auto left_behind = svc.delete_group(c.params[0], force == "true");
        if (!left_behind) return left_behind.status();
        return json{{"deleted", c.params[0]}, {"left_behind", *left_behind}};
      });
  add("POST", "/api/v1/groups/{name}/vms", Access::kOperator, "Protect one more VM in the group",
      [&svc](Context& c) -> Result<json> {
        auto body = body_object(c.request);
        if (!body) return body.status();
        auto f = JsonFields::of(*body, "a VM to protect");
        if (!f) return f.status();
        auto vm = f->required_text("vm", 256);
        if (!vm) return vm.status();
        EVAC_RETURN_IF_ERROR(f->finish());
        auto g = svc.add_vm_to_group(c.params[0], *vm);
        if (!g) return g.status();
        return to_json(*g);
      });
  add("DELETE", "/api/v1/groups/{name}/vms/{vm}", Access::kOperator, "Stop protecting a VM (removes its placeholder)",
      [&svc](Context& c) -> Result<json> {
        auto g = svc.remove_vm_from_group(c.params[0], c.params[1]);
        if (!g) return g.status();
        return to_json(*g);
      });

  // ---- what this site keeps for its peers
  add("GET", "/api/v1/placeholders", Access::kOperator, "Placeholders this site holds for its peers' groups",
      [&svc](Context&) -> Result<json> {
        auto p = svc.list_hosted_placeholders();
        if (!p) return p.status();
        return list_json(*p);
      });
  add("GET", "/api/v1/peer-copies", Access::kOperator, "Copies of paired sites' protection configuration",
      [&svc](Context&) -> Result<json> {
        auto copies = svc.list_peer_copies();
        if (!copies) return copies.status();
        json out = json::array();
        for (const auto& c : *copies) {
          auto document = parse_json(c.document, "site '" + c.peer_site + "''s copy");
          out.push_back({{"site", c.peer_site},
                         {"version", c.version},
                         {"received_at", c.received_at},
                         {"document", document ? *document : json()}});
        }
        return out;
      });

  // ---- site to site (mutual TLS)
  add("POST", "/api/v1/peer/pair", Access::kPairing, "Redeem a pairing token (called by the other evacd)",
      [&svc](Context& c) -> Result<json> {
        auto body = body_object(c.request);
        if (!body) return body.status();
        return svc.handle_peer_pair(c.request.client_pin, *body);
      });
  add("POST", "/api/v1/peer/heartbeat", Access::kPeer, "Heartbeat from a paired site", [&svc](Context& c) -> Result<json> {
    auto body = body_object(c.request);
    if (!body) return body.status();
    return svc.handle_peer_heartbeat(*c.peer, *body);
  });
  add("POST", "/api/v1/peer/unpair", Access::kPeer, "A paired site unpairs",
      [&svc](Context& c) -> Result<json> { return svc.handle_peer_unpair(*c.peer); });
  add("GET", "/api/v1/peer/inventory", Access::kPeer, "Networks and storage pools, for mapping checks",
      [&svc](Context& c) -> Result<json> { return svc.handle_peer_inventory(*c.peer); });
  add("POST", "/api/v1/peer/placeholders", Access::kPeer, "Register a placeholder VM",
      [&svc](Context& c) -> Result<json> {
        auto body = body_object(c.request);
        if (!body) return body.status();
        return svc.handle_peer_define_placeholder(*c.peer, *body);
      },
      201);
  add("DELETE", "/api/v1/peer/placeholders/{uuid}", Access::kPeer, "Remove a placeholder VM",
      [&svc](Context& c) -> Result<json> { return svc.handle_peer_remove_placeholder(*c.peer, c.params[0]); });
  add("POST", "/api/v1/peer/groups/{group}/shutdown", Access::kPeer,
      "Stop a group's VMs here ({graceful, timeout_s}; the group's recovery site, recovering)",
      [&svc](Context& c) -> Result<json> {
        auto body = body_object(c.request);
        if (!body) return body.status();
        return svc.handle_peer_shutdown_group(*c.peer, c.params[0], *body);
      });
  add("GET", "/api/v1/peer/groups/{group}/guest-agents", Access::kPeer,
      "Whether each running VM of a group answers its guest agent (the group's recovery site, checking readiness)",
      [&svc](Context& c) -> Result<json> { return svc.handle_peer_guest_agents(*c.peer, c.params[0]); });
  add("POST", "/api/v1/peer/groups/{group}/handover", Access::kPeer,
      "The group's recovery site took the live copy over ({owner, epoch, run}): fence the copy here",
      [&svc](Context& c) -> Result<json> {
        auto body = body_object(c.request);
        if (!body) return body.status();
        return svc.handle_peer_handover(*c.peer, c.params[0], *body);
      });
  add("PUT", "/api/v1/peer/config-copy", Access::kPeer, "Store the paired site's protection configuration",
      [&svc](Context& c) -> Result<json> {
        auto body = body_object(c.request);
        if (!body) return body.status();
        return svc.handle_peer_config_copy(*c.peer, *body);
      });
}

}  // namespace evac
