#include "manifest_directory.h"

#include <catch2/catch.hpp>
#include <thread>

#include "temp_dir.h"

namespace microseg {
namespace {

constexpr char kNamespaces[] = R"(apiVersion: v1
kind: Namespace
metadata:
  name: x
  labels: {ns: x}
---
apiVersion: v1
kind: Namespace
metadata:
  name: y
)";

constexpr char kDenyAll[] = R"(apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: x}
spec:
  podSelector: {}
)";

constexpr char kAllowFromA[] = R"(apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-a, namespace: x}
spec:
  podSelector: {matchLabels: {pod: b}}
  ingress:
  - from:
    - podSelector: {matchLabels: {pod: a}}
    ports:
    - {protocol: TCP, port: 80}
)";

// Same object as kAllowFromA with an invalid port: must be rejected.
constexpr char kAllowFromABroken[] = R"(apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-a, namespace: x}
spec:
  podSelector: {matchLabels: {pod: b}}
  ingress:
  - ports:
    - {protocol: TCP, port: 70000}
)";

// Poll until the directory reports a change (mtime granularity can hide a
// rewrite within the same tick on some filesystems; a real agent polls on).
bool PollChanged(ManifestDirectory& source) {
  for (int i = 0; i < 50; ++i) {
    if (source.Poll()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

TEST_CASE("manifest directory follows files being added, changed and removed", "[manifests]") {
  TempDir dir;
  ManifestDirectory source(dir.path());
  CHECK_FALSE(source.Poll());
  CHECK(source.state().namespaces.empty());

  dir.Write("00-namespaces.yaml", kNamespaces);
  dir.Write("10-deny.yaml", kDenyAll);
  REQUIRE(PollChanged(source));
  CHECK(source.state().namespaces.size() == 2);
  CHECK(source.state().namespaces.at("x").labels.at("ns") == "x");
  CHECK(source.state().network_policies.count("x/deny-all") == 1);
  CHECK(source.errors().empty());
  CHECK_FALSE(source.Poll());  // nothing changed: no spurious recompiles

  dir.Write("20-allow.yaml", kAllowFromA);
  REQUIRE(PollChanged(source));
  CHECK(source.state().network_policies.count("x/allow-a") == 1);

  dir.Remove("10-deny.yaml");
  REQUIRE(PollChanged(source));
  CHECK(source.state().network_policies.count("x/deny-all") == 0);
  CHECK(source.state().network_policies.count("x/allow-a") == 1);
}

TEST_CASE("an invalid file version is reported and the last good version stays in force", "[manifests]") {
  TempDir dir;
  ManifestDirectory source(dir.path());
  dir.Write("20-allow.yaml", kAllowFromA);
  REQUIRE(PollChanged(source));
  const auto good = source.state().network_policies.at("x/allow-a");

  dir.Write("20-allow.yaml", kAllowFromABroken);
  REQUIRE(PollChanged(source));
  REQUIRE(source.errors().size() == 1);
  CHECK(source.errors()[0].file == "20-allow.yaml");
  CHECK_THAT(source.errors()[0].message, Catch::Contains("70000"));
  CHECK(source.rejected_versions() == 1);
  // Still the good version: one peer, port 80.
  const auto& kept = source.state().network_policies.at("x/allow-a");
  REQUIRE(kept.ingress.size() == 1);
  CHECK(kept.ingress[0].peers.size() == good.ingress[0].peers.size());
  REQUIRE(kept.ingress[0].ports.size() == 1);
  CHECK(std::get<uint16_t>(*kept.ingress[0].ports[0].port) == 80);

  // A new, never-valid file contributes nothing but is reported.
  dir.Write("30-garbage.yaml", "kind: [unterminated");
  REQUIRE(PollChanged(source));
  CHECK(source.errors().size() == 2);

  // Fixing the file clears its error.
  dir.Write("20-allow.yaml", kAllowFromA);
  dir.Remove("30-garbage.yaml");
  REQUIRE(PollChanged(source));
  CHECK(source.errors().empty());
}

constexpr char kCrds[] = R"(apiVersion: microseg.io/v1alpha1
kind: ClusterSegmentPolicy
metadata: {name: deny-z}
spec:
  priority: PRIORITY
  ingress: [{action: Deny, from: [{namespaceSelector: {matchLabels: {ns: z}}}]}]
---
apiVersion: microseg.io/v1alpha1
kind: SegmentPolicy
metadata: {name: audit-x, namespace: x}
spec:
  podSelector: {}
  enforcement: ENFORCEMENT
)";

std::string Crds(const std::string& priority, const std::string& enforcement) {
  std::string text = kCrds;
  text.replace(text.find("PRIORITY"), 8, priority);
  text.replace(text.find("ENFORCEMENT"), 11, enforcement);
  return text;
}

TEST_CASE("an invalid object keeps its last good version while the file's other objects move on", "[manifests]") {
  TempDir dir;
  ManifestDirectory source(dir.path());
  dir.Write("crds.yaml", Crds("5", "Audit"));
  REQUIRE(PollChanged(source));
  REQUIRE(source.errors().empty());
  CHECK(source.state().cluster_segment_policies.at("deny-z").priority == 5);
  CHECK(source.state().segment_policies.at("x/audit-x").enforcement == Enforcement::kAudit);

  // Priority out of range: that object stays at its last good version; the
  // SegmentPolicy in the same file takes its new version.
  dir.Write("crds.yaml", Crds("5000", "Enforce"));
  REQUIRE(PollChanged(source));
  REQUIRE(source.errors().size() == 1);
  CHECK_THAT(source.errors()[0].message,
             Catch::Contains("(ClusterSegmentPolicy deny-z): spec.priority: 5000 is out of range 0..1000"));
  CHECK(source.rejected_versions() == 1);
  CHECK(source.state().cluster_segment_policies.at("deny-z").priority == 5);
  CHECK(source.state().segment_policies.at("x/audit-x").enforcement == Enforcement::kEnforce);

  // An invalid object never seen valid is just reported.
  dir.Write("new.yaml", "apiVersion: microseg.io/v1alpha1\nkind: SegmentPolicy\nmetadata: {name: n, namespace: x}\n"
                        "spec: {podSelector: {}, ingress: [{action: Pass}]}\n");
  REQUIRE(PollChanged(source));
  CHECK(source.errors().size() == 2);
  CHECK(source.state().segment_policies.count("x/n") == 0);
  CHECK(source.rejected_versions() == 2);

  dir.Write("crds.yaml", Crds("7", "Enforce"));
  dir.Remove("new.yaml");
  REQUIRE(PollChanged(source));
  CHECK(source.errors().empty());
  CHECK(source.state().cluster_segment_policies.at("deny-z").priority == 7);
}

TEST_CASE("an object defined in two files is taken from the first and reported", "[manifests]") {
  TempDir dir;
  ManifestDirectory source(dir.path());
  dir.Write("a.yaml", kDenyAll);
  dir.Write("b.yaml", kDenyAll);
  REQUIRE(PollChanged(source));
  CHECK(source.state().network_policies.size() == 1);
  REQUIRE(source.errors().size() == 1);
  CHECK(source.errors()[0].file == "b.yaml");
  CHECK_THAT(source.errors()[0].message, Catch::Contains("a.yaml"));
}

TEST_CASE("non-manifest and hidden files are ignored", "[manifests]") {
  TempDir dir;
  ManifestDirectory source(dir.path());
  dir.Write("README.md", "not yaml: [");
  dir.Write(".hidden.yaml", "not yaml: [");
  dir.Write("policy.yaml~", "not yaml: [");
  CHECK_FALSE(source.Poll());
  CHECK(source.errors().empty());
}

}  // namespace
}  // namespace microseg
