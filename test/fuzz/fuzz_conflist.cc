// The chaining installer's edit of a node's CNI conflist (the file the
// runtime loads), on whatever JSON the main plugin or an operator left there:
// adding our entry is idempotent, keeps every other plugin in order, and
// removing it gives back the conflist without us.
#include <cstdint>
#include <string>

#include "chain_installer.h"
#include "fuzz_check.h"

namespace {

using ojson = nlohmann::ordered_json;

const ojson& OurEntry() {
  static const ojson entry = {{"type", microseg::cni::kPluginType}, {"agentSocket", "/run/microseg/agent.sock"}};
  return entry;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const ojson conflist =
      ojson::parse(std::string(reinterpret_cast<const char*>(data), size), nullptr, /*allow_exceptions=*/false);
  // Install refuses anything else before editing.
  if (conflist.is_discarded() || !conflist.is_object() || !conflist.contains("plugins") ||
      !conflist.at("plugins").is_array() || conflist.at("plugins").empty()) {
    return 0;
  }
  const ojson without = microseg::cni::WithoutEntry(conflist);
  const ojson with = microseg::cni::WithEntry(conflist, OurEntry());
  FUZZ_CHECK(microseg::cni::HasEntry(with), "entry missing after adding it: %s", with.dump().c_str());
  FUZZ_CHECK(!microseg::cni::HasEntry(without), "entry left after removing it: %s", without.dump().c_str());
  FUZZ_CHECK(with.at("plugins").back() == OurEntry(), "our entry is not last: %s", with.dump().c_str());
  FUZZ_CHECK(microseg::cni::WithEntry(with, OurEntry()) == with, "adding twice changed the file: %s",
             with.dump().c_str());
  FUZZ_CHECK(microseg::cni::WithoutEntry(with) == without, "remove(add(x)) != remove(x) for %s",
             conflist.dump().c_str());
  FUZZ_CHECK(without.at("plugins").size() + 1 == with.at("plugins").size(), "other plugins lost or duplicated");
  return 0;
}
