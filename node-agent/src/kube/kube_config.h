// Where the Kubernetes API is and how to authenticate to it: in-cluster
// (service-account files and KUBERNETES_SERVICE_HOST/PORT) or a kubeconfig
// file for running outside a cluster.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"

namespace microseg::kube {

// PEM material either inline (kubeconfig *-data, base64-decoded) or as a file
// path; at most one of the two is set.
struct PemSource {
  std::string file;
  std::string data;
  bool empty() const { return file.empty() && data.empty(); }
};

struct KubeConfig {
  std::string server;  // "https://host:port", no trailing slash
  PemSource certificate_authority;
  PemSource client_certificate;
  PemSource client_key;
  std::string token;       // static bearer token
  std::string token_file;  // re-read when it changes (service-account token rotation)
  bool insecure_skip_tls_verify = false;
  std::string namespace_name;  // the agent's own namespace (leases, events of cluster objects)
};

using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;

// The process environment.
std::optional<std::string> ProcessEnv(const std::string& name);

// Where the kubelet mounts a pod's service account.
inline constexpr char kInClusterServiceAccountDir[] = "/var/run/secrets/kubernetes.io/serviceaccount";

// In-cluster config: KUBERNETES_SERVICE_HOST/PORT and the files under
// `service_account_dir` (token, ca.crt, namespace). An IPv6 host is bracketed.
absl::StatusOr<KubeConfig> LoadInClusterConfig(const EnvLookup& env = ProcessEnv,
                                               const std::string& service_account_dir = kInClusterServiceAccountDir);

// A kubeconfig file (YAML): the current context (or `context` when given),
// its cluster (server, certificate-authority(-data), insecure-skip-tls-verify)
// and user (token, tokenFile, client-certificate(-data), client-key(-data)).
// Relative file paths are relative to the kubeconfig's directory.
absl::StatusOr<KubeConfig> LoadKubeconfig(const std::string& path, const std::string& context = "");

}  // namespace microseg::kube
