#include "kube/kube_cluster_source.h"

#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
#include "kube/kube_metrics.h"
#include "log.h"

namespace microseg::kube {

absl::StatusOr<std::unique_ptr<KubeClusterSource>> KubeClusterSource::Create(KubeModeOptions options) {
  absl::StatusOr<KubeConfig> config = options.kubeconfig.empty()
                                          ? LoadInClusterConfig(ProcessEnv, options.service_account_dir)
                                          : LoadKubeconfig(options.kubeconfig, options.kube_context);
  if (!config.ok()) return config.status();
  options.source.lease.namespace_name =
      options.lease_namespace.empty() ? config->namespace_name : options.lease_namespace;
  options.source.lease.identity = options.source.node_name;
  LogInfo("Kubernetes API ", config->server, " (", options.kubeconfig.empty() ? "in-cluster" : options.kubeconfig,
          "), auth: ",
          !config->token_file.empty() ? "token file " + config->token_file
          : !config->token.empty()    ? std::string("static token")
          : !config->client_certificate.empty() ? std::string("client certificate")
                                                : std::string("none"),
          ", status lease ", options.source.lease.namespace_name, "/", options.source.lease.name);
  auto transport = std::make_unique<CurlTransport>(*std::move(config), options.source.node_name);
  return std::unique_ptr<KubeClusterSource>(new KubeClusterSource(std::move(transport), std::move(options.source)));
}

KubeClusterSource::KubeClusterSource(std::unique_ptr<CurlTransport> transport, KubeSourceOptions options)
    : transport_(std::move(transport)), source_(std::make_unique<KubeSource>(*transport_, std::move(options))) {
  source_->Start();
}

KubeClusterSource::~KubeClusterSource() {
  // The Lease first, while the transport still works: the next agent takes
  // over at its next tick instead of after the lease duration.
  source_->StopStatusWriter();
  transport_->Abort();
  source_->Stop();
}

std::string KubeClusterSource::description() const { return absl::StrCat("Kubernetes API ", transport_->config().server); }

std::optional<ClusterState> KubeClusterSource::WaitForInitialState(const std::function<bool()>& keep_waiting) {
  auto last_report = std::chrono::steady_clock::now();
  while (!source_->synced()) {
    if (!keep_waiting()) return std::nullopt;
    if (std::chrono::steady_clock::now() - last_report > std::chrono::seconds(10)) {
      LogInfo("waiting for the initial lists of the Kubernetes API (not ready yet)");
      last_report = std::chrono::steady_clock::now();
    }
  }
  std::optional<ClusterState> state = source_->TakeChangedState();
  return state ? std::move(state) : std::optional<ClusterState>(ClusterState{});
}

std::shared_ptr<prometheus::Collectable> KubeClusterSource::metrics() {
  return std::make_shared<KubeMetrics>([this] { return source_->stats(); },
                                       [this] { return transport_->tokens().reloads(); });
}

std::optional<ClusterState> KubeClusterSource::Poll() { return source_->TakeChangedState(); }

}  // namespace microseg::kube
