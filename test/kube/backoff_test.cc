#include <catch2/catch.hpp>

#include "kube/backoff.h"

namespace microseg::kube {
namespace {

TEST_CASE("backoff grows exponentially with jitter in [ceiling/2, ceiling] and is capped") {
  const BackoffPolicy policy{absl::Milliseconds(100), absl::Seconds(2), 2.0};
  for (uint64_t seed : {1u, 2u, 3u, 42u}) {
    Backoff backoff(policy, seed);
    const absl::Duration ceilings[] = {absl::Milliseconds(100), absl::Milliseconds(200), absl::Milliseconds(400),
                                       absl::Milliseconds(800), absl::Milliseconds(1600), absl::Seconds(2),
                                       absl::Seconds(2),        absl::Seconds(2)};
    for (absl::Duration ceiling : ceilings) {
      const absl::Duration delay = backoff.Next();
      CAPTURE(seed, absl::FormatDuration(ceiling), absl::FormatDuration(delay));
      CHECK(delay >= ceiling / 2);
      CHECK(delay <= ceiling);
    }
  }
}

TEST_CASE("backoff jitter differs between agents (seeds)") {
  const BackoffPolicy policy{absl::Seconds(1), absl::Seconds(30), 2.0};
  Backoff a(policy, 1), b(policy, 2);
  bool differ = false;
  for (int i = 0; i < 5; ++i) differ |= a.Next() != b.Next();
  CHECK(differ);
}

TEST_CASE("reset starts again from the initial delay") {
  Backoff backoff({absl::Milliseconds(100), absl::Seconds(10), 2.0}, 7);
  for (int i = 0; i < 6; ++i) (void)backoff.Next();
  backoff.Reset();
  CHECK(backoff.Next() <= absl::Milliseconds(100));
}

TEST_CASE("Retry-After is a floor, bounded by the cap") {
  struct Case {
    absl::Duration retry_after;
    absl::Duration at_least;
    absl::Duration at_most;
  };
  const Case cases[] = {
      {absl::Seconds(3), absl::Seconds(3), absl::Seconds(3)},      // longer than the backoff: taken as is
      {absl::Seconds(0), absl::Milliseconds(50), absl::Milliseconds(100)},  // shorter: the backoff wins
      {absl::Hours(2), absl::Seconds(10), absl::Seconds(10)},      // absurd: capped
  };
  for (const Case& c : cases) {
    Backoff backoff({absl::Milliseconds(100), absl::Seconds(10), 2.0}, 3);
    const absl::Duration delay = backoff.Next(c.retry_after);
    CAPTURE(absl::FormatDuration(c.retry_after), absl::FormatDuration(delay));
    CHECK(delay >= c.at_least);
    CHECK(delay <= c.at_most);
  }
}

TEST_CASE("Retry-After header values") {
  CHECK(ParseRetryAfter("5") == absl::Seconds(5));
  CHECK(ParseRetryAfter(" 12 ") == absl::Seconds(12));
  CHECK(ParseRetryAfter("0") == absl::ZeroDuration());
  CHECK_FALSE(ParseRetryAfter("").has_value());
  CHECK_FALSE(ParseRetryAfter("-1").has_value());
  CHECK_FALSE(ParseRetryAfter("Wed, 21 Oct 2015 07:28:00 GMT").has_value());
}

}  // namespace
}  // namespace microseg::kube
