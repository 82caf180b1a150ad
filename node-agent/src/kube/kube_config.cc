#include "kube/kube_config.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "yaml-cpp/yaml.h"

namespace microseg::kube {
namespace {

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string Scalar(const YAML::Node& parent, const char* key) {
  if (!parent.IsMap()) return "";
  const YAML::Node node = parent[key];
  return node && node.IsScalar() ? node.Scalar() : "";
}

// An entry of a kubeconfig's named list (clusters, users, contexts).
YAML::Node FindNamed(const YAML::Node& list, const std::string& name, const char* body_key) {
  if (!list || !list.IsSequence()) return YAML::Node();
  for (const YAML::Node& entry : list) {
    if (Scalar(entry, "name") == name && entry[body_key]) return entry[body_key];
  }
  return YAML::Node();
}

std::string Resolve(const std::string& file, const std::filesystem::path& base) {
  if (file.empty() || std::filesystem::path(file).is_absolute()) return file;
  return (base / file).string();
}

absl::StatusOr<PemSource> ReadPem(const YAML::Node& parent, const char* file_key, const char* data_key,
                                  const std::filesystem::path& base, const std::string& where) {
  PemSource pem;
  pem.file = Resolve(Scalar(parent, file_key), base);
  const std::string data = Scalar(parent, data_key);
  if (!data.empty()) {
    if (!absl::Base64Unescape(data, &pem.data)) {
      return absl::InvalidArgumentError(absl::StrCat(where, ".", data_key, ": not valid base64"));
    }
    pem.file.clear();  // kubectl: *-data wins over the file
  }
  return pem;
}

}  // namespace

std::optional<std::string> ProcessEnv(const std::string& name) {
  const char* value = std::getenv(name.c_str());
  if (value == nullptr) return std::nullopt;
  return std::string(value);
}

absl::StatusOr<KubeConfig> LoadInClusterConfig(const EnvLookup& env, const std::string& service_account_dir) {
  const std::optional<std::string> host = env("KUBERNETES_SERVICE_HOST");
  const std::optional<std::string> port = env("KUBERNETES_SERVICE_PORT");
  if (!host || host->empty() || !port || port->empty()) {
    return absl::FailedPreconditionError(
        "not running in a cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set (or use "
        "--kubeconfig)");
  }
  KubeConfig config;
  const bool ipv6 = host->find(':') != std::string::npos;
  config.server = absl::StrCat("https://", ipv6 ? "[" : "", *host, ipv6 ? "]" : "", ":", *port);
  const std::filesystem::path dir(service_account_dir);
  config.token_file = (dir / "token").string();
  if (!std::filesystem::exists(config.token_file)) {
    return absl::NotFoundError(absl::StrCat("service-account token ", config.token_file, " is missing"));
  }
  config.certificate_authority.file = (dir / "ca.crt").string();
  if (!std::filesystem::exists(config.certificate_authority.file)) {
    return absl::NotFoundError(absl::StrCat("service-account CA ", config.certificate_authority.file, " is missing"));
  }
  if (auto ns = ReadWholeFile((dir / "namespace").string()); ns.ok()) {
    config.namespace_name = std::string(absl::StripAsciiWhitespace(*ns));
  }
  if (auto ns = env("POD_NAMESPACE"); config.namespace_name.empty() && ns) config.namespace_name = *ns;
  if (config.namespace_name.empty()) config.namespace_name = "default";
  return config;
}

absl::StatusOr<KubeConfig> LoadKubeconfig(const std::string& path, const std::string& context) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("kubeconfig ", path, ": ", e.what()));
  }
  if (!root.IsMap()) return absl::InvalidArgumentError(absl::StrCat("kubeconfig ", path, ": not a YAML map"));
  const std::filesystem::path base = std::filesystem::absolute(path).parent_path();
  const std::string context_name = context.empty() ? Scalar(root, "current-context") : context;
  if (context_name.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("kubeconfig ", path, ": no current-context (and none given)"));
  }
  const YAML::Node ctx = FindNamed(root["contexts"], context_name, "context");
  if (!ctx.IsMap()) return absl::InvalidArgumentError(absl::StrCat("kubeconfig ", path, ": no context \"", context_name, "\""));
  const std::string cluster_name = Scalar(ctx, "cluster");
  const YAML::Node cluster = FindNamed(root["clusters"], cluster_name, "cluster");
  if (!cluster.IsMap()) {
    return absl::InvalidArgumentError(absl::StrCat("kubeconfig ", path, ": no cluster \"", cluster_name, "\""));
  }
  KubeConfig config;
  config.server = std::string(absl::StripSuffix(Scalar(cluster, "server"), "/"));
  if (config.server.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("kubeconfig ", path, ": cluster \"", cluster_name,
                                                   "\" has no server"));
  }
  config.insecure_skip_tls_verify = Scalar(cluster, "insecure-skip-tls-verify") == "true";
  const std::string where = absl::StrCat("kubeconfig ", path, ": cluster ", cluster_name);
  auto ca = ReadPem(cluster, "certificate-authority", "certificate-authority-data", base, where);
  if (!ca.ok()) return ca.status();
  config.certificate_authority = *ca;

  const std::string user_name = Scalar(ctx, "user");
  if (!user_name.empty()) {
    const YAML::Node user = FindNamed(root["users"], user_name, "user");
    if (!user.IsMap()) return absl::InvalidArgumentError(absl::StrCat("kubeconfig ", path, ": no user \"", user_name, "\""));
    const std::string user_where = absl::StrCat("kubeconfig ", path, ": user ", user_name);
    config.token = Scalar(user, "token");
    config.token_file = Resolve(Scalar(user, "tokenFile"), base);
    auto cert = ReadPem(user, "client-certificate", "client-certificate-data", base, user_where);
    if (!cert.ok()) return cert.status();
    auto key = ReadPem(user, "client-key", "client-key-data", base, user_where);
    if (!key.ok()) return key.status();
    config.client_certificate = *cert;
    config.client_key = *key;
    if (config.client_certificate.empty() != config.client_key.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(user_where, ": client-certificate and client-key must be given together"));
    }
  }
  config.namespace_name = Scalar(ctx, "namespace");
  if (config.namespace_name.empty()) config.namespace_name = "default";
  return config;
}

}  // namespace microseg::kube
