// SiteService: what one site's evacd does, independent of HTTP.
//
// The REST layer (src/api) translates requests into these calls; the peer
// side of the site-to-site protocol lands here too (the handle_peer_*
// methods), already authenticated by the caller's pinned certificate.
//
// Protection always flows from this site (protected) to one paired site
// (recovery): mappings name resources here and there, and protecting a VM
// registers a placeholder there before anything is recorded here, so a
// failure on either side leaves no half-protected VM behind.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/compute_provider.h"
#include "core/status.h"
#include "peer/peer_client.h"
#include "peer/peer_transport.h"
#include "store/store.h"

namespace evac {

struct SiteIdentity {
  std::string name;
  std::string url;  // advertised https URL
  std::string pin;  // our TLS public-key pin
};

// A group's RPO: from 1s to 30 days, whoever sets it (an operator, or a
// paired site's configuration copy of its group).
inline constexpr std::chrono::seconds kMaxRpo{30 * 24 * 3600};
// Ownership epochs grow by one per change of owner; one from a paired site
// (a reprotect, a handover, an ownership claim, its group's epoch) beyond
// this is refused, far from the int64 overflow of the next recovery's +1.
inline constexpr std::int64_t kMaxEpoch = std::int64_t{1} << 62;

// A group's replication engine kind ("builtin", "rbd", ...), wherever one
// arrives (an operator, a paired site's copy, a reprotect): 1 to
// kMaxReplicationKindLength characters of a-z, 0-9, '_' and '-'. Whether
// this site has an engine of that kind is the ReplicationService's to say.
inline constexpr std::size_t kMaxReplicationKindLength = 32;
Status check_replication_kind(std::string_view kind);
// A group keeps the engine it was created with (its PITs live there):
// asking for `wanted` is refused unless it is the group's own.
Status check_replication_unchanged(const GroupRecord& group, std::string_view wanted);

struct GroupCreateRequest {
  std::string name;
  std::vector<std::string> vms;  // "name", "uuid" or "provider/name"
  std::optional<std::string> recovery_site;  // defaults to the only paired site
  std::int64_t rpo_seconds = 900;
  int keep_pits = 24;
  int keep_hourly = 0;  // thinning: also the newest PIT of each of the last N hours
  int keep_daily = 0;   // ... and of each of the last N days
  std::uint64_t max_rate_bytes = 0;  // bytes per second its cycles may send; 0 = unlimited
  std::string replication = "builtin";  // the engine kind its PITs will live in
};

struct MappingCreateRequest {
  MappingKind kind = MappingKind::kNetwork;
  std::optional<std::string> peer_site;  // defaults to the only paired site
  std::string source;
  std::string target;
  std::string test_network;  // required for network mappings
};

// A paired site's inventory as its /peer/inventory answers it
// (handle_peer_inventory there): its compute providers, each with the
// names of its networks and the names and folders of its storage pools
// (none when that provider could not list them).
struct PeerInventory {
  struct Pool {
    std::string name;
    std::string path;
  };
  struct Provider {
    std::string name;
    std::vector<std::string> networks;
    std::vector<Pool> pools;
    const Pool* pool(const std::string& pool_name) const;
  };
  std::vector<Provider> providers;
  const Provider* provider(const std::string& provider_name) const;
};
// Read strictly: each name and folder typed and bounded, every list a list
// of objects. The rest of a network or pool (kind, bridge, capacity, ...) is
// not read, so not refused.
Result<PeerInventory> peer_inventory_from_json(const nlohmann::json& j);

struct PeerStatus {
  PeerRecord record;
  bool connected = false;
};

class SiteService {
 public:
  using Clock = std::function<std::int64_t()>;  // unix seconds

  SiteService(SiteIdentity identity, Store& store, std::map<std::string, std::unique_ptr<ComputeProvider>> providers,
              PeerTransport& transport, Clock clock = nullptr);

  const SiteIdentity& identity() const { return identity_; }
  Store& store() { return store_; }
  std::int64_t now() const { return clock_(); }  // unix seconds, from the clock tests may set
  // Unix milliseconds: the system clock's, or the test clock's second * 1000.
  std::int64_t now_ms() const;
  // A paired site proved alive now: it made an authenticated call here.
  // Kept to the millisecond (its last contact bounds a disaster's data loss).
  void heard_from(const std::string& site);

  // ---- callers and the site's own state ---------------------------------------
  // The name of the API token `bearer_token` is (tokens are kept as
  // digests only); nullopt if it is none of this site's.
  Result<std::optional<std::string>> api_token_name(const std::string& bearer_token);
  // The paired site whose TLS client certificate has `pin`; nullopt if none.
  Result<std::optional<PeerRecord>> paired_site_with_pin(const std::string& pin);
  // The version of the state database's schema.
  int schema_version();
  // Alarms and notable events, newest first; of `group` only, if given.
  // Events outlive their groups, so a group with none is kNotFound only
  // when there is no such group either (a typo).
  Result<std::vector<EventRecord>> list_events(const std::optional<std::string>& group, int limit);

  // ---- inventory ----------------------------------------------------------
  nlohmann::json providers_status();
  Result<std::vector<VmInfo>> list_vms(const std::optional<std::string>& provider);
  Result<VmInfo> find_vm(const std::string& ref);  // "name", "uuid" or "provider/name"
  // Several at once, in order, with one inventory listing per provider.
  Result<std::vector<VmInfo>> find_vms(const std::vector<std::string>& refs);
  Result<std::vector<NetworkInfo>> list_networks(const std::optional<std::string>& provider);
  Result<std::vector<StoragePoolInfo>> list_storage_pools(const std::optional<std::string>& provider);

  // ---- pairing --------------------------------------------------------------
  // A one-time token for the other site's `evac site pair`. It carries our
  // URL and key pin, so the first connection is already pinned.
  Result<nlohmann::json> create_pairing_token(std::chrono::seconds ttl);
  // Initiator side: redeem a token issued by the other site.
  Result<PeerRecord> pair(const std::string& token, const std::optional<std::string>& url_override);
  Status unpair(const std::string& site);
  // Names of the groups this site protects toward `site`.
  Result<std::vector<std::string>> groups_recovering_to(const std::string& site);
  Result<std::vector<PeerStatus>> peer_statuses();
  // One heartbeat round to every peer; pushes our configuration copy to any
  // peer whose copy is stale. Called by evacd's heartbeat thread.
  void heartbeat_round();

  // ---- inventory mappings -----------------------------------------------------
  Result<MappingRecord> create_mapping(const MappingCreateRequest& req);
  Result<std::vector<MappingRecord>> list_mappings();
  Status delete_mapping(std::int64_t id);

  // ---- protection groups ------------------------------------------------------
  Result<GroupRecord> create_group(const GroupCreateRequest& req);
  Result<std::vector<GroupRecord>> list_groups();
  Result<GroupRecord> get_group(const std::string& name);
  Result<GroupRecord> add_vm_to_group(const std::string& group, const std::string& vm_ref);
  Result<GroupRecord> remove_vm_from_group(const std::string& group, const std::string& vm_ref);
  // Removes the placeholders at the recovery site, then the group. With
  // `force`, a recovery site that cannot be reached (a site that is gone for
  // good) does not keep the group: the placeholders left behind there are
  // returned so the operator can remove them by hand.
  Result<std::vector<std::string>> delete_group(const std::string& name, bool force = false);
  // Limits the bytes per second the group's cycles send (0: unlimited).
  Result<GroupRecord> set_group_max_rate(const std::string& name, std::uint64_t bytes_per_second);
  // Unset fields keep their value. Applies from the group's next cycle.
  Result<GroupRecord> set_group_retention(const std::string& name, std::optional<int> keep_pits,
                                          std::optional<int> keep_hourly, std::optional<int> keep_daily);

  // What this site keeps for recoveries of its peers' groups.
  Result<std::vector<HostedPlaceholderRecord>> list_hosted_placeholders();
  Result<std::vector<PeerCopyRecord>> list_peer_copies();

  // Everything a recovery site needs about our protection: the document
  // pushed to peers.
  Result<nlohmann::json> protection_document();

  // ---- the peer side (caller authenticated by its pinned client certificate) ----
  Result<nlohmann::json> handle_peer_pair(const std::string& caller_pin, const nlohmann::json& body);
  Result<nlohmann::json> handle_peer_heartbeat(const PeerRecord& caller, const nlohmann::json& body);
  Result<nlohmann::json> handle_peer_unpair(const PeerRecord& caller);
  Result<nlohmann::json> handle_peer_inventory(const PeerRecord& caller);
  Result<nlohmann::json> handle_peer_define_placeholder(const PeerRecord& caller, const nlohmann::json& body);
  Result<nlohmann::json> handle_peer_remove_placeholder(const PeerRecord& caller, const std::string& uuid);
  Result<nlohmann::json> handle_peer_config_copy(const PeerRecord& caller, const nlohmann::json& body);

  // ---- the protected site's half of a recovery (the caller is the group's recovery site) ----
  // Stops the group's VMs here: body {graceful: bool, timeout_s: N}. A
  // graceful stop that outlasts the timeout is kUnavailable.
  Result<nlohmann::json> handle_peer_shutdown_group(const PeerRecord& caller, const std::string& group,
                                                    const nlohmann::json& body);
  // Whether each running VM of the group answers its guest agent here, for
  // the recovery site's readiness check: [{vm, state, agent, error}].
  Result<nlohmann::json> handle_peer_guest_agents(const PeerRecord& caller, const std::string& group);
  // The recovery site now owns the group's live copy: body {owner, epoch,
  // run}. This site's copy is fenced: its VMs powered off, no more cycles.
  Result<nlohmann::json> handle_peer_handover(const PeerRecord& caller, const std::string& group, const nlohmann::json& body);

  // Sends a paired site our configuration copy now (it also follows every
  // change, and every heartbeat re-sends a stale one).
  Status push_config_to(const std::string& site);

  // The site-to-site API of a paired site (peer/peer_client.h). Each call
  // is recorded as the site's last contact or failure (`evac site status`)
  // and its errors name the site. By name, a site that is not paired fails
  // each call with kNotFound.
  PeerClient peer_client(const std::string& site);
  PeerClient peer_client(const PeerRecord& peer);

  // ---- ownership ----------------------------------------------------------------------
  // Who owns the live copy of a group this site knows: the newest recorded
  // ownership, else the group's protected site at its epoch.
  struct Ownership {
    std::string owner;
    std::int64_t epoch = 1;
    std::string run;
  };
  Result<Ownership> ownership(const std::string& group, const std::string& protected_site, std::int64_t epoch);
  // Records that the record's owner took the group over and powers this
  // site's copies of its VMs off (hard: they are stale), then has their
  // disks made read-only (the storage fence below), raising one event.
  Status fence(const GroupRecord& group, const OwnershipRecord& record);
  // The storage half of a fence, from the replication engine (the
  // ReplicationService registers it): makes a fenced copy's disks read-only.
  // Its failure is reported in the fence's event, never undoes the fence.
  using StorageFence = std::function<Status(const GroupRecord&)>;
  void set_storage_fence(const void* owner, StorageFence fence);
  // Unregisters `owner`'s fence, unless another has replaced it since.
  void clear_storage_fence(const void* owner);
  // kFailedPrecondition when another site took the group over (a fenced copy).
  Status check_not_fenced(const GroupRecord& group);

  // Where a group stands as seen from this site, from its ownership:
  //   protected      its VMs run at the protected site and replicate to the recovery site
  //   recovered_here a migration or failover made this (recovery) site's copies live;
  //                  nothing replicates until a reprotect
  //   fenced_here    this (protected) site's copies are stale: the group is live at
  //                  `live_at`; no cycles, no RPO alarms here until a reprotect from there
  //   live_elsewhere this recovery site no longer owns the group (a failback took it home)
  struct Standing {
    std::string state;
    std::string live_at;  // the site whose copies run
    std::int64_t epoch = 1;
    std::string run;      // the run that moved it there, if any
    std::string text;     // one line for operators, with what to do
  };
  Result<Standing> standing(const GroupRecord& group);
  // The group as the API shows it: its record, plus its standing.
  Result<nlohmann::json> group_json(const GroupRecord& group);

 // A configured compute provider by name (kNotFound if there is none).
  Result<ComputeProvider*> provider(const std::string& name);

 private:
  std::mutex storage_fence_mu_;
  const void* storage_fence_owner_ = nullptr;
  StorageFence storage_fence_;
  // The group, if this site protects it (settings change only there).
  Result<GroupRecord> group_protected_here(const std::string& name);
  template <typename List>
  auto gather(const std::optional<std::string>& only, std::string_view what, List list)
      -> decltype(list(std::declval<ComputeProvider&>()));
  Result<PeerRecord> resolve_peer(const std::optional<std::string>& site);
  void note_peer_outcome(const std::string& site, const Status& outcome);
  // A call of the peer API: `long_wait`, if not zero, is how long the peer
  // may take to answer (a graceful shutdown, a step's bounded wait); else
  // the peer timeout bounds the call. A GET sends no body (nullopt).
  Result<nlohmann::json> call_peer(const PeerRecord& peer, const std::string& method, const std::string& path,
                                   const std::optional<nlohmann::json>& body, std::chrono::milliseconds long_wait);
  // Translates a VM through the mappings into the placeholder the recovery
  // site must register; appends every missing mapping to `missing`.
  std::optional<PlaceholderSpec> placeholder_spec(const VmInfo& vm, const std::string& group, const PeerRecord& peer,
                                                  const PeerInventory& peer_inventory, std::vector<std::string>& missing);
  // The peer's inventory, asked now and read strictly.
  Result<PeerInventory> peer_inventory(const PeerRecord& peer);
  // Registers placeholders for `vms` at the peer; all or none.
  Result<std::vector<GroupVmRecord>> register_placeholders(const std::vector<VmInfo>& vms, const std::string& group,
                                                           const PeerRecord& peer);
  Status remove_placeholders(const std::vector<GroupVmRecord>& vms, const PeerRecord& peer);
  Status check_vms_protectable(const std::vector<VmInfo>& vms);
  Status push_config_copy(const PeerRecord& peer);
  Result<GroupRecord> group_recovered_by(const PeerRecord& caller, const std::string& group);

  SiteIdentity identity_;
  Store& store_;
  std::map<std::string, std::unique_ptr<ComputeProvider>> providers_;
  PeerTransport& transport_;
  Clock clock_;
  bool test_clock_ = false;  // a clock tests set: milliseconds follow its seconds
  // Serialises changes to protection (groups, mappings, pairing) so checks
  // and writes of one request are not interleaved with another's.
  std::mutex protection_mu_;
};

nlohmann::json to_json(const PeerStatus& p);
nlohmann::json to_json(const MappingRecord& m);
nlohmann::json to_json(const GroupRecord& g);
// A group as a paired site's configuration copy describes it (to_json
// above, written there), read strictly: types checked, and the settings in
// the bounds an operator's have (RPO 1s to kMaxRpo, keep_pits 1 to
// kMaxKeptPits, keep_hourly and keep_daily 0 to kMaxKeptPits, max_rate_bytes
// 0 to kMaxByteRate, epoch 0 to kMaxEpoch), so a count beyond an int is
// refused rather than narrowed into one. Its replication_engine is checked
// by check_replication_kind; absent (a site older than engine kinds), it is
// "builtin". Keys it does not read (rpo and max_rate, which say the same
// for people, created_at) are not refused: the copy is kept whole, and a
// newer site may say more of its groups.
Result<GroupRecord> peer_group_from_json(const nlohmann::json& j);
nlohmann::json to_json(const HostedPlaceholderRecord& p);

}  // namespace evac
