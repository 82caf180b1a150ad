#include "kube/watch_event.h"

#include "absl/strings/str_cat.h"

namespace microseg::kube {
namespace {

std::string StringAt(const nlohmann::json& object, const char* section, const char* field) {
  if (!object.is_object()) return "";
  auto it = object.find(section);
  if (it == object.end() || !it->is_object()) return "";
  auto value = it->find(field);
  return value != it->end() && value->is_string() ? value->get<std::string>() : "";
}

}  // namespace

std::string StringField(const nlohmann::json& object, const char* key) {
  if (!object.is_object()) return "";
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : "";
}

std::string ResourceVersionOf(const nlohmann::json& object) {
  return StringAt(object, "metadata", "resourceVersion");
}

std::string ObjectKey(const nlohmann::json& object) {
  const std::string ns = StringAt(object, "metadata", "namespace");
  const std::string name = StringAt(object, "metadata", "name");
  return ns.empty() ? name : absl::StrCat(ns, "/", name);
}

const char* WatchEventTypeName(WatchEvent::Type type) {
  switch (type) {
    case WatchEvent::Type::kAdded: return "ADDED";
    case WatchEvent::Type::kModified: return "MODIFIED";
    case WatchEvent::Type::kDeleted: return "DELETED";
    case WatchEvent::Type::kBookmark: return "BOOKMARK";
    case WatchEvent::Type::kError: return "ERROR";
  }
  return "?";
}

absl::StatusOr<WatchEvent> DecodeWatchEvent(std::string_view line) {
  nlohmann::json root = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat("watch event is not a JSON object: ", std::string(line.substr(0, 200))));
  }
  auto type = root.find("type");
  auto object = root.find("object");
  if (type == root.end() || !type->is_string()) return absl::InvalidArgumentError("watch event without a type");
  if (object == root.end() || !object->is_object()) {
    return absl::InvalidArgumentError(absl::StrCat("watch event ", type->get<std::string>(), " without an object"));
  }
  WatchEvent event;
  const std::string name = type->get<std::string>();
  if (name == "ADDED") event.type = WatchEvent::Type::kAdded;
  else if (name == "MODIFIED") event.type = WatchEvent::Type::kModified;
  else if (name == "DELETED") event.type = WatchEvent::Type::kDeleted;
  else if (name == "BOOKMARK") event.type = WatchEvent::Type::kBookmark;
  else if (name == "ERROR") event.type = WatchEvent::Type::kError;
  else return absl::InvalidArgumentError(absl::StrCat("unknown watch event type \"", name, "\""));
  event.object = std::move(*object);
  if (event.type == WatchEvent::Type::kError) {
    if (auto code = event.object.find("code"); code != event.object.end() && code->is_number_integer()) {
      event.error_code = code->get<int>();
    }
    if (auto text = event.object.find("message"); text != event.object.end() && text->is_string()) {
      event.error_message = text->get<std::string>();
    }
    return event;
  }
  event.resource_version = ResourceVersionOf(event.object);
  if (event.resource_version.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("watch event ", name, " without metadata.resourceVersion"));
  }
  if (event.type != WatchEvent::Type::kBookmark && ObjectKey(event.object).empty()) {
    return absl::InvalidArgumentError(absl::StrCat("watch event ", name, " without metadata.name"));
  }
  return event;
}

}  // namespace microseg::kube
