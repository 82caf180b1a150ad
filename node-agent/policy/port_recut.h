// A new cutting of an endpoint's ports (endPort ranges) applied in place,
// without a generation flip (docs/policy-compiler.md, "A new cutting in
// place"). The data path reads a port's interval once, from the port-lookup
// entries, and then the verdicts keyed by that interval's first port, so
// at every instant each interval a lookup can hand out must carry a whole
// policy's verdicts. Going through the union cutting U (every boundary of
// the old cutting O and of the new one N) keeps it so:
//   1. stage O's interval verdicts re-keyed to U's intervals: new keys,
//      which no lookup names yet;
//   2. replace O's lookups by U's: a port finds its O interval or its U
//      interval, and both carry the old verdicts;
//   3. change the verdicts in place under U, in the ordinary lookup order;
//   4. replace U's lookups by N's: a port finds its U interval or its N
//      interval, and both carry the new verdicts;
//   5. delete the U keys N does not have: no lookup names them any more.
// Only the classes (direction, protocol) whose cutting changes take part;
// every other entry goes through step 3 alone.
#pragma once

#include <compare>
#include <cstdint>
#include <map>
#include <set>
#include <vector>

#include "map_state.h"

namespace microseg {

// The ports of one interval, both ends included.
struct PortSpan {
  uint16_t first = 0;
  uint16_t last = 0;
  friend bool operator==(const PortSpan&, const PortSpan&) = default;
};

// A class of interval keys: its direction (flag bits removed) and protocol.
struct PortClass {
  uint8_t direction = 0;
  uint8_t proto = 0;
  friend auto operator<=>(const PortClass&, const PortClass&) = default;
};

// Disjoint intervals per class, in port order.
using PortCutting = std::map<PortClass, std::vector<PortSpan>>;

// The cutting that the MS_DIR_F_PORT_LOOKUP entries of `lpm` hand out.
PortCutting CuttingOf(const MapState::LpmMap& lpm);

// Every boundary of `a` and of `b`: the ports either covers, cut wherever
// one of them starts or ends an interval. Each result lies wholly inside
// or wholly outside every interval of both.
std::vector<PortSpan> UnionCutting(const std::vector<PortSpan>& a, const std::vector<PortSpan>& b);

class PortRecut {
 public:
  // The classes whose cutting differs between the two policies' LPM entries.
  PortRecut(const MapState::LpmMap& old_lpm, const MapState::LpmMap& new_lpm);

  // Whether any class changes its cutting (else the update needs no re-cut).
  bool changes_cutting() const { return !classes_.empty(); }

  // A port-lookup or interval key of a class whose cutting changes. Any
  // policy key type.
  template <typename Key>
  bool Involves(const Key& key) const {
    if ((key.direction & (MS_DIR_F_PORT_INTERVAL | MS_DIR_F_PORT_LOOKUP)) == 0) return false;
    return classes_.contains(PortClass{ms_key_direction(key.direction), key.proto});
  }

  // The interval entries among `entries` that Involves(), keyed by the
  // intervals of the old cutting (`from_new` false) or of the new one,
  // re-keyed to the union: one entry per union interval inside, with the
  // same value. An entry naming no interval of its cutting goes to
  // `unnamed` instead: no lookup of that cutting reaches it (the compiler
  // never writes one, but an interrupted update can leave one behind, and
  // an agent restart adopts it).
  template <typename Map>
  Map ToUnion(const Map& entries, bool from_new, Map& unnamed) const {
    Map out;
    for (const auto& [key, value] : entries) {
      if ((key.direction & MS_DIR_F_PORT_INTERVAL) == 0 || !Involves(key)) continue;
      const PortClass port_class{ms_key_direction(key.direction), key.proto};
      const std::vector<PortSpan>* spans = FindSpans(from_new ? new_ : old_, port_class);
      const PortSpan* from = spans ? FindStartingAt(*spans, key.port) : nullptr;
      if (from == nullptr) {
        unnamed.emplace(key, value);
        continue;
      }
      for (const PortSpan& piece : union_.at(port_class)) {
        if (piece.first < from->first || piece.first > from->last) continue;
        auto piece_key = key;
        piece_key.port = piece.first;
        out.emplace(piece_key, value);
      }
    }
    return out;
  }

  // The port-lookup entries of the union cutting, for every class that changes.
  MapState::LpmMap UnionLookups(uint32_t endpoint_id) const;

 private:
  static const std::vector<PortSpan>* FindSpans(const PortCutting& cutting, const PortClass& port_class);
  static const PortSpan* FindStartingAt(const std::vector<PortSpan>& spans, uint16_t first);

  std::set<PortClass> classes_;
  PortCutting old_;
  PortCutting new_;
  PortCutting union_;  // only the classes in classes_
};

}  // namespace microseg
