#include <catch2/catch.hpp>

#include <set>

#include "kube/resource_cache.h"

namespace microseg::kube {
namespace {

nlohmann::json Obj(const std::string& name, const std::string& rv, const std::string& ns = "x") {
  return {{"metadata", {{"name", name}, {"namespace", ns}, {"resourceVersion", rv}}}};
}

WatchEvent Event(WatchEvent::Type type, nlohmann::json object) {
  WatchEvent event;
  event.type = type;
  event.resource_version = ResourceVersionOf(object);
  event.object = std::move(object);
  return event;
}

std::set<std::string> Keys(const std::vector<ObjectChange>& changes, ObjectChange::Kind kind) {
  std::set<std::string> out;
  for (const auto& c : changes) {
    if (c.kind == kind) out.insert(c.key);
  }
  return out;
}

TEST_CASE("first list: every object is an upsert") {
  ResourceCache cache;
  auto changes = cache.Replace({Obj("a", "1"), Obj("b", "2")}, "10");
  CHECK(Keys(changes, ObjectChange::Kind::kUpsert) == std::set<std::string>{"x/a", "x/b"});
  CHECK(Keys(changes, ObjectChange::Kind::kDelete).empty());
  CHECK(cache.resource_version() == "10");
  CHECK(cache.has_listed());
}

TEST_CASE("relist after 410 is a minimal diff: only new, changed and gone objects") {
  ResourceCache cache;
  (void)cache.Replace({Obj("same", "1"), Obj("changed", "2"), Obj("gone", "3")}, "10");
  auto changes = cache.Replace({Obj("same", "1"), Obj("changed", "20"), Obj("new", "21")}, "30");
  CHECK(Keys(changes, ObjectChange::Kind::kUpsert) == std::set<std::string>{"x/changed", "x/new"});
  CHECK(Keys(changes, ObjectChange::Kind::kDelete) == std::set<std::string>{"x/gone"});
  CHECK(changes.size() == 3);
  CHECK(cache.resource_version() == "30");
  // The deletion carries the last object seen (a converter may need it).
  for (const auto& c : changes) {
    if (c.kind == ObjectChange::Kind::kDelete) CHECK(ResourceVersionOf(c.object) == "3");
  }
  CHECK(cache.Replace({Obj("same", "1"), Obj("changed", "20"), Obj("new", "21")}, "31").empty());
}

TEST_CASE("watch events: applied once; replays, stale versions and unknown deletions change nothing") {
  ResourceCache cache;
  (void)cache.Replace({Obj("a", "5")}, "5");
  using T = WatchEvent::Type;
  struct Step {
    T type;
    nlohmann::json object;
    bool changes;
    std::string resume_at;
  };
  const Step steps[] = {
      {T::kAdded, Obj("b", "6"), true, "6"},
      {T::kAdded, Obj("b", "6"), false, "6"},      // duplicate after a reconnect
      {T::kModified, Obj("a", "7"), true, "7"},
      {T::kModified, Obj("a", "5"), false, "7"},   // older than what we hold
      {T::kBookmark, nlohmann::json{{"metadata", {{"resourceVersion", "9"}}}}, false, "9"},
      {T::kDeleted, Obj("zzz", "10"), false, "10"},  // never seen
      {T::kDeleted, Obj("b", "11"), true, "11"},
      {T::kDeleted, Obj("b", "11"), false, "11"},  // replayed deletion
      {T::kAdded, Obj("b", "12"), true, "12"},     // re-created
      {T::kDeleted, Obj("b", "11"), false, "12"},  // the old incarnation's deletion, replayed
  };
  int index = 0;
  for (const Step& step : steps) {
    CAPTURE(index++);
    auto change = cache.Apply(Event(step.type, step.object));
    CHECK(change.has_value() == step.changes);
    CHECK(cache.resource_version() == step.resume_at);
  }
  CHECK(cache.size() == 2);
}

TEST_CASE("resourceVersion order: numeric when both are numbers, else equality") {
  CHECK(IsNewerVersion("10", "9"));
  CHECK_FALSE(IsNewerVersion("9", "10"));
  CHECK_FALSE(IsNewerVersion("10", "10"));
  CHECK(IsNewerVersion("1", ""));
  CHECK(IsNewerVersion("abc", "abd"));
  CHECK_FALSE(IsNewerVersion("abc", "abc"));
}

}  // namespace
}  // namespace microseg::kube
