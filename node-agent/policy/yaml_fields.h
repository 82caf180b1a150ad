// Typed, path-aware reads of yaml-cpp nodes. Each returns InvalidArgument
// "<path>: <problem>" instead of throwing, so the parser can report exactly
// which field of which document is wrong.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "yaml-cpp/yaml.h"

namespace microseg::yaml_fields {

absl::Status FieldError(absl::string_view path, absl::string_view problem);

// Present and not null. Kubernetes treats an explicit null like an absent field.
bool IsSet(const YAML::Node& node);

// The child `key` of a map node; an undefined node when absent. `parent` must
// be a map (check with RequireMap first).
YAML::Node Child(const YAML::Node& parent, absl::string_view key);

absl::Status RequireMap(const YAML::Node& node, absl::string_view path);
absl::Status RequireSequence(const YAML::Node& node, absl::string_view path);

// A scalar that YAML resolves to a string: quoted, or plain but not a number,
// boolean or null (as the Kubernetes API server's decoder would see it).
absl::StatusOr<std::string> ReadString(const YAML::Node& node, absl::string_view path);
// A plain decimal integer.
absl::StatusOr<int64_t> ReadInteger(const YAML::Node& node, absl::string_view path);
// True for a plain scalar that YAML resolves to an integer.
bool IsIntegerScalar(const YAML::Node& node);

// Optional string field of a map: nullopt when absent or null.
absl::StatusOr<std::optional<std::string>> ReadOptionalString(const YAML::Node& parent,
                                                              absl::string_view key,
                                                              absl::string_view path);

}  // namespace microseg::yaml_fields
