// Reads one of the data path's ring buffers (map-pressure alerts, audit
// events) on its own thread and hands each record to a callback. One record
// type per ring. RAII: the thread runs from Start() until destruction, and
// the ring buffer is freed after it stopped.
#pragma once

#include <atomic>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

struct ring_buffer;

namespace microseg {

class RingBufferReader {
 public:
  // `ringbuf_fd` stays owned by the caller and must outlive the reader.
  // `what` names the ring in logs ("map-pressure ring buffer").
  template <typename Record>
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<RingBufferReader>> Start(
      int ringbuf_fd, std::string what, std::function<void(const Record&)> on_record) {
    return StartRaw(ringbuf_fd, std::move(what), sizeof(Record), [on_record = std::move(on_record)](const void* data) {
      Record record{};
      std::memcpy(&record, data, sizeof record);  // ring records are only 8-byte aligned
      if (on_record) on_record(record);
    });
  }
  ~RingBufferReader();
  RingBufferReader(const RingBufferReader&) = delete;
  RingBufferReader& operator=(const RingBufferReader&) = delete;

  uint64_t received() const { return received_; }

 private:
  using RawCallback = std::function<void(const void*)>;
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<RingBufferReader>> StartRaw(int ringbuf_fd, std::string what,
                                                                                  size_t record_size,
                                                                                  RawCallback on_record);
  RingBufferReader(std::string what, size_t record_size, RawCallback on_record)
      : what_(std::move(what)), record_size_(record_size), on_record_(std::move(on_record)) {}
  static int OnSample(void* ctx, void* data, size_t size);
  void Run();

  const std::string what_;
  const size_t record_size_;
  RawCallback on_record_;
  ring_buffer* ring_ = nullptr;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> received_{0};
  std::thread thread_;
};

}  // namespace microseg
