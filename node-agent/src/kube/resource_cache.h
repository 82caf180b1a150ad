// What a reflector has seen of one resource type: every object's
// resourceVersion and the collection's resourceVersion to resume watching
// from. Turns watch events and relists into the minimal set of changes, so a
// reconnect or a 410 relist never applies an event twice, never loses one,
// and never flushes what did not change.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kube/watch_event.h"

namespace microseg::kube {

struct ObjectChange {
  enum class Kind { kUpsert, kDelete };
  Kind kind = Kind::kUpsert;
  std::string key;         // ObjectKey
  nlohmann::json object;   // the new object; for kDelete the last one seen
};

class ResourceCache {
 public:
  // A full list (all pages) taken at `list_resource_version`: upserts for new
  // or changed objects (by resourceVersion), deletes for the ones missing.
  std::vector<ObjectChange> Replace(std::vector<nlohmann::json> items, const std::string& list_resource_version);

  // One watch event. nullopt when it changes nothing: a bookmark, a
  // duplicate or older version of an object (a replay after a reconnect), the
  // deletion of an object we do not have. Errors are the caller's business.
  std::optional<ObjectChange> Apply(const WatchEvent& event);

  // Where the next watch starts.
  const std::string& resource_version() const { return resource_version_; }
  bool has_listed() const { return has_listed_; }
  size_t size() const { return objects_.size(); }
  const std::map<std::string, nlohmann::json>& objects() const { return objects_; }

 private:
  std::map<std::string, nlohmann::json> objects_;
  std::string resource_version_;
  bool has_listed_ = false;
};

// Kubernetes resourceVersions are opaque, but every API server built on etcd
// issues increasing integers; when both parse, `candidate` older or equal to
// `current` is a replay. Unparsable versions compare by equality only.
bool IsNewerVersion(const std::string& candidate, const std::string& current);

}  // namespace microseg::kube
