// Every document of a YAML stream, with a guard against a yaml-cpp 0.7 bug:
// on some malformed input (e.g. a stray ',' where a node should start)
// YAML::LoadAll never returns and allocates until the process is killed
// (fixed upstream after 0.8: jbeder/yaml-cpp#1319; Debian 12 ships 0.7).
// Found by test/fuzz/fuzz_manifest.
#pragma once

#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "yaml-cpp/yaml.h"

namespace microseg {

// InvalidArgument "invalid YAML: ..." for text that is not YAML, including
// the input the bug above would loop on.
absl::StatusOr<std::vector<YAML::Node>> LoadYamlDocuments(std::string_view text);

}  // namespace microseg
