// One line of a Kubernetes watch stream ({"type": ..., "object": ...}).
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"

namespace microseg::kube {

struct WatchEvent {
  enum class Type { kAdded, kModified, kDeleted, kBookmark, kError };
  Type type = Type::kAdded;
  nlohmann::json object;  // for kError: a meta/v1 Status
  // Convenience copies (empty when absent).
  std::string resource_version;
  // kError only: Status.code (410 for an expired resourceVersion) and text.
  int error_code = 0;
  std::string error_message;

  bool expired() const { return type == Type::kError && error_code == 410; }
};

// InvalidArgument for anything that is not a watch event (bad JSON, unknown
// type, missing object).
absl::StatusOr<WatchEvent> DecodeWatchEvent(std::string_view line);

const char* WatchEventTypeName(WatchEvent::Type type);

// object[key] when it is a string, else "" (never throws).
std::string StringField(const nlohmann::json& object, const char* key);

// metadata.resourceVersion / namespace / name of an object ("" when absent).
std::string ResourceVersionOf(const nlohmann::json& object);
// "namespace/name" for namespaced objects, "name" otherwise.
std::string ObjectKey(const nlohmann::json& object);

}  // namespace microseg::kube
