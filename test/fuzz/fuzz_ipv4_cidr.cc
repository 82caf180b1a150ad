// IPv4 and IPv6 address and CIDR parsing (ipBlock cidr/except,
// --session_allow_list): strict forms only (IPv4), host bits masked, and
// whatever parses survives a format/parse round trip.
#include <cstdint>
#include <string>

#include "fuzz_check.h"
#include "ipv4_cidr.h"
#include "ipv6_address.h"

namespace {

void CheckIpv6Cidr(const std::string& text) {
  const absl::StatusOr<microseg::Ipv6Cidr> cidr = microseg::ParseIpv6Cidr(text);
  if (!cidr.ok()) {
    FUZZ_CHECK(!cidr.status().message().empty(), "\"%s\" rejected without a reason", text.c_str());
    return;
  }
  FUZZ_CHECK(cidr->prefix_len <= 128, "\"%s\" gave prefix /%u", text.c_str(), cidr->prefix_len);
  FUZZ_CHECK(microseg::MaskIpv6(cidr->addr, cidr->prefix_len) == cidr->addr, "\"%s\" kept host bits", text.c_str());
  FUZZ_CHECK(microseg::CidrContainsAddress(*cidr, cidr->addr), "\"%s\" misses its own network", text.c_str());
  FUZZ_CHECK(microseg::CidrContains(*cidr, *cidr), "\"%s\" does not contain itself", text.c_str());
  const std::string formatted = microseg::FormatCidr(*cidr);
  const absl::StatusOr<microseg::Ipv6Cidr> again = microseg::ParseIpv6Cidr(formatted);
  FUZZ_CHECK(again.ok() && *again == *cidr, "\"%s\" -> \"%s\" does not parse back to itself", text.c_str(),
             formatted.c_str());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  CheckIpv6Cidr(text);

  if (const std::optional<uint32_t> address = microseg::ParseIpv4Address(text)) {
    // Strict dotted quad: the text is the one canonical spelling of the address.
    FUZZ_CHECK(microseg::FormatIpv4(*address) == text, "\"%s\" parsed as %s", text.c_str(),
               microseg::FormatIpv4(*address).c_str());
  }

  const absl::StatusOr<microseg::Ipv4Cidr> cidr = microseg::ParseIpv4Cidr(text);
  if (!cidr.ok()) {
    FUZZ_CHECK(!cidr.status().message().empty(), "\"%s\" rejected without a reason", text.c_str());
    return 0;
  }
  FUZZ_CHECK(cidr->prefix_len <= 32, "\"%s\" gave prefix /%u", text.c_str(), cidr->prefix_len);
  FUZZ_CHECK((cidr->addr & ~microseg::PrefixMask(cidr->prefix_len)) == 0, "\"%s\" kept host bits",
             text.c_str());
  FUZZ_CHECK(microseg::CidrContainsAddress(*cidr, cidr->addr), "\"%s\" misses its own network", text.c_str());
  FUZZ_CHECK(microseg::CidrContains(*cidr, *cidr), "\"%s\" does not contain itself", text.c_str());
  const uint32_t last = cidr->addr | ~microseg::PrefixMask(cidr->prefix_len);
  FUZZ_CHECK(microseg::CidrContainsAddress(*cidr, last), "\"%s\" misses its last address", text.c_str());
  if (cidr->prefix_len > 0) {
    FUZZ_CHECK(!microseg::CidrContainsAddress(*cidr, last + 1) || last == 0xffffffffU,
               "\"%s\" contains the address after its last", text.c_str());
  }

  const std::string formatted = microseg::FormatCidr(*cidr);
  const absl::StatusOr<microseg::Ipv4Cidr> again = microseg::ParseIpv4Cidr(formatted);
  FUZZ_CHECK(again.ok() && *again == *cidr, "\"%s\" -> \"%s\" does not parse back to itself", text.c_str(),
             formatted.c_str());
  return 0;
}
