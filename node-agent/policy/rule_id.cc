#include "rule_id.h"

#include "absl/strings/str_cat.h"

namespace microseg {

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
  return Fnv1a32(absl::StrCat(policy_namespace, "/", policy_name, "/",
                              direction == MS_DIR_INGRESS ? "ingress" : "egress", "/", rule_index));
}

}  // namespace microseg
