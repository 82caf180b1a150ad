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
#include <utility>
#include <vector>

#include "datapath_test_support.h"
#include "loaded_datapath.h"
#include "microseg.skel.h"

namespace microseg::test {
namespace {

// BPF_LOG_STATS alone: the summary lines ("processed ...", "stack depth ...")
// without the per-instruction trace, so a small buffer per program holds it.
constexpr std::uint32_t kVerifierLogLevel = 4;
constexpr std::size_t kVerifierLogBytes = 64u << 10;

constexpr long kProcessedInsnsCeiling = 500000;  // half of BPF_COMPLEXITY_LIMIT_INSNS
// MAX_BPF_STACK is 512 bytes for a whole call chain, and the verifier
// rejects more itself, so checking against it could never fail: our own
// ceiling leaves 32 bytes of headroom, so a change that grows a frame is
// caught here, with a figure, instead of as a load failure on some kernel
// whose code generation needs a few bytes more.
constexpr long kStackDepthCeiling = 480;

struct VerifierFigures {
  long processed_insns = -1;
  long stack_depth = -1;  // all subprogram frames together (an upper bound of the deepest chain), bytes
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
    long total = 0;
    std::size_t start = 0;
    while (start < frames.size()) {
      std::size_t end = frames.find('+', start);
      if (end == std::string::npos) end = frames.size();
      total += std::stol(frames.substr(start, end - start));
      start = end + 1;
    }
    figures.stack_depth = total;
  }
  return figures;
}

TEST_CASE("parse_verifier_log reads the kernel's summary lines", "[verifier]") {
  const VerifierFigures figures = parse_verifier_log(
      "0: (bf) r6 = r1\nverification time 1234 usec\nstack depth 48+16\n"
      "processed 4321 insns (limit 1000000) max_states_per_insn 4 total_states 300 "
      "peak_states 300 mark_read 20\n");
  CHECK(figures.processed_insns == 4321);
  CHECK(figures.stack_depth == 64);
  const VerifierFigures missing = parse_verifier_log("libbpf: some unrelated text\n");
  CHECK(missing.processed_insns == -1);
  CHECK(missing.stack_depth == -1);
}

// Every program of the object, the tail-call stages included: a stage the
// entry programs jump to is verified on its own and has its own budget.
TEST_CASE("the verifier accepts every program well inside its limits",
          "[bpf][privileged][verifier]") {
  std::vector<std::pair<std::string, std::vector<char>>> logs;
  auto datapath = load_or_skip([&](microseg_bpf& skeleton) {
    bpf_program* program = nullptr;
    std::size_t count = 0;
    bpf_object__for_each_program(program, skeleton.obj) { ++count; }
    logs.reserve(count);  // the buffers must not move once handed to libbpf
    bpf_object__for_each_program(program, skeleton.obj) {
      auto& [name, log] = logs.emplace_back(bpf_program__name(program),
                                            std::vector<char>(kVerifierLogBytes));
      REQUIRE(bpf_program__set_log_level(program, kVerifierLogLevel) == 0);
      REQUIRE(bpf_program__set_log_buf(program, log.data(), log.size()) == 0);
      (void)name;
    }
  });
  if (!datapath) return;

  REQUIRE(logs.size() >= 2);  // at least from_pod and to_pod
  for (const auto& [program, log] : logs) {
    const VerifierFigures figures = parse_verifier_log(std::string(log.data()));
    std::printf("verifier %s: processed %ld insns, stack depth %ld bytes\n", program.c_str(),
                figures.processed_insns, figures.stack_depth);
    INFO(program << ": processed " << figures.processed_insns << " insns, stack depth "
                 << figures.stack_depth);
    REQUIRE(figures.processed_insns > 0);  // the summary was found
    REQUIRE(figures.stack_depth >= 0);
    CHECK(figures.processed_insns < kProcessedInsnsCeiling);
    CHECK(figures.stack_depth <= kStackDepthCeiling);
  }
}

}  // namespace
}  // namespace microseg::test
