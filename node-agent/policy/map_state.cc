#include "map_state.h"

#include "absl/strings/str_cat.h"

namespace microseg {
namespace {

// Appends to `upserts` what is new or different in `desired` and to
// `deletes` what only `live` has.
template <typename Map, typename Upserts, typename Deletes>
void DiffMap(const Map& live, const Map& desired, Upserts& upserts, Deletes& deletes) {
  for (const auto& [key, value] : desired) {
    const auto found = live.find(key);
    if (found == live.end() || !BytewiseEqual(found->second, value)) upserts.emplace_back(key, value);
  }
  for (const auto& [key, value] : live) {
    if (!desired.contains(key)) deletes.push_back(key);
  }
}

absl::Status Annotate(const absl::Status& status, absl::string_view operation) {
  return absl::Status(status.code(), absl::StrCat(operation, ": ", status.message()));
}

template <typename Key>
absl::Status UpsertOneByOne(MapWriter& writer, const PolicyEntryList<Key>& entries, size_t& done) {
  for (done = 0; done < entries.size(); ++done) {
    if (absl::Status status = UpsertEntry(writer, entries[done].first, entries[done].second); !status.ok()) {
      return status;
    }
  }
  return absl::OkStatus();
}

template <typename Key>
absl::Status DeleteOneByOne(MapWriter& writer, const std::vector<Key>& keys, size_t& done) {
  for (done = 0; done < keys.size(); ++done) {
    if (absl::Status status = DeleteEntry(writer, keys[done]); !status.ok()) return status;
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status MapWriter::UpsertBatch(const PolicyEntryList<ms_policy_key>& entries, size_t& done) {
  return UpsertOneByOne(*this, entries, done);
}
absl::Status MapWriter::UpsertBatch(const PolicyEntryList<ms_lpm_key>& entries, size_t& done) {
  return UpsertOneByOne(*this, entries, done);
}
absl::Status MapWriter::UpsertBatch(const PolicyEntryList<ms_policy6_key>& entries, size_t& done) {
  return UpsertOneByOne(*this, entries, done);
}
absl::Status MapWriter::UpsertBatch(const PolicyEntryList<ms_lpm6_key>& entries, size_t& done) {
  return UpsertOneByOne(*this, entries, done);
}
absl::Status MapWriter::DeleteBatch(const std::vector<ms_policy_key>& keys, size_t& done) {
  return DeleteOneByOne(*this, keys, done);
}
absl::Status MapWriter::DeleteBatch(const std::vector<ms_lpm_key>& keys, size_t& done) {
  return DeleteOneByOne(*this, keys, done);
}
absl::Status MapWriter::DeleteBatch(const std::vector<ms_policy6_key>& keys, size_t& done) {
  return DeleteOneByOne(*this, keys, done);
}
absl::Status MapWriter::DeleteBatch(const std::vector<ms_lpm6_key>& keys, size_t& done) {
  return DeleteOneByOne(*this, keys, done);
}

MapChanges DiffMapState(const MapState& live, const MapState& desired) {
  MapChanges changes;
  DiffMap(live.exact, desired.exact, changes.exact_upserts, changes.exact_deletes);
  DiffMap(live.lpm, desired.lpm, changes.lpm_upserts, changes.lpm_deletes);
  DiffMap(live.exact6, desired.exact6, changes.exact6_upserts, changes.exact6_deletes);
  DiffMap(live.lpm6, desired.lpm6, changes.lpm6_upserts, changes.lpm6_deletes);
  DiffMap(live.endpoints, desired.endpoints, changes.endpoint_upserts, changes.endpoint_deletes);
  return changes;
}

absl::Status ApplyMapChanges(MapWriter& writer, const MapChanges& changes, MapState& live) {
  for (const auto& [key, value] : changes.exact_upserts) {
    if (absl::Status status = writer.UpsertExact(key, value); !status.ok()) {
      return Annotate(status, "upserting an exact policy entry");
    }
    live.exact[key] = value;
  }
  for (const auto& [key, value] : changes.lpm_upserts) {
    if (absl::Status status = writer.UpsertLpm(key, value); !status.ok()) {
      return Annotate(status, "upserting an LPM policy entry");
    }
    live.lpm[key] = value;
  }
  for (const auto& [key, value] : changes.exact6_upserts) {
    if (absl::Status status = writer.UpsertExact6(key, value); !status.ok()) {
      return Annotate(status, "upserting an IPv6 exact policy entry");
    }
    live.exact6[key] = value;
  }
  for (const auto& [key, value] : changes.lpm6_upserts) {
    if (absl::Status status = writer.UpsertLpm6(key, value); !status.ok()) {
      return Annotate(status, "upserting an IPv6 LPM policy entry");
    }
    live.lpm6[key] = value;
  }
  for (const auto& [ifindex, value] : changes.endpoint_upserts) {
    if (absl::Status status = writer.UpsertEndpoint(ifindex, value); !status.ok()) {
      return Annotate(status, absl::StrCat("upserting endpoint ifindex ", ifindex));
    }
    live.endpoints[ifindex] = value;
  }
  for (uint32_t ifindex : changes.endpoint_deletes) {
    if (absl::Status status = writer.DeleteEndpoint(ifindex); !status.ok()) {
      return Annotate(status, absl::StrCat("deleting endpoint ifindex ", ifindex));
    }
    live.endpoints.erase(ifindex);
  }
  for (const ms_policy_key& key : changes.exact_deletes) {
    if (absl::Status status = writer.DeleteExact(key); !status.ok()) {
      return Annotate(status, "deleting an exact policy entry");
    }
    live.exact.erase(key);
  }
  for (const ms_lpm_key& key : changes.lpm_deletes) {
    if (absl::Status status = writer.DeleteLpm(key); !status.ok()) {
      return Annotate(status, "deleting an LPM policy entry");
    }
    live.lpm.erase(key);
  }
  for (const ms_policy6_key& key : changes.exact6_deletes) {
    if (absl::Status status = writer.DeleteExact6(key); !status.ok()) {
      return Annotate(status, "deleting an IPv6 exact policy entry");
    }
    live.exact6.erase(key);
  }
  for (const ms_lpm6_key& key : changes.lpm6_deletes) {
    if (absl::Status status = writer.DeleteLpm6(key); !status.ok()) {
      return Annotate(status, "deleting an IPv6 LPM policy entry");
    }
    live.lpm6.erase(key);
  }
  return absl::OkStatus();
}

}  // namespace microseg
