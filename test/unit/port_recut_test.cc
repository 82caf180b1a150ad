// The union cutting of two cuttings of the ports, and the re-keying of
// interval verdicts to it (port_recut.h).
#include "port_recut.h"

#include <catch2/catch.hpp>

#include "policy_compiler.h"

namespace microseg {
namespace {

std::vector<PortSpan> Spans(std::initializer_list<std::pair<int, int>> spans) {
  std::vector<PortSpan> out;
  for (const auto& [first, last] : spans) out.push_back({static_cast<uint16_t>(first), static_cast<uint16_t>(last)});
  return out;
}

TEST_CASE("the union cutting has every boundary of both, over the ports either covers", "[recut]") {
  struct Row {
    std::vector<PortSpan> a, b, expected;
  };
  const std::vector<Row> rows = {
      {Spans({{1000, 2000}}), Spans({{1000, 2000}}), Spans({{1000, 2000}})},
      {Spans({{1000, 2000}}), Spans({{1000, 1499}, {1500, 2000}}), Spans({{1000, 1499}, {1500, 2000}})},
      // An end moves out: the new ports become an interval of their own.
      {Spans({{8000, 8010}}), Spans({{8000, 8011}}), Spans({{8000, 8010}, {8011, 8011}})},
      // Overlapping, with a gap that neither covers.
      {Spans({{10, 20}, {40, 50}}), Spans({{15, 45}}), Spans({{10, 14}, {15, 20}, {21, 39}, {40, 45}, {46, 50}})},
      {Spans({{10, 20}}), Spans({{30, 40}}), Spans({{10, 20}, {30, 40}})},
      {Spans({}), Spans({{5, 6}}), Spans({{5, 6}})},
      {Spans({{1, 65535}}), Spans({{100, 100}, {65535, 65535}}),
       Spans({{1, 99}, {100, 100}, {101, 65534}, {65535, 65535}})},
  };
  for (const Row& row : rows) {
    CHECK(UnionCutting(row.a, row.b) == row.expected);
    CHECK(UnionCutting(row.b, row.a) == row.expected);
  }
}

TEST_CASE("the cutting is read back from the lookup entries", "[recut]") {
  MapState::LpmMap lpm;
  AddPortLookups(7, MS_DIR_EGRESS, 6, 8000, 60000, lpm);  // 11 prefixes
  AddPortLookups(7, MS_DIR_EGRESS, 6, 60001, 60001, lpm);
  AddPortLookups(7, MS_DIR_INGRESS, 17, 1, 65535, lpm);
  const PortCutting cutting = CuttingOf(lpm);
  REQUIRE(cutting.size() == 2);
  CHECK(cutting.at(PortClass{MS_DIR_EGRESS, 6}) == Spans({{8000, 60000}, {60001, 60001}}));
  CHECK(cutting.at(PortClass{MS_DIR_INGRESS, 17}) == Spans({{1, 65535}}));
}

TEST_CASE("interval verdicts are re-keyed to the union, one per union interval inside", "[recut]") {
  MapState::LpmMap old_lpm, new_lpm;
  AddPortLookups(7, MS_DIR_EGRESS, 6, 8000, 8010, old_lpm);
  AddPortLookups(7, MS_DIR_EGRESS, 6, 8000, 8004, new_lpm);
  AddPortLookups(7, MS_DIR_EGRESS, 6, 8005, 8012, new_lpm);
  AddPortLookups(7, MS_DIR_INGRESS, 6, 80, 90, old_lpm);  // the same in both: not involved
  AddPortLookups(7, MS_DIR_INGRESS, 6, 80, 90, new_lpm);
  const PortRecut recut(old_lpm, new_lpm);
  REQUIRE(recut.changes_cutting());

  auto interval_key = [](uint8_t direction, uint16_t first, uint32_t peer) {
    ms_policy_key key{};
    key.endpoint_id = 7;
    key.peer_ipv4 = peer;
    key.port = first;
    key.proto = 6;
    key.direction = static_cast<uint8_t>(direction | MS_DIR_F_PORT_INTERVAL);
    return key;
  };
  ms_policy_value allow{};
  allow.action = MS_ACTION_ALLOW;
  MapState::ExactMap old_entries;
  old_entries[interval_key(MS_DIR_EGRESS, 8000, 1)] = allow;
  old_entries[interval_key(MS_DIR_INGRESS, 80, 1)] = allow;
  CHECK(recut.Involves(interval_key(MS_DIR_EGRESS, 8000, 1)));
  CHECK_FALSE(recut.Involves(interval_key(MS_DIR_INGRESS, 80, 1)));

  // Union: 8000-8004, 8005-8010, 8011-8012; the old interval holds the first two.
  MapState::ExactMap unnamed;
  const MapState::ExactMap in_union = recut.ToUnion(old_entries, /*from_new=*/false, unnamed);
  CHECK(in_union.size() == 2);
  CHECK(in_union.contains(interval_key(MS_DIR_EGRESS, 8000, 1)));
  CHECK(in_union.contains(interval_key(MS_DIR_EGRESS, 8005, 1)));

  MapState::ExactMap new_entries;
  new_entries[interval_key(MS_DIR_EGRESS, 8005, 2)] = allow;
  const MapState::ExactMap new_in_union = recut.ToUnion(new_entries, /*from_new=*/true, unnamed);
  CHECK(new_in_union.size() == 2);
  CHECK(unnamed.empty());
  // A key naming no interval of its cutting (left behind by an interrupted update) is set apart.
  old_entries[interval_key(MS_DIR_EGRESS, 8005, 3)] = allow;
  CHECK(recut.ToUnion(old_entries, /*from_new=*/false, unnamed).size() == 2);
  CHECK(unnamed.size() == 1);
  CHECK(new_in_union.contains(interval_key(MS_DIR_EGRESS, 8005, 2)));
  CHECK(new_in_union.contains(interval_key(MS_DIR_EGRESS, 8011, 2)));

  // The union's lookups: egress TCP only, three intervals.
  const PortCutting union_cutting = CuttingOf(recut.UnionLookups(7));
  REQUIRE(union_cutting.size() == 1);
  CHECK(union_cutting.at(PortClass{MS_DIR_EGRESS, 6}) == Spans({{8000, 8004}, {8005, 8010}, {8011, 8012}}));
}

}  // namespace
}  // namespace microseg
