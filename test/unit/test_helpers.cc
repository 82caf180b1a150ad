#include "test_helpers.h"

#include <catch2/catch.hpp>

#include "ipv4_cidr.h"
#include "manifest_parser.h"

namespace microseg::testing {
namespace {

template <typename Map>
bool SameMap(const Map& a, const Map& b) {
  if (a.size() != b.size()) return false;
  for (auto ia = a.begin(), ib = b.begin(); ia != a.end(); ++ia, ++ib) {
    if (!BytewiseEqual(ia->first, ib->first) || !BytewiseEqual(ia->second, ib->second)) return false;
  }
  return true;
}

}  // namespace

ClusterState ClusterFromYaml(const std::string& yaml) {
  absl::StatusOr<ParsedManifests> parsed = ParseManifests(yaml);
  INFO(parsed.status().ToString());
  REQUIRE(parsed.ok());
  return ClusterStateOf(*parsed);
}

uint32_t Ip(const std::string& dotted) {
  const std::optional<uint32_t> addr = ParseIpv4Address(dotted);
  INFO(dotted);
  REQUIRE(addr.has_value());
  return *addr;
}

bool SameMapState(const MapState& a, const MapState& b) {
  return SameMap(a.endpoints, b.endpoints) && SameMap(a.exact, b.exact) && SameMap(a.lpm, b.lpm) &&
         SameMap(a.exact6, b.exact6) && SameMap(a.lpm6, b.lpm6);
}

}  // namespace microseg::testing
