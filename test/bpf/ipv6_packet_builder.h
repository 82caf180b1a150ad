// IPv6 frames for BPF_PROG_TEST_RUN: the fixed header, any chain of
// extension headers (hop-by-hop, routing, destination options, fragment,
// AH), TCP/UDP/ICMPv6 on top, and the NDP/MLD messages the data path lets
// through like ARP. Never put on a real interface (docs/ipv6.md, Testing).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "packet_builder.h"

namespace microseg::test {

inline constexpr std::uint8_t kProtoIcmpv6 = 58;
inline constexpr std::uint8_t kIpv6HopByHop = 0;
inline constexpr std::uint8_t kIpv6Routing = 43;
inline constexpr std::uint8_t kIpv6Fragment = 44;
inline constexpr std::uint8_t kIpv6Auth = 51;
inline constexpr std::uint8_t kIpv6DestOptions = 60;
inline constexpr std::uint8_t kIpv6NoNext = 59;

inline constexpr std::uint8_t kIcmp6DestUnreachable = 1;
inline constexpr std::uint8_t kIcmp6PacketTooBig = 2;
inline constexpr std::uint8_t kIcmp6EchoRequest = 128;
inline constexpr std::uint8_t kIcmp6EchoReply = 129;
inline constexpr std::uint8_t kIcmp6Mld2Report = 143;
inline constexpr std::uint8_t kIcmp6RouterSolicit = 133;
inline constexpr std::uint8_t kIcmp6RouterAdvert = 134;
inline constexpr std::uint8_t kIcmp6NeighborSolicit = 135;
inline constexpr std::uint8_t kIcmp6NeighborAdvert = 136;
inline constexpr std::uint8_t kIcmp6Redirect = 137;

// An IPv6 address as the BPF maps hold it: four words in network order.
// Throws std::invalid_argument for anything that is not an IPv6 address.
std::array<std::uint32_t, 4> ipv6_net(const std::string& text);

// One extension header; its next-header byte is filled in by ipv6().
struct Ipv6Extension {
  std::uint8_t type = kIpv6DestOptions;
  Bytes bytes;  // the whole header, next-header byte included (set to 0 here)
};
// Options headers (hop-by-hop, routing, destination options) of `total_bytes`
// (a multiple of 8, at least 8), padded with PadN.
Ipv6Extension options_header(std::uint8_t type, std::size_t total_bytes = 8);
Ipv6Extension fragment_header(std::uint16_t offset_units, bool more_fragments);
Ipv6Extension auth_header();  // 24 bytes: SPI, sequence, 12-byte ICV

struct Ipv6Fields {
  std::string src;
  std::string dst;
  std::uint8_t hop_limit = 64;
  std::vector<Ipv6Extension> extensions;  // in wire order
  std::optional<std::uint16_t> payload_length;  // default: extensions + upper layer
};

// Ethernet frame: IPv6 header, extensions, then `upper` of protocol `proto`.
Bytes ipv6_frame(const Ipv6Fields& fields, std::uint8_t proto, const Bytes& upper);
// The same without the Ethernet header (what an ICMPv6 error quotes).
Bytes ipv6_packet(const Ipv6Fields& fields, std::uint8_t proto, const Bytes& upper);

// ICMPv6 message: type, code, checksum 0 (not verified at TC), then `body`.
Bytes icmp6_message(std::uint8_t type, std::uint8_t code, const Bytes& body);
Bytes icmp6_echo(std::uint8_t type, std::uint16_t echo_id, std::uint16_t sequence = 1);

Bytes tcp6_frame(const std::string& src, const std::string& dst, const TcpFields& fields);
Bytes udp6_frame(const std::string& src, std::uint16_t sport, const std::string& dst,
                 std::uint16_t dport);
// NDP/MLD with the hop limit they must carry (255 / 1) unless told otherwise.
Bytes ndp_frame(const std::string& src, const std::string& dst, std::uint8_t type,
                std::uint8_t hop_limit = 255);
// ICMPv6 error quoting the start of `quoted_ip6_packet` (as RFC 4443 asks).
Bytes icmp6_error_frame(const std::string& src, const std::string& dst, std::uint8_t type,
                        const Bytes& quoted_ip6_packet);

}  // namespace microseg::test
