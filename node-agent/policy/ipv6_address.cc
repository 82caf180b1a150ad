#include "ipv6_address.h"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace microseg {

std::optional<Ipv6Address> ParseIpv6Address(absl::string_view text) {
  const std::string terminated(text);
  Ipv6Address address{};
  if (inet_pton(AF_INET6, terminated.c_str(), address.data()) != 1) return std::nullopt;
  return address;
}

std::string FormatIpv6(const Ipv6Address& address) {
  char text[INET6_ADDRSTRLEN] = {};
  inet_ntop(AF_INET6, address.data(), text, sizeof text);
  return text;
}

absl::StatusOr<Ipv6Cidr> ParseIpv6Cidr(absl::string_view text) {
  const size_t slash = text.find('/');
  if (slash == absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat("\"", text, "\" is not a CIDR (expected address/len)"));
  }
  const std::optional<Ipv6Address> address = ParseIpv6Address(text.substr(0, slash));
  const absl::string_view len_text = text.substr(slash + 1);
  unsigned len = 0;
  const auto [end, error] = std::from_chars(len_text.data(), len_text.data() + len_text.size(), len);
  const bool len_ok = !len_text.empty() && len_text.size() <= 3 && (len_text.size() == 1 || len_text[0] != '0') &&
                      error == std::errc() && end == len_text.data() + len_text.size() && len <= 128;
  if (!address || !len_ok) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", text, "\" is not a valid IPv6 CIDR (expected address/0-128)"));
  }
  const auto prefix_len = static_cast<uint8_t>(len);
  return Ipv6Cidr{MaskIpv6(*address, prefix_len), prefix_len};
}

Ipv6Address MaskIpv6(const Ipv6Address& address, uint8_t prefix_len) {
  Ipv6Address masked{};
  for (int word = 0; word < 4; ++word) {
    const int bits = std::clamp(static_cast<int>(prefix_len) - 32 * word, 0, 32);
    const uint32_t mask = bits == 0 ? 0 : ~uint32_t{0} << (32 - bits);
    masked[word] = htonl(ntohl(address[word]) & mask);
  }
  return masked;
}

bool CidrContainsAddress(const Ipv6Cidr& cidr, const Ipv6Address& address) {
  return MaskIpv6(address, cidr.prefix_len) == cidr.addr;
}

bool CidrContains(const Ipv6Cidr& outer, const Ipv6Cidr& inner) {
  return inner.prefix_len >= outer.prefix_len && CidrContainsAddress(outer, inner.addr);
}

std::string FormatCidr(const Ipv6Cidr& cidr) { return absl::StrCat(FormatIpv6(cidr.addr), "/", cidr.prefix_len); }

bool Ipv6Less(const Ipv6Address& a, const Ipv6Address& b) {
  return std::memcmp(a.data(), b.data(), sizeof a) < 0;
}

}  // namespace microseg
