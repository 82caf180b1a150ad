#include "tiered_verdicts.h"

#include <algorithm>
#include <optional>
#include <set>

#include "ipv4_cidr.h"
#include "ipv6_address.h"
#include "lpm_verdicts.h"
#include "port_intervals.h"

namespace microseg {
namespace {

// One family's view of a rule, chosen by the address type.
const std::vector<IpBlock>& BlocksOf(const VerdictRule& rule, uint32_t) { return rule.blocks; }
const std::vector<Ipv6Block>& BlocksOf(const VerdictRule& rule, const Ipv6Address&) { return rule.blocks6; }
const std::map<uint32_t, std::vector<PortKey>>& PodPortsOf(const VerdictRule& rule, uint32_t) {
  return rule.pod_ports;
}
const std::map<Ipv6Address, std::vector<PortKey>>& PodPortsOf(const VerdictRule& rule, const Ipv6Address&) {
  return rule.pod_ports6;
}

template <typename Block, typename Address>
bool InBlock(const Block& block, const Address& addr) {
  return CidrContainsAddress(block.cidr, addr) &&
         std::none_of(block.except.begin(), block.except.end(),
                      [&](const auto& except) { return CidrContainsAddress(except, addr); });
}

template <typename Address>
bool InAnyBlock(const VerdictRule& rule, const Address& addr) {
  const auto& blocks = BlocksOf(rule, addr);
  return std::any_of(blocks.begin(), blocks.end(), [&](const auto& block) { return InBlock(block, addr); });
}

bool AnyCovers(const std::vector<PortKey>& keys, const PortKey& port_class) {
  return std::any_of(keys.begin(), keys.end(), [&](const PortKey& key) { return PortKeyCovers(key, port_class); });
}

ms_policy_value Value(ms_action action, uint32_t rule_id) {
  ms_policy_value value{};
  value.action = static_cast<uint8_t>(action);
  value.rule_id = rule_id;
  return value;
}

// Namespace tier over the matching rules, with or without the Audit ones:
// allow or not, and the deciding rule id; the isolation default has 0, or
// with the Audit policies the Audit isolation's id (when the enforced
// policies isolate too, their drop comes first and this is never read).
struct NamespaceOutcome {
  bool allow = true;
  uint32_t rule_id = 0;
};
NamespaceOutcome NamespaceTier(const DirectionRules& direction, const std::vector<const VerdictRule*>& matching,
                               bool include_audit) {
  std::optional<uint32_t> deny;
  std::optional<uint32_t> allow;
  for (const VerdictRule* rule : matching) {
    if (rule->cluster_tier || (rule->audit && !include_audit)) continue;
    std::optional<uint32_t>& slot = rule->action == RuleAction::kDeny ? deny : allow;
    slot = slot ? std::min(*slot, rule->rule_id) : rule->rule_id;
  }
  if (deny) return {false, *deny};
  if (allow) return {true, *allow};
  const bool isolated = include_audit ? direction.isolated_all : direction.isolated_enforced;
  return {!isolated, include_audit && isolated ? direction.audit_isolation_rule_id : 0};
}

// The exact entries for one address some rule matches as a pod (none when
// no rule does: an address inside CIDRs only is the LPM's). Its keys are
// those of every rule matching it (pod or CIDR), so that each entry's region
// (packets whose most specific key it is) sees a uniform rule set; packets
// outside all its keys match no rule on it and fall through to the LPM,
// which gives the same answer.
// A range key stands for the port intervals inside it (port_intervals.h).
// Each rule's keys for the address are looked up once: peer patches run
// this for hundreds of addresses at each of their endpoints.
template <typename Address>
void AppendExactVerdicts(const DirectionRules& direction, const PortIntervals& intervals, const Address& addr,
                         std::vector<BasicExactVerdict<Address>>& out) {
  // Most addresses of a patch are pods only some rules select: find out
  // before matching CIDRs.
  const bool as_pod = std::any_of(direction.rules.begin(), direction.rules.end(), [&](const VerdictRule& rule) {
    return PodPortsOf(rule, addr).contains(addr);
  });
  if (!as_pod) return;
  struct Match {
    const VerdictRule* rule;
    const std::vector<PortKey>* keys;
  };
  std::vector<Match> matches;
  for (const VerdictRule& rule : direction.rules) {
    const auto& pod_ports = PodPortsOf(rule, addr);
    if (const auto found = pod_ports.find(addr); found != pod_ports.end()) {
      matches.push_back({&rule, &found->second});
    } else if (InAnyBlock(rule, addr)) {
      matches.push_back({&rule, &rule.ports});
    }
  }
  std::set<PortKey> keys;
  for (const Match& match : matches) {
    if (intervals.empty()) {
      keys.insert(match.keys->begin(), match.keys->end());
    } else {
      intervals.Split(*match.keys, keys);
    }
  }
  std::vector<const VerdictRule*> matching;
  for (const PortKey& key : keys) {
    matching.clear();
    for (const Match& match : matches) {
      if (AnyCovers(*match.keys, key)) matching.push_back(match.rule);
    }
    out.push_back({addr, key, EvaluateTiers(direction, matching)});
  }
}

// Every address of the family some rule matches as a pod.
template <typename Address>
std::set<Address> PodAddresses(const DirectionRules& direction) {
  std::set<Address> addresses;
  for (const VerdictRule& rule : direction.rules) {
    for (const auto& [addr, keys] : PodPortsOf(rule, Address{})) addresses.insert(addr);
  }
  return addresses;
}

const std::vector<IpBlock>& BlocksOfFamily(const VerdictRule& rule, const Ipv4Cidr&) { return rule.blocks; }
const std::vector<Ipv6Block>& BlocksOfFamily(const VerdictRule& rule, const Ipv6Cidr&) { return rule.blocks6; }

// LPM entries of one family from the CIDR view of every rule; spec i is
// (rule, block, key), ranges split into their intervals.
template <typename Cidr>
void AppendLpmVerdicts(const DirectionRules& direction, const PortIntervals& intervals, ms_action default_action,
                       std::vector<BasicLpmVerdictEntry<Cidr>>& out) {
  std::vector<BasicLpmRuleSpec<Cidr>> specs;
  std::vector<const VerdictRule*> spec_rules;
  for (const VerdictRule& rule : direction.rules) {
    const auto& blocks = BlocksOfFamily(rule, Cidr{});
    if (blocks.empty()) continue;
    std::set<PortKey> keys;
    intervals.Split(rule.ports, keys);
    for (const auto& block : blocks) {
      for (const PortKey& key : keys) {
        specs.push_back({key.proto, key.port, block.cidr, block.except, rule.rule_id, key.last});
        spec_rules.push_back(&rule);
      }
    }
  }
  if (default_action == MS_ACTION_ALLOW_AUDIT) {
    // A catch-all so every lookup finds an entry: the flags cannot say "audit".
    specs.push_back({0, 0, Cidr{{}, 0}, {}, 0});
    spec_rules.push_back(nullptr);
  }
  for (const BasicLpmRegion<Cidr>& region : ComputeLpmRegions(specs)) {
    std::vector<const VerdictRule*> matching;
    for (size_t i : region.matching) {
      if (spec_rules[i] && std::find(matching.begin(), matching.end(), spec_rules[i]) == matching.end()) {
        matching.push_back(spec_rules[i]);
      }
    }
    out.push_back({region.prefix, PortKey{region.proto, region.port, region.last}, EvaluateTiers(direction, matching)});
  }
}

template <typename Entries>
bool AllRepeat(const Entries& entries, ms_action action) {
  return std::all_of(entries.begin(), entries.end(), [&](const auto& entry) { return entry.value.action == action; });
}

}  // namespace

bool PortKeyCovers(const PortKey& outer, const PortKey& inner) {
  if (outer.proto == 0) return true;
  if (outer.proto != inner.proto) return false;
  if (outer.port == 0) return true;
  if (inner.port == 0) return false;
  if (outer.interval()) {
    return outer.port <= inner.port && (inner.interval() ? inner.last : inner.port) <= outer.last;
  }
  // A single port covers no interval, not even one of a single port (a different class).
  return !inner.interval() && outer.port == inner.port;
}

ms_policy_value EvaluateTiers(const DirectionRules& direction, const std::vector<const VerdictRule*>& matching) {
  const VerdictRule* first_cluster = nullptr;
  for (const VerdictRule* rule : matching) {
    if (rule->cluster_tier && (!first_cluster || rule->order < first_cluster->order)) first_cluster = rule;
  }
  if (first_cluster && first_cluster->action == RuleAction::kAllow) {
    return Value(MS_ACTION_ALLOW, first_cluster->rule_id);
  }
  if (first_cluster && first_cluster->action == RuleAction::kDeny) {
    return Value(MS_ACTION_DENY, first_cluster->rule_id);
  }
  // No cluster rule matched, or the first one passed.
  const NamespaceOutcome enforced = NamespaceTier(direction, matching, /*include_audit=*/false);
  if (!enforced.allow) return Value(MS_ACTION_DENY, enforced.rule_id);
  const NamespaceOutcome all = NamespaceTier(direction, matching, /*include_audit=*/true);
  if (!all.allow) return Value(MS_ACTION_ALLOW_AUDIT, all.rule_id);
  return Value(MS_ACTION_ALLOW, enforced.rule_id);
}

ms_action DefaultAction(const DirectionRules& direction) {
  return static_cast<ms_action>(EvaluateTiers(direction, {}).action);
}

DirectionEntries CompileLpmVerdicts(const DirectionRules& direction) {
  DirectionEntries entries;
  const PortIntervals intervals(direction.rules);
  AppendLpmVerdicts(direction, intervals, DefaultAction(direction), entries.lpm);
  AppendLpmVerdicts(direction, intervals, DefaultAction(direction), entries.lpm6);
  entries.intervals = intervals.all();
  return entries;
}

DirectionEntries CompileDirection(const DirectionRules& direction) {
  DirectionEntries entries;
  const ms_action default_action = DefaultAction(direction);
  const PortIntervals intervals(direction.rules);

  for (uint32_t addr : PodAddresses<uint32_t>(direction)) {
    AppendExactVerdicts(direction, intervals, addr, entries.exact);
  }
  for (const Ipv6Address& addr : PodAddresses<Ipv6Address>(direction)) {
    AppendExactVerdicts(direction, intervals, addr, entries.exact6);
  }
  AppendLpmVerdicts(direction, intervals, default_action, entries.lpm);
  AppendLpmVerdicts(direction, intervals, default_action, entries.lpm6);

  // Entries that all repeat the default are redundant: a miss gives it too.
  const bool all_default = AllRepeat(entries.exact, default_action) && AllRepeat(entries.lpm, default_action) &&
                           AllRepeat(entries.exact6, default_action) && AllRepeat(entries.lpm6, default_action);
  if (all_default && default_action != MS_ACTION_ALLOW_AUDIT) return {};
  // Every interval, not only those with entries: a peer patch may add
  // entries for any of them (the intervals depend on the rules alone).
  entries.intervals = intervals.all();
  return entries;
}

namespace {

template <typename Address>
std::vector<BasicExactVerdict<Address>> CompileExactVerdictsOf(const DirectionRules& direction,
                                                               const std::set<Address>& addresses) {
  std::vector<BasicExactVerdict<Address>> out;
  if (addresses.empty()) return out;
  const PortIntervals intervals(direction.rules);
  for (const Address& addr : addresses) AppendExactVerdicts(direction, intervals, addr, out);
  return out;
}

}  // namespace

std::vector<ExactVerdict> CompileExactVerdicts(const DirectionRules& direction, const std::set<uint32_t>& addresses) {
  return CompileExactVerdictsOf(direction, addresses);
}

std::vector<ExactVerdict6> CompileExactVerdicts(const DirectionRules& direction,
                                                const std::set<Ipv6Address>& addresses) {
  return CompileExactVerdictsOf(direction, addresses);
}

}  // namespace microseg
