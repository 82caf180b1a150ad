#include "selector.h"

#include <algorithm>

namespace microseg {
namespace {

bool RequirementMatches(const LabelRequirement& requirement, const Labels& labels) {
  const auto found = labels.find(requirement.key);
  const bool present = found != labels.end();
  const auto value_listed = [&] {
    return std::find(requirement.values.begin(), requirement.values.end(), found->second) !=
           requirement.values.end();
  };
  switch (requirement.op) {
    case LabelRequirement::Operator::kIn:
      return present && value_listed();
    case LabelRequirement::Operator::kNotIn:
      // Kubernetes: NotIn also matches objects that lack the key entirely.
      return !present || !value_listed();
    case LabelRequirement::Operator::kExists:
      return present;
    case LabelRequirement::Operator::kDoesNotExist:
      return !present;
  }
  return false;
}

}  // namespace

bool SelectorMatches(const LabelSelector& selector, const Labels& labels) {
  for (const auto& [key, value] : selector.match_labels) {
    const auto found = labels.find(key);
    if (found == labels.end() || found->second != value) return false;
  }
  return std::all_of(selector.match_expressions.begin(), selector.match_expressions.end(),
                     [&](const LabelRequirement& r) { return RequirementMatches(r, labels); });
}

}  // namespace microseg
