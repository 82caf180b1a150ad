// Reads the data path's map-pressure alerts (ms_pressure_ev ring buffer) on
// its own thread and hands each to a callback. RAII: the thread runs from
// Start() until destruction, and the ring buffer is freed after it stopped.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <thread>

#include "absl/status/statusor.h"
#include "microseg/datapath.h"

struct ring_buffer;

namespace microseg {

class PressureAlertReader {
 public:
  using Callback = std::function<void(const ms_pressure_alert&)>;

  // `ringbuf_fd` stays owned by the caller and must outlive the reader.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<PressureAlertReader>> Start(int ringbuf_fd, Callback on_alert);
  ~PressureAlertReader();
  PressureAlertReader(const PressureAlertReader&) = delete;
  PressureAlertReader& operator=(const PressureAlertReader&) = delete;

  uint64_t received() const { return received_; }

 private:
  explicit PressureAlertReader(Callback on_alert) : on_alert_(std::move(on_alert)) {}
  static int OnSample(void* ctx, void* data, size_t size);
  void Run();

  Callback on_alert_;
  ring_buffer* ring_ = nullptr;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> received_{0};
  std::thread thread_;
};

}  // namespace microseg
