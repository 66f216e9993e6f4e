// A fake Ascend device for tests: a Paddle custom-device plugin that registers the device type "npu"
// and keeps its "device memory" in host memory. Paddle runs every op without an npu kernel on its CPU
// kernel (the custom-device fallback), so results equal CPU's; what this exercises is the device path
// itself: plugin discovery, paddle.set_device("npu:0"), place-aware tensors and copies, and Paddle
// Inference's Config.enable_custom_device("npu", 0).
//
// Built against the headers inside the installed paddlepaddle wheel (no Paddle library is linked):
//   g++ -O2 -shared -fPIC -std=c++17 -I<site-packages>/paddle/include fake_npu.cc -o libpaddle-custom-npu.so
// scripts/setup.sh does this through hardware/fake_npu/build.sh. Load it with CUSTOM_DEVICE_ROOT=<dir>.
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "paddle/phi/backends/device_ext.h"

namespace {

constexpr size_t kDevices = 1;
constexpr size_t kMemory = size_t(8) << 30;  // what memory stats report; nothing is reserved

thread_local int current_device = 0;
std::atomic<size_t> allocations{0};  // device allocations so far: tests read it to see work really came here

C_Status Ok() { return C_SUCCESS; }
C_Status DeviceOk(const C_Device) { return C_SUCCESS; }

C_Status SetDevice(const C_Device device) {
  if (device->id < 0 || size_t(device->id) >= kDevices) return C_ERROR;
  current_device = device->id;
  return C_SUCCESS;
}

C_Status GetDevice(const C_Device device) {
  device->id = current_device;
  return C_SUCCESS;
}

C_Status CreateStream(const C_Device, C_Stream* stream) {
  *stream = nullptr;  // every operation completes before it returns: one implicit stream
  return C_SUCCESS;
}
C_Status DestroyStream(const C_Device, C_Stream) { return C_SUCCESS; }
C_Status StreamOk(const C_Device, C_Stream) { return C_SUCCESS; }

C_Status CreateEvent(const C_Device, C_Event* event) {
  *event = nullptr;
  return C_SUCCESS;
}
C_Status RecordEvent(const C_Device, C_Stream, C_Event) { return C_SUCCESS; }
C_Status EventOk(const C_Device, C_Event) { return C_SUCCESS; }
C_Status StreamWaitEvent(const C_Device, C_Stream, C_Event) { return C_SUCCESS; }

C_Status Allocate(const C_Device, void** ptr, size_t size) {
  *ptr = std::malloc(size == 0 ? 1 : size);
  allocations.fetch_add(1, std::memory_order_relaxed);
  return *ptr ? C_SUCCESS : C_FAILED;
}
C_Status Deallocate(const C_Device, void* ptr, size_t) {
  std::free(ptr);
  return C_SUCCESS;
}
C_Status MemorySet(const C_Device, void* ptr, unsigned char value, size_t size) {
  std::memset(ptr, value, size);
  return C_SUCCESS;
}

C_Status Copy(const C_Device, void* dst, const void* src, size_t size) {
  if (size) std::memcpy(dst, src, size);
  return C_SUCCESS;
}
C_Status AsyncCopy(const C_Device device, C_Stream, void* dst, const void* src, size_t size) {
  return Copy(device, dst, src, size);
}
C_Status CopyP2P(const C_Device dst_device, const C_Device, void* dst, const void* src, size_t size) {
  return Copy(dst_device, dst, src, size);
}
C_Status AsyncCopyP2P(const C_Device dst_device, const C_Device src_device, C_Stream, void* dst,
                      const void* src, size_t size) {
  return CopyP2P(dst_device, src_device, dst, src, size);
}

C_Status DeviceCount(size_t* count) {
  *count = kDevices;
  return C_SUCCESS;
}
C_Status DeviceList(size_t* devices) {
  for (size_t i = 0; i < kDevices; ++i) devices[i] = i;
  return C_SUCCESS;
}
C_Status MemoryStats(const C_Device, size_t* total, size_t* free_memory) {
  *total = kMemory;
  *free_memory = kMemory;
  return C_SUCCESS;
}
C_Status MinChunk(const C_Device, size_t* size) {
  *size = 512;
  return C_SUCCESS;
}
C_Status Supported(const C_Device, bool* supported) {
  *supported = true;  // float16 and bfloat16 run on the CPU kernels
  return C_SUCCESS;
}

}  // namespace

// Not part of Paddle's plugin interface: how many device allocations the process has made (ctypes reads it).
extern "C" size_t FakeDeviceAllocations() { return allocations.load(); }

extern "C" void InitPlugin(CustomRuntimeParams* params) {
  PADDLE_CUSTOM_RUNTIME_CHECK_VERSION(params);
  params->device_type = const_cast<char*>("npu");
  params->sub_device_type = const_cast<char*>("fake");

  C_DeviceInterface* api = params->interface;
  std::memset(reinterpret_cast<char*>(api) + sizeof(api->size), 0, sizeof(C_DeviceInterface) - sizeof(api->size));
  api->initialize = Ok;
  api->finalize = Ok;
  api->init_device = DeviceOk;
  api->set_device = SetDevice;
  api->get_device = GetDevice;
  api->deinit_device = DeviceOk;

  api->create_stream = CreateStream;
  api->destroy_stream = DestroyStream;
  api->query_stream = StreamOk;
  api->synchronize_stream = StreamOk;
  api->create_event = CreateEvent;
  api->record_event = RecordEvent;
  api->destroy_event = EventOk;
  api->query_event = EventOk;
  api->synchronize_event = EventOk;
  api->stream_wait_event = StreamWaitEvent;
  api->synchronize_device = DeviceOk;

  api->device_memory_allocate = Allocate;
  api->device_memory_deallocate = Deallocate;
  api->host_memory_allocate = Allocate;
  api->host_memory_deallocate = Deallocate;
  api->unified_memory_allocate = Allocate;
  api->unified_memory_deallocate = Deallocate;
  api->device_memory_set = MemorySet;
  api->memory_copy_h2d = Copy;
  api->memory_copy_d2h = Copy;
  api->memory_copy_d2d = Copy;
  api->memory_copy_p2p = CopyP2P;
  api->async_memory_copy_h2d = AsyncCopy;
  api->async_memory_copy_d2h = AsyncCopy;
  api->async_memory_copy_d2d = AsyncCopy;
  api->async_memory_copy_p2p = AsyncCopyP2P;

  api->get_device_count = DeviceCount;
  api->get_device_list = DeviceList;
  api->device_memory_stats = MemoryStats;
  api->device_min_chunk_size = MinChunk;
  api->is_float16_supported = Supported;
  api->is_bfloat16_supported = Supported;
}
