#include <catch2/catch.hpp>

#include "fake_transport.h"
#include "kube/lease_elector.h"
#include "kube/policy_status_writer.h"

namespace microseg::kube {
namespace {

using testing::FakeTransport;
using testing::ScriptedAnswer;

ScriptedAnswer Answer(long status, std::string body = "") { return {{status, std::move(body), std::nullopt}, {}, {}}; }

std::string LeaseBody(const std::string& holder, int duration_seconds, const std::string& rv) {
  return nlohmann::json{{"kind", "Lease"},
                        {"metadata", {{"name", "microseg-status-writer"}, {"namespace", "ms"}, {"resourceVersion", rv}}},
                        {"spec",
                         {{"holderIdentity", holder},
                          {"leaseDurationSeconds", duration_seconds},
                          {"renewTime", "2026-01-01T00:00:00.000000Z"},
                          {"leaseTransitions", 3}}}}
      .dump();
}

LeaseOptions Options() {
  LeaseOptions options;
  options.namespace_name = "ms";
  options.identity = "node-a";
  return options;
}

TEST_CASE("lease: created when absent, renewed while held") {
  FakeTransport transport;
  LeaseElector lease(transport, Options());
  transport.Expect(Answer(404));
  transport.Expect(Answer(201));
  CHECK(lease.Tick());
  CHECK(transport.requests[1].method == "POST");
  CHECK(transport.requests[1].path == "/apis/coordination.k8s.io/v1/namespaces/ms/leases");
  auto created = nlohmann::json::parse(transport.requests[1].body);
  CHECK(created["spec"]["holderIdentity"] == "node-a");

  transport.Expect(Answer(200, LeaseBody("node-a", 15, "10")));
  transport.Expect(Answer(200));
  CHECK(lease.Tick());
  CHECK(transport.requests[3].method == "PUT");
  auto renewed = nlohmann::json::parse(transport.requests[3].body);
  CHECK(renewed["metadata"]["resourceVersion"] == "10");  // optimistic concurrency
  CHECK(renewed["spec"]["leaseTransitions"] == 3);
}

TEST_CASE("lease: another holder's live lease is left alone; an expired one is taken over") {
  FakeTransport transport;
  LeaseElector lease(transport, Options());
  transport.Expect(Answer(200, LeaseBody("node-b", 3600, "10")));
  CHECK_FALSE(lease.Tick());
  CHECK(transport.requests.size() == 1);  // no write attempted

  // A lease whose duration has passed since we first saw this record.
  transport.Expect(Answer(200, LeaseBody("node-b", 0, "10")));
  transport.Expect(Answer(200));
  CHECK(lease.Tick());
  auto taken = nlohmann::json::parse(transport.requests.back().body);
  CHECK(taken["spec"]["holderIdentity"] == "node-a");
  CHECK(taken["spec"]["leaseTransitions"] == 4);
}

TEST_CASE("lease: losing the race for an expired lease (409) means not leading") {
  FakeTransport transport;
  LeaseElector lease(transport, Options());
  transport.Expect(Answer(200, LeaseBody("node-b", 0, "10")));
  transport.Expect(Answer(409));
  CHECK_FALSE(lease.Tick());
  transport.Expect(Answer(404));
  transport.Expect(Answer(409));  // someone created it first
  CHECK_FALSE(lease.Tick());
}

// The first agent: no lease yet, it creates one and leads.
void CreateAndLead(FakeTransport& transport, LeaseElector& lease) {
  transport.Expect(Answer(404));
  transport.Expect(Answer(201));
  REQUIRE(lease.Tick());
}

TEST_CASE("lease: released on clean shutdown, and a follower takes a released lease at its next tick") {
  FakeTransport transport;
  LeaseElector lease(transport, Options());
  CHECK(lease.Release().ok());  // not holding: nothing to hand back
  CHECK(transport.requests.empty());

  CreateAndLead(transport, lease);
  transport.Expect(Answer(200, LeaseBody("node-a", 15, "11")));  // GET
  transport.Expect(Answer(200));                                 // PUT
  CHECK(lease.Release().ok());
  CHECK_FALSE(lease.leading());
  REQUIRE(transport.requests.size() == 4);
  CHECK(transport.requests[3].method == "PUT");
  auto released = nlohmann::json::parse(transport.requests[3].body);
  CHECK(released["spec"]["holderIdentity"] == "");
  CHECK(released["spec"]["leaseDurationSeconds"] == 1);
  CHECK(released["metadata"]["resourceVersion"] == "11");  // a take-over meanwhile wins (409)
  for (const HttpRequest& request : transport.requests) {
    CHECK(request.timeout == absl::Seconds(5));  // a third of the 15 s lease: ends within the term
  }

  LeaseOptions other = Options();
  other.identity = "node-b";
  LeaseElector follower(transport, other);
  transport.Expect(Answer(200, LeaseBody("", 1, "12")));
  transport.Expect(Answer(200));
  CHECK(follower.Tick());  // no waiting for the lease duration
  CHECK(nlohmann::json::parse(transport.requests.back().body)["spec"]["holderIdentity"] == "node-b");
}

TEST_CASE("lease: a fractional duration counts in the whole seconds followers read") {
  FakeTransport transport;
  LeaseOptions options = Options();
  options.lease_duration = absl::Milliseconds(7500);
  LeaseElector lease(transport, options);
  CreateAndLead(transport, lease);
  CHECK(nlohmann::json::parse(transport.requests[1].body)["spec"]["leaseDurationSeconds"] == 7);
  CHECK(lease.term() == absl::Seconds(7));  // not 7.5 s: a follower takes over after 7
  CHECK(transport.requests[1].timeout == absl::Seconds(7) / 3);
}

TEST_CASE("lease: a holder that lost the lease meanwhile does not release it") {
  FakeTransport transport;
  LeaseElector lease(transport, Options());
  CreateAndLead(transport, lease);
  transport.Expect(Answer(200, LeaseBody("node-b", 15, "20")));
  CHECK(lease.Release().ok());
  CHECK(transport.requests.size() == 3);  // read, no write
  CHECK_FALSE(lease.leading());
}

PolicyVerdict Verdict(const std::string& status, const std::string& message, int64_t generation) {
  PolicyVerdict v;
  v.type = SegmentPoliciesResource();
  v.namespace_name = "x";
  v.name = "p";
  v.uid = "uid-1";
  v.generation = generation;
  v.status = status;
  v.reason = status == "True" ? "Valid" : "Invalid";
  v.message = message;
  return v;
}

TEST_CASE("Accepted condition: matches ignore lastTransitionTime, which is kept while the status holds") {
  PolicyVerdict v = Verdict("False", "bad cidr", 2);
  v.current_condition = nlohmann::json{{"type", "Accepted"}, {"status", "False"}, {"reason", "Invalid"},
                                       {"message", "older problem"}, {"observedGeneration", 1},
                                       {"lastTransitionTime", "2026-01-01T00:00:00Z"}};
  const nlohmann::json desired = DesiredCondition(v);
  CHECK(desired["lastTransitionTime"] == "2026-01-01T00:00:00Z");
  CHECK(desired["observedGeneration"] == 2);
  CHECK_FALSE(ConditionMatches(*v.current_condition, desired));
  nlohmann::json same = desired;
  same["lastTransitionTime"] = "2030-01-01T00:00:00Z";
  CHECK(ConditionMatches(same, desired));
  PolicyVerdict flipped = Verdict("True", "ok", 3);
  flipped.current_condition = v.current_condition;
  CHECK(DesiredCondition(flipped)["lastTransitionTime"] != "2026-01-01T00:00:00Z");
}

TEST_CASE("Event names: stable per object and message, different per message") {
  CHECK(EventName(Verdict("False", "a", 1)) == EventName(Verdict("False", "a", 2)));
  CHECK(EventName(Verdict("False", "a", 1)) != EventName(Verdict("False", "b", 1)));
  CHECK(EventName(Verdict("False", "a", 1)).rfind("p.", 0) == 0);
}

}  // namespace
}  // namespace microseg::kube

namespace microseg::kube {
namespace {

// A status writer of node-a on a scripted transport.
struct WriterFixture {
  FakeTransport transport;
  LeaseElector lease{transport, Options()};
  PolicyStatusWriter writer{transport, lease, "node-a", absl::Seconds(5)};
  // The next round reads the lease (held by node-a) and renews it.
  void ExpectRenewal(const std::string& resource_version) {
    transport.Expect(Answer(200, LeaseBody("node-a", 15, resource_version)));
    transport.Expect(Answer(200));
  }
};

TEST_CASE("status writer: the leader patches /status and creates one Event per rejected version") {
  WriterFixture f;
  FakeTransport& transport = f.transport;
  PolicyStatusWriter& writer = f.writer;
  writer.Report(Verdict("False", "spec.ingress[0]: bad", 1));

  f.ExpectRenewal("1");
  transport.Expect(Answer(200));                                // PATCH status
  transport.Expect(Answer(201));                                // POST event
  writer.RunOnce();
  REQUIRE(transport.requests.size() == 4);
  CHECK(transport.requests[2].method == "PATCH");
  CHECK(transport.requests[2].path == "/apis/microseg.io/v1alpha1/namespaces/x/segmentpolicies/p/status");
  CHECK(transport.requests[2].content_type == "application/merge-patch+json");
  auto patch = nlohmann::json::parse(transport.requests[2].body);
  CHECK(patch["status"]["conditions"][0]["status"] == "False");
  CHECK(patch["status"]["conditions"][0]["observedGeneration"] == 1);
  CHECK(transport.requests[3].path == "/api/v1/namespaces/x/events");
  auto event = nlohmann::json::parse(transport.requests[3].body);
  CHECK(event["type"] == "Warning");
  CHECK(event["involvedObject"]["uid"] == "uid-1");
  CHECK(writer.stats().events_created == 1);

  // Our own status patch comes back through the watch: nothing more to write.
  PolicyVerdict echoed = Verdict("False", "spec.ingress[0]: bad", 1);
  echoed.current_condition = patch["status"]["conditions"][0];
  writer.Report(echoed);
  f.ExpectRenewal("2");
  writer.RunOnce();
  CHECK(transport.requests.size() == 6);

  // The same problem again in a new generation (after an agent restart the
  // Event exists already): the count goes up on the same Event.
  PolicyStatusWriter restarted(transport, f.lease, "node-a", absl::Seconds(5));
  PolicyVerdict again = Verdict("False", "spec.ingress[0]: bad", 2);
  again.current_condition = echoed.current_condition;
  restarted.Report(again);
  f.ExpectRenewal("3");
  transport.Expect(Answer(200));                  // PATCH status (observedGeneration 2)
  transport.Expect(Answer(409));                  // POST event: exists
  transport.Expect(Answer(200, R"({"count": 4})"));  // PATCH lastTimestamp returns the Event
  transport.Expect(Answer(200));                  // PATCH count
  restarted.RunOnce();
  REQUIRE(transport.requests.size() == 12);
  CHECK(transport.requests[10].method == "PATCH");  // no GET: RBAC grants create and patch only
  CHECK(nlohmann::json::parse(transport.requests.back().body)["count"] == 5);
  CHECK(restarted.stats().events_bumped == 1);
}

TEST_CASE("status writer: a new leader does not repeat the Event of a rejection already in the status") {
  WriterFixture f;
  FakeTransport& transport = f.transport;
  PolicyStatusWriter& writer = f.writer;
  PolicyVerdict reported = Verdict("False", "bad", 3);
  reported.current_condition = DesiredCondition(reported);  // written by the previous leader
  writer.Report(reported);
  f.ExpectRenewal("1");
  writer.RunOnce();
  CHECK(transport.requests.size() == 2);  // lease read and renewal only
  CHECK(writer.stats().events_created + writer.stats().events_bumped == 0);
}

TEST_CASE("status writer: an Event that failed after this term's status patch is retried") {
  WriterFixture f;
  FakeTransport& transport = f.transport;
  PolicyStatusWriter& writer = f.writer;
  writer.Report(Verdict("False", "bad", 1));
  f.ExpectRenewal("1");
  transport.Expect(Answer(200));  // PATCH status
  transport.Expect(Answer(500));  // POST event fails
  writer.RunOnce();
  // The patched condition comes back through the watch before the retry.
  PolicyVerdict echoed = Verdict("False", "bad", 1);
  echoed.current_condition = nlohmann::json::parse(transport.requests[2].body)["status"]["conditions"][0];
  writer.Report(echoed);
  f.ExpectRenewal("2");
  transport.Expect(Answer(201));  // POST event again
  writer.RunOnce();
  REQUIRE(transport.requests.size() == 7);
  CHECK(transport.requests[6].path == "/api/v1/namespaces/x/events");
  CHECK(writer.stats().events_created == 1);
}

TEST_CASE("status writer: a follower writes nothing") {
  WriterFixture f;
  FakeTransport& transport = f.transport;
  PolicyStatusWriter& writer = f.writer;
  writer.Report(Verdict("False", "bad", 1));
  transport.Expect(Answer(200, LeaseBody("node-b", 3600, "1")));
  writer.RunOnce();
  CHECK(transport.requests.size() == 1);
}

}  // namespace
}  // namespace microseg::kube
