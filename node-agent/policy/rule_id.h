// Stable identifiers for policy rules, carried in every map entry so flow
// logs and audit events can name the rule that decided a flow. Stable
// across agent restarts and independent of map iteration order.
#pragma once

#include <cstdint>
#include "absl/strings/string_view.h"

#include "microseg/datapath.h"

namespace microseg {

uint32_t Fnv1a32(absl::string_view bytes);

// FNV-1a of "namespace/name/ingress|egress/<rule index>".
uint32_t PolicyRuleId(absl::string_view policy_namespace, absl::string_view policy_name,
                      ms_direction direction, size_t rule_index);

// The three kinds of policy, and the id of rule `rule_index` of each: the
// kind is part of the hashed text, so a SegmentPolicy and a NetworkPolicy of
// one name never share ids. ClusterSegmentPolicies have no namespace.
enum class PolicyKind : uint8_t { kNetworkPolicy, kSegmentPolicy, kClusterSegmentPolicy };
uint32_t RuleIdOf(PolicyKind kind, absl::string_view policy_namespace, absl::string_view policy_name,
                  ms_direction direction, size_t rule_index);

// The id an Audit SegmentPolicy's isolation carries in ALLOW_AUDIT entries:
// the flow matched no rule of any policy, and this policy's isolation alone
// (it is not enforced) would have dropped it.
uint32_t AuditIsolationRuleId(absl::string_view policy_namespace, absl::string_view policy_name,
                              ms_direction direction);

}  // namespace microseg
