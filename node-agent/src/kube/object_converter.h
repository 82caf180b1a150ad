// API objects (JSON) into the policy model, through the same parser and
// validation as standalone mode's manifests (ParseClusterObject; yaml-cpp
// reads JSON), so a policy means the same thing whichever way it arrives.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "manifest_parser.h"

namespace microseg::kube {

// One object (kind set). Errors are InvalidArgument "<field path>: <problem>".
// Pods are first trimmed to what policy needs; a pod that has finished
// (Succeeded/Failed) or uses the host network has no address of its own, so
// none is taken from it.
absl::StatusOr<ClusterObject> ConvertObject(const nlohmann::json& object);

}  // namespace microseg::kube
