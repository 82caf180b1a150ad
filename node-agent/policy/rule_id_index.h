// The way back from a map entry's rule id to the policy rule that produced
// it, for audit events and flow logs. Rule ids are hashes (rule_id.h), so
// the index is built from the policies themselves; two rules whose ids
// collide (32 bits) are both kept and the lookup says so.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "microseg/datapath.h"
#include "model.h"
#include "rule_id.h"

namespace microseg {

struct RuleOrigin {
  PolicyKind kind = PolicyKind::kNetworkPolicy;
  std::string namespace_name;  // empty for a ClusterSegmentPolicy
  std::string name;
  ms_direction direction = MS_DIR_INGRESS;
  // The rule's index in the policy's ingress/egress list; nullopt: the
  // policy's (Audit) isolation, no rule matched.
  std::optional<size_t> rule_index;

  // "namespace/name" (a ClusterSegmentPolicy: its name).
  std::string policy() const;
  // "SegmentPolicy namespace/name ingress rule 2" / "... ingress isolation".
  std::string Describe() const;
  friend bool operator==(const RuleOrigin&, const RuleOrigin&) = default;
};

const char* PolicyKindName(PolicyKind kind);

class RuleIdIndex {
 public:
  RuleIdIndex() = default;
  // Every rule of every policy in `cluster`, and the isolation of every
  // Audit SegmentPolicy.
  static RuleIdIndex Build(const ClusterState& cluster);

  // The rules with this id: empty when unknown (a policy deleted since, or
  // rule id 0), more than one on a hash collision.
  const std::vector<RuleOrigin>& Find(uint32_t rule_id) const;
  size_t size() const { return origins_.size(); }

 private:
  void Add(uint32_t rule_id, RuleOrigin origin);
  std::unordered_map<uint32_t, std::vector<RuleOrigin>> origins_;
};

}  // namespace microseg
