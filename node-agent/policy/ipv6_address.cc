#include "ipv6_address.h"

#include <arpa/inet.h>

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

}  // namespace microseg
