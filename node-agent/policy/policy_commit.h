// One commit's worth of work, from what the engine says changed to what the
// updater applies: endpoints compiled whole, or, for pod churn and cluster
// policy changes, only the entries of the peer addresses (and the LPM
// entries) that changed when the updater can splice them in. Shared by the agent, the scale benchmark and the tests, so all
// three measure and check the same path.
#pragma once

#include <cstdint>
#include <set>
#include <vector>

#include "policy_engine.h"
#include "policy_map_updater.h"

namespace microseg {

// Takes the engine's work. `also_whole` adds endpoints to compile whole (or
// remove, if the engine does not know them).
std::vector<EndpointUpdate> PlanEndpointUpdates(PolicyEngine& engine, const PolicyMapUpdater& updater,
                                                const std::set<uint32_t>& also_whole = {});

}  // namespace microseg
