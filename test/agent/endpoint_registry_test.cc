#include "endpoint_registry.h"

#include <catch2/catch.hpp>

#include "temp_dir.h"

namespace microseg {
namespace {

EndpointRecord Record(const std::string& container, uint32_t ifindex, const std::string& ip) {
  EndpointRecord r;
  r.container_id = container;
  r.ifname = "eth0";
  r.pod_namespace = "x";
  r.pod_name = "pod-" + container;
  r.host_ifname = "veth" + container;
  r.host_ifindex = ifindex;
  r.ips = {ip};
  return r;
}

TEST_CASE("registry assigns stable ids and persists them across restarts", "[registry]") {
  TempDir dir;
  uint32_t id_a = 0, id_b = 0;
  {
    EndpointRegistry registry(dir.path());
    REQUIRE(registry.Load().ok());
    auto a = registry.Register(Record("a", 10, "10.244.1.2/24"), nullptr);
    auto b = registry.Register(Record("b", 11, "10.244.1.3/24"), nullptr);
    REQUIRE(a.ok());
    REQUIRE(b.ok());
    id_a = a->endpoint_id;
    id_b = b->endpoint_id;
    CHECK(id_a != 0);
    CHECK(id_a != id_b);
    CHECK(a->ipv4 == 0x0af40102u);
    // Registering the same endpoint again keeps its id.
    auto again = registry.Register(Record("a", 10, "10.244.1.2/24"), nullptr);
    REQUIRE(again.ok());
    CHECK(again->endpoint_id == id_a);
  }
  EndpointRegistry reloaded(dir.path());
  REQUIRE(reloaded.Load().ok());
  REQUIRE(reloaded.records().size() == 2);
  CHECK(reloaded.Find({"a", "eth0"})->endpoint_id == id_a);
  CHECK(reloaded.Find({"b", "eth0"})->endpoint_id == id_b);
  CHECK(reloaded.Find({"b", "eth0"})->ipv4 == 0x0af40103u);
}

TEST_CASE("registry evicts a stale endpoint that held the same ifindex", "[registry]") {
  TempDir dir;
  EndpointRegistry registry(dir.path());
  REQUIRE(registry.Load().ok());
  REQUIRE(registry.Register(Record("old", 42, "10.244.1.2/24"), nullptr).ok());
  std::vector<EndpointRecord> evicted;
  REQUIRE(registry.Register(Record("new", 42, "10.244.1.9/24"), &evicted).ok());
  REQUIRE(evicted.size() == 1);
  CHECK(evicted[0].container_id == "old");
  CHECK(registry.Find({"old", "eth0"}) == nullptr);
  EndpointRegistry reloaded(dir.path());
  REQUIRE(reloaded.Load().ok());
  CHECK(reloaded.records().size() == 1);
}

TEST_CASE("registry rejects incomplete registrations with a reason", "[registry]") {
  TempDir dir;
  EndpointRegistry registry(dir.path());
  REQUIRE(registry.Load().ok());
  struct Case {
    const char* name;
    void (*mutate)(EndpointRecord&);
    const char* expect;
  };
  const Case cases[] = {
      {"no container", [](EndpointRecord& r) { r.container_id.clear(); }, "container_id"},
      {"no pod name", [](EndpointRecord& r) { r.pod_name.clear(); }, "K8S_POD_NAME"},
      {"no ifindex", [](EndpointRecord& r) { r.host_ifindex = 0; }, "host_ifindex"},
      {"garbage ip", [](EndpointRecord& r) { r.ips = {"10.244.300.1/24"}; }, "not an IP address"},
      {"no address", [](EndpointRecord& r) { r.ips.clear(); }, "no IP address"},
  };
  for (const Case& c : cases) {
    SECTION(c.name) {
      EndpointRecord r = Record("a", 10, "10.244.1.2/24");
      c.mutate(r);
      auto result = registry.Register(r, nullptr);
      REQUIRE_FALSE(result.ok());
      CHECK(result.status().code() == absl::StatusCode::kInvalidArgument);
      CHECK_THAT(std::string(result.status().message()), Catch::Contains(c.expect));
      CHECK(registry.records().empty());
    }
  }
}

TEST_CASE("registry skips a corrupt record file on load", "[registry]") {
  TempDir dir;
  {
    EndpointRegistry registry(dir.path());
    REQUIRE(registry.Load().ok());
    REQUIRE(registry.Register(Record("a", 10, "10.244.1.2/24"), nullptr).ok());
  }
  std::ofstream(dir.path() + "/endpoints/broken.json") << "{not json";
  EndpointRegistry reloaded(dir.path());
  REQUIRE(reloaded.Load().ok());
  CHECK(reloaded.records().size() == 1);
}

TEST_CASE("registry registers an IPv6-only pod (no IPv4 address)", "[registry][ipv6]") {
  TempDir dir;
  EndpointRegistry registry(dir.path());
  REQUIRE(registry.Load().ok());
  auto registered = registry.Register(Record("a", 10, "fd00::5/64"), nullptr);
  REQUIRE(registered.ok());
  CHECK(registered->ipv4 == 0);
  CHECK(registered->ipv6 == *ParseIpv6Address("fd00::5"));
  REQUIRE(registry.LocalEndpoints().size() == 1);
  CHECK(registry.LocalEndpoints()[0].ipv6 == *ParseIpv6Address("fd00::5"));
}

TEST_CASE("registry keeps a dual-stack pod's IPv6 address for ms_endpoint", "[registry][ipv6]") {
  TempDir dir;
  const Ipv6Address expected = *ParseIpv6Address("fd00:10:244:1::a");
  {
    EndpointRegistry registry(dir.path());
    REQUIRE(registry.Load().ok());
    EndpointRecord record = Record("a", 10, "fd00:10:244:1::a/64");
    record.ips.push_back("10.244.1.2/24");
    auto registered = registry.Register(record, nullptr);
    REQUIRE(registered.ok());
    CHECK(registered->ipv4 == 0x0af40102u);
    CHECK(registered->ipv6 == expected);
    // An IPv4-only pod has none.
    auto v4_only = registry.Register(Record("b", 11, "10.244.1.3/24"), nullptr);
    REQUIRE(v4_only.ok());
    CHECK(v4_only->ipv6 == Ipv6Address{});
  }
  EndpointRegistry reloaded(dir.path());
  REQUIRE(reloaded.Load().ok());
  bool found = false;
  for (const LocalEndpoint& endpoint : reloaded.LocalEndpoints()) {
    if (endpoint.pod_name != "pod-a") continue;
    found = true;
    CHECK(endpoint.ipv6 == expected);
  }
  CHECK(found);
  CHECK(FirstIpv6({"10.244.1.2/24", "fd00::1"}) == *ParseIpv6Address("fd00::1"));
  CHECK(FirstIpv6({"10.244.1.2/24", "not-an-address"}) == Ipv6Address{});
}

}  // namespace
}  // namespace microseg
