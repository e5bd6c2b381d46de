// Runs of recovery plans at this site: starting one, following its steps,
// answering its prompts, its report.
#include <cstdint>
#include <string>
#include <vector>

#include "api/request.h"
#include "api/routes/routes.h"
#include "service/run_report.h"

namespace evac {
using nlohmann::json;

namespace {
using Access = ApiRouter::Access;
using Context = ApiRouter::Context;

// The run with its steps, and how far each running one has got.
json run_json(RunService& runs, const RunRow& run, const std::vector<engine::Step>& steps) {
  json j = to_json(run);
  j["steps"] = json::array();
  const std::int64_t now_ms = engine::system_millis();  // the clock the steps' times come from
  for (const auto& s : steps) {
    json step = to_json(s, now_ms);
    if (json progress = runs.step_progress(run.id, s); !progress.is_null()) step["progress"] = std::move(progress);
    j["steps"].push_back(std::move(step));
  }
  return j;
}

Result<json> start_run(RouteServices& services, Context& c) {
  EVAC_ASSIGN_OR_RETURN(RunService* runs, runs_of(services));
  EVAC_ASSIGN_OR_RETURN(auto f, body_fields(c.request, "a run request"));
  RunRequest req;
  req.plan = c.params[0];
  req.started_by = c.caller;
  EVAC_ASSIGN_OR_RETURN(req.operation, f->required_text("operation", 64));
  EVAC_ASSIGN_OR_RETURN(auto confirm, f->text("confirm", 256));
  EVAC_ASSIGN_OR_RETURN(auto pit, f->text("pit", 256));
  EVAC_RETURN_IF_ERROR(f->finish());
  req.confirm = confirm.value_or("");
  req.pit = pit.value_or("");
  EVAC_ASSIGN_OR_RETURN(auto run, runs->start(req));
  EVAC_ASSIGN_OR_RETURN(auto steps, runs->steps(run.id));
  return run_json(*runs, run, steps);
}

Result<json> run_report_of(RouteServices& services, Context& c) {
  EVAC_ASSIGN_OR_RETURN(RunService* runs, runs_of(services));
  const std::string format = query_param(c.request, "format").value_or("json");
  if (format != "json" && format != "csv" && format != "html")
    return invalid_argument("report format '" + excerpt(format) + "' is not json, csv or html");
  EVAC_ASSIGN_OR_RETURN(auto run, runs->get_run(c.params[0]));
  EVAC_ASSIGN_OR_RETURN(auto steps, runs->steps(run.id));
  json report = run_report(run, steps);
  if (format == "json") return report;
  std::string text = format == "csv" ? report_csv(report) : report_html(report);
  c.content_type = format == "csv" ? "text/csv; charset=utf-8" : "text/html; charset=utf-8";
  return json::binary(std::vector<std::uint8_t>(text.begin(), text.end()));
}

// Acknowledge, cancel, resume: a run id in, the same back.
void add_run_control_routes(ApiRouter& router, RouteServices& services) {
  router.add("POST", "/api/v1/runs/{id}/ack", Access::kOperator,
             "Acknowledge the prompt a run waits at ({step: N} optional)", [&services](Context& c) -> Result<json> {
               EVAC_ASSIGN_OR_RETURN(RunService* runs, runs_of(services));
               EVAC_ASSIGN_OR_RETURN(auto f, body_fields(c.request, "an acknowledgement"));
               EVAC_ASSIGN_OR_RETURN(auto step, f->integer_as<int>("step", 0, 1'000'000));
               EVAC_RETURN_IF_ERROR(f->finish());
               EVAC_RETURN_IF_ERROR(runs->ack(c.params[0], step.value_or(-1)));
               return json{{"acknowledged", c.params[0]}};
             });
  router.add("POST", "/api/v1/runs/{id}/cancel", Access::kOperator, "Start no more steps of a run; the rest are skipped",
             [&services](Context& c) -> Result<json> {
               EVAC_ASSIGN_OR_RETURN(RunService* runs, runs_of(services));
               EVAC_RETURN_IF_ERROR(runs->cancel(c.params[0]));
               return json{{"cancelled", c.params[0]}};
             });
  router.add("POST", "/api/v1/runs/{id}/resume", Access::kOperator, "Retry a failed run's failed steps and go on",
             [&services](Context& c) -> Result<json> {
               EVAC_ASSIGN_OR_RETURN(RunService* runs, runs_of(services));
               EVAC_RETURN_IF_ERROR(runs->resume(c.params[0]));
               return json{{"resumed", c.params[0]}};
             });
}

}  // namespace

void add_run_routes(ApiRouter& router, RouteServices& services) {
  router.add(
      "POST", "/api/v1/plans/{name}/runs", Access::kOperator,
      "Start a run of the plan: {operation: test|cleanup|migrate|failover|reprotect|failback, confirm, pit}",
      [&services](Context& c) { return start_run(services, c); }, 202);
  router.add("GET", "/api/v1/runs", Access::kOperator, "Runs, newest first (?plan=NAME, ?limit=N up to 1000, default 50)",
             [&services](Context& c) -> Result<json> {
               EVAC_ASSIGN_OR_RETURN(RunService* runs, runs_of(services));
               EVAC_ASSIGN_OR_RETURN(int limit, limit_param(c.request, 50, 1000));
               EVAC_ASSIGN_OR_RETURN(auto list, runs->list_runs(query_param(c.request, "plan"), limit));
               return list_json(list);
             });
  router.add("GET", "/api/v1/runs/{id}", Access::kOperator, "One run with its steps, their states, times and errors",
             [&services](Context& c) -> Result<json> {
               EVAC_ASSIGN_OR_RETURN(RunService* runs, runs_of(services));
               EVAC_ASSIGN_OR_RETURN(auto run, runs->get_run(c.params[0]));
               EVAC_ASSIGN_OR_RETURN(auto steps, runs->steps(run.id));
               return run_json(*runs, run, steps);
             });
  router.add("GET", "/api/v1/runs/{id}/report", Access::kOperator,
             "The run's report (?format=json|csv|html): every step with times, achieved RTO and RPO, who ran it, the plan",
             [&services](Context& c) { return run_report_of(services, c); });
  add_run_control_routes(router, services);
}

}  // namespace evac
