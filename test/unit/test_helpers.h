// Shared fixtures: cluster state straight from YAML (through the real
// parser) and readable address/map-state helpers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "map_state.h"
#include "model.h"

namespace microseg::testing {

// Parses `yaml` with ParseManifests and fails the current test on error.
ClusterState ClusterFromYaml(const std::string& yaml);

// "10.244.1.2" -> host-order address; fails the current test on bad input.
uint32_t Ip(const std::string& dotted);

bool SameMapState(const MapState& a, const MapState& b);

}  // namespace microseg::testing
