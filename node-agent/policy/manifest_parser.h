// Kubernetes YAML (Namespace, Pod, NetworkPolicy, microseg.io/v1alpha1
// SegmentPolicy and ClusterSegmentPolicy; multi-document files and
// `kind: List`) into the domain model, with validation. Bad input gives an
// error naming the document and the field.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "model.h"
#include "yaml-cpp/yaml.h"

namespace microseg {

struct ParsedManifests {
  std::vector<Namespace> namespaces;
  std::vector<Pod> pods;
  std::vector<NetworkPolicy> network_policies;
  std::vector<SegmentPolicy> segment_policies;
  std::vector<ClusterSegmentPolicy> cluster_segment_policies;
  std::vector<std::string> ignored;  // "Kind namespace/name" of kinds we do not enforce
};

inline constexpr char kMicrosegApiVersion[] = "microseg.io/v1alpha1";
inline constexpr char kSegmentPolicyKind[] = "SegmentPolicy";
inline constexpr char kClusterSegmentPolicyKind[] = "ClusterSegmentPolicy";
inline constexpr int64_t kMinClusterPolicyPriority = 0;
inline constexpr int64_t kMaxClusterPolicyPriority = 1000;

using ClusterObject = std::variant<Namespace, Pod, NetworkPolicy, SegmentPolicy, ClusterSegmentPolicy>;

// The apiVersion microseg enforces `kind` at; nullopt for kinds it ignores.
std::optional<std::string> ApiVersionOfKind(absl::string_view kind);

// One already decoded object of `kind` (Namespace, Pod, NetworkPolicy,
// SegmentPolicy, ClusterSegmentPolicy), e.g. from the Kubernetes API's JSON
// (yaml-cpp reads JSON). apiVersion is not checked: the caller watched it.
// Errors are InvalidArgument "<field path>: <problem>", ready for a status
// condition's message; the caller keeps the object's last good version.
absl::StatusOr<ClusterObject> ParseClusterObject(absl::string_view kind, const YAML::Node& object);

// All or nothing: one invalid document fails the whole text.
absl::StatusOr<ParsedManifests> ParseManifests(std::string_view yaml_text);

// An object the per-object parse rejected. `kind` and `key` ("ns/name", or
// "name" for cluster-scoped kinds) name it when its metadata was readable,
// so the caller can keep that object's last good version; else empty.
struct RejectedObject {
  std::string kind;
  std::string key;
  std::string message;  // "document N (Kind ns/name): field: problem"
};
struct PerObjectParse {
  ParsedManifests parsed;  // the valid objects
  std::vector<RejectedObject> rejected;
};

// Object by object: an invalid object is reported and skipped, the others
// are kept. Fails only when the text is not YAML at all.
absl::StatusOr<PerObjectParse> ParseManifestsPerObject(std::string_view yaml_text);

// The objects keyed as ClusterState keys them; of two objects with the same
// key the later one wins (callers that must refuse duplicates check first).
ClusterState ClusterStateOf(const ParsedManifests& parsed);

}  // namespace microseg
