#include <catch2/catch.hpp>

#include "policy_compiler.h"

namespace microseg {
namespace {

ms_endpoint Endpoint(uint32_t id, uint8_t flags, uint32_t rev = 0) {
  ms_endpoint value{};
  value.endpoint_id = id;
  value.ipv4 = 0x0100000a + id;
  value.flags = flags;
  value.policy_rev = rev;
  return value;
}

ms_policy_key ExactKey(uint32_t id, uint16_t port) {
  ms_policy_key key{};
  key.endpoint_id = id;
  key.peer_ipv4 = 0x0200000a;
  key.port = port;
  key.proto = 6;
  return key;
}

ms_lpm_key LpmKey(uint32_t id) {
  ms_lpm_key key{};
  key.prefixlen = MS_LPM_FIXED_BITS + 8;
  key.endpoint_id = id;
  key.peer_ipv4 = 0x0a;
  return key;
}

ms_policy_value Allow(uint32_t rule_id) {
  ms_policy_value value{};
  value.action = MS_ACTION_ALLOW;
  value.rule_id = rule_id;
  return value;
}

TEST_CASE("StampPolicyRevisions bumps only endpoints whose policy changed", "[revisions]") {
  MapState live;
  live.endpoints[10] = Endpoint(1, MS_EP_F_INGRESS_ISOLATED, 5);  // unchanged
  live.endpoints[11] = Endpoint(2, MS_EP_F_INGRESS_ISOLATED, 5);  // flags change
  live.endpoints[12] = Endpoint(3, MS_EP_F_INGRESS_ISOLATED, 5);  // exact entry added
  live.endpoints[13] = Endpoint(4, MS_EP_F_INGRESS_ISOLATED, 5);  // LPM entry removed
  live.endpoints[14] = Endpoint(5, MS_EP_F_INGRESS_ISOLATED, 0xffffffff);  // wraps, skipping 0
  live.endpoints[15] = Endpoint(6, MS_EP_F_INGRESS_ISOLATED, 5);  // rule id of an entry changes
  live.exact[ExactKey(1, 80)] = Allow(1);
  live.exact[ExactKey(6, 80)] = Allow(1);
  live.lpm[LpmKey(4)] = Allow(1);

  MapState desired;
  desired.endpoints[10] = Endpoint(1, MS_EP_F_INGRESS_ISOLATED);
  desired.endpoints[11] = Endpoint(2, MS_EP_F_INGRESS_ISOLATED | MS_EP_F_EGRESS_ISOLATED);
  desired.endpoints[12] = Endpoint(3, MS_EP_F_INGRESS_ISOLATED);
  desired.endpoints[13] = Endpoint(4, MS_EP_F_INGRESS_ISOLATED);
  desired.endpoints[14] = Endpoint(5, 0);
  desired.endpoints[15] = Endpoint(6, MS_EP_F_INGRESS_ISOLATED);
  desired.endpoints[16] = Endpoint(7, MS_EP_F_INGRESS_ISOLATED);  // new
  desired.exact[ExactKey(1, 80)] = Allow(1);
  desired.exact[ExactKey(3, 443)] = Allow(1);
  desired.exact[ExactKey(6, 80)] = Allow(2);

  StampPolicyRevisions(live, desired);
  CHECK(desired.endpoints.at(10).policy_rev == 5);
  CHECK(desired.endpoints.at(11).policy_rev == 6);
  CHECK(desired.endpoints.at(12).policy_rev == 6);
  CHECK(desired.endpoints.at(13).policy_rev == 6);
  CHECK(desired.endpoints.at(14).policy_rev == 1);
  CHECK(desired.endpoints.at(15).policy_rev == 6);
  CHECK(desired.endpoints.at(16).policy_rev == 1);

  // Stamping against the stamped state changes nothing.
  MapState again = desired;
  StampPolicyRevisions(desired, again);
  for (const auto& [ifindex, endpoint] : again.endpoints) {
    CHECK(endpoint.policy_rev == desired.endpoints.at(ifindex).policy_rev);
  }
}

}  // namespace
}  // namespace microseg
