#include "policy_map_updater.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstddef>
#include <array>
#include <cstring>
#include <set>
#include <type_traits>
#include <utility>
#include <variant>

#include "absl/strings/str_cat.h"
#include "port_recut.h"

namespace microseg {
namespace {

// Any policy map key: ms_policy_key, ms_lpm_key, ms_policy6_key, ms_lpm6_key.
template <typename Key>
Key KernelKey(Key key, bool generation) {
  if (generation) key.endpoint_id |= MS_POLICY_GEN_BIT;
  return key;
}

// The policy map holding keys of type Key, of a MapState or an EndpointPolicy.
template <typename Key, typename State>
auto& EntriesOf(State& state) {
  if constexpr (std::is_same_v<Key, ms_policy_key>) {
    return state.exact;
  } else if constexpr (std::is_same_v<Key, ms_lpm_key>) {
    return state.lpm;
  } else if constexpr (std::is_same_v<Key, ms_policy6_key>) {
    return state.exact6;
  } else {
    static_assert(std::is_same_v<Key, ms_lpm6_key>);
    return state.lpm6;
  }
}

// Moves the stray entries of one policy map that carry `policy_id` into
// `installed`, keyed without the generation bit.
template <typename Map>
void AdoptEntries(Map& strays, uint32_t policy_id, uint32_t endpoint_id, Map& installed) {
  for (auto it = strays.begin(); it != strays.end();) {
    if (it->first.endpoint_id != policy_id) {
      ++it;
      continue;
    }
    auto key = it->first;
    key.endpoint_id = endpoint_id;
    installed.emplace(key, it->second);
    it = strays.erase(it);
  }
}

// InstalledEndpoint::has_entries of `policy`.
std::array<bool, MS_DIR_MAX> DirectionsWithEntries(const EndpointPolicy& policy) {
  std::array<bool, MS_DIR_MAX> has{};
  ForEachPolicyMap(policy, [&](const auto& entries) {
    for (const auto& entry : entries) {
      if (has[MS_DIR_INGRESS] && has[MS_DIR_EGRESS]) return;
      has[ms_key_direction(entry.first.direction)] = true;
    }
  });
  return has;
}

// InstalledEndpoint::has_entries once `changes` are spliced into `policy`
// (`before`: what it had): a direction gains entries only by an upsert and
// can lose them only by a delete, so the entries are searched only when a
// direction with entries loses some and gains none.
template <typename Changes>
std::array<bool, MS_DIR_MAX> DirectionsAfterSplice(const std::array<bool, MS_DIR_MAX>& before,
                                                   const Changes& changes, const EndpointPolicy& policy) {
  std::array<bool, MS_DIR_MAX> upserted{};
  std::array<bool, MS_DIR_MAX> deleted{};
  ForEachPolicyMap(changes, [&](const auto& map_changes) {
    for (const auto& entry : map_changes.upserts) upserted[ms_key_direction(entry.first.direction)] = true;
    for (const auto& entry : map_changes.deletes) deleted[ms_key_direction(entry.first.direction)] = true;
  });
  std::array<bool, MS_DIR_MAX> has = before;
  for (uint8_t direction : {uint8_t{MS_DIR_INGRESS}, uint8_t{MS_DIR_EGRESS}}) {
    if (upserted[direction]) {
      has[direction] = true;
    } else if (deleted[direction] && has[direction]) {
      return DirectionsWithEntries(policy);
    }
  }
  return has;
}

// Rung of a key in the data path's lookup chain for one peer
// (ms_policy_verdict): (proto,port), (proto,interval), (proto,any), (any,any).
template <typename Key>
int Rung(const Key& key) {
  if ((key.direction & MS_DIR_F_PORT_INTERVAL) != 0) return 1;
  return key.port != 0 ? 0 : key.proto != 0 ? 2 : 3;
}

// Position of a key in one policy map's part of the chain: by rung, and in
// the LPM tries the longest prefix first within a rung (what a
// longest-prefix match returns). The exact map's part comes before the
// LPM trie's, so exact upserts are written before LPM upserts and LPM
// deletes before exact deletes.
std::pair<int, int> ChainPosition(const ms_policy_key& key) { return {Rung(key), 0}; }
std::pair<int, int> ChainPosition(const ms_policy6_key& key) { return {Rung(key), 0}; }
std::pair<int, int> ChainPosition(const ms_lpm_key& key) { return {Rung(key), -static_cast<int>(key.prefixlen)}; }
std::pair<int, int> ChainPosition(const ms_lpm6_key& key) { return {Rung(key), -static_cast<int>(key.prefixlen)}; }

// The in-place changes of one policy map (keys without the generation bit;
// deletes carry the value they remove, for the undo).
template <typename Key>
struct EntryChanges {
  std::vector<std::pair<Key, ms_policy_value>> upserts;
  std::vector<std::pair<Key, ms_policy_value>> deletes;
  bool empty() const { return upserts.empty() && deletes.empty(); }
};

// Named like MapState's maps so ForEachPolicyMap walks them too.
struct EndpointChanges {
  EntryChanges<ms_policy_key> exact;
  EntryChanges<ms_lpm_key> lpm;
  EntryChanges<ms_policy6_key> exact6;
  EntryChanges<ms_lpm6_key> lpm6;
  bool empty() const { return exact.empty() && lpm.empty() && exact6.empty() && lpm6.empty(); }
};

// Upserts most specific first, deletes least specific first: the order the
// in-place path needs (header comment).
template <typename Key>
void SortForLookupOrder(EntryChanges<Key>& changes) {
  using Change = std::pair<Key, ms_policy_value>;
  std::stable_sort(changes.upserts.begin(), changes.upserts.end(), [](const Change& a, const Change& b) {
    return ChainPosition(a.first) < ChainPosition(b.first);
  });
  std::stable_sort(changes.deletes.begin(), changes.deletes.end(), [](const Change& a, const Change& b) {
    return ChainPosition(a.first) > ChainPosition(b.first);
  });
}

// An exact key of one endpoint and peer address (uint32_t: IPv4, host
// order; Ipv6Address: net order), the rest zero.
ms_policy_key PeerKey(uint32_t endpoint_id, uint32_t peer_host_order) {
  ms_policy_key key{};
  key.endpoint_id = endpoint_id;
  key.peer_ipv4 = htonl(peer_host_order);
  return key;
}
ms_policy6_key PeerKey(uint32_t endpoint_id, const Ipv6Address& peer) {
  ms_policy6_key key{};
  key.endpoint_id = endpoint_id;
  std::memcpy(key.peer_ipv6, peer.data(), sizeof key.peer_ipv6);
  return key;
}

// The installed entries keyed by one peer address, in either direction
// (keys are compared bytewise: endpoint id, then peer, then the rest).
template <typename Map, typename Address>
std::pair<typename Map::const_iterator, typename Map::const_iterator> PeerRange(const Map& exact, uint32_t endpoint_id,
                                                                                const Address& peer) {
  const auto low = PeerKey(endpoint_id, peer);
  auto high = low;
  high.port = 0xffff;
  high.proto = 0xff;
  high.direction = 0xff;
  return {exact.lower_bound(low), exact.upper_bound(high)};
}

// Whether two exact keys name the same endpoint id and peer address: the
// bytes before the port, which order the keys first.
template <typename Key>
bool SamePeer(const Key& a, const Key& b) {
  static_assert(offsetof(Key, endpoint_id) == 0 && offsetof(Key, port) == sizeof(Key) - 4);
  return std::memcmp(&a, &b, offsetof(Key, port)) == 0;
}

// The changes that put a patch's exact entries of one family in place of
// the installed entries of the patched `addresses`: the patch's entries in
// (unless their direction stays `trimmed`) where they differ, the others
// of those addresses out. One walk over both maps instead of a lookup per
// entry: they are ordered by key bytes (endpoint id, peer, the rest), so
// each address's entries are one run in each, and the runs come in the
// order of the addresses' keys.
template <typename Addresses, typename Map, typename Key>
void DiffPeerRuns(uint32_t endpoint_id, const Addresses& addresses, const Map& patch, const Map& installed,
                  const std::array<bool, MS_DIR_MAX>& trimmed, EntryChanges<Key>& changes) {
  const BytewiseLess<Key> less;
  std::vector<Key> peers;  // the first key of each address's run
  peers.reserve(addresses.size());
  for (const auto& address : addresses) peers.push_back(PeerKey(endpoint_id, address));
  std::sort(peers.begin(), peers.end(), less);  // IPv6 addresses' set order is not their byte order
  auto upsert = [&](const Key& key, const ms_policy_value& value, const ms_policy_value* installed_value) {
    if (trimmed[ms_key_direction(key.direction)]) return;
    if (installed_value == nullptr || !BytewiseEqual(*installed_value, value)) changes.upserts.emplace_back(key, value);
  };
  // A patch entry of an address it does not list: spliced in all the same.
  auto upsert_unlisted = [&](const Key& key, const ms_policy_value& value) {
    const auto found = installed.find(key);
    upsert(key, value, found == installed.end() ? nullptr : &found->second);
  };
  auto in_patch = patch.begin();
  auto in_installed = installed.begin();
  for (const Key& peer : peers) {
    for (; in_patch != patch.end() && less(in_patch->first, peer); ++in_patch) {
      upsert_unlisted(in_patch->first, in_patch->second);
    }
    // Everything before in_installed is below this run; an entry of an
    // unpatched address or two is stepped over, more are searched (an
    // endpoint's maps are large and their nodes scattered: each step is
    // likely a cache miss).
    for (int step = 0; in_installed != installed.end() && less(in_installed->first, peer); ++step) {
      if (step == 2) {
        in_installed = installed.lower_bound(peer);
        break;
      }
      ++in_installed;
    }
    auto patch_run = [&] { return in_patch != patch.end() && SamePeer(in_patch->first, peer); };
    auto installed_run = [&] { return in_installed != installed.end() && SamePeer(in_installed->first, peer); };
    while (patch_run() || installed_run()) {
      if (!installed_run() || (patch_run() && less(in_patch->first, in_installed->first))) {
        upsert(in_patch->first, in_patch->second, nullptr);
        ++in_patch;
      } else if (!patch_run() || less(in_installed->first, in_patch->first)) {
        changes.deletes.emplace_back(in_installed->first, in_installed->second);
        ++in_installed;
      } else {
        upsert(in_patch->first, in_patch->second, &in_installed->second);
        ++in_patch;
        ++in_installed;
      }
    }
  }
  for (; in_patch != patch.end(); ++in_patch) upsert_unlisted(in_patch->first, in_patch->second);
  SortForLookupOrder(changes);
}

// Whether a patch of `addresses` replaces the exact entry of `key`.
bool Patched(const PeerAddresses& addresses, const ms_policy_key& key) {
  return addresses.ipv4.contains(ntohl(key.peer_ipv4));
}
bool Patched(const PeerAddresses& addresses, const ms_policy6_key& key) {
  Ipv6Address peer;
  std::memcpy(peer.data(), key.peer_ipv6, sizeof key.peer_ipv6);
  return addresses.ipv6.contains(peer);
}

template <typename Map, typename Key>
std::optional<ms_policy_value> ValueAt(const Map& map, const Key& key) {
  const auto found = map.find(key);
  if (found == map.end()) return std::nullopt;
  return found->second;
}

template <typename Map, typename Key>
bool SameValue(const Map& map, const Key& key, const ms_policy_value& value) {
  const auto found = map.find(key);
  return found != map.end() && BytewiseEqual(found->second, value);
}

// What turns one policy map of `old` into that of `desired`, sorted.
template <typename Map, typename Key>
void DiffInPlace(const Map& old, const Map& desired, EntryChanges<Key>& changes) {
  for (const auto& [key, value] : desired) {
    if (!SameValue(old, key, value)) changes.upserts.emplace_back(key, value);
  }
  for (const auto& [key, value] : old) {
    if (!desired.contains(key)) changes.deletes.emplace_back(key, value);
  }
  SortForLookupOrder(changes);
}

// Writes `changes` into what an endpoint has installed.
template <typename Map, typename Key>
void Splice(const EntryChanges<Key>& changes, Map& entries) {
  for (const auto& [key, value] : changes.deletes) entries.erase(key);
  for (const auto& [key, value] : changes.upserts) entries[key] = value;
}

// The entries of `map` outside the directions marked in `dropped`.
template <typename Map>
Map WithoutDirections(const Map& map, const std::array<bool, MS_DIR_MAX>& dropped) {
  Map out;
  for (const auto& entry : map) {
    if (!dropped[ms_key_direction(entry.first.direction)]) out.insert(out.end(), entry);
  }
  return out;
}

// The changes that replace an endpoint's LPM entries by a patch's, except
// in directions the endpoint keeps without entries. Port-interval lookups
// stay as they are (CanPatch: the patch's are the same).
template <typename Map, typename Key>
void DiffLpmPatch(const Map& old, const Map& patch, const std::array<bool, MS_DIR_MAX>& trimmed,
                  EntryChanges<Key>& changes) {
  for (const auto& [key, value] : patch) {
    if ((key.direction & MS_DIR_F_PORT_LOOKUP) != 0) continue;
    if (!trimmed[ms_key_direction(key.direction)] && !SameValue(old, key, value)) {
      changes.upserts.emplace_back(key, value);
    }
  }
  for (const auto& [key, value] : old) {
    if ((key.direction & MS_DIR_F_PORT_LOOKUP) == 0 && !patch.contains(key)) changes.deletes.emplace_back(key, value);
  }
  SortForLookupOrder(changes);
}

// The port-interval lookup entries (MS_DIR_F_PORT_LOOKUP, ms_policy_lpm) of
// two policies are the same, in every direction or in `only` one. The data
// path reads a port's interval once and then looks up verdicts keyed by
// it: lookup prefixes replaced one by one could hand it an interval whose
// verdicts are half written, so a change of them goes through the union
// cutting (port_recut.h).
bool SamePortLookups(const MapState::LpmMap& a, const MapState::LpmMap& b, std::optional<uint8_t> only = std::nullopt) {
  auto is_lookup = [&](const auto& entry) {
    return (entry.first.direction & MS_DIR_F_PORT_LOOKUP) != 0 &&
           (!only || ms_key_direction(entry.first.direction) == *only);
  };
  auto x = std::find_if(a.begin(), a.end(), is_lookup);
  auto y = std::find_if(b.begin(), b.end(), is_lookup);
  while (x != a.end() && y != b.end()) {
    if (!BytewiseEqual(x->first, y->first) || !BytewiseEqual(x->second, y->second)) return false;
    x = std::find_if(std::next(x), a.end(), is_lookup);
    y = std::find_if(std::next(y), b.end(), is_lookup);
  }
  return x == a.end() && y == b.end();
}

// A new port cutting in place (port_recut.h): the changes of steps 1, 2, 4
// and 5; step 3 is the plan's ordinary `changes`.
struct RecutSteps {
  PortRecut recut;
  EndpointChanges stage_union;                // 1: old interval verdicts under union keys (unreachable keys only)
  EntryChanges<ms_lpm_key> lookups_to_union;  // 2
  EntryChanges<ms_lpm_key> lookups_to_new;    // 4
  EndpointChanges unstage_union;              // 5: union keys the new policy lacks (deletes only)
  // What steps 3 and 4 start from, for their undo: the old interval
  // verdicts re-keyed to the union, and the union's lookups.
  EndpointPolicy old_in_union;
  MapState::LpmMap union_lookups;
};

// One policy map's part of steps 1, 3 and 5.
template <typename Map, typename Key>
void PlanRecutOfMap(const PortRecut& recut, const Map& old, const Map& desired, EntryChanges<Key>& stage,
                    EntryChanges<Key>& in_place, EntryChanges<Key>& unstage, Map& old_in_union) {
  Map old_unnamed;
  Map new_in_union_unnamed;
  old_in_union = recut.ToUnion(old, /*from_new=*/false, old_unnamed);
  Map new_in_union = recut.ToUnion(desired, /*from_new=*/true, new_in_union_unnamed);
  // Not something the compiler writes; kept so the maps hold `desired` exactly.
  new_in_union.merge(new_in_union_unnamed);
  // Step 1. An old key naming no old interval is unreachable now but may
  // start a union interval once the lookups move: the staged value
  // replaces it, or it goes before the lookups do.
  for (const auto& [key, value] : old_in_union) {
    if (!SameValue(old, key, value)) stage.upserts.emplace_back(key, value);
  }
  for (const auto& [key, value] : old_unnamed) {
    if (!old_in_union.contains(key)) stage.deletes.emplace_back(key, value);
  }
  // Step 3: what the re-cut does not involve as always, the involved
  // interval verdicts from old to new under the union's keys.
  for (const auto& [key, value] : desired) {
    if (!recut.Involves(key) && !SameValue(old, key, value)) in_place.upserts.emplace_back(key, value);
  }
  for (const auto& [key, value] : old) {
    if (!recut.Involves(key) && !desired.contains(key)) in_place.deletes.emplace_back(key, value);
  }
  for (const auto& [key, value] : new_in_union) {
    if (!SameValue(old_in_union, key, value)) in_place.upserts.emplace_back(key, value);
  }
  for (const auto& [key, value] : old_in_union) {
    if (!new_in_union.contains(key)) in_place.deletes.emplace_back(key, value);
  }
  SortForLookupOrder(in_place);
  for (const auto& [key, value] : new_in_union) {
    if (!desired.contains(key)) unstage.deletes.emplace_back(key, value);
  }
}

// The lookup entries of `lpm` that `recut` involves.
MapState::LpmMap InvolvedLookups(const PortRecut& recut, const MapState::LpmMap& lpm) {
  MapState::LpmMap out;
  for (const auto& entry : lpm) {
    if ((entry.first.direction & MS_DIR_F_PORT_LOOKUP) != 0 && recut.Involves(entry.first)) out.insert(entry);
  }
  return out;
}

// Lookup entries from `from` to `to` (both only what the re-cut involves):
// any order within upserts, then deletes (port_recut.h).
void DiffLookups(const MapState::LpmMap& from, const MapState::LpmMap& to, EntryChanges<ms_lpm_key>& changes) {
  for (const auto& [key, value] : to) {
    if (!SameValue(from, key, value)) changes.upserts.emplace_back(key, value);
  }
  for (const auto& [key, value] : from) {
    if (!to.contains(key)) changes.deletes.emplace_back(key, value);
  }
}

// Plans an in-place update from `old` to `desired` (same flags): the
// ordinary diff, through the union cutting when the port cutting changes.
std::optional<RecutSteps> DiffEndpointInPlace(uint32_t endpoint_id, const EndpointPolicy& old,
                                              const EndpointPolicy& desired, EndpointChanges& changes,
                                              bool without_union_for_tests) {
  PortRecut recut(old.lpm, desired.lpm);
  if (!recut.changes_cutting() || without_union_for_tests) {
    DiffInPlace(old.exact, desired.exact, changes.exact);
    DiffInPlace(old.lpm, desired.lpm, changes.lpm);
    DiffInPlace(old.exact6, desired.exact6, changes.exact6);
    DiffInPlace(old.lpm6, desired.lpm6, changes.lpm6);
    return std::nullopt;
  }
  RecutSteps steps{std::move(recut), {}, {}, {}, {}, {}, {}};
  PlanRecutOfMap(steps.recut, old.exact, desired.exact, steps.stage_union.exact, changes.exact,
                 steps.unstage_union.exact, steps.old_in_union.exact);
  PlanRecutOfMap(steps.recut, old.lpm, desired.lpm, steps.stage_union.lpm, changes.lpm, steps.unstage_union.lpm,
                 steps.old_in_union.lpm);
  PlanRecutOfMap(steps.recut, old.exact6, desired.exact6, steps.stage_union.exact6, changes.exact6,
                 steps.unstage_union.exact6, steps.old_in_union.exact6);
  PlanRecutOfMap(steps.recut, old.lpm6, desired.lpm6, steps.stage_union.lpm6, changes.lpm6,
                 steps.unstage_union.lpm6, steps.old_in_union.lpm6);
  steps.union_lookups = steps.recut.UnionLookups(endpoint_id);
  DiffLookups(InvolvedLookups(steps.recut, old.lpm), steps.union_lookups, steps.lookups_to_union);
  DiffLookups(steps.union_lookups, InvolvedLookups(steps.recut, desired.lpm), steps.lookups_to_new);
  return steps;
}

// One policy map's entries of an endpoint (keys without the generation bit).
template <typename Key>
using EndpointEntries = std::map<Key, ms_policy_value, BytewiseLess<Key>>;

// One ordered batch of upserts (kernel keys) for one policy map, with where
// the undo finds what each key held before: the endpoint's entries the
// write starts from (nullptr: the key was absent). They stay as they are
// until the batch is done or undone, so the value is looked up only when a
// write is undone, not for each of the tens of thousands that are not.
template <typename Key>
struct UpsertBatch {
  PolicyEntryList<Key> entries;
  std::vector<const EndpointEntries<Key>*> held_before;
  void Add(const Key& key, const ms_policy_value& value, const EndpointEntries<Key>* before) {
    entries.emplace_back(key, value);
    held_before.push_back(before);
  }
  // What the key of entries[i] held before the batch (nullopt: absent).
  std::optional<ms_policy_value> Previous(size_t i) const {
    if (held_before[i] == nullptr) return std::nullopt;
    Key key = entries[i].first;
    key.endpoint_id &= ~MS_POLICY_GEN_BIT;
    return ValueAt(*held_before[i], key);
  }
};

// One ordered batch of deletes (kernel keys) for one policy map, with the
// values they remove for the undo.
template <typename Key>
struct DeleteBatch {
  std::vector<Key> keys;
  std::vector<ms_policy_value> removed;
  void Add(const Key& key, const ms_policy_value& value) {
    keys.push_back(key);
    removed.push_back(value);
  }
};

// One undoable step: the first `done` entries of a policy map batch (undone
// last first), or one ms_endpoints write (`batch` empty).
struct Undo {
  std::variant<std::monostate, const UpsertBatch<ms_policy_key>*, const UpsertBatch<ms_lpm_key>*,
               const UpsertBatch<ms_policy6_key>*, const UpsertBatch<ms_lpm6_key>*, const DeleteBatch<ms_policy_key>*,
               const DeleteBatch<ms_lpm_key>*, const DeleteBatch<ms_policy6_key>*, const DeleteBatch<ms_lpm6_key>*>
      batch;
  size_t done = 0;
  uint32_t ifindex = 0;
  std::optional<ms_endpoint> previous_endpoint;  // nullopt: the ifindex had no entry
};

// Named like MapState's maps so ForEachPolicyMap walks them too.
template <template <typename> class Batch>
struct PolicyMapBatches {
  Batch<ms_policy_key> exact;
  Batch<ms_lpm_key> lpm;
  Batch<ms_policy6_key> exact6;
  Batch<ms_lpm6_key> lpm6;
};

// The batch of `batches` for keys of type Key.
template <typename Key, typename Batches>
auto& BatchOf(Batches& batches) {
  if constexpr (std::is_same_v<Key, ms_policy_key>) {
    return batches.exact;
  } else if constexpr (std::is_same_v<Key, ms_lpm_key>) {
    return batches.lpm;
  } else if constexpr (std::is_same_v<Key, ms_policy6_key>) {
    return batches.exact6;
  } else {
    static_assert(std::is_same_v<Key, ms_lpm6_key>);
    return batches.lpm6;
  }
}

}  // namespace

struct PolicyMapUpdater::Plan {
  enum class Kind { kNew, kInPlace, kFlip, kRemove, kUnchanged };
  uint32_t endpoint_id = 0;
  Kind kind = Kind::kUnchanged;
  const InstalledEndpoint* old = nullptr;
  std::optional<EndpointPolicy> desired;  // stamped: flags carry the generation, policy_rev set
  // kInPlace: the changes of each policy map. `patch` set: they come from PeerEntries,
  // `desired` is empty (a re-cutting patch: see `recut`) and `endpoint` is the
  // stamped ms_endpoints value.
  EndpointChanges changes;
  bool patch = false;
  ms_endpoint endpoint{};
  // kInPlace with a new port cutting: the steps around `changes`. A whole
  // update's `desired` is the whole new policy; a patch's is only what it
  // brings (its exact entries, every LPM entry), replacing `patch_replaced`.
  std::optional<RecutSteps> recut;
  std::optional<EndpointPolicy> patch_replaced;
};

void PolicyMapUpdater::Adopt(const MapState& live) {
  installed_.clear();
  strays_ = live;
  strays_.endpoints.clear();
  stray_endpoints_.clear();
  for (const auto& [ifindex, endpoint] : live.endpoints) {
    if ((endpoint.endpoint_id & MS_POLICY_GEN_BIT) != 0 || installed_.contains(endpoint.endpoint_id)) {
      stray_endpoints_.push_back(ifindex);  // not something this agent writes
      continue;
    }
    InstalledEndpoint& installed = installed_[endpoint.endpoint_id];
    installed.policy.ifindex = ifindex;
    installed.policy.endpoint = endpoint;
    const uint32_t policy_id = ms_policy_id(endpoint.endpoint_id, endpoint.flags);
    AdoptEntries(strays_.exact, policy_id, endpoint.endpoint_id, installed.policy.exact);
    AdoptEntries(strays_.lpm, policy_id, endpoint.endpoint_id, installed.policy.lpm);
    AdoptEntries(strays_.exact6, policy_id, endpoint.endpoint_id, installed.policy.exact6);
    AdoptEntries(strays_.lpm6, policy_id, endpoint.endpoint_id, installed.policy.lpm6);
    installed.policy.summary.exact_entries =
        static_cast<uint32_t>(installed.policy.exact.size() + installed.policy.exact6.size());
    installed.policy.summary.lpm_entries =
        static_cast<uint32_t>(installed.policy.lpm.size() + installed.policy.lpm6.size());
    installed.has_entries = DirectionsWithEntries(installed.policy);
  }
}

const InstalledEndpoint* PolicyMapUpdater::Find(uint32_t endpoint_id) const {
  auto found = installed_.find(endpoint_id);
  return found == installed_.end() ? nullptr : &found->second;
}

size_t PolicyMapUpdater::exact_entries() const {
  size_t total = strays_.exact.size();
  for (const auto& [id, installed] : installed_) total += installed.policy.exact.size();
  return total;
}

size_t PolicyMapUpdater::lpm_entries() const {
  size_t total = strays_.lpm.size();
  for (const auto& [id, installed] : installed_) total += installed.policy.lpm.size();
  return total;
}

size_t PolicyMapUpdater::exact6_entries() const {
  size_t total = strays_.exact6.size();
  for (const auto& [id, installed] : installed_) total += installed.policy.exact6.size();
  return total;
}

size_t PolicyMapUpdater::lpm6_entries() const {
  size_t total = strays_.lpm6.size();
  for (const auto& [id, installed] : installed_) total += installed.policy.lpm6.size();
  return total;
}

MapState PolicyMapUpdater::Snapshot() const {
  MapState state = strays_;
  for (const auto& [id, installed] : installed_) {
    const bool generation = installed.generation();
    state.endpoints[installed.policy.ifindex] = installed.policy.endpoint;
    for (const auto& [key, value] : installed.policy.exact) state.exact[KernelKey(key, generation)] = value;
    for (const auto& [key, value] : installed.policy.lpm) state.lpm[KernelKey(key, generation)] = value;
    for (const auto& [key, value] : installed.policy.exact6) state.exact6[KernelKey(key, generation)] = value;
    for (const auto& [key, value] : installed.policy.lpm6) state.lpm6[KernelKey(key, generation)] = value;
  }
  return state;
}

// Strays are unreachable (no ms_endpoints entry names their generation), so
// deleting them first is invisible to packets and frees room for staging.
absl::Status PolicyMapUpdater::DeleteStrays() {
  absl::Status result;
  ForEachPolicyMap(strays_, [&](auto& strays) {
    for (auto it = strays.begin(); result.ok() && it != strays.end();) {
      result = DeleteEntry(writer_, it->first);
      if (result.ok()) it = strays.erase(it);
    }
  });
  return result;
}

namespace {

// Whether ms_endpoint.lookup_actions (datapath.h) of `policy` stays once
// `peers` is spliced in: the exact entries of the patched addresses (and,
// when the patch carries them, the LPM entries) are replaced by the
// patch's, every other entry stays. The bits the patch brings must be
// there already, and those it does not bring must still come from an
// entry the patch keeps. The installed bits are those of the installed
// entries, so a kept entry brings no other: the kept exact entries (the
// bulk) are scanned only until the missing bits are found.
bool PatchKeepsLookupActions(const EndpointPolicy& policy, const PeerEntries& peers) {
  const uint8_t installed = policy.endpoint.lookup_actions;
  auto bits_of = [&](uint8_t direction_byte, const ms_policy_value& value) -> uint8_t {
    const uint8_t direction = ms_key_direction(direction_byte);
    const uint8_t lookup = direction == MS_DIR_INGRESS ? MS_EP_F_INGRESS_LOOKUP : MS_EP_F_EGRESS_LOOKUP;
    if ((policy.endpoint.flags & lookup) == 0) return 0;
    return ms_lookup_action_bit(direction, value.action);
  };
  // No direction looked up without isolation: no entry brings a bit (the
  // common case of isolated endpoints; spares walks of every patch entry).
  if ((policy.endpoint.flags & (MS_EP_F_INGRESS_LOOKUP | MS_EP_F_EGRESS_LOOKUP)) == 0) return installed == 0;
  uint8_t found = 0;
  auto note_all = [&](const auto& entries) {
    for (const auto& [key, value] : entries) found |= bits_of(key.direction, value);
  };
  // A cluster policy patch replaces the LPM entries too (DiffLpmPatch).
  note_all(peers.lpm ? *peers.lpm : policy.lpm);
  note_all(peers.lpm6 ? *peers.lpm6 : policy.lpm6);
  note_all(peers.exact);
  note_all(peers.exact6);
  if ((found & ~installed) != 0) return false;
  auto note_kept = [&](const auto& entries) {
    for (const auto& [key, value] : entries) {
      if (found == installed) return;
      const uint8_t bits = bits_of(key.direction, value);
      if ((bits & ~found) != 0 && !Patched(peers.addresses, key)) found |= bits;
    }
  };
  note_kept(policy.exact6);
  note_kept(policy.exact);
  return found == installed;
}

// Whether a patch of `addresses` keeps some exact entry of `direction`
// keyed by a port interval (one of another address).
bool KeepsIntervalEntries(const EndpointPolicy& policy, const PeerAddresses& addresses, uint8_t direction) {
  auto interval_of_direction = [&](uint8_t direction_byte) {
    return (direction_byte & MS_DIR_F_PORT_INTERVAL) != 0 && ms_key_direction(direction_byte) == direction;
  };
  auto kept_interval_entry = [&](const auto& entry) {
    return interval_of_direction(entry.first.direction) && !Patched(addresses, entry.first);
  };
  return std::any_of(policy.exact.begin(), policy.exact.end(), kept_interval_entry) ||
         std::any_of(policy.exact6.begin(), policy.exact6.end(), kept_interval_entry);
}

}  // namespace

bool PolicyMapUpdater::CanPatch(uint32_t endpoint_id, const PeerEntries& peers) const {
  const InstalledEndpoint* installed = Find(endpoint_id);
  if (installed == nullptr || (installed->policy.endpoint.flags & MS_EP_F_LOCKDOWN) != 0) return false;
  if (peers.lpm.has_value() != peers.lpm6.has_value()) return false;  // a CIDR patch carries both families
  const EndpointPolicy& policy = installed->policy;
  // A patch never rewrites the endpoint entry: what it can decide must stay.
  if (!PatchKeepsLookupActions(policy, peers)) return false;
  const std::array<bool, MS_DIR_MAX>& keeps_entries = installed->has_entries;  // none kept where none are (below)
  for (uint8_t direction : {uint8_t{MS_DIR_INGRESS}, uint8_t{MS_DIR_EGRESS}}) {
    auto in_direction = [&](const auto& entry) { return ms_key_direction(entry.first.direction) == direction; };
    const bool has_entries = keeps_entries[direction];
    // A new endPort cutting is re-cut in place (port_recut.h) when every
    // interval verdict of the direction after the patch is the patch's: no
    // kept exact entry (another address) is keyed by an
    // interval of the old cutting. A direction without entries has no
    // lookups and keeps none.
    if (peers.lpm && has_entries && !SamePortLookups(policy.lpm, *peers.lpm, direction) &&
        KeepsIntervalEntries(policy, peers.addresses, direction)) {
      return false;
    }
    const ms_action fallback = peers.default_action[direction];
    // An audit default always has a catch-all LPM entry: never trimmed.
    if (fallback == MS_ACTION_ALLOW_AUDIT) continue;
    // A port-interval lookup entry is no verdict: it never makes a direction matter.
    auto not_default = [&](const auto& entry) {
      return in_direction(entry) && entry.second.action != fallback && entry.second.action != MS_ACTION_PORT_INTERVAL;
    };
    // The LPM entries after the patch: the new ones if it carries them.
    const MapState::LpmMap& lpm = peers.lpm ? *peers.lpm : policy.lpm;
    const MapState::Lpm6Map& lpm6 = peers.lpm6 ? *peers.lpm6 : policy.lpm6;
    const bool new_entries_matter =
        std::any_of(peers.exact.begin(), peers.exact.end(), not_default) ||
        std::any_of(peers.exact6.begin(), peers.exact6.end(), not_default) ||
        (peers.lpm && std::any_of(lpm.begin(), lpm.end(), not_default)) ||
        (peers.lpm6 && std::any_of(lpm6.begin(), lpm6.end(), not_default));
    // Entries outside the patched addresses (LPM, kept IPv6 peers) that keep the direction untrimmed.
    const bool other_maps_matter =
        std::any_of(lpm.begin(), lpm.end(), not_default) ||
        std::any_of(policy.exact6.begin(), policy.exact6.end(),
                    [&](const auto& entry) {
                      return not_default(entry) && !Patched(peers.addresses, entry.first);
                    }) ||
        std::any_of(lpm6.begin(), lpm6.end(), not_default);
    if (!has_entries) {
      if (new_entries_matter) return false;  // the direction stops being trimmed
      continue;
    }
    if (new_entries_matter || other_maps_matter) continue;
    const bool others_matter = std::any_of(policy.exact.begin(), policy.exact.end(), [&](const auto& entry) {
      return not_default(entry) && !Patched(peers.addresses, entry.first);
    });
    if (!others_matter) return false;  // every entry would repeat the default: a whole compile trims them
  }
  if (peers.lpm) {
    // The LPM shape hints (ms_endpoint.lpm_absent) of the entries after the
    // patch must stay: a change of them is a flip, like a change of flags.
    auto kept = [&](const auto& map) {
      std::decay_t<decltype(map)> out;
      for (const auto& entry : map) {
        if (keeps_entries[ms_key_direction(entry.first.direction)]) out.insert(entry);
      }
      return out;
    };
    const MapState::LpmMap lpm_after = kept(*peers.lpm);
    if (LpmAbsentBits(lpm_after) != policy.endpoint.lpm_absent ||
        LpmAbsentBits(kept(*peers.lpm6)) != policy.endpoint.lpm6_absent) {
      return false;
    }
    // Nor MS_EP_F_PORT_RANGES: whether there are port-interval lookups at all.
    const bool has_lookups = std::any_of(lpm_after.begin(), lpm_after.end(), [](const auto& entry) {
      return (entry.first.direction & MS_DIR_F_PORT_LOOKUP) != 0;
    });
    if (has_lookups != ((policy.endpoint.flags & MS_EP_F_PORT_RANGES) != 0)) return false;
  }
  return true;
}

absl::Status PolicyMapUpdater::Apply(std::vector<EndpointUpdate> updates) {
  for (const EndpointUpdate& update : updates) {
    if ((update.endpoint_id & MS_POLICY_GEN_BIT) != 0 || update.endpoint_id == 0) {
      return absl::InvalidArgumentError(absl::StrCat("endpoint id ", update.endpoint_id, " is out of range"));
    }
    if (update.peers && (update.desired || !CanPatch(update.endpoint_id, *update.peers))) {
      return absl::InvalidArgumentError(
          absl::StrCat("endpoint ", update.endpoint_id, ": peer entries cannot be spliced in (see CanPatch)"));
    }
  }
  if (absl::Status status = DeleteStrays(); !status.ok()) {
    ++counters_.cleanup_failures;
    return absl::Status(status.code(), absl::StrCat("deleting stale policy entries: ", status.message()));
  }
  if (mode_ == Mode::kNaiveForTests) return ApplyNaive(updates);

  // Plan every endpoint: which path, and its stamped ms_endpoints value.
  std::vector<Plan> plans;
  std::set<uint32_t> claimed_ifindexes;  // ifindexes some endpoint holds after the batch
  std::set<uint32_t> updated_ids;
  for (const EndpointUpdate& update : updates) updated_ids.insert(update.endpoint_id);
  for (const auto& [id, installed] : installed_) {
    if (!updated_ids.contains(id)) claimed_ifindexes.insert(installed.policy.ifindex);
  }
  auto next_revision = [](uint32_t revision) {
    // 0 is what a fresh session would compare against: never hand it out.
    return revision + 1 == 0 ? 1 : revision + 1;
  };
  for (EndpointUpdate& update : updates) {
    Plan plan;
    plan.endpoint_id = update.endpoint_id;
    plan.old = Find(update.endpoint_id);
    if (update.peers) {
      PlanPatch(*update.peers, plan);
      if (plan.kind == Plan::Kind::kInPlace) plan.endpoint.policy_rev = next_revision(plan.endpoint.policy_rev);
      claimed_ifindexes.insert(plan.old->policy.ifindex);
      plans.push_back(std::move(plan));
      continue;
    }
    if (!update.desired) {
      plan.kind = plan.old ? Plan::Kind::kRemove : Plan::Kind::kUnchanged;
      plans.push_back(std::move(plan));
      continue;
    }
    EndpointPolicy desired = std::move(*update.desired);
    desired.endpoint.flags &= static_cast<uint8_t>(~MS_EP_F_POLICY_GEN);
    desired.endpoint.policy_rev = 1;
    claimed_ifindexes.insert(desired.ifindex);
    if (!plan.old) {
      plan.kind = Plan::Kind::kNew;
    } else {
      const EndpointPolicy& old = plan.old->policy;
      const bool same_flags = VerdictFlags(old.endpoint) == desired.endpoint.flags &&
                              old.endpoint.lpm_absent == desired.endpoint.lpm_absent &&
                              old.endpoint.lpm6_absent == desired.endpoint.lpm6_absent &&
                              old.endpoint.lookup_actions == desired.endpoint.lookup_actions &&
                              old.endpoint.ipv4 == desired.endpoint.ipv4 &&
                              std::memcmp(old.endpoint.ipv6, desired.endpoint.ipv6, sizeof old.endpoint.ipv6) == 0 &&
                              old.ifindex == desired.ifindex;
      const bool verdicts_same = same_flags && SameEntries(old.exact, desired.exact) &&
                                 SameEntries(old.lpm, desired.lpm) && SameEntries(old.exact6, desired.exact6) &&
                                 SameEntries(old.lpm6, desired.lpm6);
      desired.endpoint.policy_rev = verdicts_same ? old.endpoint.policy_rev : next_revision(old.endpoint.policy_rev);
      // A lockdown (docs/map-pressure.md) keeps the revision: its sessions
      // go on instead of being re-judged against a policy that is not there.
      if ((desired.endpoint.flags & MS_EP_F_LOCKDOWN) != 0) desired.endpoint.policy_rev = old.endpoint.policy_rev;
      bool generation = plan.old->generation();
      if (verdicts_same) {
        plan.kind = Plan::Kind::kUnchanged;
      } else if (same_flags) {
        plan.kind = Plan::Kind::kInPlace;
        plan.recut = DiffEndpointInPlace(update.endpoint_id, old, desired, plan.changes,
                                         mode_ == Mode::kDirectRecutForTests);
      } else {
        plan.kind = Plan::Kind::kFlip;
        generation = !generation;
      }
      if (generation) desired.endpoint.flags |= MS_EP_F_POLICY_GEN;
    }
    plan.endpoint = desired.endpoint;
    plan.desired = std::move(desired);
    plans.push_back(std::move(plan));
  }

  std::vector<Undo> undo;
  auto roll_back = [&](const absl::Status& cause) {
    ++counters_.rollbacks;
    auto undo_upserts = [&](const auto& batch, size_t done) {
      for (size_t i = done; i-- > 0;) {
        const auto& key = batch.entries[i].first;
        const std::optional<ms_policy_value> previous = batch.Previous(i);
        const absl::Status status = previous ? UpsertEntry(writer_, key, *previous) : DeleteEntry(writer_, key);
        if (status.ok()) continue;
        ++counters_.cleanup_failures;
        if (!previous) EntriesOf<std::decay_t<decltype(key)>>(strays_).emplace(key, ms_policy_value{});
      }
    };
    auto undo_deletes = [&](const auto& batch, size_t done) {
      for (size_t i = done; i-- > 0;) {
        if (!UpsertEntry(writer_, batch.keys[i], batch.removed[i]).ok()) ++counters_.cleanup_failures;
      }
    };
    for (auto it = undo.rbegin(); it != undo.rend(); ++it) {
      if (it->batch.index() != 0) {
        std::visit(
            [&](const auto& batch) {
              using Batch = std::decay_t<decltype(batch)>;
              if constexpr (std::is_pointer_v<Batch>) {
                if constexpr (requires { batch->held_before; }) {
                  undo_upserts(*batch, it->done);
                } else {
                  undo_deletes(*batch, it->done);
                }
              }
            },
            it->batch);
        continue;
      }
      const absl::Status status = it->previous_endpoint
                                      ? writer_.UpsertEndpoint(it->ifindex, *it->previous_endpoint)
                                      : writer_.DeleteEndpoint(it->ifindex);
      if (!status.ok()) ++counters_.cleanup_failures;
    }
    return absl::Status(cause.code(),
                        absl::StrCat("policy update rolled back, previous policy kept: ", cause.message()));
  };

  // Phase A: stage, and change in place. Each policy map gets one ordered
  // batch of upserts, then one of deletes (MapWriter batches: one syscall
  // each on the real maps, element by element in order). Staged entries
  // (another generation) are unreachable, so their order is free. In-place
  // upserts go most specific first and deletes least specific first per
  // endpoint (its lists are sorted; endpoints' chains never meet), a
  // family's exact map before its LPM trie for upserts and after it for
  // deletes. All before any endpoint's new policy_rev.
  // A port re-cut (port_recut.h) adds steps: 1 and 2 before this batch,
  // 4 after it (all before any flip), 5 with the clean-up. Every step is
  // written whole, for all endpoints, before the next one starts.
  enum Step { kStageUnion, kLookupsToUnion, kMain, kLookupsToNew, kSteps };
  std::array<PolicyMapBatches<UpsertBatch>, kSteps> upserts;
  std::array<PolicyMapBatches<DeleteBatch>, kSteps> deletes;
  // `before_of(key)`: the entries the key's write starts from (for the undo).
  auto add_changes = [&](Step step, const auto& changes, bool generation, const auto& before_of) {
    for (const auto& [key, value] : changes.upserts) {
      using Key = std::decay_t<decltype(key)>;
      BatchOf<Key>(upserts[step]).Add(KernelKey(key, generation), value, before_of(key));
    }
    for (const auto& [key, value] : changes.deletes) {
      BatchOf<std::decay_t<decltype(key)>>(deletes[step]).Add(KernelKey(key, generation), value);
    }
  };
  for (const Plan& plan : plans) {
    if (plan.kind == Plan::Kind::kNew || plan.kind == Plan::Kind::kFlip) {
      const bool generation = (plan.desired->endpoint.flags & MS_EP_F_POLICY_GEN) != 0;
      ForEachPolicyMap(*plan.desired, [&](const auto& entries) {
        for (const auto& [key, value] : entries) {
          BatchOf<std::decay_t<decltype(key)>>(upserts[kMain]).Add(KernelKey(key, generation), value, nullptr);
        }
      });
    } else if (plan.kind == Plan::Kind::kInPlace) {
      const bool generation = plan.old->generation();
      const EndpointPolicy& old = plan.old->policy;
      const RecutSteps* recut = plan.recut ? &*plan.recut : nullptr;
      auto before_main = [&](const auto& key) {
        using Key = std::decay_t<decltype(key)>;
        return &EntriesOf<Key>(recut && recut->recut.Involves(key) ? recut->old_in_union : old);
      };
      ForEachPolicyMap(plan.changes, [&](const auto& changes) { add_changes(kMain, changes, generation, before_main); });
      if (recut) {
        auto before_stage = [&](const auto& key) {
          using Key = std::decay_t<decltype(key)>;
          return &EntriesOf<Key>(old);
        };
        ForEachPolicyMap(recut->stage_union,
                         [&](const auto& changes) { add_changes(kStageUnion, changes, generation, before_stage); });
        add_changes(kLookupsToUnion, recut->lookups_to_union, generation,
                    [&](const ms_lpm_key&) { return &old.lpm; });
        add_changes(kLookupsToNew, recut->lookups_to_new, generation,
                    [&](const ms_lpm_key&) { return &recut->union_lookups; });
      }
    }
  }
  auto write = [&](const auto& batch) {
    size_t done = 0;
    const absl::Status status = writer_.UpsertBatch(batch.entries, done);
    if (done > 0) undo.push_back({&batch, done, 0, std::nullopt});
    return status;
  };
  auto remove = [&](const auto& batch) {
    size_t done = 0;
    const absl::Status status = writer_.DeleteBatch(batch.keys, done);
    if (done > 0) undo.push_back({&batch, done, 0, std::nullopt});
    return status;
  };
  // Each family's chain: its exact map, then its LPM trie; deletes the reverse.
  // One at a time: a failed batch stops everything after it.
  for (int step = kStageUnion; step < kSteps; ++step) {
    if (absl::Status s = write(upserts[step].exact); !s.ok()) return roll_back(s);
    if (absl::Status s = write(upserts[step].lpm); !s.ok()) return roll_back(s);
    if (absl::Status s = write(upserts[step].exact6); !s.ok()) return roll_back(s);
    if (absl::Status s = write(upserts[step].lpm6); !s.ok()) return roll_back(s);
    if (absl::Status s = remove(deletes[step].lpm6); !s.ok()) return roll_back(s);
    if (absl::Status s = remove(deletes[step].exact6); !s.ok()) return roll_back(s);
    if (absl::Status s = remove(deletes[step].lpm); !s.ok()) return roll_back(s);
    if (absl::Status s = remove(deletes[step].exact); !s.ok()) return roll_back(s);
  }

  // Phase B: flip. Removals first, so an ifindex handed to another endpoint
  // is overwritten rather than deleted and re-added (no moment without an
  // endpoint on that veth).
  for (const Plan& plan : plans) {
    if (plan.kind != Plan::Kind::kRemove) continue;
    const uint32_t ifindex = plan.old->policy.ifindex;
    if (claimed_ifindexes.contains(ifindex)) continue;
    if (absl::Status s = writer_.DeleteEndpoint(ifindex); !s.ok()) return roll_back(s);
    undo.push_back({{}, 0, ifindex, plan.old->policy.endpoint});
  }
  for (const Plan& plan : plans) {
    if (plan.kind == Plan::Kind::kRemove) continue;
    if (plan.kind == Plan::Kind::kUnchanged &&
        (!plan.desired || BytewiseEqual(plan.old->policy.endpoint, plan.desired->endpoint))) {
      continue;
    }
    const uint32_t ifindex = plan.patch ? plan.old->policy.ifindex : plan.desired->ifindex;
    std::optional<ms_endpoint> previous;
    if (plan.old && plan.old->policy.ifindex == ifindex) previous = plan.old->policy.endpoint;
    if (absl::Status s = writer_.UpsertEndpoint(ifindex, plan.endpoint); !s.ok()) return roll_back(s);
    undo.push_back({{}, 0, ifindex, previous});
  }

  // Phase C: clean up what no packet can reach any more. A failed delete
  // leaves an unreachable stray (retried by the next Apply).
  PolicyMapBatches<DeleteBatch> unreachable;
  for (const Plan& plan : plans) {
    if (plan.recut) {  // step 5 of a re-cut: union keys no lookup names any more
      const bool generation = plan.old->generation();
      ForEachPolicyMap(plan.recut->unstage_union, [&](const auto& changes) {
        for (const auto& [key, value] : changes.deletes) {
          BatchOf<std::decay_t<decltype(key)>>(unreachable).Add(KernelKey(key, generation), value);
        }
      });
    }
    if (plan.old && (plan.kind == Plan::Kind::kFlip || plan.kind == Plan::Kind::kRemove)) {
      const bool generation = plan.old->generation();
      ForEachPolicyMap(plan.old->policy, [&](const auto& entries) {
        for (const auto& [key, value] : entries) {
          BatchOf<std::decay_t<decltype(key)>>(unreachable).Add(KernelKey(key, generation), value);
        }
      });
    }
  }
  ForEachPolicyMap(unreachable, [&](const auto& batch) {
    // Past a failed key, the batch goes on with the next one.
    for (size_t start = 0; start < batch.keys.size();) {
      const std::vector<std::decay_t<decltype(batch.keys[0])>> rest(batch.keys.begin() + start, batch.keys.end());
      size_t done = 0;
      if (writer_.DeleteBatch(rest, done).ok()) break;
      const size_t failed = start + done;
      ++counters_.cleanup_failures;
      EntriesOf<std::decay_t<decltype(batch.keys[0])>>(strays_).emplace(batch.keys[failed], batch.removed[failed]);
      start = failed + 1;
    }
  });
  for (Plan& plan : plans) {
    if (plan.old && plan.desired && plan.old->policy.ifindex != plan.desired->ifindex &&
        !claimed_ifindexes.contains(plan.old->policy.ifindex)) {
      if (!writer_.DeleteEndpoint(plan.old->policy.ifindex).ok()) ++counters_.cleanup_failures;
    }
    switch (plan.kind) {
      case Plan::Kind::kFlip:
        ++counters_.generation_flips;
        break;
      case Plan::Kind::kInPlace:
        ++(plan.patch ? counters_.peer_patches : counters_.in_place_updates);
        if (plan.patch && !plan.changes.exact6.empty()) ++counters_.ipv6_peer_patches;
        if (plan.recut) ++counters_.port_recuts;
        break;
      default:
        break;
    }
    if (plan.kind == Plan::Kind::kRemove) {
      installed_.erase(plan.endpoint_id);
    } else if (plan.patch) {
      if (plan.kind == Plan::Kind::kUnchanged) continue;
      InstalledEndpoint& installed = installed_[plan.endpoint_id];
      EndpointPolicy& policy = installed.policy;
      if (plan.patch_replaced) {  // a re-cutting patch (PlanPatch): its entries replace those it named
        for (const auto& [key, value] : plan.patch_replaced->exact) policy.exact.erase(key);
        for (const auto& [key, value] : plan.patch_replaced->exact6) policy.exact6.erase(key);
        for (const auto& entry : plan.desired->exact) policy.exact.insert_or_assign(entry.first, entry.second);
        for (const auto& entry : plan.desired->exact6) policy.exact6.insert_or_assign(entry.first, entry.second);
        policy.lpm = std::move(plan.desired->lpm);
        policy.lpm6 = std::move(plan.desired->lpm6);
      } else {
        Splice(plan.changes.exact, policy.exact);
        Splice(plan.changes.lpm, policy.lpm);
        Splice(plan.changes.exact6, policy.exact6);
        Splice(plan.changes.lpm6, policy.lpm6);
      }
      policy.endpoint = plan.endpoint;
      policy.summary.exact_entries = static_cast<uint32_t>(policy.exact.size() + policy.exact6.size());
      policy.summary.lpm_entries = static_cast<uint32_t>(policy.lpm.size() + policy.lpm6.size());
      installed.has_entries = plan.patch_replaced ? DirectionsWithEntries(policy)
                                                  : DirectionsAfterSplice(installed.has_entries, plan.changes, policy);
    } else if (plan.desired) {
      InstalledEndpoint& installed = installed_[plan.endpoint_id];
      installed.policy = std::move(*plan.desired);
      installed.has_entries = DirectionsWithEntries(installed.policy);
    }
  }
  return absl::OkStatus();
}

// The exact (and LPM) changes that splice `peers` into the endpoint's
// installed policy (CanPatch holds). A direction whose new entries all
// repeat its default while it has no entries stays without (the whole
// compile trims it too).
void PolicyMapUpdater::PlanPatch(const PeerEntries& peers, Plan& plan) const {
  const EndpointPolicy& old = plan.old->policy;
  plan.patch = true;
  plan.endpoint = old.endpoint;
  std::array<bool, MS_DIR_MAX> trimmed{};
  const std::array<bool, MS_DIR_MAX>& has_entries = plan.old->has_entries;
  for (uint8_t direction : {uint8_t{MS_DIR_INGRESS}, uint8_t{MS_DIR_EGRESS}}) {
    trimmed[direction] = peers.default_action[direction] != MS_ACTION_ALLOW_AUDIT && !has_entries[direction];
  }
  if (peers.lpm && !SamePortLookups(old.lpm, WithoutDirections(*peers.lpm, trimmed))) {
    // A new port cutting. CanPatch: every involved exact entry after the
    // patch is the patch's, and every one before it is keyed by a patched
    // address. So the re-cut only needs what the patch replaces (`before`:
    // the entries of those addresses, all LPM entries) and what replaces
    // it (`after`); the entries of other addresses stay and take no part.
    EndpointPolicy before;
    auto add_replaced = [&](const auto& addresses, const auto& installed, auto& replaced) {
      for (const auto& address : addresses) {
        const auto [begin, end] = PeerRange(installed, plan.endpoint_id, address);
        replaced.insert(begin, end);
      }
    };
    add_replaced(peers.addresses.ipv4, old.exact, before.exact);
    add_replaced(peers.addresses.ipv6, old.exact6, before.exact6);
    before.lpm = old.lpm;
    before.lpm6 = old.lpm6;
    EndpointPolicy after;
    after.ifindex = old.ifindex;
    after.endpoint = old.endpoint;
    after.exact = WithoutDirections(peers.exact, trimmed);
    after.exact6 = WithoutDirections(peers.exact6, trimmed);
    after.lpm = WithoutDirections(*peers.lpm, trimmed);
    after.lpm6 = WithoutDirections(*peers.lpm6, trimmed);
    plan.recut =
        DiffEndpointInPlace(plan.endpoint_id, before, after, plan.changes, mode_ == Mode::kDirectRecutForTests);
    plan.patch_replaced = std::move(before);
    plan.desired = std::move(after);
    plan.kind = Plan::Kind::kInPlace;
    return;
  }
  DiffPeerRuns(plan.endpoint_id, peers.addresses.ipv4, peers.exact, old.exact, trimmed, plan.changes.exact);
  DiffPeerRuns(plan.endpoint_id, peers.addresses.ipv6, peers.exact6, old.exact6, trimmed, plan.changes.exact6);
  if (peers.lpm) DiffLpmPatch(old.lpm, *peers.lpm, trimmed, plan.changes.lpm);
  if (peers.lpm6) DiffLpmPatch(old.lpm6, *peers.lpm6, trimmed, plan.changes.lpm6);
  plan.kind = plan.changes.empty() ? Plan::Kind::kUnchanged : Plan::Kind::kInPlace;
}

// Deliberately wrong (tests only): every old entry out, the endpoint
// rewritten, every new entry in, all in generation 0.
absl::Status PolicyMapUpdater::ApplyNaive(std::vector<EndpointUpdate>& updates) {
  for (EndpointUpdate& update : updates) {
    if (const InstalledEndpoint* old = Find(update.endpoint_id)) {
      ForEachPolicyMap(old->policy, [&](const auto& entries) {
        for (const auto& [key, value] : entries) (void)DeleteEntry(writer_, key);
      });
      if (!update.desired) (void)writer_.DeleteEndpoint(old->policy.ifindex);
    }
    if (!update.desired) {
      installed_.erase(update.endpoint_id);
      continue;
    }
    EndpointPolicy desired = std::move(*update.desired);
    if (const InstalledEndpoint* old = Find(update.endpoint_id)) {
      desired.endpoint.policy_rev = old->policy.endpoint.policy_rev + 1;
    }
    if (absl::Status s = writer_.UpsertEndpoint(desired.ifindex, desired.endpoint); !s.ok()) return s;
    absl::Status written;
    ForEachPolicyMap(desired, [&](const auto& entries) {
      for (auto it = entries.begin(); written.ok() && it != entries.end(); ++it) {
        written = UpsertEntry(writer_, it->first, it->second);
      }
    });
    if (!written.ok()) return written;
    InstalledEndpoint& installed = installed_[update.endpoint_id];
    installed.policy = std::move(desired);
    installed.has_entries = DirectionsWithEntries(installed.policy);
  }
  return absl::OkStatus();
}

}  // namespace microseg
