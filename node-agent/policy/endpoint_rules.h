// Which rules of which policies apply to one local endpoint in one
// direction, with selectors resolved into pod addresses and named ports into
// numbers: the input of the tiered verdict computation (tiered_verdicts.h).
//   cluster tier:   ClusterSegmentPolicies whose subject selects the pod and
//                   whose policyTypes include the direction, in (priority,
//                   name, rule index) order;
//   namespace tier: NetworkPolicies and SegmentPolicies of the pod's
//                   namespace selecting it and isolating the direction.
#pragma once

#include <string>
#include <vector>

#include "model.h"
#include "peer_selection_cache.h"
#include "policy_compiler.h"
#include "tiered_verdicts.h"

namespace microseg {

// `local_pod` is the endpoint's Pod object (nullptr: unknown, no labels or
// ports). `policies` (may be nullptr) receives a name for every policy that
// selects the endpoint in this direction: "ns/name" for NetworkPolicies,
// "SegmentPolicy ns/name", "ClusterSegmentPolicy name".
// `scope` (nullptr: every pod of the context) limits the peer pods selectors
// are resolved against: each rule's pod_ports then covers only those, which
// is all a patch for their addresses needs (CompileEndpointPeers).
// `selections` (may be nullptr) shares selector resolution between the
// rules and endpoints of one batch; it is not used with a `scope`.
DirectionRules CollectDirectionRules(const PolicyContext& context, const LocalEndpoint& endpoint,
                                     const Pod* local_pod, ms_direction direction,
                                     std::vector<std::string>* policies,
                                     const std::vector<const PeerPod*>* scope = nullptr,
                                     PeerSelectionCache* selections = nullptr);

}  // namespace microseg
