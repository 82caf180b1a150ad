#include "port_intervals.h"

#include <algorithm>
#include <map>

namespace microseg {

PortIntervals::PortIntervals(const std::vector<VerdictRule>& rules) {
  // Per protocol, how many ranges start (+1) and end (-1 after `last`) at
  // each boundary; uint32 so that 65536 (after port 65535) fits.
  std::map<uint8_t, std::map<uint32_t, int>> boundaries;
  for (const VerdictRule& rule : rules) {
    for (const PortKey& key : rule.ports) {
      if (key.last == 0) continue;
      auto& edges = boundaries[key.proto];
      ++edges[key.port];
      --edges[uint32_t{key.last} + 1];
    }
  }
  for (const auto& [proto, edges] : boundaries) {
    int covering = 0;
    for (auto it = edges.begin(); it != edges.end(); ++it) {
      covering += it->second;
      const auto next = std::next(it);
      if (covering > 0 && next != edges.end()) {
        intervals_.push_back({proto, static_cast<uint16_t>(it->first), static_cast<uint16_t>(next->first - 1)});
      }
    }
  }
}

void PortIntervals::Split(const std::vector<PortKey>& keys, std::set<PortKey>& out) const {
  for (const PortKey& key : keys) {
    if (key.last == 0) {
      out.insert(key);
      continue;
    }
    // Intervals are sorted by (proto, first) and never straddle a range's ends.
    auto it = std::lower_bound(intervals_.begin(), intervals_.end(), PortKey{key.proto, key.port, 0});
    for (; it != intervals_.end() && it->proto == key.proto && it->last <= key.last; ++it) out.insert(*it);
  }
}

std::vector<PortPrefix> PortPrefixes(uint16_t first, uint16_t last) {
  std::vector<PortPrefix> prefixes;
  uint32_t start = first;
  while (start <= last) {
    // The largest block aligned at `start` that does not run past `last`.
    uint32_t size = 1;
    uint8_t bits = 16;
    while (bits > 0 && start % (size * 2) == 0 && start + size * 2 - 1 <= last) {
      size *= 2;
      --bits;
    }
    prefixes.push_back({static_cast<uint16_t>(start), bits});
    start += size;
  }
  return prefixes;
}

}  // namespace microseg
