// Turns the CIDR rules of one endpoint and direction into LPM trie entries
// whose first-match lookup gives exactly the union of the rules.
//
// The data plane looks up the port classes in order (proto,port) ->
// (proto,any) -> (any,any) and the first class with a matching prefix
// decides. So each class must carry the verdicts of every rule that covers
// it, and every prefix (cidr or except) must carry the verdict of the region
// "this prefix minus the longer prefixes of the class".
#pragma once

#include <cstdint>
#include <vector>

#include "model.h"

namespace microseg {

// Everything here works on one address family at a time: `Cidr` is
// Ipv4Cidr (ms_policy_lpm) or Ipv6Cidr (ms_policy6_lpm); the names without
// a suffix are the IPv4 ones.

// One (cidr minus excepts, protocol/port) allowance of one rule.
// proto 0 = any protocol (port then 0); port 0 = any port of `proto`.
template <typename Cidr>
struct BasicLpmRuleSpec {
  uint8_t proto = 0;
  uint16_t port = 0;
  Cidr cidr;
  std::vector<Cidr> except;
  uint32_t rule_id = 0;
  // != 0: the class is the port interval [port, last] (tiered_verdicts.h
  // PortKey); specs of one call use disjoint intervals.
  uint16_t last = 0;
};
using LpmRuleSpec = BasicLpmRuleSpec<Ipv4Cidr>;
using Lpm6RuleSpec = BasicLpmRuleSpec<Ipv6Cidr>;

template <typename Cidr>
struct BasicLpmVerdict {
  uint8_t proto = 0;
  uint16_t port = 0;
  Cidr prefix;
  bool allow = false;
  // Smallest id among the rules that decide the verdict: the allowing rules
  // for an allow, the rules whose except removed the region for a deny.
  uint32_t rule_id = 0;
  uint16_t last = 0;  // as LpmRuleSpec::last
};
using LpmVerdict = BasicLpmVerdict<Ipv4Cidr>;

// Sorted by (proto, port, prefix address, prefix length); one verdict per
// distinct (class, prefix).
template <typename Cidr>
std::vector<BasicLpmVerdict<Cidr>> ComputeLpmVerdicts(const std::vector<BasicLpmRuleSpec<Cidr>>& specs);

// The general form, for verdicts other than a union: every (class, prefix)
// key the trie needs, with the indices (into `specs`) of the specs that
// cover the class and whose cidr minus excepts contains the key's region.
// The caller decides each region's verdict from those specs alone.
template <typename Cidr>
struct BasicLpmRegion {
  uint8_t proto = 0;
  uint16_t port = 0;
  Cidr prefix;
  std::vector<size_t> matching;
  uint16_t last = 0;  // as LpmRuleSpec::last
};
template <typename Cidr>
std::vector<BasicLpmRegion<Cidr>> ComputeLpmRegions(const std::vector<BasicLpmRuleSpec<Cidr>>& specs);

}  // namespace microseg
