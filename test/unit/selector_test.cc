#include <catch2/catch.hpp>

#include "selector.h"

namespace microseg {
namespace {

using Op = LabelRequirement::Operator;

TEST_CASE("SelectorMatches follows Kubernetes label selector semantics", "[selector]") {
  struct Case {
    const char* name;
    LabelSelector selector;
    Labels labels;
    bool matches;
  };
  const Labels web{{"app", "web"}, {"tier", "front"}};
  const std::vector<Case> cases = {
      {"empty selector matches everything", {}, web, true},
      {"empty selector matches no labels", {}, {}, true},
      {"matchLabels equal", {{{"app", "web"}}, {}}, web, true},
      {"matchLabels different value", {{{"app", "db"}}, {}}, web, false},
      {"matchLabels missing key", {{{"env", "prod"}}, {}}, web, false},
      {"matchLabels all must hold", {{{"app", "web"}, {"tier", "back"}}, {}}, web, false},
      {"In listed", {{}, {{"app", Op::kIn, {"db", "web"}}}}, web, true},
      {"In not listed", {{}, {{"app", Op::kIn, {"db"}}}}, web, false},
      {"In key absent", {{}, {{"env", Op::kIn, {"prod"}}}}, web, false},
      {"NotIn listed", {{}, {{"app", Op::kNotIn, {"web"}}}}, web, false},
      {"NotIn not listed", {{}, {{"app", Op::kNotIn, {"db"}}}}, web, true},
      {"NotIn key absent matches", {{}, {{"env", Op::kNotIn, {"prod"}}}}, web, true},
      {"Exists present", {{}, {{"tier", Op::kExists, {}}}}, web, true},
      {"Exists absent", {{}, {{"env", Op::kExists, {}}}}, web, false},
      {"DoesNotExist absent", {{}, {{"env", Op::kDoesNotExist, {}}}}, web, true},
      {"DoesNotExist present", {{}, {{"app", Op::kDoesNotExist, {}}}}, web, false},
      {"labels AND expressions both hold", {{{"app", "web"}}, {{"tier", Op::kIn, {"front"}}}}, web, true},
      {"labels hold, expression fails", {{{"app", "web"}}, {{"tier", Op::kNotIn, {"front"}}}}, web, false},
      {"expressions are ANDed", {{}, {{"app", Op::kExists, {}}, {"env", Op::kExists, {}}}}, web, false},
      {"empty value is a value", {{{"app", ""}}, {}}, {{"app", ""}}, true},
  };
  for (const Case& c : cases) {
    INFO(c.name);
    CHECK(SelectorMatches(c.selector, c.labels) == c.matches);
  }
}

}  // namespace
}  // namespace microseg
