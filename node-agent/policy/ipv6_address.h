// IPv6 addresses as the BPF maps hold them (datapath.h: four __u32 in
// network order, i.e. the 16 bytes as on the wire).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace microseg {

using Ipv6Address = std::array<uint32_t, 4>;  // net order words; all zero = none / ::

// "fd00::1" -> the address; nullopt for anything else (IPv4 included).
std::optional<Ipv6Address> ParseIpv6Address(absl::string_view text);
std::string FormatIpv6(const Ipv6Address& address);

}  // namespace microseg
