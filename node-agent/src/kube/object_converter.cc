#include "kube/object_converter.h"

#include "absl/strings/str_cat.h"
#include "yaml-cpp/yaml.h"

namespace microseg::kube {
namespace {

nlohmann::json TrimPod(const nlohmann::json& pod) {
  nlohmann::json out = nlohmann::json::object();
  out["kind"] = pod.value("kind", "Pod");
  out["apiVersion"] = pod.value("apiVersion", "v1");
  nlohmann::json metadata = nlohmann::json::object();
  if (auto it = pod.find("metadata"); it != pod.end() && it->is_object()) {
    for (const char* field : {"name", "namespace", "labels"}) {
      if (it->contains(field)) metadata[field] = (*it)[field];
    }
  }
  out["metadata"] = std::move(metadata);
  bool host_network = false;
  if (auto spec = pod.find("spec"); spec != pod.end() && spec->is_object()) {
    nlohmann::json trimmed = nlohmann::json::object();
    if (spec->contains("nodeName")) trimmed["nodeName"] = (*spec)["nodeName"];
    host_network = spec->value("hostNetwork", false) == true;
    if (auto containers = spec->find("containers"); containers != spec->end() && containers->is_array()) {
      nlohmann::json list = nlohmann::json::array();
      for (const nlohmann::json& container : *containers) {
        nlohmann::json c = nlohmann::json::object();
        if (container.is_object() && container.contains("ports")) c["ports"] = container["ports"];
        list.push_back(std::move(c));
      }
      trimmed["containers"] = std::move(list);
    }
    out["spec"] = std::move(trimmed);
  }
  if (auto status = pod.find("status"); status != pod.end() && status->is_object()) {
    const std::string phase = status->contains("phase") && (*status)["phase"].is_string()
                                  ? (*status)["phase"].get<std::string>()
                                  : "";
    const bool finished = phase == "Succeeded" || phase == "Failed";
    nlohmann::json trimmed = nlohmann::json::object();
    if (!finished && !host_network) {
      for (const char* field : {"podIP", "podIPs"}) {
        if (status->contains(field)) trimmed[field] = (*status)[field];
      }
    }
    out["status"] = std::move(trimmed);
  }
  return out;
}

}  // namespace

absl::StatusOr<ClusterObject> ConvertObject(const nlohmann::json& object) {
  if (!object.is_object()) return absl::InvalidArgumentError("not a JSON object");
  const std::string kind = object.value("kind", "");
  const bool is_pod = kind == "Pod";
  // JSON is YAML: the parser reads the text as it is. Non-ASCII is escaped so
  // that yaml-cpp sees plain ASCII double-quoted scalars.
  const std::string text = (is_pod ? TrimPod(object) : object).dump(-1, ' ', /*ensure_ascii=*/true);
  YAML::Node node;
  try {
    node = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("unreadable object: ", e.what()));
  }
  return ParseClusterObject(kind, node);
}

}  // namespace microseg::kube
