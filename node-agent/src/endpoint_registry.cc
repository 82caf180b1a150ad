#include "endpoint_registry.h"

#include <cctype>
#include <filesystem>
#include <fstream>
#include <set>

#include "absl/strings/str_cat.h"
#include "ipv4_cidr.h"
#include "log.h"
#include "nlohmann/json.hpp"

namespace microseg {
namespace {

nlohmann::json ToJson(const EndpointRecord& r) {
  return {{"endpoint_id", r.endpoint_id}, {"container_id", r.container_id}, {"ifname", r.ifname},
          {"netns", r.netns},             {"pod_namespace", r.pod_namespace}, {"pod_name", r.pod_name},
          {"host_ifname", r.host_ifname}, {"host_ifindex", r.host_ifindex},  {"ips", r.ips}};
}

absl::StatusOr<EndpointRecord> FromJson(const std::string& text) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return absl::DataLossError("not a JSON object");
  try {
    EndpointRecord r;
    r.endpoint_id = j.at("endpoint_id").get<uint32_t>();
    r.container_id = j.at("container_id").get<std::string>();
    r.ifname = j.at("ifname").get<std::string>();
    r.netns = j.value("netns", "");
    r.pod_namespace = j.at("pod_namespace").get<std::string>();
    r.pod_name = j.at("pod_name").get<std::string>();
    r.host_ifname = j.at("host_ifname").get<std::string>();
    r.host_ifindex = j.at("host_ifindex").get<uint32_t>();
    r.ips = j.at("ips").get<std::vector<std::string>>();
    return r;
  } catch (const nlohmann::json::exception& e) {
    return absl::DataLossError(e.what());
  }
}

absl::Status Validate(const EndpointRecord& r) {
  if (r.container_id.empty()) return absl::InvalidArgumentError("container_id is empty");
  if (r.ifname.empty()) return absl::InvalidArgumentError("ifname is empty");
  if (r.pod_namespace.empty() || r.pod_name.empty()) {
    return absl::InvalidArgumentError("pod_namespace and pod_name are required (K8S_POD_NAMESPACE, K8S_POD_NAME)");
  }
  if (r.host_ifindex == 0) return absl::InvalidArgumentError("host_ifindex is 0");
  if (r.host_ifname.empty()) return absl::InvalidArgumentError("host_ifname is empty");
  return absl::OkStatus();
}

// File names come from runtime-supplied ids: keep them to a safe alphabet.
std::string Sanitize(std::string_view text) {
  std::string out;
  for (char c : text) out += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.') ? c : '_';
  return out;
}

}  // namespace

namespace {
// CNI results give addresses in CIDR form: the address is what precedes '/'.
std::optional<uint32_t> AddressOf(const std::string& cidr_or_address) {
  return ParseIpv4Address(absl::string_view(cidr_or_address).substr(0, cidr_or_address.find('/')));
}
}  // namespace

uint32_t FirstIpv4(const std::vector<std::string>& ips) {
  for (const auto& ip : ips) {
    if (auto v4 = AddressOf(ip)) return *v4;
  }
  return 0;
}

Ipv6Address FirstIpv6(const std::vector<std::string>& ips) {
  for (const auto& ip : ips) {
    if (auto v6 = ParseIpv6Address(absl::string_view(ip).substr(0, ip.find('/')))) return *v6;
  }
  return {};
}

absl::Status EndpointRegistry::Load() {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) return absl::FailedPreconditionError(absl::StrCat("cannot create ", dir_, ": ", ec.message()));
  std::set<uint32_t> ids;
  for (const auto& entry : std::filesystem::directory_iterator(dir_, ec)) {
    if (entry.path().extension() != ".json") continue;
    std::ifstream in(entry.path());
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto record = FromJson(text);
    if (!record.ok() || !Validate(*record).ok() || record->endpoint_id == 0 || ids.count(record->endpoint_id)) {
      LogWarning("ignoring unreadable endpoint record ", entry.path().string(), ": ",
                 record.ok() ? "invalid or duplicate id" : record.status().ToString());
      continue;
    }
    record->ipv4 = FirstIpv4(record->ips);
    record->ipv6 = FirstIpv6(record->ips);
    ids.insert(record->endpoint_id);
    records_[{record->container_id, record->ifname}] = *record;
  }
  if (ec) return absl::FailedPreconditionError(absl::StrCat("cannot list ", dir_, ": ", ec.message()));
  return absl::OkStatus();
}

uint32_t EndpointRegistry::NextId() const {
  std::set<uint32_t> used;
  for (const auto& [key, r] : records_) used.insert(r.endpoint_id);
  uint32_t id = 1;
  while (used.count(id)) ++id;
  return id;
}

std::string EndpointRegistry::FileFor(const Key& key) const {
  return absl::StrCat(dir_, "/", Sanitize(key.first), "-", Sanitize(key.second), ".json");
}

absl::Status EndpointRegistry::Persist(const EndpointRecord& record) const {
  const std::string path = FileFor({record.container_id, record.ifname});
  const std::string temp = path + ".tmp";
  {
    std::ofstream out(temp, std::ios::trunc);
    out << ToJson(record).dump() << "\n";
    if (!out.flush()) return absl::InternalError(absl::StrCat("cannot write ", temp));
  }
  std::error_code ec;
  std::filesystem::rename(temp, path, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot rename ", temp, ": ", ec.message()));
  return absl::OkStatus();
}

absl::StatusOr<EndpointRecord> EndpointRegistry::Register(EndpointRecord record,
                                                          std::vector<EndpointRecord>* evicted) {
  if (auto status = Validate(record); !status.ok()) return status;
  for (const auto& ip : record.ips) {
    if (!AddressOf(ip) && !ParseIpv6Address(absl::string_view(ip).substr(0, ip.find('/')))) {
      return absl::InvalidArgumentError(absl::StrCat("ips: '", ip, "' is not an IP address"));
    }
  }
  record.ipv4 = FirstIpv4(record.ips);
  record.ipv6 = FirstIpv6(record.ips);
  // IPv4, IPv6 or both (the compiler and the data path handle either family).
  if (record.ipv4 == 0 && record.ipv6 == Ipv6Address{}) {
    return absl::InvalidArgumentError("ips: the endpoint has no IP address");
  }

  const Key key{record.container_id, record.ifname};
  // The kernel reuses ifindexes: another record on this ifindex is a veth
  // that went away without a CNI DEL.
  for (auto it = records_.begin(); it != records_.end();) {
    if (it->first != key && it->second.host_ifindex == record.host_ifindex) {
      if (evicted) evicted->push_back(it->second);
      std::error_code ec;
      std::filesystem::remove(FileFor(it->first), ec);
      it = records_.erase(it);
    } else {
      ++it;
    }
  }
  auto existing = records_.find(key);
  record.endpoint_id = existing != records_.end() ? existing->second.endpoint_id : NextId();
  if (auto status = Persist(record); !status.ok()) return status;
  records_[key] = record;
  return record;
}

absl::StatusOr<std::optional<EndpointRecord>> EndpointRegistry::Remove(const Key& key) {
  auto it = records_.find(key);
  if (it == records_.end()) return std::optional<EndpointRecord>();
  std::error_code ec;
  std::filesystem::remove(FileFor(key), ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot remove endpoint record: ", ec.message()));
  EndpointRecord removed = it->second;
  records_.erase(it);
  return std::optional<EndpointRecord>(removed);
}

const EndpointRecord* EndpointRegistry::Find(const Key& key) const {
  auto it = records_.find(key);
  return it == records_.end() ? nullptr : &it->second;
}

std::vector<LocalEndpoint> EndpointRegistry::LocalEndpoints() const {
  std::vector<LocalEndpoint> out;
  for (const auto& [key, r] : records_) {
    out.push_back({r.endpoint_id, r.host_ifindex, r.pod_namespace, r.pod_name, r.ipv4, r.ipv6});
  }
  return out;
}

}  // namespace microseg
