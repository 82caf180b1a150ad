#include "ring_buffer_reader.h"

#include <bpf/libbpf.h>

#include <cerrno>
#include <cstring>

#include "log.h"

namespace microseg {
namespace {

constexpr int kPollTimeoutMs = 200;  // how soon the destructor is noticed

}  // namespace

absl::StatusOr<std::unique_ptr<RingBufferReader>> RingBufferReader::StartRaw(int ringbuf_fd, std::string what,
                                                                             size_t record_size,
                                                                             RawCallback on_record) {
  std::unique_ptr<RingBufferReader> reader(new RingBufferReader(std::move(what), record_size, std::move(on_record)));
  reader->ring_ = ring_buffer__new(ringbuf_fd, &RingBufferReader::OnSample, reader.get(), nullptr);
  if (reader->ring_ == nullptr) return absl::ErrnoToStatus(errno, "open the " + reader->what_);
  reader->thread_ = std::thread([r = reader.get()] { r->Run(); });
  return reader;
}

RingBufferReader::~RingBufferReader() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  if (ring_ != nullptr) ring_buffer__free(ring_);
}

int RingBufferReader::OnSample(void* ctx, void* data, size_t size) {
  auto* self = static_cast<RingBufferReader*>(ctx);
  if (size < self->record_size_) {
    LogWarning(self->what_, ": short record of ", size, " bytes ignored");
    return 0;
  }
  ++self->received_;
  self->on_record_(data);
  return 0;
}

void RingBufferReader::Run() {
  while (!stop_) {
    const int n = ring_buffer__poll(ring_, kPollTimeoutMs);
    if (n < 0 && n != -EINTR) {
      LogError(what_, ": poll failed (", std::strerror(-n), "), its records are no longer read");
      return;
    }
  }
}

}  // namespace microseg
