#include <catch2/catch.hpp>

#include "ipv4_cidr.h"

namespace microseg {
namespace {

TEST_CASE("ParseIpv4Address accepts only strict dotted quads", "[ipv4]") {
  CHECK(ParseIpv4Address("10.244.1.2") == std::optional<uint32_t>(0x0af40102));
  CHECK(ParseIpv4Address("0.0.0.0") == std::optional<uint32_t>(0));
  CHECK(ParseIpv4Address("255.255.255.255") == std::optional<uint32_t>(0xffffffff));
  for (const char* bad : {"", "10.244.1", "10.244.1.2.3", "10.244.1.256", "010.1.1.1", "1..1.1", "a.b.c.d",
                          "10.244.1.2 ", "-1.0.0.0", "1.2.3.4/32", "::1"}) {
    INFO(bad);
    CHECK_FALSE(ParseIpv4Address(bad).has_value());
  }
}

TEST_CASE("ParseIpv4Cidr masks host bits and rejects malformed prefixes", "[ipv4]") {
  absl::StatusOr<Ipv4Cidr> cidr = ParseIpv4Cidr("10.0.0.1/24");
  REQUIRE(cidr.ok());
  CHECK(FormatCidr(*cidr) == "10.0.0.0/24");
  CHECK(FormatCidr(*ParseIpv4Cidr("0.0.0.0/0")) == "0.0.0.0/0");
  CHECK(FormatCidr(*ParseIpv4Cidr("1.2.3.4/32")) == "1.2.3.4/32");
  for (const char* bad : {"10.0.0.0", "10.0.0.0/33", "10.0.0.0/", "10.0.0/8", "10.0.0.0/-1", "10.0.0.0/08x"}) {
    INFO(bad);
    CHECK_FALSE(ParseIpv4Cidr(bad).ok());
  }
}

TEST_CASE("CidrContains is prefix containment", "[ipv4]") {
  const Ipv4Cidr ten{0x0a000000, 8};
  CHECK(CidrContains(ten, Ipv4Cidr{0x0a010000, 16}));
  CHECK(CidrContains(ten, ten));
  CHECK_FALSE(CidrContains(Ipv4Cidr{0x0a010000, 16}, ten));
  CHECK_FALSE(CidrContains(ten, Ipv4Cidr{0x0b000000, 16}));
  CHECK(CidrContains(Ipv4Cidr{0, 0}, ten));
  CHECK(CidrContainsAddress(ten, 0x0affffff));
  CHECK_FALSE(CidrContainsAddress(ten, 0x0b000000));
}

}  // namespace
}  // namespace microseg
