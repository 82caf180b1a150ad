#include "rule_id.h"

#include "absl/strings/str_cat.h"

namespace microseg {
namespace {

absl::string_view DirectionWord(ms_direction direction) {
  return direction == MS_DIR_INGRESS ? "ingress" : "egress";
}

}  // namespace

uint32_t Fnv1a32(absl::string_view bytes) {
  uint32_t hash = 2166136261u;
  for (unsigned char byte : bytes) {
    hash ^= byte;
    hash *= 16777619u;
  }
  return hash;
}

uint32_t PolicyRuleId(absl::string_view policy_namespace, absl::string_view policy_name,
                      ms_direction direction, size_t rule_index) {
  return Fnv1a32(absl::StrCat(policy_namespace, "/", policy_name, "/", DirectionWord(direction), "/", rule_index));
}

uint32_t RuleIdOf(PolicyKind kind, absl::string_view policy_namespace, absl::string_view policy_name,
                  ms_direction direction, size_t rule_index) {
  switch (kind) {
    case PolicyKind::kNetworkPolicy:
      return PolicyRuleId(policy_namespace, policy_name, direction, rule_index);
    case PolicyKind::kSegmentPolicy:
      return PolicyRuleId(absl::StrCat("SegmentPolicy ", policy_namespace), policy_name, direction, rule_index);
    case PolicyKind::kClusterSegmentPolicy:
      return PolicyRuleId("ClusterSegmentPolicy", policy_name, direction, rule_index);
  }
  return 0;
}

uint32_t AuditIsolationRuleId(absl::string_view policy_namespace, absl::string_view policy_name,
                              ms_direction direction) {
  return Fnv1a32(absl::StrCat("SegmentPolicy ", policy_namespace, "/", policy_name, "/", DirectionWord(direction),
                              "/isolation"));
}

}  // namespace microseg
