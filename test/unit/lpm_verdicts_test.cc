#include <catch2/catch.hpp>

#include "ipv4_cidr.h"
#include "lpm_verdicts.h"

namespace microseg {
namespace {

Ipv4Cidr Cidr(const char* text) { return *ParseIpv4Cidr(text); }

std::string Describe(const LpmVerdict& v) {
  return std::to_string(v.proto) + "/" + std::to_string(v.port) + " " + FormatCidr(v.prefix) + " " +
         (v.allow ? "ALLOW" : "DENY") + " #" + std::to_string(v.rule_id);
}

std::vector<std::string> DescribeAll(const std::vector<LpmRuleSpec>& specs) {
  std::vector<std::string> out;
  for (const LpmVerdict& v : ComputeLpmVerdicts(specs)) out.push_back(Describe(v));
  return out;
}

TEST_CASE("one cidr with an except gives allow and deny prefixes", "[lpm]") {
  CHECK(DescribeAll({{0, 0, Cidr("10.0.0.0/8"), {Cidr("10.1.0.0/16")}, 7}}) ==
        std::vector<std::string>{"0/0 10.0.0.0/8 ALLOW #7", "0/0 10.1.0.0/16 DENY #7"});
}

TEST_CASE("another rule's cidr re-allows inside an except (union)", "[lpm]") {
  // Rule 1 allows 10/8 except 10.1/16; rule 2 allows 10.1.2/24: that /24 is allowed.
  CHECK(DescribeAll({{0, 0, Cidr("10.0.0.0/8"), {Cidr("10.1.0.0/16")}, 1},
                     {0, 0, Cidr("10.1.2.0/24"), {}, 2}}) ==
        std::vector<std::string>{"0/0 10.0.0.0/8 ALLOW #1", "0/0 10.1.0.0/16 DENY #1",
                                 "0/0 10.1.2.0/24 ALLOW #2"});
}

TEST_CASE("an except of one rule does not block a broader rule without it", "[lpm]") {
  CHECK(DescribeAll({{0, 0, Cidr("10.0.0.0/8"), {Cidr("10.1.0.0/16")}, 1},
                     {0, 0, Cidr("0.0.0.0/0"), {}, 2}}) ==
        std::vector<std::string>{"0/0 0.0.0.0/0 ALLOW #2", "0/0 10.0.0.0/8 ALLOW #1", "0/0 10.1.0.0/16 ALLOW #2"});
}

TEST_CASE("specific port classes inherit the verdicts of broader specs", "[lpm]") {
  // (any,any) allows 10/8 except 10.1/16; (TCP,80) allows 10.1/16. The TCP/80
  // class must still allow the rest of 10/8, or the lookup would stop at it.
  CHECK(DescribeAll({{0, 0, Cidr("10.0.0.0/8"), {Cidr("10.1.0.0/16")}, 1}, {6, 80, Cidr("10.1.0.0/16"), {}, 2}}) ==
        std::vector<std::string>{"0/0 10.0.0.0/8 ALLOW #1", "0/0 10.1.0.0/16 DENY #1", "6/80 10.0.0.0/8 ALLOW #1",
                                 "6/80 10.1.0.0/16 ALLOW #2"});
}

TEST_CASE("proto-wide specs cover port classes of their protocol only", "[lpm]") {
  CHECK(DescribeAll({{6, 0, Cidr("10.0.0.0/8"), {}, 1}, {6, 443, Cidr("192.168.0.0/16"), {}, 2},
                     {17, 53, Cidr("172.16.0.0/12"), {}, 3}}) ==
        std::vector<std::string>{"6/0 10.0.0.0/8 ALLOW #1", "6/443 10.0.0.0/8 ALLOW #1",
                                 "6/443 192.168.0.0/16 ALLOW #2", "17/53 172.16.0.0/12 ALLOW #3"});
}

TEST_CASE("identical prefixes from several rules keep the smallest rule id", "[lpm]") {
  CHECK(DescribeAll({{0, 0, Cidr("10.0.0.0/8"), {}, 9}, {0, 0, Cidr("10.0.0.0/8"), {}, 4}}) ==
        std::vector<std::string>{"0/0 10.0.0.0/8 ALLOW #4"});
}

}  // namespace
}  // namespace microseg
