// Compiles a few hundred random small clusters and compares the verdict of
// the compiled maps (through the reference datapath lookup) with the naive
// per-packet evaluation of the same policies, over many probe packets.
#include <catch2/catch.hpp>
#include <map>
#include <random>
#include <sstream>

#include "fake_map_writer.h"
#include "ipv4_cidr.h"
#include "naive_policy_evaluator.h"
#include "random_cluster.h"
#include "policy_compiler.h"
#include "reference_datapath.h"
#include "test_helpers.h"

namespace microseg {
namespace {

using testing::NaiveAllows;
using testing::RandomCluster;
using testing::ReferenceLookup;

TEST_CASE("compiled maps agree with a naive NetworkPolicy evaluator on random clusters", "[compiler][random]") {
  constexpr int kClusters = 400;
  const std::pair<uint8_t, uint16_t> probes[] = {{6, 80},   {6, 81},  {6, 82},   {6, 83},  {6, 8080}, {6, 53},
                                                 {17, 53},  {17, 80}, {132, 80}, {132, 81}, {1, 0}};
  int checked = 0;
  int allowed = 0;
  std::map<testing::Decision, int> decisions;
  for (uint32_t seed = 1; seed <= kClusters; ++seed) {
    RandomCluster generator(seed);
    ClusterState cluster;
    std::vector<LocalEndpoint> endpoints;
    generator.Build(cluster, endpoints);
    const CompiledPolicy compiled = CompilePolicy(cluster, endpoints);

    // The maps as the kernel would hold them after an apply from empty.
    testing::FakeMapWriter writer;
    MapState live;
    REQUIRE(ApplyMapChanges(writer, DiffMapState(live, compiled.maps), live).ok());
    REQUIRE(testing::SameMapState(writer.maps, compiled.maps));

    for (const LocalEndpoint& endpoint : endpoints) {
      for (uint32_t peer : generator.ProbeAddresses(cluster, endpoints)) {
        for (ms_direction direction : {MS_DIR_INGRESS, MS_DIR_EGRESS}) {
          for (const auto& [proto, port] : probes) {
            const bool expected = NaiveAllows(cluster, endpoints, endpoint, direction, peer, proto, port);
            const testing::ReferenceVerdict actual =
                ReferenceLookup(writer.maps, endpoint.ifindex, direction, peer, proto, port);
            if (actual.allowed() != expected) {
              FAIL("seed " << seed << ": endpoint " << endpoint.pod_namespace << "/" << endpoint.pod_name
                           << (direction == MS_DIR_INGRESS ? " ingress from " : " egress to ") << FormatIpv4(peer)
                           << " proto " << int(proto) << " port " << port << ": naive says "
                           << (expected ? "allow" : "deny") << ", maps say " << (actual.allowed() ? "allow" : "deny"));
            }
            ++checked;
            allowed += expected;
            ++decisions[actual.decision];
          }
        }
      }
    }
  }
  // Guard against a generator that only ever produces trivial answers:
  // every way the data plane can decide must be exercised a lot.
  INFO("checked " << checked << ", allowed " << allowed);
  CHECK(checked > 100000);
  CHECK(allowed > checked / 10);
  CHECK(allowed < checked * 9 / 10);
  for (testing::Decision decision : {testing::Decision::kAllowNotIsolated, testing::Decision::kAllowExact,
                                     testing::Decision::kAllowLpm, testing::Decision::kDenyLpm,
                                     testing::Decision::kDenyNoMatch}) {
    INFO("decision " << static_cast<int>(decision) << " seen " << decisions[decision] << " times");
    CHECK(decisions[decision] > 5000);
  }
}

}  // namespace
}  // namespace microseg
