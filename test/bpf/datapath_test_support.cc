#include "datapath_test_support.h"

#include <arpa/inet.h>
#include <linux/pkt_cls.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <cstring>
#include <sstream>

#include "ipv6_packet_builder.h"

namespace microseg::test {

void check_verdict(LoadedDatapath& datapath, Program program, const Bytes& frame, ms_reason expected) {
  const RunResult result = datapath.run(program, frame);
  INFO(name_of(program) << " expected " << name_of_reason(expected) << "; counters: "
                        << describe(result.stats_delta));
  CHECK(result.tc_action == tc_action_for(expected));
  check_only_counter_moved(result.stats_delta, direction_of(program), expected, frame.size());
}

ms_session6_key session6_key_of(std::uint32_t endpoint_id, const std::string& pod,
                                std::uint16_t pod_port, const std::string& peer,
                                std::uint16_t peer_port, std::uint8_t proto) {
  ms_session6_key key{};
  key.endpoint_id = endpoint_id;
  const auto pod_words = ipv6_net(pod);
  const auto peer_words = ipv6_net(peer);
  std::memcpy(key.pod_addr, pod_words.data(), sizeof key.pod_addr);
  std::memcpy(key.peer_addr, peer_words.data(), sizeof key.peer_addr);
  key.pod_port = htons(pod_port);
  key.peer_port = htons(peer_port);
  key.proto = proto;
  return key;
}

std::unique_ptr<LoadedDatapath> load_or_skip(
    const std::function<void(microseg_bpf&)>& before_load) {
  int load_errno = 0;
  auto datapath = LoadedDatapath::load(&load_errno, before_load);
  if (!datapath && (load_errno == EPERM || load_errno == EACCES)) {
    WARN("SKIPPED: needs CAP_BPF + CAP_NET_ADMIN (root) to load the BPF object: "
         << std::strerror(load_errno));
    return nullptr;
  }
  INFO("loading microseg.bpf.o failed: " << std::strerror(load_errno));
  REQUIRE(datapath != nullptr);
  return datapath;
}

std::string describe(const StatsSnapshot& delta) {
  std::ostringstream out;
  for (std::uint32_t direction = 0; direction < MS_DIR_MAX; ++direction) {
    for (std::uint32_t reason = 0; reason < MS_REASON_MAX; ++reason) {
      const ms_counter& counter = delta[ms_stats_index(direction, reason)];
      if (counter.packets != 0 || counter.bytes != 0) {
        out << (direction == MS_DIR_INGRESS ? "ingress/" : "egress/") << name_of_reason(reason)
            << " +" << counter.packets << " pkts +" << counter.bytes << " bytes; ";
      }
    }
  }
  return out.str().empty() ? "no counter moved" : out.str();
}

void check_only_counter_moved(const StatsSnapshot& delta, ms_direction direction,
                              ms_reason reason, std::size_t frame_bytes) {
  const std::uint32_t expected_index = ms_stats_index(direction, reason);
  INFO("expected " << (direction == MS_DIR_INGRESS ? "ingress/" : "egress/")
                   << name_of_reason(reason) << " +1; counters: " << describe(delta));
  for (std::uint32_t index = 0; index < MS_STATS_ENTRIES; ++index) {
    const bool is_expected = index == expected_index;
    CHECK(delta[index].packets == (is_expected ? 1u : 0u));
    CHECK(delta[index].bytes == (is_expected ? frame_bytes : 0u));
  }
}

std::uint32_t tc_action_for(ms_reason reason) {
  return static_cast<std::uint32_t>(ms_reason_is_drop(reason) ? TC_ACT_SHOT : TC_ACT_OK);
}

}  // namespace microseg::test
