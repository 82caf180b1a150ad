#include "lpm_verdicts.h"

#include <algorithm>
#include <optional>
#include <set>
#include <tuple>
#include <utility>

#include "ipv4_cidr.h"
#include "ipv6_address.h"
#include "tiered_verdicts.h"

namespace microseg {
namespace {

using PortClass = PortKey;

template <typename Cidr>
PortClass ClassOf(const BasicLpmRuleSpec<Cidr>& spec) {
  return {spec.proto, spec.port, spec.last};
}

// A spec covers a class when the data plane, looking up that class, must
// take the spec into account: (any,any) covers everything, (proto,any)
// covers every port of its protocol, an interval covers the ports in it.
template <typename Cidr>
bool Covers(const BasicLpmRuleSpec<Cidr>& spec, const PortClass& port_class) {
  return PortKeyCovers(ClassOf(spec), port_class);
}

struct PrefixLess {
  bool operator()(const Ipv4Cidr& a, const Ipv4Cidr& b) const {
    return std::tie(a.addr, a.prefix_len) < std::tie(b.addr, b.prefix_len);
  }
  bool operator()(const Ipv6Cidr& a, const Ipv6Cidr& b) const {
    if (a.addr != b.addr) return Ipv6Less(a.addr, b.addr);
    return a.prefix_len < b.prefix_len;
  }
};

// Verdict of the region "prefix minus longer keys": an address there is in a
// key K exactly when K contains `prefix`, so evaluating each spec on the
// prefix as a whole is exact.
template <typename Cidr>
BasicLpmVerdict<Cidr> DecideRegion(const PortClass& port_class, const Cidr& prefix,
                                   const std::vector<const BasicLpmRuleSpec<Cidr>*>& covering) {
  std::optional<uint32_t> allowing_rule;
  std::optional<uint32_t> excepting_rule;
  for (const BasicLpmRuleSpec<Cidr>* spec : covering) {
    if (!CidrContains(spec->cidr, prefix)) continue;
    const bool excepted = std::any_of(spec->except.begin(), spec->except.end(),
                                      [&](const Cidr& except) { return CidrContains(except, prefix); });
    std::optional<uint32_t>& slot = excepted ? excepting_rule : allowing_rule;
    slot = slot ? std::min(*slot, spec->rule_id) : spec->rule_id;
  }
  BasicLpmVerdict<Cidr> verdict;
  verdict.proto = port_class.proto;
  verdict.port = port_class.port;
  verdict.last = port_class.last;
  verdict.prefix = prefix;
  verdict.allow = allowing_rule.has_value();
  // Every key is some covering spec's cidr or except, so one of the two is set.
  verdict.rule_id = allowing_rule ? *allowing_rule : excepting_rule.value_or(0);
  return verdict;
}

}  // namespace

template <typename Cidr>
std::vector<BasicLpmVerdict<Cidr>> ComputeLpmVerdicts(const std::vector<BasicLpmRuleSpec<Cidr>>& specs) {
  std::set<PortClass> classes;
  for (const BasicLpmRuleSpec<Cidr>& spec : specs) classes.insert(ClassOf(spec));

  std::vector<BasicLpmVerdict<Cidr>> verdicts;
  for (const PortClass& port_class : classes) {
    std::vector<const BasicLpmRuleSpec<Cidr>*> covering;
    std::set<Cidr, PrefixLess> keys;
    for (const BasicLpmRuleSpec<Cidr>& spec : specs) {
      if (!Covers(spec, port_class)) continue;
      covering.push_back(&spec);
      keys.insert(spec.cidr);
      keys.insert(spec.except.begin(), spec.except.end());
    }
    for (const Cidr& key : keys) verdicts.push_back(DecideRegion(port_class, key, covering));
  }
  return verdicts;
}

template <typename Cidr>
std::vector<BasicLpmRegion<Cidr>> ComputeLpmRegions(const std::vector<BasicLpmRuleSpec<Cidr>>& specs) {
  std::set<PortClass> classes;
  for (const BasicLpmRuleSpec<Cidr>& spec : specs) classes.insert(ClassOf(spec));

  std::vector<BasicLpmRegion<Cidr>> regions;
  for (const PortClass& port_class : classes) {
    std::vector<size_t> covering;
    std::set<Cidr, PrefixLess> keys;
    for (size_t i = 0; i < specs.size(); ++i) {
      if (!Covers(specs[i], port_class)) continue;
      covering.push_back(i);
      keys.insert(specs[i].cidr);
      keys.insert(specs[i].except.begin(), specs[i].except.end());
    }
    for (const Cidr& key : keys) {
      BasicLpmRegion<Cidr> region{port_class.proto, port_class.port, key, {}, port_class.last};
      // Same argument as DecideRegion: containment of the whole key decides.
      for (size_t i : covering) {
        const BasicLpmRuleSpec<Cidr>& spec = specs[i];
        if (!CidrContains(spec.cidr, key)) continue;
        if (std::any_of(spec.except.begin(), spec.except.end(),
                        [&](const Cidr& except) { return CidrContains(except, key); })) {
          continue;
        }
        region.matching.push_back(i);
      }
      regions.push_back(std::move(region));
    }
  }
  return regions;
}

template std::vector<BasicLpmVerdict<Ipv4Cidr>> ComputeLpmVerdicts(const std::vector<LpmRuleSpec>&);
template std::vector<BasicLpmVerdict<Ipv6Cidr>> ComputeLpmVerdicts(const std::vector<Lpm6RuleSpec>&);
template std::vector<BasicLpmRegion<Ipv4Cidr>> ComputeLpmRegions(const std::vector<LpmRuleSpec>&);
template std::vector<BasicLpmRegion<Ipv6Cidr>> ComputeLpmRegions(const std::vector<Lpm6RuleSpec>&);

}  // namespace microseg
