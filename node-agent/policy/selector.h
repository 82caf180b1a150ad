// Kubernetes label selector semantics.
#pragma once

#include "model.h"

namespace microseg {

bool SelectorMatches(const LabelSelector& selector, const Labels& labels);

}  // namespace microseg
