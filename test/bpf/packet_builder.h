// Builds raw Ethernet frames for BPF_PROG_TEST_RUN: IPv4 with TCP/UDP/SCTP/
// ICMP, IPv6 and ARP, every field settable so tests can also craft broken
// headers (short, bad ihl, lying lengths, fragments).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace microseg::test {

using Bytes = std::vector<std::uint8_t>;

inline constexpr std::uint16_t kEthertypeIpv4 = 0x0800;
inline constexpr std::uint16_t kEthertypeArp = 0x0806;
inline constexpr std::uint16_t kEthertypeIpv6 = 0x86DD;
inline constexpr std::uint16_t kEthertypeLldp = 0x88CC;

inline constexpr std::uint8_t kProtoIcmp = 1;
inline constexpr std::uint8_t kProtoTcp = 6;
inline constexpr std::uint8_t kProtoUdp = 17;
inline constexpr std::uint8_t kProtoSctp = 132;

inline constexpr std::uint8_t kIcmpEchoReply = 0;
inline constexpr std::uint8_t kIcmpDestUnreachable = 3;
inline constexpr std::uint8_t kIcmpEchoRequest = 8;

// Dotted-quad IPv4 address in network byte order, as the BPF maps hold it.
// Throws std::invalid_argument for anything that is not an IPv4 address.
std::uint32_t ipv4_net(const std::string& dotted);

struct Ipv4Fields {
  std::string src;
  std::string dst;
  std::uint8_t proto = kProtoTcp;
  std::uint8_t version = 4;
  std::uint8_t ihl = 5;                 // options bytes (ihl-5)*4 are zero-filled (NOPs would be 1)
  std::uint16_t fragment_offset = 0;    // in 8-byte units
  bool more_fragments = false;
  std::optional<std::uint16_t> total_length;  // default: header + payload
};

Bytes ethernet(std::uint16_t ethertype, const Bytes& payload);
Bytes ipv4(const Ipv4Fields& fields, const Bytes& l4);
Bytes tcp_header(std::uint16_t sport, std::uint16_t dport);  // a SYN, no options
Bytes udp_datagram(std::uint16_t sport, std::uint16_t dport, std::size_t payload_bytes = 4);
Bytes sctp_common_header(std::uint16_t sport, std::uint16_t dport);
Bytes icmp_message(std::uint8_t type, std::uint16_t echo_id, std::uint16_t sequence = 1);
Bytes ipv6_udp(std::uint16_t sport, std::uint16_t dport);  // fd00::1 -> fd00::2
Bytes arp_request(const std::string& sender, const std::string& target);

inline constexpr std::uint8_t kTcpFin = 0x01;
inline constexpr std::uint8_t kTcpSyn = 0x02;
inline constexpr std::uint8_t kTcpRst = 0x04;
inline constexpr std::uint8_t kTcpPsh = 0x08;
inline constexpr std::uint8_t kTcpAck = 0x10;
inline constexpr std::uint8_t kTcpUrg = 0x20;

inline constexpr std::uint8_t kIcmpTimeExceeded = 11;
inline constexpr std::uint8_t kIcmpCodeFragmentationNeeded = 4;

// A TCP segment with everything the session tracker reads.
struct TcpFields {
  std::uint16_t sport = 0;
  std::uint16_t dport = 0;
  std::uint32_t seq = 0;
  std::uint32_t ack = 0;
  std::uint8_t flags = kTcpSyn;
  std::uint16_t window = 64240;
  std::optional<std::uint8_t> window_scale;  // option kind 3 (with NOP padding)
  std::size_t payload_bytes = 0;
};
Bytes tcp_segment(const TcpFields& fields);
Bytes tcp_frame(const std::string& src, const std::string& dst, const TcpFields& fields);

// ICMP error (type/code) quoting `quoted_ip_packet`: its IPv4 header and the
// first 8 bytes after it, as RFC 792 asks.
Bytes icmp_error_packet(const std::string& src, const std::string& dst, std::uint8_t type,
                        std::uint8_t code, const Bytes& quoted_ip_packet);

// Whole frames for the common cases.
Bytes tcp_packet(const std::string& src, std::uint16_t sport, const std::string& dst,
                 std::uint16_t dport);
Bytes udp_packet(const std::string& src, std::uint16_t sport, const std::string& dst,
                 std::uint16_t dport);
Bytes icmp_packet(const std::string& src, const std::string& dst, std::uint8_t type,
                  std::uint16_t echo_id);

// The first `length` bytes of `frame` (a truncated capture).
Bytes truncated(const Bytes& frame, std::size_t length);

}  // namespace microseg::test
