#include <catch2/catch.hpp>

#include <map>

#include "fake_transport.h"
#include "kube/reflector.h"

namespace microseg::kube {
namespace {

using testing::FakeTransport;
using testing::ScriptedAnswer;

std::string Item(const std::string& name, const std::string& rv) {
  return nlohmann::json{{"metadata", {{"name", name}, {"namespace", "x"}, {"resourceVersion", rv}}}}.dump();
}

ScriptedAnswer ListPage(const std::vector<std::string>& items, const std::string& rv, const std::string& next = "") {
  nlohmann::json body = {{"kind", "PodList"}, {"apiVersion", "v1"}, {"metadata", {{"resourceVersion", rv}}}};
  if (!next.empty()) body["metadata"]["continue"] = next;
  body["items"] = nlohmann::json::array();
  for (const auto& item : items) body["items"].push_back(nlohmann::json::parse(item));
  return {{200, body.dump(), std::nullopt}, {}, absl::OkStatus()};
}

std::string Line(const std::string& type, const std::string& name, const std::string& rv) {
  return nlohmann::json{{"type", type}, {"object", nlohmann::json::parse(Item(name, rv))}}.dump();
}

ScriptedAnswer Watch(std::vector<std::string> lines, absl::Status broken = absl::OkStatus()) {
  return {{200, "", std::nullopt}, std::move(lines), std::move(broken)};
}

// What the sink saw, applied like the agent applies it: key -> rv.
struct Applied {
  std::map<std::string, std::string> objects;
  int upserts = 0;
  int deletes = 0;
  int initial_calls = 0;
  void operator()(const ResourceType&, std::vector<ObjectChange> changes, bool initial) {
    initial_calls += initial;
    for (const auto& c : changes) {
      if (c.kind == ObjectChange::Kind::kDelete) {
        ++deletes;
        objects.erase(c.key);
      } else {
        ++upserts;
        objects[c.key] = ResourceVersionOf(c.object);
      }
    }
  }
};

ReflectorOptions FastOptions() {
  ReflectorOptions options;
  options.page_size = 2;
  options.watch_timeout = absl::Seconds(60);
  options.backoff = {absl::Microseconds(10), absl::Microseconds(100), 2.0};
  return options;
}

bool Contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

TEST_CASE("paginated list, watch, dropped stream resumes at the last resourceVersion without replays") {
  StopSignal stop;
  FakeTransport transport(&stop);
  transport.Expect(ListPage({Item("a", "1"), Item("b", "2")}, "5", "token/1"));
  transport.Expect(ListPage({Item("c", "3")}, "5"));
  // The stream drops after two events (connection reset).
  transport.Expect(Watch({Line("ADDED", "d", "6"), Line("MODIFIED", "a", "7")}, absl::UnavailableError("reset")));
  // The server replays an event we already have, then new ones, then a bookmark and a clean close.
  transport.Expect(Watch({Line("MODIFIED", "a", "7"), Line("DELETED", "b", "8"),
                          R"({"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"20"}}})"}));
  transport.Expect(Watch({Line("ADDED", "e", "21")}));

  Applied applied;
  Reflector reflector(PodsResource(), transport, std::ref(applied), FastOptions(), 1);
  reflector.Run(stop);

  CHECK(applied.initial_calls == 1);
  CHECK(applied.objects == std::map<std::string, std::string>{{"x/a", "7"}, {"x/c", "3"}, {"x/d", "6"}, {"x/e", "21"}});
  CHECK(applied.upserts == 3 + 1 + 1 + 1);  // list a,b,c; d; a@7 once; e
  CHECK(applied.deletes == 1);
  REQUIRE(transport.requests.size() >= 5);
  CHECK(Contains(transport.requests[0].path, "limit=2"));
  CHECK(Contains(transport.requests[1].path, "continue=token%2F1"));
  CHECK(Contains(transport.requests[2].path, "watch=1"));
  CHECK(Contains(transport.requests[2].path, "resourceVersion=5"));
  CHECK(Contains(transport.requests[2].path, "allowWatchBookmarks=true"));
  CHECK(Contains(transport.requests[2].path, "timeoutSeconds="));
  CHECK(Contains(transport.requests[3].path, "resourceVersion=7"));   // after the drop
  CHECK(Contains(transport.requests[4].path, "resourceVersion=20"));  // after the bookmark
  auto stats = reflector.stats();
  CHECK(stats.lists == 1);
  CHECK(stats.failures >= 1);
  CHECK(reflector.synced());
}

TEST_CASE("410 Gone: relist turns into the minimal diff") {
  StopSignal stop;
  FakeTransport transport(&stop);
  transport.Expect(ListPage({Item("keep", "1"), Item("change", "2"), Item("gone", "3")}, "5"));
  transport.Expect(Watch({R"({"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired"}})"}));
  transport.Expect(ListPage({Item("keep", "1"), Item("change", "30"), Item("new", "31")}, "40"));
  transport.Expect({{410, R"({"kind":"Status","code":410})", std::nullopt}, {}, absl::OkStatus()});  // HTTP 410
  transport.Expect(ListPage({Item("keep", "1"), Item("change", "30"), Item("new", "31")}, "41"));
  transport.Expect(Watch({Line("ADDED", "after", "42")}));

  Applied applied;
  Reflector reflector(PodsResource(), transport, std::ref(applied), FastOptions(), 2);
  reflector.Run(stop);

  CHECK(applied.objects ==
        std::map<std::string, std::string>{{"x/keep", "1"}, {"x/change", "30"}, {"x/new", "31"}, {"x/after", "42"}});
  // 3 from the first list, then change+new (not keep), then nothing for the identical third list, then after.
  CHECK(applied.upserts == 3 + 2 + 0 + 1);
  CHECK(applied.deletes == 1);
  CHECK(reflector.stats().relists_after_gone == 2);
  REQUIRE(transport.requests.size() >= 2);
  CHECK(Contains(transport.requests[transport.requests.size() - 2].path, "resourceVersion=41"));
}

TEST_CASE("429/500 with Retry-After and broken lists are retried; nothing is delivered twice") {
  StopSignal stop;
  FakeTransport transport(&stop);
  transport.Expect({{500, R"({"message":"etcd unavailable"})", absl::Seconds(0)}, {}, absl::OkStatus()});
  transport.Expect({{429, "", absl::Seconds(0)}, {}, absl::OkStatus()});
  transport.Expect({{}, {}, absl::UnavailableError("connection refused")});
  transport.Expect(ListPage({Item("a", "1")}, "2"));
  transport.Expect({{429, "", absl::Seconds(0)}, {}, absl::OkStatus()});  // the watch is throttled
  transport.Expect(Watch({"this is not json"}));                          // a garbled stream
  transport.Expect(Watch({}, absl::DeadlineExceededError("stalled")));   // a stalled one
  transport.Expect(Watch({Line("MODIFIED", "a", "3")}));

  Applied applied;
  Reflector reflector(PodsResource(), transport, std::ref(applied), FastOptions(), 3);
  reflector.Run(stop);
  CHECK(applied.objects == std::map<std::string, std::string>{{"x/a", "3"}});
  CHECK(applied.upserts == 2);
  CHECK(applied.initial_calls == 1);
  CHECK(reflector.stats().failures >= 6);
  for (size_t i = 4; i + 1 < transport.requests.size(); ++i) {  // the last one follows MODIFIED a@3
    CAPTURE(i);
    CHECK(Contains(transport.requests[i].path, "resourceVersion=2"));  // never lost its place
  }
}

TEST_CASE("a CRD that is not served yet: empty initial list (ready), then its objects once it is") {
  StopSignal stop;
  FakeTransport transport(&stop);
  transport.Expect({{404, R"({"kind":"Status","code":404})", std::nullopt}, {}, absl::OkStatus()});
  transport.Expect(ListPage({Item("p", "7")}, "8"));
  transport.Expect(Watch({Line("DELETED", "p", "9")}));
  Applied applied;
  ResourceType type = PodsResource();
  type.owns_status = true;  // one of our CRDs
  ReflectorOptions options = FastOptions();
  Reflector reflector(type, transport, std::ref(applied), options, 4);
  reflector.Run(stop);
  CHECK(applied.initial_calls == 1);
  CHECK(applied.upserts == 1);
  CHECK(applied.deletes == 1);
  CHECK(reflector.synced());
}

}  // namespace
}  // namespace microseg::kube
