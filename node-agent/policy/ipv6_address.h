// IPv6 addresses and prefixes as the BPF maps hold them (model.h: four
// words in network order, i.e. the 16 bytes as on the wire).
#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "model.h"

namespace microseg {

// "fd00::1" -> the address; nullopt for anything else (IPv4 included).
std::optional<Ipv6Address> ParseIpv6Address(absl::string_view text);
std::string FormatIpv6(const Ipv6Address& address);

// "2001:db8::/32". Host bits are masked off, as for IPv4 ipBlocks.
absl::StatusOr<Ipv6Cidr> ParseIpv6Cidr(absl::string_view text);

// `address` with every bit after the first `prefix_len` cleared.
Ipv6Address MaskIpv6(const Ipv6Address& address, uint8_t prefix_len);
bool CidrContainsAddress(const Ipv6Cidr& cidr, const Ipv6Address& address);
// True when every address of `inner` is in `outer`.
bool CidrContains(const Ipv6Cidr& outer, const Ipv6Cidr& inner);
std::string FormatCidr(const Ipv6Cidr& cidr);

// Orders addresses by their bytes (network order words do not compare
// numerically as uint32_t on a little-endian host).
bool Ipv6Less(const Ipv6Address& a, const Ipv6Address& b);

}  // namespace microseg
