#include "ipv6_packet_builder.h"

#include <arpa/inet.h>

#include <cstring>
#include <stdexcept>

namespace microseg::test {
namespace {

constexpr std::size_t kIpv6HeaderBytes = 40;

void append(Bytes& out, const Bytes& more) { out.insert(out.end(), more.begin(), more.end()); }

void put16(Bytes& out, std::uint16_t host_value) {
  out.push_back(static_cast<std::uint8_t>(host_value >> 8));
  out.push_back(static_cast<std::uint8_t>(host_value & 0xFF));
}

Bytes address_bytes(const std::string& text) {
  const std::array<std::uint32_t, 4> words = ipv6_net(text);
  Bytes out(16);
  std::memcpy(out.data(), words.data(), 16);
  return out;
}

}  // namespace

std::array<std::uint32_t, 4> ipv6_net(const std::string& text) {
  std::array<std::uint32_t, 4> words{};
  if (inet_pton(AF_INET6, text.c_str(), words.data()) != 1) {
    throw std::invalid_argument("not an IPv6 address: '" + text + "'");
  }
  return words;
}

Ipv6Extension options_header(std::uint8_t type, std::size_t total_bytes) {
  if (total_bytes < 8 || total_bytes % 8 != 0 || total_bytes > 2048) {
    throw std::invalid_argument("options header size must be a multiple of 8 in 8..2048");
  }
  Bytes header = {0, static_cast<std::uint8_t>(total_bytes / 8 - 1)};
  // PadN option covering the rest (type 1, length = bytes after it).
  header.push_back(1);
  header.push_back(static_cast<std::uint8_t>(total_bytes - 4));
  header.resize(total_bytes, 0);
  return {type, header};
}

Ipv6Extension fragment_header(std::uint16_t offset_units, bool more_fragments) {
  Bytes header = {0, 0};
  put16(header, static_cast<std::uint16_t>((offset_units << 3) | (more_fragments ? 1 : 0)));
  header.insert(header.end(), {0x12, 0x34, 0x56, 0x78});  // identification
  return {kIpv6Fragment, header};
}

Ipv6Extension auth_header() {
  Bytes header = {0, 24 / 4 - 2, 0, 0};
  header.insert(header.end(), {0, 0, 0x10, 0x01});  // SPI
  header.insert(header.end(), {0, 0, 0, 1});        // sequence
  header.resize(24, 0xA5);                          // ICV
  return {kIpv6Auth, header};
}

Bytes ipv6_packet(const Ipv6Fields& fields, std::uint8_t proto, const Bytes& upper) {
  Bytes chain;
  for (std::size_t i = 0; i < fields.extensions.size(); ++i) {
    Bytes header = fields.extensions[i].bytes;
    header.at(0) = i + 1 < fields.extensions.size() ? fields.extensions[i + 1].type : proto;
    append(chain, header);
  }
  append(chain, upper);
  const std::uint8_t first = fields.extensions.empty() ? proto : fields.extensions.front().type;
  Bytes packet = {0x60, 0, 0, 0};
  put16(packet, fields.payload_length.value_or(static_cast<std::uint16_t>(chain.size())));
  packet.push_back(first);
  packet.push_back(fields.hop_limit);
  append(packet, address_bytes(fields.src));
  append(packet, address_bytes(fields.dst));
  append(packet, chain);
  return packet;
}

Bytes ipv6_frame(const Ipv6Fields& fields, std::uint8_t proto, const Bytes& upper) {
  return ethernet(kEthertypeIpv6, ipv6_packet(fields, proto, upper));
}

Bytes icmp6_message(std::uint8_t type, std::uint8_t code, const Bytes& body) {
  Bytes message = {type, code, 0, 0};
  append(message, body);
  return message;
}

Bytes icmp6_echo(std::uint8_t type, std::uint16_t echo_id, std::uint16_t sequence) {
  Bytes body;
  put16(body, echo_id);
  put16(body, sequence);
  body.resize(12, 0x5A);
  return icmp6_message(type, 0, body);
}

Bytes tcp6_frame(const std::string& src, const std::string& dst, const TcpFields& fields) {
  return ipv6_frame({.src = src, .dst = dst}, kProtoTcp, tcp_segment(fields));
}

Bytes udp6_frame(const std::string& src, std::uint16_t sport, const std::string& dst,
                 std::uint16_t dport) {
  return ipv6_frame({.src = src, .dst = dst}, kProtoUdp, udp_datagram(sport, dport));
}

Bytes ndp_frame(const std::string& src, const std::string& dst, std::uint8_t type,
                std::uint8_t hop_limit) {
  // Reserved/flags word and a target address; enough for every NDP type here.
  Bytes body(4, 0);
  append(body, address_bytes("fe80::1"));
  return ipv6_frame({.src = src, .dst = dst, .hop_limit = hop_limit}, kProtoIcmpv6,
                    icmp6_message(type, 0, body));
}

Bytes icmp6_error_frame(const std::string& src, const std::string& dst, std::uint8_t type,
                        const Bytes& quoted_ip6_packet) {
  Bytes body = {0, 0, 0x05, 0x00};  // unused, or the MTU (1280) of a packet-too-big
  // RFC 4443: as much of the invoking packet as fits in the minimum MTU (1280).
  const std::size_t quoted = std::min<std::size_t>(quoted_ip6_packet.size(), 1280 - kIpv6HeaderBytes - 8);
  body.insert(body.end(), quoted_ip6_packet.begin(),
              quoted_ip6_packet.begin() + static_cast<std::ptrdiff_t>(quoted));
  return ipv6_frame({.src = src, .dst = dst}, kProtoIcmpv6, icmp6_message(type, 0, body));
}

}  // namespace microseg::test
