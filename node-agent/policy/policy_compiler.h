// The policy compiler: a pure function from the cluster state and this
// node's endpoints to the desired BPF map contents. No I/O, no clocks.
//
// Two entry points over the same code:
//  - CompileEndpointPolicy: one local endpoint's entries, given a
//    PolicyContext (the cluster plus facts derived from it once for all
//    endpoints). The incremental engine calls it for just the endpoints an
//    event touches.
//  - CompileEndpointPeers: one local endpoint's exact entries for a few peer
//    addresses only (a pod event patches just those, see PeerEntries).
//  - CompilePolicy: every local endpoint, built on the former.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "map_state.h"
#include "model.h"
#include "tiered_verdicts.h"

namespace microseg {

struct EndpointPolicySummary {
  bool ingress_isolated = false;
  bool egress_isolated = false;
  std::vector<std::string> policies;  // "namespace/name" of policies selecting the pod, sorted
  uint32_t exact_entries = 0;  // both families
  uint32_t lpm_entries = 0;
  friend bool operator==(const EndpointPolicySummary&, const EndpointPolicySummary&) = default;
};

// A pod that can be a peer: it has an address (of either family) we can
// put in a map key.
struct PeerPod {
  std::string namespace_name;
  Labels labels;
  uint32_t ipv4 = 0;  // host order; 0: none
  std::vector<ContainerPort> container_ports;
  Ipv6Address ipv6{};  // all zero: none
  friend bool operator==(const PeerPod&, const PeerPod&) = default;
};

inline bool HasIpv6(const PeerPod& pod) { return pod.ipv6 != Ipv6Address{}; }
inline bool HasAddress(const PeerPod& pod) { return pod.ipv4 != 0 || HasIpv6(pod); }

// Puts a local endpoint's addresses (what the CNI really assigned) over the
// pod object's, family by family.
void ApplyEndpointAddresses(const LocalEndpoint& endpoint, PeerPod& peer);

// The namespace label Kubernetes puts on every namespace; selectors see it
// even for namespaces we only know by name.
inline constexpr char kNamespaceNameLabel[] = "kubernetes.io/metadata.name";

// What compiling one endpoint reads besides the endpoint itself. `cluster`
// must outlive the context. The incremental engine keeps one up to date in
// place instead of rebuilding it.
struct PolicyContext {
  const ClusterState* cluster = nullptr;
  // Labels as namespace selectors see them (implicit name label included).
  // A namespace missing here has only the implicit label.
  std::map<std::string, Labels> namespace_labels;
  // Key "namespace/name", so one namespace's pods are one contiguous range.
  // A local endpoint's address (the one the CNI assigned) wins over the
  // manifest's; pods without any address are absent.
  std::map<std::string, PeerPod> peers;
  // The keys in `peers` by IPv4 address (host order): several pods may share one.
  std::map<uint32_t, std::set<std::string>> peers_by_address;
  // The same by IPv6 address (net order).
  std::map<Ipv6Address, std::set<std::string>> peers_by_address6;
};

PolicyContext BuildPolicyContext(const ClusterState& cluster, const std::vector<LocalEndpoint>& endpoints);

// The `direction` byte of a policy key (any family, exact or LPM) for a
// port class: an interval class carries MS_DIR_F_PORT_INTERVAL.
uint8_t PolicyKeyDirection(ms_direction direction, const PortKey& port);
// The value of a MS_DIR_F_PORT_LOOKUP entry of ms_policy_lpm.
ms_policy_value PortIntervalValue(uint16_t first_port);
// Adds the MS_DIR_F_PORT_LOOKUP entries of the interval [first, last] of
// (direction, proto): its aligned port prefixes, each naming `first`.
void AddPortLookups(uint32_t endpoint_id, uint8_t direction, uint8_t proto, uint16_t first, uint16_t last,
                    MapState::LpmMap& out);

// One endpoint's desired state: its ms_endpoints entry and its policy
// entries of both families (all keyed by its endpoint_id). policy_rev is left 0.
struct EndpointPolicy {
  uint32_t ifindex = 0;
  ms_endpoint endpoint{};
  MapState::ExactMap exact;
  MapState::LpmMap lpm;
  MapState::Exact6Map exact6;
  MapState::Lpm6Map lpm6;
  EndpointPolicySummary summary;
};

class PeerSelectionCache;  // peer_selection_cache.h

// `selections` (may be nullptr): selector results shared with the other
// endpoints compiled against the same, unchanged context.
EndpointPolicy CompileEndpointPolicy(const PolicyContext& context, const LocalEndpoint& endpoint,
                                     PeerSelectionCache* selections = nullptr);

// The MS_EP_LPM_ABSENT_* bits of one endpoint's entries of one LPM map: the
// standard key shapes none of them has. Port-interval keys are looked up
// whatever the bits say, so they name no shape. The updater changes LPM
// entries in place only while these bits stay (else it flips), so they
// always describe the generation they are written with.
template <typename LpmMap>
uint8_t LpmAbsentBits(const LpmMap& lpm) {
  uint8_t present = 0;
  for (const auto& [key, value] : lpm) {
    if ((key.direction & (MS_DIR_F_PORT_INTERVAL | MS_DIR_F_PORT_LOOKUP)) != 0) continue;
    present |= ms_lpm_shape_bit(key.direction, key.proto, key.port);
  }
  return static_cast<uint8_t>(MS_EP_LPM_ABSENT_ALL & ~present);
}

// The peer addresses a patch covers: the exact entries keyed by them are
// recompiled, every other entry stays.
struct PeerAddresses {
  std::set<uint32_t> ipv4;     // host order
  std::set<Ipv6Address> ipv6;  // net order
  size_t size() const { return ipv4.size() + ipv6.size(); }
  void Merge(const PeerAddresses& other) {
    ipv4.insert(other.ipv4.begin(), other.ipv4.end());
    ipv6.insert(other.ipv6.begin(), other.ipv6.end());
  }
  friend auto operator<=>(const PeerAddresses&, const PeerAddresses&) = default;
};

// What a peer pod's change does to one endpoint: the exact entries keyed by
// the pod's old and new addresses (both families) are the only ones that can change (its
// rules, their CIDRs and ports, its isolation and its LPM entries do not
// depend on peer pods). `exact` and `exact6` are what CompileEndpointPolicy would give for
// those addresses before its final trimming (a direction whose entries all
// repeat the direction's default is left empty); `default_action` per
// direction lets the updater tell whether that trimming changes.
//
// A ClusterSegmentPolicy change that keeps its subjects and directions
// changes the same things for the addresses its old or new peers touch,
// plus, if either version has CIDR peers, the LPM entries: `with_cidrs`
// then fills `lpm` and `lpm6` with all of them (both directions, untrimmed
// too), port-interval lookups included: the updater patches only while
// those carry the same cutting, or every interval verdict after the patch
// is the patch's (a new cutting, see CanPatch).
struct PeerEntries {
  PeerAddresses addresses;
  MapState::ExactMap exact;      // keyed by the endpoint_id, like EndpointPolicy
  MapState::Exact6Map exact6;    // the same for addresses.ipv6
  std::optional<MapState::LpmMap> lpm;    // set together with lpm6
  std::optional<MapState::Lpm6Map> lpm6;
  std::array<ms_action, MS_DIR_MAX> default_action{};
};

// The peer pods with one of these addresses: a peer patch's scope.
std::vector<const PeerPod*> PeersAt(const PolicyContext& context, const PeerAddresses& addresses);

// `addresses` become the result's (by value: a caller done with them
// moves them in instead of a copy per endpoint).
PeerEntries CompileEndpointPeers(const PolicyContext& context, const LocalEndpoint& endpoint,
                                 PeerAddresses addresses, bool with_cidrs = false,
                                 PeerSelectionCache* selections = nullptr);

struct CompiledPolicy {
  MapState maps;  // ms_endpoint.policy_rev is left 0: see StampPolicyRevisions
  std::map<uint32_t, EndpointPolicySummary> summaries;  // key: endpoint_id
};

CompiledPolicy CompilePolicy(const ClusterState& cluster, const std::vector<LocalEndpoint>& endpoints);

// Carries each endpoint's policy_rev over from `live`, bumping it (never to 0)
// for endpoints whose flags or policy entries differ, so the data plane can
// tell sessions admitted under an older policy.
void StampPolicyRevisions(const MapState& live, MapState& desired);

}  // namespace microseg
