#include "port_recut.h"

#include <arpa/inet.h>

#include <algorithm>

#include "policy_compiler.h"

namespace microseg {

PortCutting CuttingOf(const MapState::LpmMap& lpm) {
  // A lookup entry is one aligned prefix of its interval; the interval is
  // every prefix naming the same first port.
  std::map<PortClass, std::map<uint16_t, uint16_t>> last_of_first;
  for (const auto& [key, value] : lpm) {
    if ((key.direction & MS_DIR_F_PORT_LOOKUP) == 0) continue;
    const uint32_t bits = key.prefixlen - MS_PORT_LOOKUP_FIXED_BITS;
    const uint32_t block = bits >= 16 ? 0 : (0xffffu >> bits);
    const auto last = static_cast<uint16_t>(ntohs(key.port) | block);
    const auto first = static_cast<uint16_t>(value.rule_id);
    uint16_t& known = last_of_first[PortClass{ms_key_direction(key.direction), key.proto}][first];
    known = std::max(known, last);
  }
  PortCutting cutting;
  for (const auto& [port_class, spans] : last_of_first) {
    std::vector<PortSpan>& out = cutting[port_class];
    for (const auto& [first, last] : spans) out.push_back({first, last});
  }
  return cutting;
}

std::vector<PortSpan> UnionCutting(const std::vector<PortSpan>& a, const std::vector<PortSpan>& b) {
  std::set<uint32_t> cuts;  // up to 65536: the port after the last one
  for (const auto* spans : {&a, &b}) {
    for (const PortSpan& span : *spans) {
      cuts.insert(span.first);
      cuts.insert(uint32_t{span.last} + 1);
    }
  }
  auto covered = [&](uint32_t port) {
    for (const auto* spans : {&a, &b}) {
      for (const PortSpan& span : *spans) {
        if (span.first <= port && port <= span.last) return true;
      }
    }
    return false;
  };
  std::vector<PortSpan> out;
  for (auto it = cuts.begin(); it != cuts.end() && std::next(it) != cuts.end(); ++it) {
    // No cut lies inside [*it, next - 1], so one port tells about all of it.
    if (covered(*it)) out.push_back({static_cast<uint16_t>(*it), static_cast<uint16_t>(*std::next(it) - 1)});
  }
  return out;
}

PortRecut::PortRecut(const MapState::LpmMap& old_lpm, const MapState::LpmMap& new_lpm)
    : old_(CuttingOf(old_lpm)), new_(CuttingOf(new_lpm)) {
  static const std::vector<PortSpan> kNone;
  std::set<PortClass> all;
  for (const auto& [port_class, spans] : old_) all.insert(port_class);
  for (const auto& [port_class, spans] : new_) all.insert(port_class);
  for (const PortClass& port_class : all) {
    const std::vector<PortSpan>* before = FindSpans(old_, port_class);
    const std::vector<PortSpan>* after = FindSpans(new_, port_class);
    const std::vector<PortSpan>& a = before ? *before : kNone;
    const std::vector<PortSpan>& b = after ? *after : kNone;
    if (a == b) continue;
    classes_.insert(port_class);
    union_[port_class] = UnionCutting(a, b);
  }
}

MapState::LpmMap PortRecut::UnionLookups(uint32_t endpoint_id) const {
  MapState::LpmMap out;
  for (const auto& [port_class, spans] : union_) {
    for (const PortSpan& span : spans) {
      AddPortLookups(endpoint_id, port_class.direction, port_class.proto, span.first, span.last, out);
    }
  }
  return out;
}

const std::vector<PortSpan>* PortRecut::FindSpans(const PortCutting& cutting, const PortClass& port_class) {
  const auto found = cutting.find(port_class);
  return found == cutting.end() ? nullptr : &found->second;
}

const PortSpan* PortRecut::FindStartingAt(const std::vector<PortSpan>& spans, uint16_t first) {
  const auto found =
      std::lower_bound(spans.begin(), spans.end(), first, [](const PortSpan& span, uint16_t port) { return span.first < port; });
  return found != spans.end() && found->first == first ? &*found : nullptr;
}

}  // namespace microseg
