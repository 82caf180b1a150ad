// How hard the verifier works on the data path (R4): the kernel's own
// "processed N insns" and "stack depth" figures, read from the verification
// log of each program. Half the 1M-instruction complexity limit is our
// ceiling, so a change that doubles the explored state space is caught long
// before the kernel starts rejecting the object on some node.
#include <bpf/libbpf.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <algorithm>
#include <regex>
#include <string>
#include <vector>

#include "datapath_test_support.h"
#include "loaded_datapath.h"
#include "microseg.skel.h"

namespace microseg::test {
namespace {

// BPF_LOG_LEVEL1 (instruction trace) | BPF_LOG_STATS (the summary lines).
constexpr std::uint32_t kVerifierLogLevel = 1 | 4;
// Level 1 traces every processed instruction; this holds far more than
// the ceiling below allows, so a truncated log cannot hide the summary.
constexpr std::size_t kVerifierLogBytes = 64u << 20;

constexpr long kProcessedInsnsCeiling = 500000;  // half of BPF_COMPLEXITY_LIMIT_INSNS
constexpr long kStackDepthLimit = 512;           // MAX_BPF_STACK

struct VerifierFigures {
  long processed_insns = -1;
  long stack_depth = -1;  // deepest subprogram frame, bytes
};

// The summary the kernel appends to the log: "processed 1234 insns (limit
// 1000000) ..." and "stack depth 64" (or "64+32" with subprograms).
VerifierFigures parse_verifier_log(const std::string& log) {
  VerifierFigures figures;
  std::smatch match;
  // The summary comes last; the last match wins over anything earlier.
  const std::regex processed(R"(processed (\d+) insns \(limit \d+\))");
  for (auto it = std::sregex_iterator(log.begin(), log.end(), processed);
       it != std::sregex_iterator(); ++it) {
    figures.processed_insns = std::stol((*it)[1].str());
  }
  const std::regex stack(R"(stack depth ([0-9+]+))");
  for (auto it = std::sregex_iterator(log.begin(), log.end(), stack);
       it != std::sregex_iterator(); ++it) {
    const std::string frames = (*it)[1].str();
    long deepest = 0;
    std::size_t start = 0;
    while (start < frames.size()) {
      std::size_t end = frames.find('+', start);
      if (end == std::string::npos) end = frames.size();
      deepest = std::max(deepest, std::stol(frames.substr(start, end - start)));
      start = end + 1;
    }
    figures.stack_depth = deepest;
  }
  return figures;
}

TEST_CASE("parse_verifier_log reads the kernel's summary lines", "[verifier]") {
  const VerifierFigures figures = parse_verifier_log(
      "0: (bf) r6 = r1\nverification time 1234 usec\nstack depth 48+16\n"
      "processed 4321 insns (limit 1000000) max_states_per_insn 4 total_states 300 "
      "peak_states 300 mark_read 20\n");
  CHECK(figures.processed_insns == 4321);
  CHECK(figures.stack_depth == 48);
  const VerifierFigures missing = parse_verifier_log("libbpf: some unrelated text\n");
  CHECK(missing.processed_insns == -1);
  CHECK(missing.stack_depth == -1);
}

TEST_CASE("the verifier accepts both programs well inside its limits",
          "[bpf][privileged][verifier]") {
  std::vector<char> from_pod_log(kVerifierLogBytes);
  std::vector<char> to_pod_log(kVerifierLogBytes);
  auto datapath = load_or_skip([&](microseg_bpf& skeleton) {
    REQUIRE(bpf_program__set_log_level(skeleton.progs.from_pod, kVerifierLogLevel) == 0);
    REQUIRE(bpf_program__set_log_buf(skeleton.progs.from_pod, from_pod_log.data(),
                                     from_pod_log.size()) == 0);
    REQUIRE(bpf_program__set_log_level(skeleton.progs.to_pod, kVerifierLogLevel) == 0);
    REQUIRE(bpf_program__set_log_buf(skeleton.progs.to_pod, to_pod_log.data(),
                                     to_pod_log.size()) == 0);
  });
  if (!datapath) return;

  const struct {
    const char* program;
    const std::vector<char>& log;
  } programs[] = {{"from_pod", from_pod_log}, {"to_pod", to_pod_log}};
  for (const auto& [program, log] : programs) {
    const VerifierFigures figures = parse_verifier_log(std::string(log.data()));
    std::printf("verifier %s: processed %ld insns, stack depth %ld bytes\n", program,
                figures.processed_insns, figures.stack_depth);
    INFO(program << ": processed " << figures.processed_insns << " insns, stack depth "
                 << figures.stack_depth);
    REQUIRE(figures.processed_insns > 0);  // the summary was found
    REQUIRE(figures.stack_depth >= 0);
    CHECK(figures.processed_insns < kProcessedInsnsCeiling);
    CHECK(figures.stack_depth <= kStackDepthLimit);
  }
}

}  // namespace
}  // namespace microseg::test
