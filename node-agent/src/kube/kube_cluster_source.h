// Kubernetes mode's ClusterSource: the API server found from --kubeconfig or
// the in-cluster environment, watched by a KubeSource over libcurl.
#pragma once

#include <memory>

#include "cluster_source.h"
#include "kube/curl_transport.h"
#include "kube/kube_config.h"
#include "kube/kube_source.h"

namespace microseg::kube {

struct KubeModeOptions {
  std::string kubeconfig;  // empty: in-cluster
  std::string kube_context;
  std::string service_account_dir = kInClusterServiceAccountDir;  // in-cluster: token, ca.crt, namespace
  std::string lease_namespace;  // empty: the config's namespace
  KubeSourceOptions source;
};

class KubeClusterSource final : public ClusterSource {
 public:
  static absl::StatusOr<std::unique_ptr<KubeClusterSource>> Create(KubeModeOptions options);
  ~KubeClusterSource() override;

  std::optional<ClusterState> WaitForInitialState(const std::function<bool()>& keep_waiting) override;
  std::optional<ClusterState> Poll() override;
  std::vector<ManifestError> errors() const override { return source_->errors(); }
  uint64_t rejected_versions() const override { return source_->rejected_versions(); }
  std::string description() const override;
  std::shared_ptr<prometheus::Collectable> metrics() override;
  KubeSourceStats stats() const { return source_->stats(); }
  uint64_t token_reloads() const { return transport_->tokens().reloads(); }

 private:
  KubeClusterSource(std::unique_ptr<CurlTransport> transport, KubeSourceOptions options);

  std::unique_ptr<CurlTransport> transport_;
  std::unique_ptr<KubeSource> source_;
};

}  // namespace microseg::kube
