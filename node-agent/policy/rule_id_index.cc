#include "rule_id_index.h"

#include "absl/strings/str_cat.h"

namespace microseg {
namespace {

const char* DirectionWord(ms_direction direction) { return direction == MS_DIR_INGRESS ? "ingress" : "egress"; }

}  // namespace

const char* PolicyKindName(PolicyKind kind) {
  switch (kind) {
    case PolicyKind::kNetworkPolicy: return "NetworkPolicy";
    case PolicyKind::kSegmentPolicy: return "SegmentPolicy";
    case PolicyKind::kClusterSegmentPolicy: return "ClusterSegmentPolicy";
  }
  return "Policy";
}

std::string RuleOrigin::policy() const {
  return namespace_name.empty() ? name : absl::StrCat(namespace_name, "/", name);
}

std::string RuleOrigin::Describe() const {
  return absl::StrCat(PolicyKindName(kind), " ", policy(), " ", DirectionWord(direction),
                      rule_index ? absl::StrCat(" rule ", *rule_index) : std::string(" isolation"));
}

void RuleIdIndex::Add(uint32_t rule_id, RuleOrigin origin) { origins_[rule_id].push_back(std::move(origin)); }

RuleIdIndex RuleIdIndex::Build(const ClusterState& cluster) {
  RuleIdIndex index;
  const auto add_rules = [&index](PolicyKind kind, const std::string& ns, const std::string& name,
                                  ms_direction direction, size_t rules) {
    for (size_t i = 0; i < rules; ++i) {
      index.Add(RuleIdOf(kind, ns, name, direction, i), {kind, ns, name, direction, i});
    }
  };
  for (const ms_direction direction : {MS_DIR_INGRESS, MS_DIR_EGRESS}) {
    const bool ingress = direction == MS_DIR_INGRESS;
    for (const auto& [key, policy] : cluster.network_policies) {
      add_rules(PolicyKind::kNetworkPolicy, policy.namespace_name, policy.name, direction,
                (ingress ? policy.ingress : policy.egress).size());
    }
    for (const auto& [key, segment] : cluster.segment_policies) {
      const NetworkPolicy& policy = segment.policy;
      add_rules(PolicyKind::kSegmentPolicy, policy.namespace_name, policy.name, direction,
                (ingress ? policy.ingress : policy.egress).size());
      if (segment.enforcement == Enforcement::kAudit) {
        index.Add(AuditIsolationRuleId(policy.namespace_name, policy.name, direction),
                  {PolicyKind::kSegmentPolicy, policy.namespace_name, policy.name, direction, std::nullopt});
      }
    }
    for (const auto& [key, policy] : cluster.cluster_segment_policies) {
      add_rules(PolicyKind::kClusterSegmentPolicy, "", policy.name, direction,
                (ingress ? policy.ingress : policy.egress).size());
    }
  }
  return index;
}

const std::vector<RuleOrigin>& RuleIdIndex::Find(uint32_t rule_id) const {
  static const std::vector<RuleOrigin> kNone;
  const auto found = origins_.find(rule_id);
  return found == origins_.end() ? kNone : found->second;
}

}  // namespace microseg
