// The port-interval arithmetic behind endPort ranges (port_intervals.h).
#include "port_intervals.h"

#include <catch2/catch.hpp>
#include <set>
#include <vector>

namespace microseg {
namespace {

constexpr uint8_t kTcp = 6;
constexpr uint8_t kUdp = 17;

VerdictRule RuleWithPorts(std::vector<PortKey> ports) {
  VerdictRule rule;
  rule.ports = std::move(ports);
  return rule;
}

// Every port the prefixes cover, by brute force over the 16-bit space.
std::set<uint32_t> PortsOf(const std::vector<PortPrefix>& prefixes) {
  std::set<uint32_t> ports;
  for (const PortPrefix& prefix : prefixes) {
    const uint32_t size = 1u << (16 - prefix.bits);
    REQUIRE(prefix.port % size == 0);  // aligned
    for (uint32_t port = prefix.port; port < prefix.port + size; ++port) REQUIRE(ports.insert(port).second);
  }
  return ports;
}

TEST_CASE("port prefixes cover exactly the interval with the fewest aligned blocks", "[port-ranges]") {
  const struct {
    uint16_t first, last;
    size_t blocks;
  } cases[] = {
      {80, 80, 1},         {80, 81, 1},         {80, 82, 2},     {1, 65535, 16},  {2, 65535, 15},
      {1024, 2047, 1},     {1000, 2024, 9},     {1, 2, 2},       {65535, 65535, 1},
      {32768, 65535, 1},   {1, 65534, 30},      {8000, 60000, 11},
  };
  for (const auto& c : cases) {
    INFO(c.first << "-" << c.last);
    const std::vector<PortPrefix> prefixes = PortPrefixes(c.first, c.last);
    CHECK(prefixes.size() == c.blocks);
    CHECK(prefixes.size() <= 30);
    const std::set<uint32_t> ports = PortsOf(prefixes);
    CHECK(*ports.begin() == c.first);
    CHECK(*ports.rbegin() == c.last);
    CHECK(ports.size() == uint32_t{c.last} - c.first + 1);
  }
}

TEST_CASE("port intervals are cut at every range boundary, per protocol", "[port-ranges]") {
  const std::vector<VerdictRule> rules = {
      RuleWithPorts({{kTcp, 1000, 2000}, {kTcp, 80, 0}}),
      RuleWithPorts({{kTcp, 1500, 65535}, {kUdp, 53, 0}}),
      RuleWithPorts({{kUdp, 5000, 5001}, {kTcp, 3000, 4000}, {0, 0, 0}}),
  };
  const PortIntervals intervals(rules);
  const std::vector<PortKey> expected = {
      {kTcp, 1000, 1499}, {kTcp, 1500, 2000}, {kTcp, 2001, 2999}, {kTcp, 3000, 4000},
      {kTcp, 4001, 65535}, {kUdp, 5000, 5001},
  };
  CHECK(intervals.all() == expected);

  std::set<PortKey> split;
  intervals.Split({{kTcp, 1000, 2000}, {kTcp, 80, 0}, {0, 0, 0}}, split);
  CHECK(split == std::set<PortKey>{{0, 0, 0}, {kTcp, 80, 0}, {kTcp, 1000, 1499}, {kTcp, 1500, 2000}});
  split.clear();
  intervals.Split({{kTcp, 1500, 65535}}, split);
  CHECK(split.size() == 4);
  CHECK(split.rbegin()->last == 65535);
}

TEST_CASE("no ranges, no intervals", "[port-ranges]") {
  const PortIntervals intervals({RuleWithPorts({{kTcp, 80, 0}, {kUdp, 0, 0}})});
  CHECK(intervals.empty());
}

TEST_CASE("an interval class is covered by the ranges around it, never by a single port", "[port-ranges]") {
  const PortKey range{kTcp, 1000, 2000};
  CHECK(PortKeyCovers(range, {kTcp, 1000, 1499}));
  CHECK(PortKeyCovers(range, {kTcp, 1000, 0}));
  CHECK(PortKeyCovers(range, {kTcp, 2000, 0}));
  CHECK_FALSE(PortKeyCovers(range, {kTcp, 2001, 0}));
  CHECK_FALSE(PortKeyCovers(range, {kTcp, 999, 0}));
  CHECK_FALSE(PortKeyCovers(range, {kUdp, 1500, 0}));
  CHECK_FALSE(PortKeyCovers(range, {kTcp, 0, 0}));
  CHECK_FALSE(PortKeyCovers({kTcp, 1500, 0}, {kTcp, 1500, 1500}));
  CHECK(PortKeyCovers({kTcp, 0, 0}, {kTcp, 1500, 1600}));
  CHECK(PortKeyCovers({0, 0, 0}, {kTcp, 1500, 1600}));
}

}  // namespace
}  // namespace microseg
