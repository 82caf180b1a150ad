// Kubernetes YAML (Namespace, Pod, NetworkPolicy; multi-document files and
// `kind: List`) into the domain model, with validation. Bad input gives an
// error naming the document and the field.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "model.h"

namespace microseg {

struct ParsedManifests {
  std::vector<Namespace> namespaces;
  std::vector<Pod> pods;
  std::vector<NetworkPolicy> network_policies;
  std::vector<std::string> ignored;  // "Kind namespace/name" of kinds we do not enforce
};

// All or nothing: one invalid document fails the whole text.
absl::StatusOr<ParsedManifests> ParseManifests(std::string_view yaml_text);

}  // namespace microseg
