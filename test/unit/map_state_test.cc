#include <catch2/catch.hpp>

#include <cstring>
#include <random>

#include "fake_map_writer.h"
#include "map_state.h"
#include "test_helpers.h"

namespace microseg {
namespace {

using testing::FakeMapWriter;
using testing::SameMapState;

ms_endpoint Endpoint(uint32_t id, uint8_t flags) {
  ms_endpoint value{};
  value.endpoint_id = id;
  value.ipv4 = id;
  value.flags = flags;
  return value;
}

ms_policy_key ExactKey(uint32_t id, uint32_t peer, uint16_t port) {
  ms_policy_key key{};
  key.endpoint_id = id;
  key.peer_ipv4 = peer;
  key.port = port;
  key.proto = 6;
  return key;
}

ms_lpm_key LpmKey(uint32_t id, uint32_t peer, uint32_t len) {
  ms_lpm_key key{};
  key.prefixlen = MS_LPM_FIXED_BITS + len;
  key.endpoint_id = id;
  key.peer_ipv4 = peer;
  return key;
}

ms_policy_value Value(uint8_t action, uint32_t rule_id) {
  ms_policy_value value{};
  value.action = action;
  value.rule_id = rule_id;
  return value;
}

// Two states sharing some entries, differing in every kind of way.
MapState Before() {
  MapState state;
  state.endpoints[10] = Endpoint(1, MS_EP_F_INGRESS_ISOLATED);
  state.endpoints[11] = Endpoint(2, 0);
  state.endpoints[12] = Endpoint(3, MS_EP_F_EGRESS_ISOLATED);
  state.exact[ExactKey(1, 100, 80)] = Value(MS_ACTION_ALLOW, 1);
  state.exact[ExactKey(1, 101, 80)] = Value(MS_ACTION_ALLOW, 1);
  state.exact[ExactKey(3, 100, 22)] = Value(MS_ACTION_ALLOW, 9);
  state.lpm[LpmKey(1, 0x0a, 8)] = Value(MS_ACTION_ALLOW, 2);
  state.lpm[LpmKey(1, 0x010a, 16)] = Value(MS_ACTION_DENY, 2);
  return state;
}

MapState After() {
  MapState state;
  state.endpoints[10] = Endpoint(1, MS_EP_F_INGRESS_ISOLATED | MS_EP_F_EGRESS_ISOLATED);  // changed
  state.endpoints[11] = Endpoint(2, 0);                                                   // same
  state.endpoints[13] = Endpoint(4, MS_EP_F_INGRESS_ISOLATED);                            // new
  state.exact[ExactKey(1, 100, 80)] = Value(MS_ACTION_ALLOW, 1);                          // same
  state.exact[ExactKey(1, 101, 80)] = Value(MS_ACTION_ALLOW, 5);                          // new rule id
  state.exact[ExactKey(4, 100, 443)] = Value(MS_ACTION_ALLOW, 7);                         // new
  state.lpm[LpmKey(1, 0x0a, 8)] = Value(MS_ACTION_ALLOW, 2);                              // same
  state.lpm[LpmKey(1, 0x010a, 16)] = Value(MS_ACTION_ALLOW, 3);                           // flipped
  state.lpm[LpmKey(4, 0, 0)] = Value(MS_ACTION_ALLOW, 8);                                 // new
  return state;
}

// Keys whose bytes come from {0, 1, 0x80, 0xff}: long equal prefixes, and
// bytes that differ in their sign bit or only in their low bit.
template <typename Key>
void CheckBytewiseLessIsMemcmpOrder(std::mt19937& random) {
  const unsigned char kBytes[] = {0x00, 0x01, 0x80, 0xff};
  std::uniform_int_distribution<int> pick(0, 3);
  for (int round = 0; round < 20000; ++round) {
    Key a{};
    Key b{};
    auto* x = reinterpret_cast<unsigned char*>(&a);
    auto* y = reinterpret_cast<unsigned char*>(&b);
    for (size_t i = 0; i < sizeof(Key); ++i) x[i] = y[i] = kBytes[pick(random)];
    const size_t from = static_cast<size_t>(random() % sizeof(Key));  // b differs from there on
    for (size_t i = from; i < sizeof(Key); ++i) y[i] = kBytes[pick(random)];
    INFO("key size " << sizeof(Key) << ", round " << round);
    REQUIRE(BytewiseLess<Key>{}(a, b) == (std::memcmp(&a, &b, sizeof(Key)) < 0));
    REQUIRE(BytewiseLess<Key>{}(b, a) == (std::memcmp(&b, &a, sizeof(Key)) < 0));
  }
}

TEST_CASE("BytewiseLess orders keys like memcmp", "[map_state]") {
  std::mt19937 random(7);
  CheckBytewiseLessIsMemcmpOrder<ms_policy_key>(random);   // 12 bytes: one word of 8, one of 4
  CheckBytewiseLessIsMemcmpOrder<ms_lpm_key>(random);      // 16
  CheckBytewiseLessIsMemcmpOrder<ms_policy6_key>(random);  // 24
  CheckBytewiseLessIsMemcmpOrder<ms_lpm6_key>(random);     // 28
  CheckBytewiseLessIsMemcmpOrder<uint32_t>(random);        // no 8-byte word
  struct ThreeBytes {
    unsigned char bytes[3];
  };
  CheckBytewiseLessIsMemcmpOrder<ThreeBytes>(random);      // bytes only
}

TEST_CASE("DiffMapState emits only the entries that differ", "[map_state]") {
  const MapChanges changes = DiffMapState(Before(), After());
  CHECK(changes.exact_upserts.size() == 2);
  CHECK(changes.lpm_upserts.size() == 2);
  REQUIRE(changes.endpoint_upserts.size() == 2);
  CHECK(changes.endpoint_upserts[0].first == 10);
  CHECK(changes.endpoint_upserts[1].first == 13);
  CHECK(changes.endpoint_deletes == std::vector<uint32_t>{12});
  REQUIRE(changes.exact_deletes.size() == 1);
  CHECK(changes.exact_deletes[0].endpoint_id == 3);
  CHECK(changes.lpm_deletes.empty());

  CHECK(DiffMapState(After(), After()).empty());
  CHECK(DiffMapState(MapState{}, MapState{}).empty());
}

TEST_CASE("ApplyMapChanges writes in MapChanges order and mirrors into live", "[map_state]") {
  FakeMapWriter writer;
  writer.maps = Before();
  MapState live = Before();
  const MapChanges changes = DiffMapState(live, After());
  REQUIRE(ApplyMapChanges(writer, changes, live).ok());
  CHECK(SameMapState(writer.maps, After()));
  CHECK(SameMapState(live, After()));
  CHECK(writer.attempted_operations == 8);
}

TEST_CASE("after a failure live mirrors exactly what succeeded, and rollback restores", "[map_state]") {
  const MapState previous = Before();
  const MapChanges changes = DiffMapState(previous, After());
  const int total = 8;
  for (int fail_at = 0; fail_at <= total; ++fail_at) {
    INFO("failing from operation " << fail_at);
    FakeMapWriter writer;
    writer.maps = previous;
    writer.fail_at_operation = fail_at;
    MapState live = previous;
    const absl::Status status = ApplyMapChanges(writer, changes, live);
    CHECK(status.ok() == (fail_at == total));
    if (!status.ok()) {
      CHECK(status.code() == absl::StatusCode::kResourceExhausted);
      CHECK_THAT(std::string(status.message()), Catch::Matchers::Contains("injected map failure"));
    }
    CHECK(writer.attempted_operations == std::min(fail_at + 1, total));
    CHECK(SameMapState(live, writer.maps));

    // Roll back once the map works again.
    writer.fail_at_operation.reset();
    REQUIRE(ApplyMapChanges(writer, DiffMapState(live, previous), live).ok());
    CHECK(SameMapState(writer.maps, previous));
    CHECK(SameMapState(live, previous));
  }
}

TEST_CASE("policy entries are added before endpoint flags and removed after them", "[map_state]") {
  // Record the order of operations through a writer that logs.
  struct LoggingWriter : FakeMapWriter {
    std::vector<std::string> log;
    absl::Status UpsertEndpoint(uint32_t i, const ms_endpoint& v) override {
      log.push_back("endpoint+");
      return FakeMapWriter::UpsertEndpoint(i, v);
    }
    absl::Status DeleteEndpoint(uint32_t i) override {
      log.push_back("endpoint-");
      return FakeMapWriter::DeleteEndpoint(i);
    }
    absl::Status UpsertExact(const ms_policy_key& k, const ms_policy_value& v) override {
      log.push_back("exact+");
      return FakeMapWriter::UpsertExact(k, v);
    }
    absl::Status DeleteExact(const ms_policy_key& k) override {
      log.push_back("exact-");
      return FakeMapWriter::DeleteExact(k);
    }
    absl::Status UpsertLpm(const ms_lpm_key& k, const ms_policy_value& v) override {
      log.push_back("lpm+");
      return FakeMapWriter::UpsertLpm(k, v);
    }
    absl::Status DeleteLpm(const ms_lpm_key& k) override {
      log.push_back("lpm-");
      return FakeMapWriter::DeleteLpm(k);
    }
  };
  LoggingWriter writer;
  writer.maps = Before();
  MapState live = Before();
  MapState desired = After();
  desired.lpm.erase(LpmKey(1, 0x0a, 8));
  REQUIRE(ApplyMapChanges(writer, DiffMapState(live, desired), live).ok());
  CHECK(writer.log == std::vector<std::string>{"exact+", "exact+", "lpm+", "lpm+", "endpoint+", "endpoint+",
                                               "endpoint-", "exact-", "lpm-"});
}

}  // namespace
}  // namespace microseg
