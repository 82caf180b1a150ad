#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

#include <catch2/catch.hpp>

#include "ipv6_address.h"
#include "map_pressure_monitor.h"

namespace microseg {
namespace {

TEST_CASE("the session allow-list takes IPv4 and IPv6 CIDRs into their own maps", "[pressure][ipv6]") {
  auto list = ParseSessionAllowList("10.96.0.10/32:udp:53, fd00:96::a/128:udp:53,2001:db8::/32:tcp, fd00::1/64:sctp:0");
  REQUIRE(list.ok());
  REQUIRE(list->ipv4.size() == 1);
  CHECK(list->ipv4[0].prefixlen == MS_ALLOW_FIXED_BITS + 32);
  CHECK(list->ipv4[0].peer_ipv4 == htonl(0x0a60000au));
  CHECK(list->ipv4[0].proto == IPPROTO_UDP);
  CHECK(list->ipv4[0].port == 53);
  REQUIRE(list->ipv6.size() == 3);
  const ms_allow6_key& dns = list->ipv6[0];
  CHECK(dns.prefixlen == MS_ALLOW_FIXED_BITS + 128);
  CHECK(dns.proto == IPPROTO_UDP);
  CHECK(dns.port == 53);
  Ipv6Address address{};
  std::memcpy(address.data(), dns.peer_ipv6, sizeof dns.peer_ipv6);
  CHECK(FormatIpv6(address) == "fd00:96::a");
  CHECK(list->ipv6[1].prefixlen == MS_ALLOW_FIXED_BITS + 32);
  CHECK(list->ipv6[1].proto == IPPROTO_TCP);
  CHECK(list->ipv6[1].port == 0);
  // Host bits are masked like an ipBlock's.
  std::memcpy(address.data(), list->ipv6[2].peer_ipv6, sizeof address);
  CHECK(FormatIpv6(address) == "fd00::");
  CHECK(list->ipv6[2].proto == IPPROTO_SCTP);
}

TEST_CASE("a bad session allow-list entry is refused with its reason", "[pressure][ipv6]") {
  struct Case {
    const char* text;
    const char* reason;
  };
  const Case cases[] = {
      {"fd00::1/129:udp:53", "not a valid IPv6 CIDR"},
      {"fd00:::1/64:udp", "not a valid IPv6 CIDR"},
      {"fd00::1:udp:53", "the CIDR needs a /prefix-length"},
      {"10.96.0.10:udp:53", "the CIDR needs a /prefix-length"},
      {"fd00::/64:icmp", "unknown protocol 'icmp'"},
      {"fd00::/64:udp:70000", "bad port '70000'"},
      {"fd00::/64", "wrong number of ':' fields"},
      {"10.0.0.0/8:udp:53:1", "wrong number of ':' fields"},
      {"10.0.0.0/33:udp", "not a valid IPv4 CIDR"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.text);
    auto list = ParseSessionAllowList(c.text);
    REQUIRE_FALSE(list.ok());
    CHECK_THAT(std::string(list.status().message()), Catch::Contains(c.reason));
  }
}

}  // namespace
}  // namespace microseg
