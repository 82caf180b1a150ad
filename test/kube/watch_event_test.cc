#include <catch2/catch.hpp>

#include "kube/watch_event.h"

namespace microseg::kube {
namespace {

TEST_CASE("watch event lines decode") {
  struct Case {
    std::string line;
    WatchEvent::Type type;
    std::string resource_version;
    std::string key;
    int error_code;
  };
  const Case cases[] = {
      {R"({"type":"ADDED","object":{"kind":"Pod","metadata":{"name":"a","namespace":"x","resourceVersion":"12"}}})",
       WatchEvent::Type::kAdded, "12", "x/a", 0},
      {R"({"type":"MODIFIED","object":{"metadata":{"name":"n","resourceVersion":"13"}}})",
       WatchEvent::Type::kModified, "13", "n", 0},
      {R"({"type":"DELETED","object":{"metadata":{"name":"a","namespace":"x","resourceVersion":"14"}}})",
       WatchEvent::Type::kDeleted, "14", "x/a", 0},
      {R"({"type":"BOOKMARK","object":{"kind":"Pod","metadata":{"resourceVersion":"99"}}})",
       WatchEvent::Type::kBookmark, "99", "", 0},
      {R"J({"type":"ERROR","object":{"kind":"Status","status":"Failure","code":410,"reason":"Expired","message":"too old resource version: 1 (5)"}})J",
       WatchEvent::Type::kError, "", "", 410},
      {R"({"type":"ERROR","object":{"kind":"Status","code":500,"message":"boom"}})", WatchEvent::Type::kError, "",
       "", 500},
  };
  for (const Case& c : cases) {
    CAPTURE(c.line);
    auto event = DecodeWatchEvent(c.line);
    REQUIRE(event.ok());
    CHECK(event->type == c.type);
    CHECK(event->resource_version == c.resource_version);
    if (!c.key.empty()) CHECK(ObjectKey(event->object) == c.key);
    CHECK(event->error_code == c.error_code);
    CHECK(event->expired() == (c.error_code == 410));
  }
}

TEST_CASE("malformed watch lines are errors, never events") {
  const std::string lines[] = {
      "",
      "not json",
      "[1,2]",
      R"({"object":{}})",
      R"({"type":"ADDED"})",
      R"({"type":"ADDED","object":"x"})",
      R"({"type":"SOMETHING","object":{}})",
      R"({"type":"ADDED","object":{"metadata":{"name":"a"}}})",            // no resourceVersion
      R"({"type":"MODIFIED","object":{"metadata":{"resourceVersion":"3"}}})",  // no name
      R"({"type":"ADDED","object":{"metadata":{"name":"a","resourceVersion":7}}})",  // number, not string
  };
  for (const std::string& line : lines) {
    CAPTURE(line);
    CHECK_FALSE(DecodeWatchEvent(line).ok());
  }
}

TEST_CASE("error events with odd shapes still decode") {
  auto event = DecodeWatchEvent(R"({"type":"ERROR","object":{"code":"410"}})");
  REQUIRE(event.ok());
  CHECK(event->error_code == 0);
  CHECK_FALSE(event->expired());
}

}  // namespace
}  // namespace microseg::kube
