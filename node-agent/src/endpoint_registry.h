// The pod veths registered on this node by the CNI plugin. Kept on disk in
// the state directory so a restarted agent knows its endpoints (and their
// ids, which key the policy maps) without waiting for new CNI calls.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "ipv6_address.h"
#include "model.h"

namespace microseg {

struct EndpointRecord {
  uint32_t endpoint_id = 0;
  std::string container_id;
  std::string ifname;
  std::string netns;
  std::string pod_namespace;
  std::string pod_name;
  std::string host_ifname;
  uint32_t host_ifindex = 0;
  std::vector<std::string> ips;  // as given by the CNI result, CIDR form
  uint32_t ipv4 = 0;             // first IPv4 of `ips`, host byte order
  Ipv6Address ipv6{};            // first IPv6 of `ips` (net order), all zero when none
};

class EndpointRegistry {
 public:
  using Key = std::pair<std::string, std::string>;  // (container_id, ifname)

  explicit EndpointRegistry(std::string state_dir) : dir_(std::move(state_dir) + "/endpoints") {}

  // Reads every persisted record; a corrupt file is reported and skipped.
  [[nodiscard]] absl::Status Load();

  // Validates, assigns an id (kept when the same endpoint registers again),
  // evicts a stale record that held the same host ifindex, and persists.
  // `evicted` receives records that were replaced that way.
  [[nodiscard]] absl::StatusOr<EndpointRecord> Register(EndpointRecord record, std::vector<EndpointRecord>* evicted);
  [[nodiscard]] absl::StatusOr<std::optional<EndpointRecord>> Remove(const Key& key);

  const EndpointRecord* Find(const Key& key) const;
  const std::map<Key, EndpointRecord>& records() const { return records_; }
  std::vector<LocalEndpoint> LocalEndpoints() const;

 private:
  std::string FileFor(const Key& key) const;
  [[nodiscard]] absl::Status Persist(const EndpointRecord& record) const;
  uint32_t NextId() const;

  std::string dir_;
  std::map<Key, EndpointRecord> records_;
};

// The first IPv4 address among `ips` ("a.b.c.d/len" as CNI results give
// them, or a bare address) in host byte order, 0 when none.
uint32_t FirstIpv4(const std::vector<std::string>& ips);
// The same for IPv6 ("fd00::a/64" or bare); all zero when none.
Ipv6Address FirstIpv6(const std::vector<std::string>& ips);

}  // namespace microseg
