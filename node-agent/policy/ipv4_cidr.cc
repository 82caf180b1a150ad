#include "ipv4_cidr.h"

#include <charconv>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace microseg {
namespace {

// Decimal without sign or leading zeros, at most `max`.
std::optional<uint32_t> ParseDecimal(absl::string_view text, uint32_t max) {
  if (text.empty() || text.size() > 3 || (text.size() > 1 && text[0] == '0')) return std::nullopt;
  uint32_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || value > max) return std::nullopt;
  return value;
}

}  // namespace

std::optional<uint32_t> ParseIpv4Address(absl::string_view text) {
  const std::vector<absl::string_view> octets = absl::StrSplit(text, '.');
  if (octets.size() != 4) return std::nullopt;
  uint32_t addr = 0;
  for (absl::string_view octet : octets) {
    const std::optional<uint32_t> value = ParseDecimal(octet, 255);
    if (!value) return std::nullopt;
    addr = (addr << 8) | *value;
  }
  return addr;
}

absl::StatusOr<Ipv4Cidr> ParseIpv4Cidr(absl::string_view text) {
  const size_t slash = text.find('/');
  if (slash == absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", text, "\" is not a CIDR (expected a.b.c.d/len)"));
  }
  const std::optional<uint32_t> addr = ParseIpv4Address(text.substr(0, slash));
  const std::optional<uint32_t> len = ParseDecimal(text.substr(slash + 1), 32);
  if (!addr || !len) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", text, "\" is not a valid IPv4 CIDR (expected a.b.c.d/0-32)"));
  }
  const auto prefix_len = static_cast<uint8_t>(*len);
  return Ipv4Cidr{*addr & PrefixMask(prefix_len), prefix_len};
}

uint32_t PrefixMask(uint8_t prefix_len) {
  return prefix_len == 0 ? 0 : ~uint32_t{0} << (32 - prefix_len);
}

bool CidrContainsAddress(const Ipv4Cidr& cidr, uint32_t addr) {
  return (addr & PrefixMask(cidr.prefix_len)) == cidr.addr;
}

bool CidrContains(const Ipv4Cidr& outer, const Ipv4Cidr& inner) {
  return inner.prefix_len >= outer.prefix_len && CidrContainsAddress(outer, inner.addr);
}

std::string FormatIpv4(uint32_t addr) {
  return absl::StrCat(addr >> 24, ".", (addr >> 16) & 0xff, ".", (addr >> 8) & 0xff, ".", addr & 0xff);
}

std::string FormatCidr(const Ipv4Cidr& cidr) {
  return absl::StrCat(FormatIpv4(cidr.addr), "/", cidr.prefix_len);
}

}  // namespace microseg
