// One endpoint and direction: the rules of every policy tier that apply to
// it, turned into final per-(peer, port class) verdicts for the exact-match
// hash and the LPM trie. The data plane takes the first entry it finds
// (exact (proto,port) -> (proto,any) -> (any,any), then LPM in the same
// order) and otherwise the endpoint's default, so each entry must carry the
// verdict of all tiers for every packet that reaches it. No cluster
// knowledge here: the policy compiler resolves selectors and named ports
// into the addresses and port keys below.
#pragma once

#include <compare>
#include <cstdint>
#include <map>
#include <set>
#include <vector>

#include "microseg/datapath.h"
#include "model.h"

namespace microseg {

// A port class: proto 0 = any protocol (port then 0), port 0 = every port of
// `proto`; `last` != 0: the ports [port, last] (port >= 1) instead of the
// single `port`. In a rule that is an endPort range; in map entries one of
// the direction's disjoint port intervals (port_intervals.h), which the maps
// key by its first port with MS_DIR_F_PORT_INTERVAL.
struct PortKey {
  uint8_t proto = 0;
  uint16_t port = 0;
  uint16_t last = 0;
  bool interval() const { return last != 0; }
  friend auto operator<=>(const PortKey&, const PortKey&) = default;
};

// True when every packet of class `inner` is in class `outer`.
bool PortKeyCovers(const PortKey& outer, const PortKey& inner);

struct VerdictRule {
  bool cluster_tier = false;
  uint32_t order = 0;  // cluster tier: evaluation position, lower first
  RuleAction action = RuleAction::kAllow;
  bool audit = false;  // namespace tier: from a SegmentPolicy in Audit mode
  uint32_t rule_id = 0;
  // Port keys that apply to every peer of the rule (numeric ports; on
  // ingress also the named ports resolved on the local pod).
  std::vector<PortKey> ports;
  // CIDR peers of each family, matched against any address of that family
  // ("every peer" is 0.0.0.0/0 and ::/0).
  std::vector<IpBlock> blocks;
  std::vector<Ipv6Block> blocks6;
  // Pod addresses the rule matches as pods, with the port keys for that pod:
  // selector peers, and pods inside `blocks`/`blocks6` for which a named
  // egress port resolves. Addresses not listed match through the blocks only.
  std::map<uint32_t, std::vector<PortKey>> pod_ports;      // IPv4, host order
  std::map<Ipv6Address, std::vector<PortKey>> pod_ports6;  // IPv6
};

struct DirectionRules {
  std::vector<VerdictRule> rules;
  // Namespace-tier isolation counting Enforce policies only / all policies.
  bool isolated_enforced = false;
  bool isolated_all = false;
  // AuditIsolationRuleId() of the first Audit SegmentPolicy isolating the
  // direction (0: none): the rule id of an audit verdict no rule decided.
  uint32_t audit_isolation_rule_id = 0;
};

// `Address`: uint32_t (IPv4, host order) or Ipv6Address; `Cidr`: Ipv4Cidr or Ipv6Cidr.
template <typename Address>
struct BasicExactVerdict {
  Address peer{};
  PortKey port;
  ms_policy_value value{};
};
using ExactVerdict = BasicExactVerdict<uint32_t>;
using ExactVerdict6 = BasicExactVerdict<Ipv6Address>;
template <typename Cidr>
struct BasicLpmVerdictEntry {
  Cidr prefix;
  PortKey port;
  ms_policy_value value{};
};
using LpmVerdictEntry = BasicLpmVerdictEntry<Ipv4Cidr>;
using LpmVerdictEntry6 = BasicLpmVerdictEntry<Ipv6Cidr>;

// Entries of both families: the data plane looks an IPv4 packet up in the
// IPv4 maps only and an IPv6 packet in the IPv6 maps only, with the same
// endpoint default for both.
struct DirectionEntries {
  std::vector<ExactVerdict> exact;
  std::vector<LpmVerdictEntry> lpm;
  std::vector<ExactVerdict6> exact6;
  std::vector<LpmVerdictEntry6> lpm6;
  // The direction's port intervals (PortKey with `last`), for the data
  // path's port -> interval lookup (one for both families); empty without
  // endPort ranges.
  std::vector<PortKey> intervals;
  bool empty() const { return exact.empty() && lpm.empty() && exact6.empty() && lpm6.empty(); }
  size_t exact_size() const { return exact.size() + exact6.size(); }
  size_t lpm_size() const { return lpm.size() + lpm6.size(); }
};

// The verdict of a packet matched by exactly `matching` (all tiers, Audit).
ms_policy_value EvaluateTiers(const DirectionRules& direction, const std::vector<const VerdictRule*>& matching);

// The endpoint's verdict when no entry matches; ALLOW_AUDIT is not
// expressible by the endpoint flags, so CompileDirection then adds
// catch-all LPM entries.
ms_action DefaultAction(const DirectionRules& direction);

// Entries that, looked up the data plane's way with DefaultAction() on a
// miss, give EvaluateTiers() of the matching rules for every packet. Empty
// when every verdict equals the default.
DirectionEntries CompileDirection(const DirectionRules& direction);

// CompileDirection's LPM entries of both families (`lpm`, `lpm6`) and its
// port intervals, before its all-default trimming (a ClusterSegmentPolicy
// patch recomputes them, see PeerEntries).
DirectionEntries CompileLpmVerdicts(const DirectionRules& direction);

// CompileDirection's exact entries (either family) for `addresses` only,
// before its all-default trimming (see PeerEntries in policy_compiler.h).
std::vector<ExactVerdict> CompileExactVerdicts(const DirectionRules& direction, const std::set<uint32_t>& addresses);
std::vector<ExactVerdict6> CompileExactVerdicts(const DirectionRules& direction,
                                                const std::set<Ipv6Address>& addresses);

}  // namespace microseg
