#include "pressure_alert_reader.h"

#include <bpf/libbpf.h>

#include <cerrno>
#include <cstring>

#include "log.h"

namespace microseg {
namespace {

constexpr int kPollTimeoutMs = 200;  // how soon the destructor is noticed

}  // namespace

absl::StatusOr<std::unique_ptr<PressureAlertReader>> PressureAlertReader::Start(int ringbuf_fd, Callback on_alert) {
  std::unique_ptr<PressureAlertReader> reader(new PressureAlertReader(std::move(on_alert)));
  reader->ring_ = ring_buffer__new(ringbuf_fd, &PressureAlertReader::OnSample, reader.get(), nullptr);
  if (reader->ring_ == nullptr) return absl::ErrnoToStatus(errno, "open the map-pressure ring buffer");
  reader->thread_ = std::thread([r = reader.get()] { r->Run(); });
  return reader;
}

PressureAlertReader::~PressureAlertReader() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  if (ring_ != nullptr) ring_buffer__free(ring_);
}

int PressureAlertReader::OnSample(void* ctx, void* data, size_t size) {
  auto* self = static_cast<PressureAlertReader*>(ctx);
  if (size < sizeof(ms_pressure_alert)) {
    LogWarning("map-pressure ring buffer: short record of ", size, " bytes ignored");
    return 0;
  }
  ms_pressure_alert alert{};
  std::memcpy(&alert, data, sizeof alert);
  ++self->received_;
  if (self->on_alert_) self->on_alert_(alert);
  return 0;
}

void PressureAlertReader::Run() {
  while (!stop_) {
    const int n = ring_buffer__poll(ring_, kPollTimeoutMs);
    if (n < 0 && n != -EINTR) {
      LogError("map-pressure ring buffer: poll failed (", std::strerror(-n), "), alerts are no longer read");
      return;
    }
  }
}

}  // namespace microseg
