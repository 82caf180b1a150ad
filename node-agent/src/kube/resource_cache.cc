#include "kube/resource_cache.h"

#include "absl/strings/numbers.h"

namespace microseg::kube {

bool IsNewerVersion(const std::string& candidate, const std::string& current) {
  if (current.empty()) return true;
  uint64_t a = 0, b = 0;
  if (absl::SimpleAtoi(candidate, &a) && absl::SimpleAtoi(current, &b)) return a > b;
  return candidate != current;
}

std::vector<ObjectChange> ResourceCache::Replace(std::vector<nlohmann::json> items,
                                                 const std::string& list_resource_version) {
  std::map<std::string, nlohmann::json> next;
  for (nlohmann::json& item : items) {
    std::string key = ObjectKey(item);
    if (!key.empty()) next[std::move(key)] = std::move(item);
  }
  std::vector<ObjectChange> changes;
  for (const auto& [key, old] : objects_) {
    if (!next.count(key)) changes.push_back({ObjectChange::Kind::kDelete, key, old});
  }
  for (const auto& [key, object] : next) {
    auto it = objects_.find(key);
    // Same resourceVersion = same object content: nothing to re-apply.
    if (it == objects_.end() || ResourceVersionOf(it->second) != ResourceVersionOf(object)) {
      changes.push_back({ObjectChange::Kind::kUpsert, key, object});
    }
  }
  objects_ = std::move(next);
  resource_version_ = list_resource_version;
  has_listed_ = true;
  return changes;
}

std::optional<ObjectChange> ResourceCache::Apply(const WatchEvent& event) {
  if (event.type == WatchEvent::Type::kError) return std::nullopt;
  // Every event moves the resume point, even one that changes nothing.
  if (IsNewerVersion(event.resource_version, resource_version_)) resource_version_ = event.resource_version;
  if (event.type == WatchEvent::Type::kBookmark) return std::nullopt;
  const std::string key = ObjectKey(event.object);
  auto it = objects_.find(key);
  if (event.type == WatchEvent::Type::kDeleted) {
    if (it == objects_.end()) return std::nullopt;
    // A replayed deletion of an earlier incarnation of a re-created object.
    if (!IsNewerVersion(event.resource_version, ResourceVersionOf(it->second)) &&
        event.resource_version != ResourceVersionOf(it->second)) {
      return std::nullopt;
    }
    ObjectChange change{ObjectChange::Kind::kDelete, key, std::move(it->second)};
    objects_.erase(it);
    return change;
  }
  if (it != objects_.end() && !IsNewerVersion(event.resource_version, ResourceVersionOf(it->second))) {
    return std::nullopt;
  }
  objects_[key] = event.object;
  return ObjectChange{ObjectChange::Kind::kUpsert, key, event.object};
}

}  // namespace microseg::kube
