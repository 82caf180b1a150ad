// IPv4 address and prefix parsing/containment, host byte order throughout.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"
#include "model.h"

namespace microseg {

// Strict dotted quad ("10.244.0.1"); no leading zeros, no shorthand forms.
std::optional<uint32_t> ParseIpv4Address(absl::string_view text);

// "a.b.c.d/len". Host bits are masked off, like Kubernetes normalises an
// ipBlock cidr such as "10.0.0.1/24" to 10.0.0.0/24.
absl::StatusOr<Ipv4Cidr> ParseIpv4Cidr(absl::string_view text);

uint32_t PrefixMask(uint8_t prefix_len);
bool CidrContainsAddress(const Ipv4Cidr& cidr, uint32_t addr);
// True when every address of `inner` is in `outer`.
bool CidrContains(const Ipv4Cidr& outer, const Ipv4Cidr& inner);

std::string FormatIpv4(uint32_t addr);
std::string FormatCidr(const Ipv4Cidr& cidr);

}  // namespace microseg
