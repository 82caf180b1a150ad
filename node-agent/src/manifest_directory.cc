#include "manifest_directory.h"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "log.h"

namespace microseg {
namespace {

bool IsManifestFile(const std::string& name) {
  if (name.empty() || name.front() == '.' || name.back() == '~') return false;  // hidden, editor backups
  return absl::EndsWith(name, ".yaml") || absl::EndsWith(name, ".yml") || absl::EndsWith(name, ".json");
}

template <typename T>
void InsertOnce(std::map<std::string, T>& into, const std::string& key, const T& value, const std::string& kind,
                const std::string& file, std::map<std::string, std::string>& owners,
                std::map<std::string, std::string>& duplicate_errors) {
  const std::string owner_key = kind + " " + key;
  auto [it, inserted] = owners.emplace(owner_key, file);
  if (!inserted) {
    duplicate_errors[file] = absl::StrCat(kind, " ", key, " is already defined in ", it->second, "; ignored here");
    return;
  }
  into[key] = value;
}

// The version of a rejected object that `previous` (the file's last good
// objects) had, appended to `next`: an invalid change keeps that object's
// last good version in force while the file's other objects move on.
void KeepLastGood(const ParsedManifests& previous, const RejectedObject& rejected, ParsedManifests& next) {
  const auto carry = [&](const auto& from, auto& into, auto key_of) {
    for (const auto& object : from) {
      if (key_of(object) == rejected.key) into.push_back(object);
    }
  };
  const auto namespaced = [](const auto& object) { return object.namespace_name + "/" + object.name; };
  if (rejected.kind == "Namespace") carry(previous.namespaces, next.namespaces, [](const Namespace& o) { return o.name; });
  if (rejected.kind == "Pod") carry(previous.pods, next.pods, namespaced);
  if (rejected.kind == "NetworkPolicy") carry(previous.network_policies, next.network_policies, namespaced);
  if (rejected.kind == kSegmentPolicyKind) {
    carry(previous.segment_policies, next.segment_policies,
          [&](const SegmentPolicy& o) { return namespaced(o.policy); });
  }
  if (rejected.kind == kClusterSegmentPolicyKind) {
    carry(previous.cluster_segment_policies, next.cluster_segment_policies,
          [](const ClusterSegmentPolicy& o) { return o.name; });
  }
}

}  // namespace

bool ManifestDirectory::Poll() {
  std::error_code ec;
  std::map<std::string, Fingerprint> seen;
  for (const auto& entry : std::filesystem::directory_iterator(dir_, ec)) {
    const std::string name = entry.path().filename().string();
    if (!IsManifestFile(name)) continue;
    struct stat st {};
    if (stat(entry.path().c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    seen[name] = {static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec,
                  static_cast<int64_t>(st.st_size), st.st_ino};
  }
  if (ec) {
    if (!dir_error_reported_) LogError("cannot read manifest directory ", dir_, ": ", ec.message());
    dir_error_reported_ = true;
    return false;  // an unreadable directory is not "every object deleted"
  }
  dir_error_reported_ = false;

  bool changed = false;
  for (auto it = files_.begin(); it != files_.end();) {
    if (!seen.count(it->first)) {
      LogInfo("manifest ", it->first, " removed: its objects are deleted");
      it = files_.erase(it);
      changed = true;
    } else {
      ++it;
    }
  }
  for (const auto& [name, fingerprint] : seen) {
    FileState& file = files_[name];
    if (file.fingerprint == fingerprint && (file.last_good || file.error)) continue;
    file.fingerprint = fingerprint;
    std::ifstream in(std::filesystem::path(dir_) / name);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto parsed = ParseManifestsPerObject(text);
    if (!parsed.ok()) {
      file.error = std::string(parsed.status().message());
      ++rejected_versions_;
      LogError("manifest ", name, " rejected, ", file.last_good ? "its last good version stays in force" : "ignored",
               ": ", *file.error);
      changed = true;  // the error list changed even if the objects did not
      continue;
    }
    // Object by object: valid objects take effect, an invalid one keeps its
    // last good version (if it had one) and is reported and counted.
    ParsedManifests next = std::move(parsed->parsed);
    std::vector<std::string> messages;
    for (const RejectedObject& rejected : parsed->rejected) {
      ++rejected_versions_;
      const bool kept = file.last_good && !rejected.key.empty();
      if (kept) KeepLastGood(*file.last_good, rejected, next);
      LogError("manifest ", name, ": ", rejected.kind.empty() ? "object" : rejected.kind, " rejected, ",
               kept ? "its last good version (if any) stays in force" : "ignored", ": ", rejected.message);
      messages.push_back(rejected.message);
    }
    if (messages.empty()) {
      file.error.reset();
    } else {
      file.error = absl::StrJoin(messages, "; ");
    }
    file.last_good = std::move(next);
    LogInfo("manifest ", name, " applied (", file.last_good->namespaces.size(), " namespaces, ",
            file.last_good->pods.size(), " pods, ", file.last_good->network_policies.size(), " network policies, ",
            file.last_good->segment_policies.size(), " segment policies, ",
            file.last_good->cluster_segment_policies.size(), " cluster segment policies)");
    changed = true;
  }
  if (changed) Rebuild();
  return changed;
}

void ManifestDirectory::Rebuild() {
  ClusterState next;
  std::map<std::string, std::string> owners;
  duplicate_errors_.clear();
  for (const auto& [name, file] : files_) {
    if (!file.last_good) continue;
    for (const auto& ns : file.last_good->namespaces) {
      InsertOnce(next.namespaces, ns.name, ns, "Namespace", name, owners, duplicate_errors_);
    }
    for (const auto& pod : file.last_good->pods) {
      InsertOnce(next.pods, pod.namespace_name + "/" + pod.name, pod, "Pod", name, owners, duplicate_errors_);
    }
    for (const auto& policy : file.last_good->network_policies) {
      InsertOnce(next.network_policies, policy.namespace_name + "/" + policy.name, policy, "NetworkPolicy", name,
                 owners, duplicate_errors_);
    }
    for (const auto& segment : file.last_good->segment_policies) {
      InsertOnce(next.segment_policies, segment.policy.namespace_name + "/" + segment.policy.name, segment,
                 kSegmentPolicyKind, name, owners, duplicate_errors_);
    }
    for (const auto& policy : file.last_good->cluster_segment_policies) {
      InsertOnce(next.cluster_segment_policies, policy.name, policy, kClusterSegmentPolicyKind, name, owners,
                 duplicate_errors_);
    }
  }
  for (const auto& [file, message] : duplicate_errors_) LogWarning("manifest ", file, ": ", message);
  state_ = std::move(next);
}

std::vector<ManifestError> ManifestDirectory::errors() const {
  std::vector<ManifestError> out;
  for (const auto& [name, file] : files_) {
    if (file.error) out.push_back({name, *file.error});
  }
  for (const auto& [name, message] : duplicate_errors_) out.push_back({name, message});
  return out;
}

}  // namespace microseg
