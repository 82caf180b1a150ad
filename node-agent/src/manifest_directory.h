// Standalone mode's source of cluster state: a directory of YAML manifests,
// rescanned so that adding, changing or removing a file takes effect like
// `kubectl apply` / `kubectl delete` would. An invalid object keeps its last
// good version in force (the file's other objects still take effect); a file
// that is not YAML at all keeps all its last good objects. Both are reported.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "manifest_parser.h"
#include "model.h"

namespace microseg {

struct ManifestError {
  std::string file;
  std::string message;
};

class ManifestDirectory {
 public:
  explicit ManifestDirectory(std::string dir) : dir_(std::move(dir)) {}

  // Rescans the directory; true when the cluster state changed.
  bool Poll();

  const ClusterState& state() const { return state_; }
  // Problems in force now, one per file at most (parse errors, duplicates).
  std::vector<ManifestError> errors() const;
  // Every rejected file version since start (a metric).
  uint64_t rejected_versions() const { return rejected_versions_; }
  const std::string& dir() const { return dir_; }

 private:
  struct Fingerprint {
    int64_t mtime_ns = 0;
    int64_t size = 0;
    ino_t inode = 0;
    friend bool operator==(const Fingerprint&, const Fingerprint&) = default;
  };
  struct FileState {
    Fingerprint fingerprint;
    std::optional<ParsedManifests> last_good;
    std::optional<std::string> error;
  };

  void Rebuild();

  std::string dir_;
  std::map<std::string, FileState> files_;  // key: file name, sorted: earlier files win duplicates
  std::map<std::string, std::string> duplicate_errors_;
  ClusterState state_;
  uint64_t rejected_versions_ = 0;
  bool dir_error_reported_ = false;
};

}  // namespace microseg
