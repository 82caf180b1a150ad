// Standalone mode's ClusterSource: ManifestDirectory, rescanned on Poll().
#pragma once

#include <mutex>

#include "cluster_source.h"
#include "manifest_directory.h"

namespace microseg {

class DirectorySource final : public ClusterSource {
 public:
  explicit DirectorySource(std::string dir) : directory_(std::move(dir)) {}

  std::optional<ClusterState> WaitForInitialState(const std::function<bool()>&) override {
    std::lock_guard<std::mutex> lock(mu_);
    directory_.Poll();
    return directory_.state();
  }
  std::optional<ClusterState> Poll() override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!directory_.Poll()) return std::nullopt;
    return directory_.state();
  }
  std::vector<ManifestError> errors() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return directory_.errors();
  }
  uint64_t rejected_versions() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return directory_.rejected_versions();
  }
  std::string description() const override { return "manifests " + directory_.dir(); }

 private:
  mutable std::mutex mu_;
  ManifestDirectory directory_;
};

}  // namespace microseg
