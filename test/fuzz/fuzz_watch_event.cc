// One line of a Kubernetes watch stream, as the API server (or anything in
// between) may send it: never a crash or an escaped exception, and a decoded
// event's accessors are safe on whatever object it carries, and its object
// converts into the policy model or is refused with a reason.
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.h"
#include "kube/object_converter.h"
#include "kube/watch_event.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view line(reinterpret_cast<const char*>(data), size);
  const absl::StatusOr<microseg::kube::WatchEvent> event = microseg::kube::DecodeWatchEvent(line);
  if (!event.ok()) {
    FUZZ_CHECK(!event.status().message().empty(), "watch line rejected without a reason");
    return 0;
  }
  FUZZ_CHECK(microseg::kube::WatchEventTypeName(event->type) != nullptr, "event type without a name");
  FUZZ_CHECK(!event->expired() || event->type == microseg::kube::WatchEvent::Type::kError,
             "only an ERROR event can say the resourceVersion expired");
  // Accessors the reflector calls on every event's object.
  const std::string key = microseg::kube::ObjectKey(event->object);
  const std::string version = microseg::kube::ResourceVersionOf(event->object);
  FUZZ_CHECK(event->type == microseg::kube::WatchEvent::Type::kError || version == event->resource_version,
             "resource_version \"%s\" differs from the object's \"%s\"", event->resource_version.c_str(),
             version.c_str());
  (void)key;

  if (event->type == microseg::kube::WatchEvent::Type::kAdded ||
      event->type == microseg::kube::WatchEvent::Type::kModified) {
    const absl::StatusOr<microseg::ClusterObject> converted = microseg::kube::ConvertObject(event->object);
    FUZZ_CHECK(converted.ok() || !converted.status().message().empty(), "object refused without a reason");
  }
  return 0;
}
