#include "service/site_service.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <limits>
#include <set>

#include "config/daemon_config.h"
#include "core/duration.h"
#include "core/model_json.h"
#include "core/replication_adapter.h"
#include "core/text.h"
#include "service/rate_limit.h"
#include "tls/tls.h"

namespace evac {
using nlohmann::json;

namespace {

constexpr std::string_view kPairingTokenPrefix = "evac-pair-1.";

std::int64_t system_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string basename_of(const std::string& path) { return std::filesystem::path(path).filename().string(); }

// What a paired site answers that its reader refused: the reader's
// message, about that site, and what to do.
Status refused_answer(const Status& why, const std::string& site) {
  return why.with_context("site '" + site + "'")
      .with_hint("it answered what no evacd of this version sends: check the evacd there (its version, its log)");
}

}  // namespace

const PeerInventory::Pool* PeerInventory::Provider::pool(const std::string& pool_name) const {
  for (const auto& p : pools)
    if (p.name == pool_name) return &p;
  return nullptr;
}

const PeerInventory::Provider* PeerInventory::provider(const std::string& provider_name) const {
  for (const auto& p : providers)
    if (p.name == provider_name) return &p;
  return nullptr;
}

Result<PeerInventory> peer_inventory_from_json(const json& j) {
  // {site, providers: [{name, kind, networks: [NetworkInfo], storage_pools:
  // [StoragePoolInfo]} or {name, kind, error}]}
  auto f = JsonFields::of(j, "an inventory");
  if (!f) return f.status();
  auto providers = f->list("providers");
  if (!providers) return providers.status();
  if (!*providers) return f->missing("providers");
  PeerInventory out;
  for (const json& item : **providers) {
    auto p = JsonFields::of(item, "a compute provider of an inventory");
    if (!p) return p.status();
    auto name = p->required_text("name", 256);
    auto networks = p->list("networks");
    auto pools = p->list("storage_pools");
    for (const Status& s : {name.status(), networks.status(), pools.status()})
      if (!s) return s;
    PeerInventory::Provider provider{*name, {}, {}};
    const std::string where = "of compute provider '" + excerpt(*name) + "' of an inventory";
    if (*networks)
      for (const json& n : **networks) {
        auto network = JsonFields::of(n, "a network " + where);
        if (!network) return network.status();
        auto network_name = network->required_text("name", 256);
        if (!network_name) return network_name.status();
        provider.networks.push_back(*network_name);
      }
    if (*pools)
      for (const json& n : **pools) {
        auto pool = JsonFields::of(n, "a storage pool " + where);
        if (!pool) return pool.status();
        auto pool_name = pool->required_text("name", 256);
        auto path = pool->text("path");
        for (const Status& s : {pool_name.status(), path.status()})
          if (!s) return s;
        provider.pools.push_back({*pool_name, path->value_or("")});
      }
    out.providers.push_back(std::move(provider));
  }
  return out;
}

SiteService::SiteService(SiteIdentity identity, Store& store,
                         std::map<std::string, std::unique_ptr<ComputeProvider>> providers, PeerTransport& transport,
                         Clock clock)
    : identity_(std::move(identity)),
      store_(store),
      providers_(std::move(providers)),
      transport_(transport),
      clock_(clock ? std::move(clock) : Clock(system_now)),
      test_clock_(clock != nullptr) {}

std::int64_t SiteService::now_ms() const {
  if (test_clock_) return clock_() * 1000;
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void SiteService::heard_from(const std::string& site) { (void)store_.record_peer_contact(site, clock_(), now_ms()); }

Result<std::optional<std::string>> SiteService::api_token_name(const std::string& bearer_token) {
  return store_.api_token_name(sha256_hex(bearer_token));
}

Result<std::optional<PeerRecord>> SiteService::paired_site_with_pin(const std::string& pin) {
  return store_.find_peer_by_pin(pin);
}

int SiteService::schema_version() { return store_.schema_version(); }

Result<std::vector<EventRecord>> SiteService::list_events(const std::optional<std::string>& group, int limit) {
  EVAC_ASSIGN_OR_RETURN(auto events, store_.list_events(group, limit));
  if (group && events.empty()) {
    EVAC_ASSIGN_OR_RETURN(auto g, store_.find_group(*group));
    if (!g)
      return not_found("no protection group named '" + excerpt(*group) + "' and no events about one",
                       "list groups with `evac group list`");
  }
  return events;
}

// ---- inventory --------------------------------------------------------------

Result<ComputeProvider*> SiteService::provider(const std::string& name) {
  auto it = providers_.find(name);
  if (it == providers_.end()) {
    std::vector<std::string> names;
    for (const auto& [n, _] : providers_) names.push_back(n);
    return not_found("site '" + identity_.name + "' has no compute provider named '" + name + "'",
                     names.empty() ? "add one under compute_providers in evacd's config"
                                   : "known providers: " + join(names, ", "));
  }
  return it->second.get();
}

json SiteService::providers_status() {
  json out = json::array();
  for (const auto& [name, p] : providers_) {
    Status s = p->ping();
    json entry = {{"name", name}, {"kind", p->kind()}, {"uri", p->uri()}, {"reachable", s.is_ok()}};
    if (!s.is_ok()) entry["error"] = {{"code", status_code_name(s.code())}, {"message", s.message()}, {"hint", s.hint()}};
    out.push_back(entry);
  }
  return out;
}

// Concatenates what `list` returns for every provider (or just `only`),
// naming the provider whose call failed.
template <typename List>
auto SiteService::gather(const std::optional<std::string>& only, std::string_view what, List list)
    -> decltype(list(std::declval<ComputeProvider&>())) {
  if (only) EVAC_RETURN_IF_ERROR(provider(*only));
  std::remove_cvref_t<decltype(*list(std::declval<ComputeProvider&>()))> out;
  for (const auto& [name, p] : providers_) {
    if (only && *only != name) continue;
    auto items = list(*p);
    if (!items) return items.status().with_context("listing " + std::string(what) + " of compute provider '" + name + "'");
    for (auto& item : *items) out.push_back(std::move(item));
  }
  return out;
}

Result<std::vector<VmInfo>> SiteService::list_vms(const std::optional<std::string>& provider_name) {
  return gather(provider_name, "VMs", [](ComputeProvider& p) { return p.list_vms(); });
}

Result<VmInfo> SiteService::find_vm(const std::string& ref) {
  auto vms = find_vms({ref});
  if (!vms) return vms.status();
  return std::move(vms->front());
}

Result<std::vector<VmInfo>> SiteService::find_vms(const std::vector<std::string>& refs) {
  // Listing a provider's VMs reads every domain's definition: list each
  // provider (or all of them) once, however many VMs are named.
  std::map<std::optional<std::string>, std::vector<VmInfo>> listings;
  std::vector<VmInfo> out;
  for (const auto& ref : refs) {
    std::optional<std::string> provider_name;
    std::string name = ref;
    if (auto slash = ref.find('/'); slash != std::string::npos) {
      provider_name = ref.substr(0, slash);
      name = ref.substr(slash + 1);
    }
    auto listing = listings.find(provider_name);
    if (listing == listings.end()) {
      auto vms = list_vms(provider_name);
      if (!vms) return vms.status();
      listing = listings.emplace(provider_name, std::move(*vms)).first;
    }
    std::vector<const VmInfo*> matches;
    for (const auto& vm : listing->second)
      if (vm.name == name || vm.uuid == name) matches.push_back(&vm);
    if (matches.empty())
      return not_found("no VM '" + ref + "' at site '" + identity_.name + "'", "list the VMs with `evac inventory vms`");
    if (matches.size() > 1)
      return invalid_argument("VM name '" + ref + "' is ambiguous: several compute providers have it",
                              "name it as PROVIDER/NAME, e.g. " + matches[0]->provider + "/" + name);
    out.push_back(*matches[0]);
  }
  return out;
}

Result<std::vector<NetworkInfo>> SiteService::list_networks(const std::optional<std::string>& provider_name) {
  return gather(provider_name, "networks", [](ComputeProvider& p) { return p.list_networks(); });
}

Result<std::vector<StoragePoolInfo>> SiteService::list_storage_pools(const std::optional<std::string>& provider_name) {
  return gather(provider_name, "storage pools", [](ComputeProvider& p) { return p.list_storage_pools(); });
}

// ---- pairing ----------------------------------------------------------------

Result<json> SiteService::create_pairing_token(std::chrono::seconds ttl) {
  if (ttl.count() <= 0 || ttl > std::chrono::hours(24))
    return invalid_argument("a pairing token must live between 1s and 24h", "for example --ttl 15m");
  std::string secret = random_token();
  std::int64_t expires_at = clock_() + ttl.count();
  EVAC_RETURN_IF_ERROR(store_.add_pairing_token(sha256_hex(secret), expires_at));
  json payload = {{"site", identity_.name}, {"url", identity_.url}, {"pin", identity_.pin}, {"secret", secret}};
  return json{{"token", std::string(kPairingTokenPrefix) + base64url_encode(payload.dump())},
              {"site", identity_.name},
              {"url", identity_.url},
              {"expires_at", expires_at}};
}

Result<PeerRecord> SiteService::pair(const std::string& token, const std::optional<std::string>& url_override) {
  std::lock_guard lock(protection_mu_);
  auto bad_token = [] {
    return invalid_argument("that is not an evac pairing token",
                            "copy the whole token printed by `evac site pairing-token` at the other site");
  };
  if (token.rfind(kPairingTokenPrefix, 0) != 0) return bad_token();
  auto decoded = base64url_decode(token.substr(kPairingTokenPrefix.size()));
  if (!decoded) return bad_token();
  auto parsed = parse_json(*decoded, "the pairing token");
  if (!parsed || !parsed->is_object()) return bad_token();
  json& payload = *parsed;
  if (!payload["site"].is_string() || !payload["url"].is_string() || !payload["pin"].is_string() ||
      !payload["secret"].is_string())
    return bad_token();
  std::string peer_site = payload["site"];
  EVAC_RETURN_IF_ERROR(validate_name("site", peer_site).with_hint("the token is damaged: copy it again"));
  if (peer_site == identity_.name)
    return invalid_argument("the token was issued by this site ('" + peer_site + "')",
                            "create the token at the other site and redeem it here");
  auto existing = store_.find_peer(peer_site);
  if (!existing) return existing.status();
  if (existing->has_value())
    return already_exists("site '" + peer_site + "' is already paired with this site",
                          "run `evac site unpair " + peer_site + "` first to pair it again");

  PeerEndpoint endpoint{url_override.value_or(payload["url"].get<std::string>()), payload["pin"]};
  json request = {{"secret", payload["secret"]}, {"site", identity_.name}, {"url", identity_.url}};
  auto answer = PeerClient([&](const std::string& method, const std::string& path, const std::optional<json>& body,
                               std::chrono::milliseconds) { return transport_.call(endpoint, method, path, body); })
                    .pair(request);
  if (!answer) return answer.status().with_context("pairing with site '" + peer_site + "' at " + endpoint.url);
  // {site, url}: only the name is read (the URL is the token's, or the operator's).
  auto fields = JsonFields::of(*answer, "the pairing answer");
  auto answered = fields ? fields->required_text("site", 64) : Result<std::string>(fields.status());
  if (!answered) return refused_answer(answered.status(), peer_site).with_context("pairing at " + endpoint.url);
  if (*answered != peer_site)
    return failed_precondition("the site at " + endpoint.url + " calls itself '" + excerpt(*answered) +
                                   "', but the token was issued by '" + peer_site + "'",
                               "check that the URL reaches the site that issued the token");
  PeerRecord record{peer_site, endpoint.url, endpoint.pin, clock_(), clock_(), std::nullopt, ""};
  EVAC_RETURN_IF_ERROR(store_.add_peer(record));
  return record;
}

Result<json> SiteService::handle_peer_pair(const std::string& caller_pin, const json& body) {
  std::lock_guard lock(protection_mu_);
  if (caller_pin.empty())
    return unauthenticated("pairing needs the calling site's TLS client certificate", "use `evac site pair`, not a raw call");
  // Anyone with any certificate can call this: read nothing unchecked.
  auto f = JsonFields::of(body, "a pairing request");
  if (!f) return f.status();
  auto secret = f->required_text("secret", 256);
  auto site_field = f->required_text("site", 64);
  auto url = f->required_text("url", 2048);
  for (const Status& s : {secret.status(), site_field.status(), url.status(), f->finish()})
    if (!s) return s.with_hint("use `evac site pair`");
  const std::string& site = *site_field;
  EVAC_RETURN_IF_ERROR(validate_name("site", site));
  if (site == identity_.name)
    return invalid_argument("both sites are named '" + site + "'", "give each site its own name in evacd's config");
  auto existing = store_.find_peer(site);
  if (!existing) return existing.status();
  if (existing->has_value())
    return already_exists("site '" + site + "' is already paired with site '" + identity_.name + "'",
                          "unpair it there first with `evac site unpair " + site + "`");
  Status s = store_.transaction([&]() -> Status {
    EVAC_RETURN_IF_ERROR(store_.consume_pairing_token(sha256_hex(*secret), clock_()));
    return store_.add_peer(PeerRecord{site, *url, caller_pin, clock_(), clock_(), std::nullopt, ""});
  });
  if (!s) return s;
  return json{{"site", identity_.name}, {"url", identity_.url}};
}

Status SiteService::unpair(const std::string& site) {
  std::lock_guard lock(protection_mu_);
  auto peer = resolve_peer(site);
  if (!peer) return peer.status();
  auto using_peer = groups_recovering_to(site);
  if (!using_peer) return using_peer.status();
  if (!using_peer->empty())
    return failed_precondition("protection groups still recover to site '" + site + "': " + join(*using_peer, ", "),
                               "delete those groups (`evac group delete NAME`) before unpairing");
  auto hosted = store_.list_hosted_placeholders();
  if (!hosted) return hosted.status();
  for (const auto& p : *hosted)
    if (p.source_site == site)
      return failed_precondition("this site still holds placeholders for site '" + site + "' (e.g. " + p.name + ")",
                                 "delete the protection groups at site '" + site + "' first");
  // Tell the peer so it forgets us too; unpairing proceeds if it is gone,
  // because an operator must be able to retire a site that no longer exists.
  auto told = peer_client(*peer).unpair();
  (void)told;
  return store_.remove_peer(site);
}

Result<std::vector<std::string>> SiteService::groups_recovering_to(const std::string& site) {
  auto groups = store_.list_groups();
  if (!groups) return groups.status();
  std::vector<std::string> out;
  for (const auto& g : *groups)
    if (g.recovery_site == site) out.push_back(g.name);
  return out;
}

Result<json> SiteService::handle_peer_unpair(const PeerRecord& caller) {
  std::lock_guard lock(protection_mu_);
  auto groups = store_.list_groups();
  if (!groups) return groups.status();
  for (const auto& g : *groups)
    if (g.recovery_site == caller.site)
      return failed_precondition("site '" + identity_.name + "' still protects group '" + g.name + "' to site '" +
                                     caller.site + "'",
                                 "delete that group first");
  EVAC_RETURN_IF_ERROR(store_.remove_peer(caller.site));
  return json{{"site", identity_.name}, {"unpaired", caller.site}};
}

Result<std::vector<PeerStatus>> SiteService::peer_statuses() {
  auto peers = store_.list_peers();
  if (!peers) return peers.status();
  std::vector<PeerStatus> out;
  for (auto& p : *peers) {
    bool connected = p.last_seen_at.has_value() && !p.unreachable_since.has_value();
    out.push_back(PeerStatus{std::move(p), connected});
  }
  return out;
}

Result<PeerRecord> SiteService::resolve_peer(const std::optional<std::string>& site) {
  if (site) {
    auto p = store_.find_peer(*site);
    if (!p) return p.status();
    if (!p->has_value())
      return not_found("site '" + *site + "' is not paired with site '" + identity_.name + "'",
                       "pair them first: `evac site pairing-token` there, `evac site pair TOKEN` here");
    return **p;
  }
  auto peers = store_.list_peers();
  if (!peers) return peers.status();
  if (peers->empty())
    return failed_precondition("site '" + identity_.name + "' is not paired with any site",
                               "pair it first: `evac site pairing-token` at the recovery site, `evac site pair TOKEN` here");
  if (peers->size() > 1)
    return invalid_argument("site '" + identity_.name + "' is paired with several sites", "name the recovery site with --peer");
  return peers->front();
}

Result<json> SiteService::call_peer(const PeerRecord& peer, const std::string& method, const std::string& path,
                                    const std::optional<json>& body, std::chrono::milliseconds long_wait) {
  if (long_wait.count() <= 0) {
    auto r = transport_.call(PeerEndpoint{peer.url, peer.pin}, method, path, body);
    note_peer_outcome(peer.site, r.status());
    if (r.is_ok()) return r;
    return r.status().with_context("site '" + peer.site + "'");
  }
  auto bytes = transport_.call_bytes(PeerEndpoint{peer.url, peer.pin}, method, path, body ? body->dump() : "", long_wait);
  note_peer_outcome(peer.site, bytes.status());
  if (!bytes) return bytes.status().with_context("site '" + peer.site + "'");
  auto out = parse_json_or_discarded(*bytes);
  if (out.is_discarded()) return unavailable("site '" + peer.site + "' answered " + path + " with no JSON");
  return out;
}

PeerClient SiteService::peer_client(const PeerRecord& peer) {
  return PeerClient([this, peer](const std::string& method, const std::string& path, const std::optional<json>& body,
                                 std::chrono::milliseconds wait) { return call_peer(peer, method, path, body, wait); });
}

PeerClient SiteService::peer_client(const std::string& site) {
  return PeerClient([this, site](const std::string& method, const std::string& path, const std::optional<json>& body,
                                 std::chrono::milliseconds wait) -> Result<json> {
    auto peer = store_.find_peer(site);
    if (!peer) return peer.status();
    if (!peer->has_value()) return not_found("site '" + site + "' is not paired with this site", "pair them: `evac site pair`");
    return call_peer(**peer, method, path, body, wait);
  });
}

// What `site status` shows: the last contact, or since when and why the
// site has not answered. Only no answer or a failed handshake counts as a
// failure; an error the peer answered with (a refusal, a missing object)
// leaves the record as it was.
void SiteService::note_peer_outcome(const std::string& site, const Status& outcome) {
  if (outcome.is_ok())
    (void)store_.record_peer_contact(site, clock_(), now_ms());
  else if (outcome.code() == StatusCode::kUnavailable || outcome.code() == StatusCode::kPermissionDenied)
    (void)store_.record_peer_failure(site, clock_(), outcome.message());
}

void SiteService::heartbeat_round() {
  auto peers = store_.list_peers();
  if (!peers) return;
  auto version = store_.config_version();
  for (const auto& peer : *peers) {
    auto answer = peer_client(peer).heartbeat(
        json{{"site", identity_.name}, {"config_version", version ? *version : 0}});
    if (!answer) continue;
    // {site, time, copy_version}: only the version of our copy there is read.
    auto fields = JsonFields::of(*answer, "the heartbeat answer");
    auto copy_version = fields ? fields->integer("copy_version", 0, std::numeric_limits<std::int64_t>::max())
                               : Result<std::optional<std::int64_t>>(fields.status());
    if (!copy_version) {
      spdlog::warn("heartbeat: {}", refused_answer(copy_version.status(), peer.site).to_string());
      continue;
    }
    if (version && *copy_version != *version) (void)push_config_copy(peer);
  }
}

Result<json> SiteService::handle_peer_heartbeat(const PeerRecord& caller, const json& body) {
  auto f = JsonFields::of(body, "a heartbeat");
  if (!f) return f.status();
  for (const Status& s : {f->text("site", 64).status(), f->integer("config_version", 0, INT64_MAX).status(), f->finish()})
    if (!s) return s;
  EVAC_RETURN_IF_ERROR(store_.record_peer_contact(caller.site, clock_(), now_ms()));
  auto copy = store_.find_peer_copy(caller.site);
  if (!copy) return copy.status();
  return json{{"site", identity_.name}, {"time", clock_()}, {"copy_version", copy->has_value() ? (*copy)->version : 0}};
}

Result<json> SiteService::protection_document() {
  auto version = store_.config_version();
  if (!version) return version.status();
  auto mappings = store_.list_mappings();
  if (!mappings) return mappings.status();
  auto groups = store_.list_groups();
  if (!groups) return groups.status();
  auto plans = store_.list_plans();
  if (!plans) return plans.status();
  json doc = {{"site", identity_.name}, {"version", *version}, {"mappings", json::array()}, {"groups", json::array()},
              {"plans", json::array()}};
  for (const auto& m : *mappings) doc["mappings"].push_back(to_json(m));
  for (const auto& g : *groups) doc["groups"].push_back(to_json(g));
  for (const auto& p : *plans) {
    json plan = parse_json_or_discarded(p.document);
    if (plan.is_object()) doc["plans"].push_back(std::move(plan));
  }
  // Groups this site took over: a protected site that comes back learns
  // from this that its copy is fenced.
  auto owned = store_.list_ownership();
  if (!owned) return owned.status();
  doc["ownership"] = json::array();
  for (const auto& o : *owned)
    if (o.owner_site == identity_.name)
      doc["ownership"].push_back({{"group", o.group}, {"owner", o.owner_site}, {"epoch", o.epoch}, {"run", o.run_id}});
  return doc;
}

Status SiteService::push_config_to(const std::string& site) {
  auto peer = store_.find_peer(site);
  if (!peer) return peer.status();
  if (!peer->has_value()) return failed_precondition("site '" + site + "' is not paired");
  return push_config_copy(**peer);
}

Status SiteService::push_config_copy(const PeerRecord& peer) {
  // Only what concerns that peer travels there.
  auto doc = protection_document();
  if (!doc) return doc.status();
  json filtered = *doc;
  filtered["mappings"] = json::array();
  filtered["groups"] = json::array();
  for (const auto& m : (*doc)["mappings"])
    if (m["peer_site"] == peer.site) filtered["mappings"].push_back(m);
  for (const auto& g : (*doc)["groups"])
    if (g["recovery_site"] == peer.site) filtered["groups"].push_back(g);
  // Plans over groups that involve the peer either way: ours it recovers,
  // or its own that we recover (so the plan is there for failback).
  std::set<std::string> involved;
  for (const auto& g : filtered["groups"]) involved.insert(g.value("name", ""));
  if (auto copy = store_.find_peer_copy(peer.site); copy && copy->has_value()) {
    auto theirs = parse_json_or_discarded((*copy)->document);
    if (theirs.is_object() && theirs.contains("groups") && theirs["groups"].is_array())
      for (const auto& g : theirs["groups"])  // a copy stored before its groups were checked: no value() on it
        if (auto name = g.is_object() ? g.find("name") : g.end(); name != g.end() && name->is_string())
          involved.insert(name->get<std::string>());
  }
  filtered["plans"] = json::array();
  for (const auto& p : (*doc)["plans"]) {
    bool concerns = false;
    if (p.contains("groups") && p["groups"].is_array())
      for (const auto& g : p["groups"])
        if (g.is_string() && involved.count(g.get<std::string>())) concerns = true;
    if (concerns) filtered["plans"].push_back(p);
  }
  return peer_client(peer).put_config_copy(filtered).status();
}

Result<json> SiteService::handle_peer_config_copy(const PeerRecord& caller, const json& body) {
  // The document is kept whole (plans and groups are read back from it by
  // their own decoders); its frame and the ownership claims, which act
  // here, are checked now.
  auto f = JsonFields::of(body, "a configuration copy");
  if (!f) return f.status();
  auto site = f->required_text("site", 64);
  auto version = f->integer("version", 0, INT64_MAX);
  for (const Status& s : {site.status(), version.status()})
    if (!s) return s;
  if (*site != caller.site || !version->has_value())
    return invalid_argument("a configuration copy needs the sending site's name and a version");
  for (const char* list : {"mappings", "groups", "plans", "ownership"})
    if (const json* v = f->value(list); v && !v->is_array())
      return invalid_argument(std::string("'") + list + "' of a configuration copy must be a list");
  EVAC_RETURN_IF_ERROR(f->finish());
  // Its groups are what runs here work from (a reprotect carries their
  // settings over): one out of bounds is refused now, while the copy held
  // so far stays, rather than when a recovery needs it.
  if (const json* groups = f->value("groups"))
    for (const auto& g : *groups)
      if (auto read = peer_group_from_json(g); !read) return read.status();
  std::vector<OwnershipRecord> claims;
  if (const json* ownership_list = f->value("ownership")) {
    for (const auto& item : *ownership_list) {
      auto claim = JsonFields::of(item, "an ownership claim");
      if (!claim) return claim.status();
      auto group = claim->required_text("group", 64);
      auto owner = claim->required_text("owner", 64);
      auto epoch = claim->integer("epoch", 0, kMaxEpoch);
      auto run = claim->text("run", 256);
      for (const Status& s : {group.status(), owner.status(), epoch.status(), run.status(), claim->finish()})
        if (!s) return s;
      claims.push_back(OwnershipRecord{*group, *owner, epoch->value_or(0), clock_(), run->value_or("")});
    }
  }
  EVAC_RETURN_IF_ERROR(store_.put_peer_copy(PeerCopyRecord{caller.site, **version, body.dump(), clock_()}));
  // A claim on one of our groups with a newer epoch: the caller recovered
  // it while we were away. Our copy is stale and must not run.
  for (const auto& claim : claims) {
    if (claim.owner_site != caller.site) continue;
    auto g = store_.find_group(claim.group);
    if (!g || !g->has_value() || (*g)->protected_site != identity_.name || (*g)->recovery_site != caller.site) continue;
    auto current = ownership((*g)->name, (*g)->protected_site, (*g)->epoch);
    if (!current || claim.epoch <= current->epoch) continue;
    Status fenced = fence(**g, OwnershipRecord{(*g)->name, caller.site, claim.epoch, clock_(), claim.run_id});
    if (!fenced.is_ok()) spdlog::error("fencing group {}: {}", (*g)->name, fenced.to_string());
  }
  return json{{"site", identity_.name}, {"copy_version", **version}};
}

// ---- ownership and the protected site's half of a recovery ----------------------------

Result<SiteService::Ownership> SiteService::ownership(const std::string& group, const std::string& protected_site,
                                                     std::int64_t epoch) {
  auto rec = store_.find_ownership(group);
  if (!rec) return rec.status();
  if (rec->has_value() && (*rec)->epoch >= epoch) return Ownership{(*rec)->owner_site, (*rec)->epoch, (*rec)->run_id};
  return Ownership{protected_site, epoch, ""};
}

Status SiteService::check_not_fenced(const GroupRecord& group) {
  auto o = ownership(group.name, group.protected_site, group.epoch);
  if (!o) return o.status();
  if (o->owner == identity_.name) return Status::ok();
  return failed_precondition("group '" + group.name + "' is live at site '" + o->owner + "' since run " +
                                 (o->run.empty() ? "?" : o->run) + " (epoch " + std::to_string(o->epoch) +
                                 "): its copy here is fenced",
                             "reprotect the group from '" + o->owner + "' to bring this site's copy up to date");
}

Result<SiteService::Standing> SiteService::standing(const GroupRecord& group) {
  auto o = ownership(group.name, group.protected_site, group.epoch);
  if (!o) return o.status();
  Standing s{"protected", o->owner, o->epoch, o->run, ""};
  const std::string& here = identity_.name;
  const std::string since = o->run.empty() ? "" : " since run " + o->run;
  if (o->owner == group.protected_site) {
    s.text = "protected: live at " + group.protected_site + ", replicated to " + group.recovery_site;
  } else if (o->owner == here) {
    s.state = "recovered_here";
    s.text = "recovered here" + since + " (epoch " + std::to_string(o->epoch) + "): not replicated until `evac plan reprotect`";
  } else if (group.protected_site == here) {
    s.state = "fenced_here";
    s.text = "fenced here: live at " + o->owner + since + " (epoch " + std::to_string(o->epoch) +
             "); this site's copies are stale and stay off until a reprotect from " + o->owner;
  } else {
    s.state = "live_elsewhere";
    s.text = "live at " + o->owner + since + " (epoch " + std::to_string(o->epoch) + ")";
  }
  return s;
}

Result<json> SiteService::group_json(const GroupRecord& group) {
  auto s = standing(group);
  if (!s) return s.status();
  json out = to_json(group);
  out["standing"] = {{"state", s->state}, {"live_at", s->live_at}, {"epoch", s->epoch},
                     {"run", s->run.empty() ? json() : json(s->run)}, {"text", s->text}};
  return out;
}

Status SiteService::fence(const GroupRecord& group, const OwnershipRecord& record) {
  EVAC_RETURN_IF_ERROR(store_.put_ownership(record));
  std::string stopped, failed;
  for (const auto& vm : group.vms) {
    auto p = provider(vm.provider);
    Status st = p ? (*p)->power_off(vm.vm_uuid, false, std::chrono::seconds(0)) : p.status();
    if (st.is_ok())
      stopped += (stopped.empty() ? "" : ", ") + vm.vm_name;
    else
      failed += (failed.empty() ? "" : "; ") + vm.vm_name + ": " + st.message();
  }
  std::string message = "group '" + group.name + "' is live at site '" + record.owner_site + "' (run " + record.run_id +
                        ", epoch " + std::to_string(record.epoch) + "): its copy here is fenced";
  if (!stopped.empty()) message += "; powered off " + stopped;
  if (!failed.empty()) message += "; could not power off " + failed + " — do it by hand";
  StorageFence storage;
  {
    std::lock_guard lock(storage_fence_mu_);
    storage = storage_fence_;
  }
  if (storage) {
    Status st = storage(group);
    if (st.is_ok())
      message += "; its disks are read-only";
    else
      message += "; its disks could not be made read-only (" + st.message() +
                 (st.hint().empty() ? "" : ": " + st.hint()) + ") — a VM started here by hand would write its stale copy";
  }
  (void)store_.add_event(EventRecord{0, clock_(), failed.empty() ? "warning" : "error", "fenced", group.name, message});
  spdlog::warn("{}", message);
  return Status::ok();
}

void SiteService::set_storage_fence(const void* owner, StorageFence fence) {
  std::lock_guard lock(storage_fence_mu_);
  storage_fence_owner_ = owner;
  storage_fence_ = std::move(fence);
}

void SiteService::clear_storage_fence(const void* owner) {
  std::lock_guard lock(storage_fence_mu_);
  if (storage_fence_owner_ != owner) return;
  storage_fence_owner_ = nullptr;
  storage_fence_ = nullptr;
}

Result<GroupRecord> SiteService::group_recovered_by(const PeerRecord& caller, const std::string& group) {
  auto g = store_.find_group(group);
  if (!g) return g.status();
  if (!g->has_value() || (*g)->protected_site != identity_.name)
    return not_found("site '" + identity_.name + "' protects no group '" + group + "'");
  if ((*g)->recovery_site != caller.site)
    return permission_denied("group '" + group + "' recovers to '" + (*g)->recovery_site + "', not '" + caller.site + "'");
  return **g;
}

Result<json> SiteService::handle_peer_shutdown_group(const PeerRecord& caller, const std::string& group, const json& body) {
  auto g = group_recovered_by(caller, group);
  if (!g) return g.status();
  auto f = JsonFields::of(body, "a shutdown request");
  if (!f) return f.status();
  auto graceful_field = f->boolean("graceful");
  auto timeout_field = f->integer("timeout_s", 0, 24 * 3600);  // 0: power off at once
  for (const Status& s : {graceful_field.status(), timeout_field.status(), f->finish()})
    if (!s) return s;
  const bool graceful = graceful_field->value_or(true);
  const auto timeout = std::chrono::seconds(timeout_field->value_or(300));
  json vms = json::array();
  for (const auto& vm : g->vms) {
    auto p = provider(vm.provider);
    if (!p) return p.status();
    EVAC_RETURN_IF_ERROR((*p)->power_off(vm.vm_uuid, graceful, timeout).with_context("site '" + identity_.name + "'"));
    vms.push_back(vm.vm_name);
  }
  return json{{"stopped", vms}, {"graceful", graceful}};
}

Result<json> SiteService::handle_peer_guest_agents(const PeerRecord& caller, const std::string& group) {
  auto g = group_recovered_by(caller, group);
  if (!g) return g.status();
  json out = json::array();
  for (const auto& vm : g->vms) {
    json entry = {{"vm", vm.vm_name}, {"state", "unknown"}, {"agent", false}, {"error", ""}};
    auto p = provider(vm.provider);
    auto info = p ? (*p)->get_vm(vm.vm_uuid) : Result<VmInfo>(p.status());
    if (!info) {
      entry["error"] = info.status().message();
    } else {
      entry["state"] = power_state_name(info->state);
      if (info->state == PowerState::kRunning) {
        Status ping = (*p)->guest_ping(vm.vm_uuid);
        entry["agent"] = ping.is_ok();
        if (!ping.is_ok()) entry["error"] = ping.message();
      }
    }
    out.push_back(entry);
  }
  return out;
}

Result<json> SiteService::handle_peer_handover(const PeerRecord& caller, const std::string& group, const json& body) {
  auto g = group_recovered_by(caller, group);
  if (!g) return g.status();
  auto f = JsonFields::of(body, "a handover");
  if (!f) return f.status();
  auto owner = f->required_text("owner", 64);
  auto epoch_field = f->integer("epoch", 0, kMaxEpoch);
  auto run = f->text("run", 256);
  for (const Status& s : {owner.status(), epoch_field.status(), run.status(), f->finish()})
    if (!s) return s;
  if (*owner != caller.site || !epoch_field->has_value())
    return invalid_argument("a handover names the new owner (the caller) and its epoch");
  const std::int64_t epoch = **epoch_field;
  auto current = ownership(g->name, g->protected_site, g->epoch);
  if (!current) return current.status();
  if (epoch <= current->epoch && current->owner != caller.site)
    return failed_precondition("handover of group '" + group + "' at epoch " + std::to_string(epoch) +
                               " is not newer than epoch " + std::to_string(current->epoch));
  EVAC_RETURN_IF_ERROR(fence(*g, OwnershipRecord{g->name, caller.site, epoch, clock_(), run->value_or("")}));
  return json{{"fenced", group}, {"owner", caller.site}, {"epoch", epoch}};
}

Result<std::vector<PeerCopyRecord>> SiteService::list_peer_copies() { return store_.list_peer_copies(); }

// ---- inventory mappings ---------------------------------------------------------

Result<json> SiteService::handle_peer_inventory(const PeerRecord&) {
  json providers = json::array();
  for (const auto& [name, p] : providers_) {
    json entry = {{"name", name}, {"kind", p->kind()}};
    auto nets = p->list_networks();
    auto pools = p->list_storage_pools();
    if (!nets || !pools) {
      entry["error"] = (!nets ? nets.status() : pools.status()).message();
    } else {
      entry["networks"] = *nets;
      entry["storage_pools"] = *pools;
    }
    providers.push_back(entry);
  }
  return json{{"site", identity_.name}, {"providers", providers}};
}

Result<PeerInventory> SiteService::peer_inventory(const PeerRecord& peer) {
  auto answer = peer_client(peer).inventory();
  if (!answer) return answer.status();
  auto inventory = peer_inventory_from_json(*answer);
  if (!inventory) return refused_answer(inventory.status(), peer.site);
  return inventory;
}

Result<MappingRecord> SiteService::create_mapping(const MappingCreateRequest& req) {
  std::lock_guard lock(protection_mu_);
  auto peer = resolve_peer(req.peer_site);
  if (!peer) return peer.status();
  if (req.source.empty() || req.target.empty())
    return invalid_argument("a mapping needs a source (here) and a target (at site '" + peer->site + "')");
  std::string kind(mapping_kind_name(req.kind));
  if (req.kind == MappingKind::kNetwork) {
    if (req.test_network.empty())
      return invalid_argument("network mapping " + req.source + " -> " + req.target + " has no test network",
                              "pass --test-network NAME: an isolated network at site '" + peer->site +
                                  "' where test recoveries attach, so a test never touches production");
    if (req.test_network == req.target)
      return invalid_argument("the test network must differ from the recovery network '" + req.target + "'",
                              "use an isolated network at site '" + peer->site + "' for tests");
  } else if (!req.test_network.empty()) {
    return invalid_argument("only network mappings have a test network");
  }

  // The source must exist here. A network mapping's ends may be libvirt
  // networks, host bridges or host devices, named by their attachment keys
  // ("prod", "bridge:br0", "direct:eth1"); a bare name that is no network
  // but a bridge or device is read as that.
  std::string source = req.source;
  bool source_found = false;
  if (req.kind == MappingKind::kCompute) {
    source_found = providers_.count(req.source) > 0;
  } else {
    std::vector<std::string> here;
    for (const auto& [name, p] : providers_) {
      if (req.kind == MappingKind::kNetwork) {
        auto nets = p->list_networks();
        if (!nets) return nets.status().with_context("checking network '" + req.source + "'");
        for (const auto& n : *nets) here.push_back(n.name);
      } else {
        auto pools = p->list_storage_pools();
        if (!pools) return pools.status().with_context("checking storage pool '" + req.source + "'");
        for (const auto& sp : *pools) source_found |= sp.name == req.source;
      }
    }
    if (req.kind == MappingKind::kNetwork) {
      auto resolved = resolve_attachment(here, req.source);
      if (!resolved) return resolved.status();
      source_found = resolved->has_value();
      if (source_found) source = **resolved;
    }
  }
  if (!source_found)
    return not_found(kind + " '" + req.source + "' does not exist at site '" + identity_.name + "'",
                     "list what exists with `evac inventory " +
                         std::string(req.kind == MappingKind::kCompute ? "providers"
                                     : req.kind == MappingKind::kNetwork ? "networks"
                                                                          : "pools") +
                         "`");

  // The target (and test network) must exist at the recovery site.
  auto inventory = peer_inventory(*peer);
  if (!inventory)
    return inventory.status().with_hint("the recovery site must answer to check the mapping's target; " +
                                        inventory.status().hint());
  auto exists_at_peer = [&](const std::string& what, MappingKind kind) {
    for (const auto& p : inventory->providers) {
      if (kind == MappingKind::kCompute && p.name == what) return true;
      if (kind == MappingKind::kNetwork && std::find(p.networks.begin(), p.networks.end(), what) != p.networks.end())
        return true;
      if (kind == MappingKind::kStorage && p.pool(what)) return true;
    }
    return false;
  };
  std::vector<std::string> there;  // attachment keys at the recovery site
  for (const auto& p : inventory->providers) there.insert(there.end(), p.networks.begin(), p.networks.end());
  std::string target = req.target, test_network = req.test_network;
  if (req.kind == MappingKind::kNetwork) {
    auto resolved = resolve_attachment(there, req.target);
    if (!resolved) return resolved.status();
    if (*resolved) target = **resolved;
    if (!req.test_network.empty()) {
      auto test = resolve_attachment(there, req.test_network);
      if (!test) return test.status();
      if (!*test)
        return not_found("test network '" + req.test_network + "' does not exist at site '" + peer->site + "'",
                         "create an isolated network there first (or name a host bridge with no uplink as bridge:NAME)");
      test_network = **test;
      if (test_network == target)
        return invalid_argument("the test network must differ from the recovery network '" + target + "'",
                                "use an isolated network at site '" + peer->site + "' for tests");
    }
  }
  if (!exists_at_peer(target, req.kind))
    return not_found(kind + " '" + req.target + "' does not exist at site '" + peer->site + "'",
                     "create it there first, or check the name with `evac inventory` against that site");

  MappingRecord record{0, peer->site, req.kind, source, target, test_network, clock_()};
  auto stored = store_.add_mapping(record);
  if (stored) (void)push_config_copy(*peer);
  return stored;
}

Result<std::vector<MappingRecord>> SiteService::list_mappings() { return store_.list_mappings(); }

Status SiteService::delete_mapping(std::int64_t id) {
  std::lock_guard lock(protection_mu_);
  auto all = store_.list_mappings();
  if (!all) return all.status();
  auto it = std::find_if(all->begin(), all->end(), [&](const MappingRecord& m) { return m.id == id; });
  if (it == all->end()) return not_found("no mapping with id " + std::to_string(id), "list them with `evac mapping list`");
  // A mapping in use by a protected VM's placeholder stays until that VM is unprotected.
  auto groups = store_.list_groups();
  if (!groups) return groups.status();
  auto inventory = list_vms(std::nullopt);
  std::map<std::string, const VmInfo*> by_uuid;
  if (inventory)
    for (const auto& vm : *inventory) by_uuid[vm.uuid] = &vm;
  for (const auto& g : *groups) {
    if (g.recovery_site != it->peer_site) continue;
    for (const auto& gvm : g.vms) {
      auto found = by_uuid.find(gvm.vm_uuid);
      if (found == by_uuid.end()) continue;
      const VmInfo* vm = found->second;
      bool uses = (it->kind == MappingKind::kCompute && vm->provider == it->source);
      for (const auto& n : vm->nics) uses |= it->kind == MappingKind::kNetwork && attachment_of(n).key() == it->source;
      for (const auto& d : vm->disks) uses |= it->kind == MappingKind::kStorage && d.storage_pool == it->source;
      if (uses)
        return failed_precondition("mapping " + std::to_string(id) + " is used by VM '" + gvm.vm_name + "' of group '" +
                                       g.name + "'",
                                   "remove the VM from the group first");
    }
  }
  EVAC_RETURN_IF_ERROR(store_.remove_mapping(id));
  if (auto peer = store_.find_peer(it->peer_site); peer && peer->has_value()) (void)push_config_copy(**peer);
  return Status::ok();
}

// ---- protection groups --------------------------------------------------------------

std::optional<PlaceholderSpec> SiteService::placeholder_spec(const VmInfo& vm, const std::string& group,
                                                             const PeerRecord& peer, const PeerInventory& peer_inventory,
                                                             std::vector<std::string>& missing) {
  auto mapping = [&](MappingKind kind, const std::string& source) -> std::optional<MappingRecord> {
    auto m = store_.find_mapping(peer.site, kind, source);
    if (!m || !m->has_value()) return std::nullopt;
    return **m;
  };
  std::size_t missing_before = missing.size();
  PlaceholderSpec spec{group, identity_.name, vm.uuid, vm};
  auto compute = mapping(MappingKind::kCompute, vm.provider);
  const PeerInventory::Provider* target_provider = nullptr;
  if (!compute) {
    missing.push_back(vm.name + ": compute provider '" + vm.provider + "' is not mapped to site '" + peer.site + "'");
  } else {
    spec.vm.provider = compute->target;
    target_provider = peer_inventory.provider(compute->target);
    if (!target_provider)
      missing.push_back(vm.name + ": compute provider '" + compute->target + "' no longer exists at site '" + peer.site + "'");
  }
  for (auto& disk : spec.vm.disks) {
    if (disk.device == "cdrom" || disk.path.empty()) continue;
    if (!disk.storage_pool) {
      missing.push_back(vm.name + ": disk " + disk.target + " (" + disk.path + ") is not in any storage pool at site '" +
                        identity_.name + "'; define a pool for its folder so it can be mapped");
      continue;
    }
    auto storage = mapping(MappingKind::kStorage, *disk.storage_pool);
    if (!storage) {
      missing.push_back(vm.name + ": storage pool '" + *disk.storage_pool + "' (disk " + disk.target +
                        ") is not mapped to site '" + peer.site + "'");
      continue;
    }
    const PeerInventory::Pool* pool = target_provider ? target_provider->pool(storage->target) : nullptr;
    if (target_provider && !pool) {
      missing.push_back(vm.name + ": storage pool '" + storage->target + "' does not exist at site '" + peer.site +
                        "' under provider '" + spec.vm.provider + "'");
      continue;
    }
    disk.storage_pool = storage->target;
    if (pool) {
      disk.path = (std::filesystem::path(pool->path) / basename_of(disk.path)).string();
      // A source that names the path names the one there too.
      if (!disk.source.path.empty()) disk.source.path = disk.path;
    }
  }
  for (auto& nic : spec.vm.nics) {
    const std::string source = attachment_of(nic).key();
    auto net = mapping(MappingKind::kNetwork, source);
    if (!net) {
      missing.push_back(vm.name + ": network '" + source + "' is not mapped to site '" + peer.site + "'");
      continue;
    }
    // The placeholder's NIC is of the kind the target is: a network mapped
    // to a bridge is a bridge NIC there, and the other way round.
    const Attachment target = parse_attachment(net->target);
    nic.type = target.type;
    nic.network = target.name;
  }
  if (missing.size() != missing_before) return std::nullopt;
  return spec;
}

Status SiteService::check_vms_protectable(const std::vector<VmInfo>& vms) {
  std::set<std::string> seen;
  for (const auto& vm : vms) {
    if (!seen.insert(vm.uuid).second) return invalid_argument("VM '" + vm.name + "' is named twice", "name each VM once");
    if (vm.is_placeholder)
      return failed_precondition("VM '" + vm.name + "' is an evac placeholder, not a VM to protect",
                                 "protect the VM at the site where it runs");
    auto owner = store_.group_of_vm(vm.uuid);
    if (!owner) return owner.status();
    if (owner->has_value())
      return already_exists("VM '" + vm.name + "' already belongs to protection group '" + **owner + "'",
                            "a VM belongs to at most one group: `evac group remove-vm " + **owner + " " + vm.name + "` first");
  }
  return Status::ok();
}

Result<std::vector<GroupVmRecord>> SiteService::register_placeholders(const std::vector<VmInfo>& vms,
                                                                      const std::string& group, const PeerRecord& peer) {
  auto inventory = peer_inventory(peer);
  if (!inventory)
    return inventory.status().with_hint("protecting a VM registers its placeholder at the recovery site, which must answer; " +
                                        inventory.status().hint());
  std::vector<std::string> missing;
  std::vector<PlaceholderSpec> specs;
  for (const auto& vm : vms)
    if (auto spec = placeholder_spec(vm, group, peer, *inventory, missing)) specs.push_back(std::move(*spec));
  if (!missing.empty())
    return failed_precondition("cannot protect: " + join(missing, "; "),
                               "create the missing inventory mappings with `evac mapping create ...`, then retry");

  std::vector<GroupVmRecord> done;
  for (std::size_t i = 0; i < specs.size(); ++i) {
    auto answer = peer_client(peer).create_placeholder(json(specs[i]));
    // The placeholder as the peer defined it (a PlaceholderInfo): its UUID
    // is what removes it again, and what a recovery there starts.
    Result<std::pair<std::string, std::string>> defined = [&]() -> Result<std::pair<std::string, std::string>> {
      if (!answer) return answer.status();
      auto f = JsonFields::of(*answer, "the answer to a placeholder request");
      if (!f) return refused_answer(f.status(), peer.site);
      auto uuid = f->required_text("uuid", 256);
      auto provider_name = f->text("provider", 256);
      for (const Status& s : {uuid.status(), provider_name.status()})
        if (!s) return refused_answer(s, peer.site);
      return std::pair{*uuid, provider_name->value_or("")};
    }();
    if (!defined) {
      Status cause = defined.status().with_context("registering the placeholder of VM '" + vms[i].name + "'");
      Status undo = remove_placeholders(done, peer);
      if (!undo.is_ok())
        cause = cause.with_hint(cause.hint() + "; also failed to roll back placeholders already registered (" +
                                undo.message() + "): remove them at site '" + peer.site + "'");
      return cause;
    }
    done.push_back(GroupVmRecord{vms[i].provider, vms[i].name, vms[i].uuid, defined->first, defined->second});
  }
  return done;
}

Status SiteService::remove_placeholders(const std::vector<GroupVmRecord>& vms, const PeerRecord& peer) {
  Status first_error;
  for (const auto& vm : vms) {
    auto r = peer_client(peer).delete_placeholder(vm.placeholder_uuid);
    if (!r && first_error.is_ok()) first_error = r.status().with_context("removing the placeholder of VM '" + vm.vm_name + "'");
  }
  return first_error;
}

static Status check_retention(int keep_pits, int keep_hourly, int keep_daily) {
  const std::string most = std::to_string(kMaxKeptPits);
  if (keep_pits < 1 || keep_pits > kMaxKeptPits)
    return invalid_argument("--keep-pits must be between 1 and " + most, "the default is 24");
  if (keep_hourly < 0 || keep_hourly > kMaxKeptPits || keep_daily < 0 || keep_daily > kMaxKeptPits)
    return invalid_argument("--keep-hourly and --keep-daily must be between 0 and " + most,
                            "for example --keep-hourly 24 --keep-daily 7");
  return Status::ok();
}

Status check_replication_kind(std::string_view kind) {
  const bool named = !kind.empty() && kind.size() <= kMaxReplicationKindLength &&
                     std::all_of(kind.begin(), kind.end(), [](char c) {
                       return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
                     });
  if (named) return Status::ok();
  return invalid_argument("replication engine kind '" + excerpt(kind, 40) + "' is not a kind's name: one is 1 to " +
                              std::to_string(kMaxReplicationKindLength) + " characters of a-z, 0-9, '_' and '-'",
                          "give the engine's kind in lower case, e.g. --replication builtin (the default: the "
                          "built-in replicator)");
}

Status check_replication_unchanged(const GroupRecord& group, std::string_view wanted) {
  if (wanted == group.replication) return Status::ok();
  return failed_precondition("group '" + group.name + "' replicates with the " + group.replication +
                                 " engine, which holds its points in time: it cannot change to '" + excerpt(wanted, 40) + "'",
                             "to replicate these VMs with another engine, delete the group and create it again with "
                             "--replication KIND (its points in time go with it)");
}

Result<GroupRecord> SiteService::create_group(const GroupCreateRequest& req) {
  std::lock_guard lock(protection_mu_);
  EVAC_RETURN_IF_ERROR(validate_name("protection group", req.name));
  // The built-in replicator keeps a group's PITs in <replica folder>/.evac-pits/<group>,
  // beside the folders of every group's recovered VMs and test copies.
  for (const char* reserved : {"recovered", "test-copies"})
    if (same_name_ignoring_case(req.name, reserved))
      return invalid_argument("protection group name '" + req.name + "' is reserved: the replicas' folder uses it",
                              "choose another name, such as '" + req.name + "-vms'");
  if (req.rpo_seconds <= 0 || req.rpo_seconds > kMaxRpo.count())
    return invalid_argument("the RPO must be from 1s to " + format_duration(kMaxRpo), "for example --rpo 15m");
  EVAC_RETURN_IF_ERROR(check_retention(req.keep_pits, req.keep_hourly, req.keep_daily));
  EVAC_RETURN_IF_ERROR(check_replication_kind(req.replication));
  if (req.vms.empty()) return invalid_argument("a protection group needs at least one VM", "pass --vm NAME");
  auto existing = store_.find_group(req.name);
  if (!existing) return existing.status();
  if (existing->has_value()) return already_exists("protection group '" + req.name + "' already exists", "choose another name");
  auto groups = store_.list_groups();
  if (!groups) return groups.status();
  for (const auto& other : *groups)
    if (same_name_ignoring_case(other.name, req.name))
      return already_exists("protection group '" + other.name + "' exists; '" + req.name + "' differs from it only in case",
                            "choose a name that differs in more than case");
  auto peer = resolve_peer(req.recovery_site);
  if (!peer) return peer.status();

  auto vms = find_vms(req.vms);
  if (!vms) return vms.status();
  EVAC_RETURN_IF_ERROR(check_vms_protectable(*vms));
  auto placeholders = register_placeholders(*vms, req.name, *peer);
  if (!placeholders) return placeholders.status().with_context("creating protection group '" + req.name + "'");

  GroupRecord g{req.name, identity_.name, peer->site, req.rpo_seconds, req.keep_pits, 1, clock_(), *placeholders};
  g.max_rate_bytes = req.max_rate_bytes;
  g.keep_hourly = req.keep_hourly;
  g.keep_daily = req.keep_daily;
  g.replication = req.replication;
  if (Status s = store_.add_group(g); !s.is_ok()) {
    (void)remove_placeholders(*placeholders, *peer);
    return s;
  }
  (void)push_config_copy(*peer);
  return get_group(req.name);
}

Result<std::vector<GroupRecord>> SiteService::list_groups() { return store_.list_groups(); }

Result<GroupRecord> SiteService::group_protected_here(const std::string& name) {
  auto g = get_group(name);
  if (!g) return g.status();
  if (g->protected_site != identity_.name)
    return failed_precondition("site '" + identity_.name + "' does not protect group '" + name + "'",
                               "set it at its protected site, '" + g->protected_site + "'");
  return g;
}

Result<GroupRecord> SiteService::set_group_max_rate(const std::string& name, std::uint64_t bytes_per_second) {
  std::lock_guard lock(protection_mu_);
  auto g = group_protected_here(name);
  if (!g) return g.status();
  EVAC_RETURN_IF_ERROR(store_.set_group_max_rate(name, bytes_per_second));
  return get_group(name);
}

Result<GroupRecord> SiteService::set_group_retention(const std::string& name, std::optional<int> keep_pits,
                                                     std::optional<int> keep_hourly, std::optional<int> keep_daily) {
  std::lock_guard lock(protection_mu_);
  auto g = group_protected_here(name);
  if (!g) return g.status();
  int last = keep_pits.value_or(g->keep_pits), hourly = keep_hourly.value_or(g->keep_hourly),
      daily = keep_daily.value_or(g->keep_daily);
  EVAC_RETURN_IF_ERROR(check_retention(last, hourly, daily));
  EVAC_RETURN_IF_ERROR(store_.set_group_retention(name, last, hourly, daily));
  if (auto peer = store_.find_peer(g->recovery_site); peer && peer->has_value()) (void)push_config_copy(**peer);
  return get_group(name);
}

Result<GroupRecord> SiteService::get_group(const std::string& name) {
  auto g = store_.find_group(name);
  if (!g) return g.status();
  if (!g->has_value()) return not_found("no protection group named '" + name + "'", "list them with `evac group list`");
  return **g;
}

Result<GroupRecord> SiteService::add_vm_to_group(const std::string& group, const std::string& vm_ref) {
  std::lock_guard lock(protection_mu_);
  auto g = get_group(group);
  if (!g) return g.status();
  auto vm = find_vm(vm_ref);
  if (!vm) return vm.status();
  EVAC_RETURN_IF_ERROR(check_vms_protectable({*vm}));
  auto peer = resolve_peer(g->recovery_site);
  if (!peer) return peer.status();
  auto placeholders = register_placeholders({*vm}, group, *peer);
  if (!placeholders) return placeholders.status().with_context("adding VM '" + vm->name + "' to group '" + group + "'");
  if (Status s = store_.add_group_vm(group, placeholders->front()); !s.is_ok()) {
    (void)remove_placeholders(*placeholders, *peer);
    return s;
  }
  (void)push_config_copy(*peer);
  return get_group(group);
}

Result<GroupRecord> SiteService::remove_vm_from_group(const std::string& group, const std::string& vm_ref) {
  std::lock_guard lock(protection_mu_);
  auto g = get_group(group);
  if (!g) return g.status();
  auto it = std::find_if(g->vms.begin(), g->vms.end(), [&](const GroupVmRecord& v) {
    return v.vm_name == vm_ref || v.vm_uuid == vm_ref || v.provider + "/" + v.vm_name == vm_ref;
  });
  if (it == g->vms.end())
    return not_found("VM '" + vm_ref + "' is not in protection group '" + group + "'", "see `evac group show " + group + "`");
  if (g->vms.size() == 1)
    return failed_precondition("VM '" + vm_ref + "' is the last VM of group '" + group + "'",
                               "delete the group instead: `evac group delete " + group + "`");
  auto peer = resolve_peer(g->recovery_site);
  if (!peer) return peer.status();
  EVAC_RETURN_IF_ERROR(remove_placeholders({*it}, *peer));
  EVAC_RETURN_IF_ERROR(store_.remove_group_vm(group, it->vm_uuid));
  (void)push_config_copy(*peer);
  return get_group(group);
}

Result<std::vector<std::string>> SiteService::delete_group(const std::string& name, bool force) {
  std::lock_guard lock(protection_mu_);
  auto g = get_group(name);
  if (!g) return g.status();
  auto peer = resolve_peer(g->recovery_site);
  if (!peer) return peer.status();
  // A group live at the other site (after a failover or migration) is the
  // one that site reprotects back to here: deleting it here leaves that
  // site nowhere to reprotect to, and this site's fenced copies with
  // read-only disk files nobody is told about.
  std::vector<std::string> left_behind;
  if (Status fenced = check_not_fenced(*g); !fenced.is_ok()) {
    if (fenced.code() != StatusCode::kFailedPrecondition) return fenced;
    if (!force)
      return failed_precondition(fenced.message() + "; deleting it here leaves that site no site to reprotect to",
                                 "reprotect it from the site where it is live, or, to forget it here for good, use "
                                 "--force (its VMs' disk files here stay read-only: `chattr -i FILE` before removing them)");
    for (const auto& vm : g->vms) {
      auto p = provider(vm.provider);
      auto info = p ? (*p)->get_vm(vm.vm_uuid) : Result<VmInfo>(p.status());
      if (!info) continue;  // removed by hand since
      for (const auto& d : info->disks)
        if (d.device == "disk" && !d.path.empty())
          left_behind.push_back(identity_.name + ": " + vm.vm_name + "'s disk " + d.path +
                                " is read-only (fenced): `chattr -i` it before removing it");
    }
  }
  // Placeholders go first: if the recovery site cannot be reached the group
  // stays (unless forced), so nothing is left registered there without a
  // record here that says so.
  Status removed = remove_placeholders(g->vms, *peer);
  if (!removed.is_ok()) {
    if (!force)
      return removed.with_context("deleting protection group '" + name + "'")
          .with_hint(removed.hint() + "; if site '" + peer->site + "' is gone for good, use --force");
    for (const auto& vm : g->vms)
      left_behind.push_back(peer->site + ": placeholder " + vm.vm_name + " (" + vm.placeholder_uuid + ")");
  }
  EVAC_RETURN_IF_ERROR(store_.remove_group(name));
  (void)push_config_copy(*peer);
  return left_behind;
}

// ---- placeholders hosted here ------------------------------------------------------------

Result<json> SiteService::handle_peer_define_placeholder(const PeerRecord& caller, const json& body) {
  auto spec = placeholder_spec_from_json(body);
  if (!spec) return spec.status();
  if (spec->source_site != caller.site)
    return permission_denied("site '" + caller.site + "' asked for a placeholder on behalf of '" + spec->source_site + "'");
  auto p = provider(spec->vm.provider);
  if (!p) return p.status();
  auto defined = (*p)->define_placeholder(*spec);
  if (!defined) return defined.status().with_context("site '" + identity_.name + "'");
  Status s = store_.add_hosted_placeholder(HostedPlaceholderRecord{defined->uuid, spec->vm.provider, defined->name,
                                                                   spec->group, caller.site, spec->source_uuid, clock_()});
  if (!s.is_ok()) {
    (void)(*p)->remove_placeholder(defined->uuid);
    return s;
  }
  PlaceholderInfo out = *defined;
  out.provider = spec->vm.provider;
  return json(out);
}

Result<json> SiteService::handle_peer_remove_placeholder(const PeerRecord& caller, const std::string& uuid) {
  auto hosted = store_.list_hosted_placeholders();
  if (!hosted) return hosted.status();
  auto it = std::find_if(hosted->begin(), hosted->end(), [&](const auto& h) { return h.uuid == uuid; });
  if (it == hosted->end()) return json{{"removed", false}};  // already gone: removal converges
  if (it->source_site != caller.site)
    return permission_denied("placeholder " + uuid + " belongs to site '" + it->source_site + "', not '" + caller.site + "'");
  auto p = provider(it->provider);
  if (!p) return p.status();
  EVAC_RETURN_IF_ERROR((*p)->remove_placeholder(uuid).with_context("site '" + identity_.name + "'"));
  EVAC_RETURN_IF_ERROR(store_.remove_hosted_placeholder(uuid));
  return json{{"removed", true}};
}

Result<std::vector<HostedPlaceholderRecord>> SiteService::list_hosted_placeholders() {
  return store_.list_hosted_placeholders();
}

// ---- JSON views ---------------------------------------------------------------------------

json to_json(const PeerStatus& p) {
  json j = {{"site", p.record.site},
            {"url", p.record.url},
            {"pin", p.record.pin},
            {"paired_at", p.record.paired_at},
            {"state", p.connected ? "connected" : (p.record.unreachable_since ? "unreachable" : "unknown")},
            {"last_seen_at", p.record.last_seen_at ? json(*p.record.last_seen_at) : json(nullptr)},
            {"unreachable_since", p.record.unreachable_since ? json(*p.record.unreachable_since) : json(nullptr)},
            {"last_error", p.record.last_error}};
  return j;
}

json to_json(const MappingRecord& m) {
  return {{"id", m.id},         {"peer_site", m.peer_site},       {"kind", mapping_kind_name(m.kind)},
          {"source", m.source}, {"target", m.target},             {"test_network", m.test_network},
          {"created_at", m.created_at}};
}

json to_json(const GroupRecord& g) {
  json vms = json::array();
  for (const auto& v : g.vms)
    vms.push_back({{"name", v.vm_name},
                   {"uuid", v.vm_uuid},
                   {"provider", v.provider},
                   {"placeholder_uuid", v.placeholder_uuid},
                   {"placeholder_provider", v.placeholder_provider}});
  return {{"name", g.name},
          {"protected_site", g.protected_site},
          {"recovery_site", g.recovery_site},
          {"rpo_seconds", g.rpo_seconds},
          {"rpo", format_duration(std::chrono::seconds(g.rpo_seconds))},
          {"keep_pits", g.keep_pits},
          {"keep_hourly", g.keep_hourly},
          {"keep_daily", g.keep_daily},
          {"max_rate_bytes", g.max_rate_bytes},
          {"max_rate", format_byte_rate(g.max_rate_bytes)},
          {"replication_engine", g.replication},
          {"epoch", g.epoch},
          {"created_at", g.created_at},
          {"vms", vms}};
}

Result<GroupRecord> peer_group_from_json(const json& j) {
  auto f = JsonFields::of(j, "a group of a paired site's configuration");
  if (!f) return f.status();
  GroupRecord g;
  auto name = f->required_text("name", 64);
  if (!name) return name.status();
  g.name = *name;
  auto bad = [&](const Status& s) { return s.with_context("group '" + excerpt(g.name) + "'"); };
  auto protected_site = f->text("protected_site", 64);
  auto recovery_site = f->text("recovery_site", 64);
  auto rpo = f->integer("rpo_seconds", 1, kMaxRpo.count());
  auto keep_pits = f->integer_as<int>("keep_pits", 1, kMaxKeptPits);
  auto keep_hourly = f->integer_as<int>("keep_hourly", 0, kMaxKeptPits);
  auto keep_daily = f->integer_as<int>("keep_daily", 0, kMaxKeptPits);
  auto max_rate = f->integer_as<std::uint64_t>("max_rate_bytes", 0, kMaxByteRate);
  auto epoch = f->integer("epoch", 0, kMaxEpoch);
  auto created_at = f->integer("created_at", 0, std::numeric_limits<std::int64_t>::max());
  auto replication = f->text("replication_engine");  // its bound: check_replication_kind's, below
  auto vms = f->list("vms");
  for (const Status& s : {protected_site.status(), recovery_site.status(), rpo.status(), keep_pits.status(),
                          keep_hourly.status(), keep_daily.status(), max_rate.status(), epoch.status(),
                          created_at.status(), replication.status(), vms.status()})
    if (!s) return bad(s);
  if (*replication) {
    if (Status s = check_replication_kind(**replication); !s) return bad(s);
    g.replication = **replication;
  }
  g.protected_site = protected_site->value_or("");
  g.recovery_site = recovery_site->value_or("");
  g.rpo_seconds = rpo->value_or(g.rpo_seconds);
  g.keep_pits = keep_pits->value_or(g.keep_pits);
  g.keep_hourly = keep_hourly->value_or(g.keep_hourly);
  g.keep_daily = keep_daily->value_or(g.keep_daily);
  g.max_rate_bytes = max_rate->value_or(g.max_rate_bytes);
  g.epoch = epoch->value_or(g.epoch);
  g.created_at = created_at->value_or(0);
  if (*vms) {
    for (const json& item : **vms) {
      auto v = JsonFields::of(item, "a VM of a paired site's group");
      if (!v) return bad(v.status());
      auto vm_name = v->text("name", 256);
      auto uuid = v->text("uuid", 256);
      auto provider = v->text("provider", 256);
      auto placeholder_uuid = v->text("placeholder_uuid", 256);
      auto placeholder_provider = v->text("placeholder_provider", 256);
      for (const Status& s : {vm_name.status(), uuid.status(), provider.status(), placeholder_uuid.status(),
                              placeholder_provider.status()})
        if (!s) return bad(s);
      g.vms.push_back(GroupVmRecord{provider->value_or(""), vm_name->value_or(""), uuid->value_or(""),
                                    placeholder_uuid->value_or(""), placeholder_provider->value_or("")});
    }
  }
  return g;
}

json to_json(const HostedPlaceholderRecord& p) {
  return {{"uuid", p.uuid},     {"provider", p.provider},       {"name", p.name},
          {"group", p.group},   {"source_site", p.source_site}, {"source_uuid", p.source_uuid},
          {"created_at", p.created_at}};
}

}  // namespace evac
