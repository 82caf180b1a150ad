// Stable identifiers for policy rules, carried in every map entry so flow
// logs can name the rule that admitted a flow. Stable across agent restarts
// and independent of map iteration order.
#pragma once

#include <cstdint>
#include "absl/strings/string_view.h"

#include "microseg/datapath.h"

namespace microseg {

uint32_t Fnv1a32(absl::string_view bytes);

// FNV-1a of "namespace/name/ingress|egress/<rule index>".
uint32_t PolicyRuleId(absl::string_view policy_namespace, absl::string_view policy_name,
                      ms_direction direction, size_t rule_index);

}  // namespace microseg
