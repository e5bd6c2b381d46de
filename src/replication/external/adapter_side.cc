#include "replication/external/adapter_side.h"

#include "core/json_decode.h"
#include "replication/external/adapter_protocol.h"

namespace evac::external {
using nlohmann::json;

Result<Invocation> read_invocation(std::string_view text) {
  EVAC_ASSIGN_OR_RETURN(json doc, parse_json(text, "the request on stdin"));
  auto f = JsonFields::of(doc, "the request");
  if (!f) return f.status();
  auto protocol = f->required(f->integer("protocol", 0, 1000000), "protocol");
  auto operation = f->required_text("operation", 64);
  auto kind = f->required_text("kind", 64);
  const json* site = f->value("site");
  const json* settings = f->value("settings");
  const json* request = f->value("request");
  for (const Status& s : {protocol.status(), operation.status(), kind.status(), f->finish()})
    if (!s) return s;
  if (*protocol != kProtocolVersion)
    return invalid_argument("evac speaks protocol " + std::to_string(*protocol) + ", this adapter protocol " +
                                std::to_string(kProtocolVersion),
                            "install the adapter of the same evac release");
  if (!is_operation(*operation)) return unsupported("this adapter has no operation '" + excerpt(*operation) + "'");
  if (!site || !request || !request->is_object()) return invalid_argument("the request lacks site or request");
  auto s = JsonFields::of(*site, "the request's site");
  if (!s) return s.status();
  auto name = s->required_text("name", 64);
  auto state_dir = s->required_text("state_dir");
  for (const Status& st : {name.status(), state_dir.status(), s->finish()})
    if (!st) return st;
  return Invocation{*operation, *kind, *name, *state_dir, settings ? *settings : json::object(), *request};
}

std::string result_answer(const json& result) { return json{{"protocol", kProtocolVersion}, {"result", result}}.dump(); }

std::string error_answer(const Status& status) {
  json error = {{"code", status_code_name(status.code())}, {"message", status.message()}};
  if (!status.hint().empty()) error["action"] = status.hint();
  return json{{"protocol", kProtocolVersion}, {"error", error}}.dump();
}

std::string progress_line(const SyncProgress& p) {
  return json{{"progress", {{"bytes_total", p.bytes_total}, {"bytes_scanned", p.bytes_scanned}, {"bytes_sent", p.bytes_sent}}}}
      .dump();
}

}  // namespace evac::external
