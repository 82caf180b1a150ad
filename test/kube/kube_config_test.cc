#include <catch2/catch.hpp>

#include <map>

#include "absl/strings/escaping.h"
#include "kube/kube_config.h"
#include "kube/token_source.h"
#include "temp_dir.h"

namespace microseg::kube {
namespace {

EnvLookup FakeEnv(std::map<std::string, std::string> values) {
  return [values](const std::string& name) -> std::optional<std::string> {
    auto it = values.find(name);
    if (it == values.end()) return std::nullopt;
    return it->second;
  };
}

TEST_CASE("in-cluster config from the service-account directory") {
  TempDir dir;
  dir.Write("token", "tok-1\n");
  dir.Write("ca.crt", "PEM");
  dir.Write("namespace", "kube-system\n");
  auto config = LoadInClusterConfig(
      FakeEnv({{"KUBERNETES_SERVICE_HOST", "10.96.0.1"}, {"KUBERNETES_SERVICE_PORT", "443"}}), dir.path());
  REQUIRE(config.ok());
  CHECK(config->server == "https://10.96.0.1:443");
  CHECK(config->token_file == dir.path() + "/token");
  CHECK(config->certificate_authority.file == dir.path() + "/ca.crt");
  CHECK(config->namespace_name == "kube-system");
}

TEST_CASE("in-cluster config: IPv6 host is bracketed") {
  TempDir dir;
  dir.Write("token", "t");
  dir.Write("ca.crt", "PEM");
  auto config =
      LoadInClusterConfig(FakeEnv({{"KUBERNETES_SERVICE_HOST", "fd00::1"}, {"KUBERNETES_SERVICE_PORT", "6443"}}),
                          dir.path());
  REQUIRE(config.ok());
  CHECK(config->server == "https://[fd00::1]:6443");
  CHECK(config->namespace_name == "default");
}

TEST_CASE("in-cluster config errors") {
  TempDir dir;
  dir.Write("ca.crt", "PEM");
  CHECK_FALSE(LoadInClusterConfig(FakeEnv({}), dir.path()).ok());
  auto no_token =
      LoadInClusterConfig(FakeEnv({{"KUBERNETES_SERVICE_HOST", "h"}, {"KUBERNETES_SERVICE_PORT", "1"}}), dir.path());
  REQUIRE_FALSE(no_token.ok());
  CHECK_THAT(std::string(no_token.status().message()), Catch::Contains("token"));
}

TEST_CASE("kubeconfig: current context, token file relative to the file, CA data") {
  TempDir dir;
  const std::string ca = absl::Base64Escape("-----BEGIN CERTIFICATE-----\nX\n-----END CERTIFICATE-----\n");
  dir.Write("config", R"(apiVersion: v1
kind: Config
current-context: test
contexts:
- name: other
  context: {cluster: nowhere, user: nobody}
- name: test
  context: {cluster: c1, user: u1, namespace: microseg-system}
clusters:
- name: c1
  cluster:
    server: https://127.0.0.1:6443/
    certificate-authority-data: )" + ca + R"(
users:
- name: u1
  user:
    tokenFile: secrets/token
)");
  auto config = LoadKubeconfig(dir.path() + "/config");
  REQUIRE(config.ok());
  CHECK(config->server == "https://127.0.0.1:6443");
  CHECK(config->certificate_authority.data.find("BEGIN CERTIFICATE") != std::string::npos);
  CHECK(config->certificate_authority.file.empty());
  CHECK(config->token_file == dir.path() + "/secrets/token");
  CHECK(config->namespace_name == "microseg-system");
}

TEST_CASE("kubeconfig: explicit context, static token, client certificate files") {
  TempDir dir;
  dir.Write("config", R"(current-context: a
contexts:
- {name: a, context: {cluster: ca, user: ua}}
- {name: b, context: {cluster: cb, user: ub}}
clusters:
- {name: ca, cluster: {server: "https://a:1"}}
- {name: cb, cluster: {server: "https://b:2", certificate-authority: /etc/ca.pem, insecure-skip-tls-verify: true}}
users:
- {name: ua, user: {token: abc}}
- {name: ub, user: {client-certificate: cert.pem, client-key: /abs/key.pem}}
)");
  auto a = LoadKubeconfig(dir.path() + "/config");
  REQUIRE(a.ok());
  CHECK(a->token == "abc");
  CHECK(a->namespace_name == "default");
  auto b = LoadKubeconfig(dir.path() + "/config", "b");
  REQUIRE(b.ok());
  CHECK(b->server == "https://b:2");
  CHECK(b->certificate_authority.file == "/etc/ca.pem");
  CHECK(b->insecure_skip_tls_verify);
  CHECK(b->client_certificate.file == dir.path() + "/cert.pem");
  CHECK(b->client_key.file == "/abs/key.pem");
  CHECK(b->token.empty());
}

TEST_CASE("kubeconfig errors name what is wrong") {
  TempDir dir;
  struct Case {
    std::string text;
    std::string expected;
  };
  const Case cases[] = {
      {"current-context: x\ncontexts: []\n", "no context \"x\""},
      {"contexts: []\n", "no current-context"},
      {"current-context: a\ncontexts: [{name: a, context: {cluster: c, user: u}}]\nclusters: []\n",
       "no cluster \"c\""},
      {"current-context: a\ncontexts: [{name: a, context: {cluster: c}}]\nclusters: [{name: c, cluster: {}}]\n",
       "has no server"},
      {"current-context: a\ncontexts: [{name: a, context: {cluster: c, user: u}}]\n"
       "clusters: [{name: c, cluster: {server: 'https://x'}}]\nusers: [{name: u, user: {client-certificate: c.pem}}]\n",
       "must be given together"},
      {"current-context: a\ncontexts: [{name: a, context: {cluster: c}}]\n"
       "clusters: [{name: c, cluster: {server: 'https://x', certificate-authority-data: '%%%'}}]\n",
       "not valid base64"},
      {"[unclosed", "kubeconfig"},
  };
  for (const Case& c : cases) {
    dir.Write("config", c.text);
    auto config = LoadKubeconfig(dir.path() + "/config");
    CAPTURE(c.text);
    REQUIRE_FALSE(config.ok());
    CHECK_THAT(std::string(config.status().message()), Catch::Contains(c.expected));
  }
}

TEST_CASE("token file is re-read when it changes (rotation)") {
  TempDir dir;
  dir.Write("token", "first\n");
  TokenSource tokens("ignored-static", dir.path() + "/token");
  CHECK(tokens.Token() == "first");
  CHECK(tokens.Token() == "first");
  dir.Write("token", "second-token\n");  // rename: new inode, as the kubelet's atomic writer does
  CHECK(tokens.Token() == "second-token");
  CHECK(tokens.reloads() == 2);
  dir.Remove("token");
  CHECK(tokens.Token() == "second-token");  // briefly missing during a swap: keep the last one
}

TEST_CASE("static token without a file") {
  TokenSource tokens("static", "");
  CHECK(tokens.Token() == "static");
}

}  // namespace
}  // namespace microseg::kube
