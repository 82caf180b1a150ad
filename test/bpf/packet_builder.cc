#include "packet_builder.h"

#include <arpa/inet.h>

#include <algorithm>
#include <stdexcept>

namespace microseg::test {
namespace {

constexpr std::size_t kIpv4MinHeaderBytes = 20;

void put16(Bytes& out, std::uint16_t host_value) {
  out.push_back(static_cast<std::uint8_t>(host_value >> 8));
  out.push_back(static_cast<std::uint8_t>(host_value & 0xFF));
}

void put_net32(Bytes& out, std::uint32_t net_value) {
  const auto* bytes = reinterpret_cast<const std::uint8_t*>(&net_value);
  out.insert(out.end(), bytes, bytes + 4);
}

std::uint16_t internet_checksum(const std::uint8_t* data, std::size_t length) {
  std::uint32_t sum = 0;
  for (std::size_t i = 0; i + 1 < length; i += 2) sum += (data[i] << 8) | data[i + 1];
  if (length % 2 != 0) sum += data[length - 1] << 8;
  while (sum >> 16) sum = (sum & 0xFFFF) + (sum >> 16);
  return static_cast<std::uint16_t>(~sum);
}

}  // namespace

std::uint32_t ipv4_net(const std::string& dotted) {
  in_addr address{};
  if (inet_pton(AF_INET, dotted.c_str(), &address) != 1) {
    throw std::invalid_argument("not an IPv4 address: '" + dotted + "'");
  }
  return address.s_addr;
}

Bytes ethernet(std::uint16_t ethertype, const Bytes& payload) {
  // Locally administered MACs: never a real vendor's.
  Bytes frame = {0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01};
  put16(frame, ethertype);
  frame.insert(frame.end(), payload.begin(), payload.end());
  return frame;
}

Bytes ipv4(const Ipv4Fields& fields, const Bytes& l4) {
  const std::size_t header_bytes = static_cast<std::size_t>(fields.ihl) * 4;
  // A header shorter than 20 bytes (bad ihl) still gets its fixed fields.
  const std::size_t written_header_bytes = std::max(header_bytes, kIpv4MinHeaderBytes);
  Bytes packet;
  packet.push_back(static_cast<std::uint8_t>((fields.version << 4) | (fields.ihl & 0x0F)));
  packet.push_back(0);  // DSCP/ECN
  put16(packet, fields.total_length.value_or(
                    static_cast<std::uint16_t>(written_header_bytes + l4.size())));
  put16(packet, 0x1234);  // identification
  const std::uint16_t more_fragments_flag = fields.more_fragments ? 0x2000 : 0;
  put16(packet, static_cast<std::uint16_t>(more_fragments_flag | (fields.fragment_offset & 0x1FFF)));
  packet.push_back(64);  // TTL
  packet.push_back(fields.proto);
  put16(packet, 0);  // checksum, filled below
  put_net32(packet, ipv4_net(fields.src));
  put_net32(packet, ipv4_net(fields.dst));
  packet.resize(written_header_bytes, 0);
  const std::uint16_t checksum = internet_checksum(packet.data(), packet.size());
  packet[10] = static_cast<std::uint8_t>(checksum >> 8);
  packet[11] = static_cast<std::uint8_t>(checksum & 0xFF);
  packet.insert(packet.end(), l4.begin(), l4.end());
  return packet;
}

Bytes tcp_header(std::uint16_t sport, std::uint16_t dport) {
  Bytes header;
  put16(header, sport);
  put16(header, dport);
  put16(header, 0x0000);  // sequence number
  put16(header, 0x0001);
  put16(header, 0);  // ack number
  put16(header, 0);
  header.push_back(5 << 4);  // data offset: 20 bytes
  header.push_back(0x02);    // SYN
  put16(header, 64240);      // window
  put16(header, 0);          // checksum (not verified at TC)
  put16(header, 0);          // urgent pointer
  return header;
}

Bytes udp_datagram(std::uint16_t sport, std::uint16_t dport, std::size_t payload_bytes) {
  Bytes datagram;
  put16(datagram, sport);
  put16(datagram, dport);
  put16(datagram, static_cast<std::uint16_t>(8 + payload_bytes));
  put16(datagram, 0);  // checksum optional in IPv4
  datagram.resize(8 + payload_bytes, 0xAB);
  return datagram;
}

Bytes sctp_common_header(std::uint16_t sport, std::uint16_t dport) {
  Bytes header;
  put16(header, sport);
  put16(header, dport);
  header.resize(12, 0);  // verification tag + checksum
  return header;
}

Bytes icmp_message(std::uint8_t type, std::uint16_t echo_id, std::uint16_t sequence) {
  Bytes message = {type, 0, 0, 0};
  put16(message, echo_id);
  put16(message, sequence);
  message.resize(16, 0x5A);  // a little payload
  const std::uint16_t checksum = internet_checksum(message.data(), message.size());
  message[2] = static_cast<std::uint8_t>(checksum >> 8);
  message[3] = static_cast<std::uint8_t>(checksum & 0xFF);
  return message;
}

Bytes ipv6_udp(std::uint16_t sport, std::uint16_t dport) {
  const Bytes udp = udp_datagram(sport, dport);
  Bytes packet = {0x60, 0, 0, 0};
  put16(packet, static_cast<std::uint16_t>(udp.size()));
  packet.push_back(kProtoUdp);
  packet.push_back(64);  // hop limit
  const Bytes source = {0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  const Bytes destination = {0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2};
  packet.insert(packet.end(), source.begin(), source.end());
  packet.insert(packet.end(), destination.begin(), destination.end());
  packet.insert(packet.end(), udp.begin(), udp.end());
  return ethernet(kEthertypeIpv6, packet);
}

Bytes arp_request(const std::string& sender, const std::string& target) {
  Bytes arp;
  put16(arp, 1);       // hardware: Ethernet
  put16(arp, 0x0800);  // protocol: IPv4
  arp.push_back(6);
  arp.push_back(4);
  put16(arp, 1);  // request
  const Bytes sender_mac = {0x02, 0, 0, 0, 0, 0x01};
  arp.insert(arp.end(), sender_mac.begin(), sender_mac.end());
  put_net32(arp, ipv4_net(sender));
  arp.insert(arp.end(), 6, 0);
  put_net32(arp, ipv4_net(target));
  return ethernet(kEthertypeArp, arp);
}

Bytes tcp_packet(const std::string& src, std::uint16_t sport, const std::string& dst,
                 std::uint16_t dport) {
  return ethernet(kEthertypeIpv4, ipv4({.src = src, .dst = dst, .proto = kProtoTcp},
                                       tcp_header(sport, dport)));
}

Bytes udp_packet(const std::string& src, std::uint16_t sport, const std::string& dst,
                 std::uint16_t dport) {
  return ethernet(kEthertypeIpv4, ipv4({.src = src, .dst = dst, .proto = kProtoUdp},
                                       udp_datagram(sport, dport)));
}

Bytes icmp_packet(const std::string& src, const std::string& dst, std::uint8_t type,
                  std::uint16_t echo_id) {
  return ethernet(kEthertypeIpv4, ipv4({.src = src, .dst = dst, .proto = kProtoIcmp},
                                       icmp_message(type, echo_id)));
}

Bytes tcp_segment(const TcpFields& fields) {
  Bytes options;
  if (fields.window_scale) options = {1, 3, 3, *fields.window_scale};  // NOP, WS
  Bytes segment;
  put16(segment, fields.sport);
  put16(segment, fields.dport);
  put16(segment, static_cast<std::uint16_t>(fields.seq >> 16));
  put16(segment, static_cast<std::uint16_t>(fields.seq & 0xFFFF));
  put16(segment, static_cast<std::uint16_t>(fields.ack >> 16));
  put16(segment, static_cast<std::uint16_t>(fields.ack & 0xFFFF));
  segment.push_back(static_cast<std::uint8_t>(((20 + options.size()) / 4) << 4));
  segment.push_back(fields.flags);
  put16(segment, fields.window);
  put16(segment, 0);  // checksum (not verified at TC)
  put16(segment, 0);  // urgent pointer
  segment.insert(segment.end(), options.begin(), options.end());
  segment.resize(segment.size() + fields.payload_bytes, 0x44);
  return segment;
}

Bytes tcp_frame(const std::string& src, const std::string& dst, const TcpFields& fields) {
  return ethernet(kEthertypeIpv4,
                  ipv4({.src = src, .dst = dst, .proto = kProtoTcp}, tcp_segment(fields)));
}

Bytes icmp_error_packet(const std::string& src, const std::string& dst, std::uint8_t type,
                        std::uint8_t code, const Bytes& quoted_ip_packet) {
  const std::size_t quoted_header = static_cast<std::size_t>(quoted_ip_packet.at(0) & 0x0F) * 4;
  Bytes message = {type, code, 0, 0, 0, 0, 0, 0};
  if (type == kIcmpDestUnreachable && code == kIcmpCodeFragmentationNeeded) {
    message[6] = 0x05;  // next-hop MTU 1400
    message[7] = 0x78;
  }
  const std::size_t quoted = std::min(quoted_ip_packet.size(), quoted_header + 8);
  message.insert(message.end(), quoted_ip_packet.begin(),
                 quoted_ip_packet.begin() + static_cast<std::ptrdiff_t>(quoted));
  const std::uint16_t checksum = internet_checksum(message.data(), message.size());
  message[2] = static_cast<std::uint8_t>(checksum >> 8);
  message[3] = static_cast<std::uint8_t>(checksum & 0xFF);
  return ethernet(kEthertypeIpv4, ipv4({.src = src, .dst = dst, .proto = kProtoIcmp}, message));
}

Bytes truncated(const Bytes& frame, std::size_t length) {
  if (length > frame.size()) {
    throw std::invalid_argument("cannot truncate a " + std::to_string(frame.size()) +
                                "-byte frame to " + std::to_string(length) + " bytes");
  }
  return Bytes(frame.begin(), frame.begin() + static_cast<std::ptrdiff_t>(length));
}

}  // namespace microseg::test
