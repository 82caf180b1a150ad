// The policy compiler: a pure function from the cluster state and this
// node's endpoints to the desired BPF map contents. No I/O, no clocks.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "map_state.h"
#include "model.h"

namespace microseg {

struct EndpointPolicySummary {
  bool ingress_isolated = false;
  bool egress_isolated = false;
  std::vector<std::string> policies;  // "namespace/name" of policies selecting the pod, sorted
  uint32_t exact_entries = 0;
  uint32_t lpm_entries = 0;
};

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
