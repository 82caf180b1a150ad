// endPort ranges as the maps hold them (docs/policy-compiler.md, "Port
// ranges"). Per direction and protocol, the ports that some rule's range
// covers are cut at every range boundary into disjoint intervals, so each
// interval lies wholly inside or wholly outside every range. A range key
// then stands for the interval keys inside it, each interval is one port
// class of the maps ("(proto, interval)", keyed by its first port), and the
// data path finds a port's interval with one LPM lookup of its prefixes.
// Ports no range covers keep their exact keys; so does a range of one port.
#pragma once

#include <cstdint>
#include <set>
#include <vector>

#include "tiered_verdicts.h"

namespace microseg {

class PortIntervals {
 public:
  // The intervals cut from every range key (PortKey::last != 0) of `rules`.
  explicit PortIntervals(const std::vector<VerdictRule>& rules);

  // Adds `keys` to `out`, every range replaced by the intervals inside it.
  void Split(const std::vector<PortKey>& keys, std::set<PortKey>& out) const;

  bool empty() const { return intervals_.empty(); }
  // Every interval as a PortKey {proto, first port, last port}, sorted.
  const std::vector<PortKey>& all() const { return intervals_; }

 private:
  std::vector<PortKey> intervals_;
};

// An aligned block of ports: the `bits` high bits of `port` (the rest zero).
struct PortPrefix {
  uint16_t port = 0;
  uint8_t bits = 16;
  friend bool operator==(const PortPrefix&, const PortPrefix&) = default;
};

// The fewest aligned blocks that together are exactly [first, last]
// (first <= last; at most 30), in port order.
std::vector<PortPrefix> PortPrefixes(uint16_t first, uint16_t last);

}  // namespace microseg
