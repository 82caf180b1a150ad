// Moves endpoints from the policy the maps hold to a newly compiled one so
// that no packet ever gets a verdict that neither the old nor the new policy
// gives (docs/policy-compiler.md, "Atomic updates").
//
// Each endpoint's policy entries live under one of two key ids,
// endpoint_id or endpoint_id | MS_POLICY_GEN_BIT, and the MS_EP_F_POLICY_GEN
// flag in its ms_endpoints entry says which one the data plane reads. An
// update of a batch of endpoints runs in three phases:
//   A. stage: when the endpoint's flags (isolation, lookup, lockdown,
//      address, veth, LPM hints) change, write every new entry without
//      touching anything a packet can reach (the other generation);
//      otherwise (pod churn, policy changes) change only the entries that
//      differ, in the live generation, in lookup order: upserts most
//      specific key first (per family: exact (proto,port), (proto,interval),
//      (proto,any), (any,any), then the LPM classes in the same order,
//      longest prefix first), then deletes least
//      specific first. Each packet's lookup chain then always finds either
//      its old first entry or its new one (proof in docs/policy-compiler.md).
//      A new cutting of the ports (endPort ranges) goes in place too,
//      through the union of both cuttings (port_recut.h): extra steps
//      before and after the in-place writes, all before B;
//   B. flip: one ms_endpoints update per endpoint switches isolation flags,
//      generation and policy_rev together (one byte holds flags+generation).
//      Everything the new policy_rev stands for is in place before it, so
//      a session re-checked under it sees the new policy only;
//   C. clean: delete the old generation (no packet can reach it).
// Phases A and C hand their writes to the writer as one ordered batch per
// policy map and step (MapWriter::UpsertBatch/DeleteBatch: one syscall on
// the real maps, applied element by element in that order), so the order
// above is the order packets see.
// A failure in A or B (a full map) undoes what the batch wrote and returns
// the error: the maps hold the old policy, as if nothing happened. Cost:
// while staging, a flipping endpoint holds two copies of its entries; an
// in-place one only its changed entries.
//
// Pod churn and cluster policy changes do not even need the endpoint's
// whole policy: an update may carry PeerEntries (the entries of a few peer
// addresses, and maybe all LPM entries) instead, which the updater splices
// into what it installed (see CanPatch).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "map_state.h"
#include "policy_compiler.h"

namespace microseg {

// Same keys and values, byte for byte (policy maps of MapState).
template <typename Map>
bool SameEntries(const Map& a, const Map& b) {
  if (a.size() != b.size()) return false;
  for (auto x = a.begin(), y = b.begin(); x != a.end(); ++x, ++y) {
    if (!BytewiseEqual(x->first, y->first) || !BytewiseEqual(x->second, y->second)) return false;
  }
  return true;
}

// Calls fn on each policy map of a MapState or EndpointPolicy, in write
// order: ms_policy, ms_policy_lpm, ms_policy6, ms_policy6_lpm.
template <typename State, typename Fn>
void ForEachPolicyMap(State& state, Fn&& fn) {
  fn(state.exact);
  fn(state.lpm);
  fn(state.exact6);
  fn(state.lpm6);
}

// An endpoint's flags without the generation bit: what decides verdicts.
inline uint8_t VerdictFlags(const ms_endpoint& endpoint) {
  return endpoint.flags & static_cast<uint8_t>(~MS_EP_F_POLICY_GEN);
}

struct EndpointUpdate {
  uint32_t endpoint_id = 0;
  std::optional<EndpointPolicy> desired;  // nullopt and no `peers`: the endpoint is gone
  // Instead of `desired`: replace the entries of these peer addresses only.
  std::optional<PeerEntries> peers;
};

// What the maps hold for one endpoint (keys as the compiler writes them,
// without the generation bit).
struct InstalledEndpoint {
  EndpointPolicy policy;  // policy.endpoint as in ms_endpoints (flags with generation, policy_rev)
  // Which directions have entries in some policy map of `policy`, kept with
  // it: patches ask for every subject, and a direction without entries
  // would otherwise cost a walk of all of them.
  std::array<bool, MS_DIR_MAX> has_entries{};
  bool generation() const { return (policy.endpoint.flags & MS_EP_F_POLICY_GEN) != 0; }
};

struct UpdaterCounters {
  uint64_t generation_flips = 0;  // endpoints moved by staging a new generation
  uint64_t in_place_updates = 0;  // endpoints whose exact entries changed in place (whole policy given)
  uint64_t peer_patches = 0;      // endpoints whose entries of a few peer addresses were spliced in
  uint64_t ipv6_peer_patches = 0; // of those, patches that wrote or deleted IPv6 exact entries
  uint64_t port_recuts = 0;       // of those two, updates to a new port cutting (through the union cutting)
  uint64_t rollbacks = 0;         // batches undone after a failed write
  uint64_t cleanup_failures = 0;  // entries that could not be deleted (kept as strays, retried)
};

class PolicyMapUpdater {
 public:
  // kAtomic is the real thing. kNaiveForTests writes in the obvious but
  // wrong order (old entries out, flags, new entries in, one generation), so
  // the hammer test can show that it catches a non-atomic writer.
  // kDirectRecutForTests moves to a new port cutting in place without the
  // union cutting (lookups and interval verdicts in plain lookup order), so
  // the re-cut tests can show that the union is needed.
  enum class Mode { kAtomic, kNaiveForTests, kDirectRecutForTests };

  explicit PolicyMapUpdater(MapWriter& writer, Mode mode = Mode::kAtomic) : writer_(writer), mode_(mode) {}

  // Takes over what the maps hold (an agent restart): each ms_endpoints entry
  // with the entries of its current generation; every other policy entry is
  // a stray that the next Apply deletes (no packet can reach it).
  void Adopt(const MapState& live);

  // Applies the batch (see the header comment). On error nothing changed.
  [[nodiscard]] absl::Status Apply(std::vector<EndpointUpdate> updates);

  // Whether `peers` can be spliced into what endpoint_id has installed and
  // give exactly what a whole compile would: the endpoint is installed and
  // not locked down, and no direction changes between "all its entries
  // repeat the default, so it has none" and not (that changes its flags).
  // When false, the caller compiles the endpoint whole.
  bool CanPatch(uint32_t endpoint_id, const PeerEntries& peers) const;

  const std::map<uint32_t, InstalledEndpoint>& installed() const { return installed_; }
  const InstalledEndpoint* Find(uint32_t endpoint_id) const;
  // Entries in ms_policy, ms_policy_lpm, ms_policy6 and ms_policy6_lpm.
  size_t exact_entries() const;
  size_t lpm_entries() const;
  size_t exact6_entries() const;
  size_t lpm6_entries() const;
  const UpdaterCounters& counters() const { return counters_; }

  // Everything as it sits in the kernel maps (generation bits included).
  MapState Snapshot() const;

 private:
  struct Plan;
  void PlanPatch(const PeerEntries& peers, Plan& plan) const;
  absl::Status DeleteStrays();
  absl::Status ApplyNaive(std::vector<EndpointUpdate>& updates);

  MapWriter& writer_;
  Mode mode_;
  std::map<uint32_t, InstalledEndpoint> installed_;  // key: endpoint_id
  MapState strays_;  // policy entries (kernel keys) nobody owns; `endpoints` unused
  std::vector<uint32_t> stray_endpoints_;  // ifindexes in ms_endpoints nobody owns
  UpdaterCounters counters_;
};

}  // namespace microseg
