// sched_switch's prev_state across kernels. Its upper bits changed meaning
// twice (Linux 4.8 moved preemption's bit; 4.14 masked the state down to
// TASK_REPORT and repurposed the bits above), and trace_processor reads them
// by the kernel version in the machine's SystemInfo (before 4.8 when there is
// none). A side merged onto another's machine is read with that machine's
// kernel, so its states are re-encoded to read as they read on their own.
#ifndef VPERFETTO_MERGE_TASK_STATE_H_
#define VPERFETTO_MERGE_TASK_STATE_H_

#include <cstdint>
#include <cstdlib>
#include <string>

namespace vpmerge {

enum class KernelEra : uint8_t {
  kBefore4_8 = 0,  // also: no (parsable) SystemInfo, as trace_processor assumes 4.4
  kBefore4_14 = 1,
  kSince4_14 = 2,
};

// The era of a SystemInfo's utsname (sysname, release) as trace_processor
// parses it: "MAJOR.MINOR..." of a Linux kernel.
inline KernelEra EraOfKernel(const std::string& sysname, const std::string& release) {
  if (sysname != "Linux" || release.empty()) return KernelEra::kBefore4_8;
  const char* p = release.c_str();
  char* end = nullptr;
  unsigned long major = strtoul(p, &end, 10);
  if (end == p || *end != '.') return KernelEra::kBefore4_8;
  p = end + 1;
  unsigned long minor = strtoul(p, &end, 10);
  if (end == p) return KernelEra::kBefore4_8;
  if (major > 4 || (major == 4 && minor >= 14)) return KernelEra::kSince4_14;
  if (major == 4 && minor >= 8) return KernelEra::kBefore4_14;
  return KernelEra::kBefore4_8;
}

// What a state reads as (S D T t X Z in the low six bits, as every kernel
// has them, and these above).
namespace task {
constexpr uint32_t kLow = 0x3f, kParked = 1u << 6, kIdle = 1u << 7, kPreempted = 1u << 8,
                   kTaskDead = 1u << 9, kWakeKill = 1u << 10, kWaking = 1u << 11, kNoLoad = 1u << 12,
                   kInvalid = 1u << 15;
constexpr uint32_t kUninterruptible = 2;
}  // namespace task

inline uint32_t ReadTaskState(uint64_t raw, KernelEra era) {
  using namespace task;
  uint32_t s = static_cast<uint32_t>(raw & 0xffff);  // read as 16 bits
  uint32_t r = s & kLow;
  if (era == KernelEra::kSince4_14) {
    if (s & 0x40) r |= kParked;
    if (s & 0x80) r |= kIdle;
    if (s & 0x100) r |= kPreempted;
    if (s & 0xfe00) r = kInvalid;
    return r;
  }
  if (s & 0x40) r |= kTaskDead;
  if (s & 0x80) r |= kWakeKill;
  if (s & 0x100) r |= kWaking;
  if (s & 0x200) r |= kParked;
  if (s & 0x400) r |= kNoLoad;
  if (r == (kUninterruptible | kNoLoad)) r = kIdle;
  if (s & (era == KernelEra::kBefore4_14 ? 0x1000 : 0x800)) r |= kPreempted;
  return r;
}

enum class StateLoss : uint8_t { kNone, kApproximated };

// A raw prev_state for `to` that reads as `raw` reads on `from`. A state
// `to` cannot say (4.14+ has no TASK_DEAD, WAKEKILL, WAKING or NOLOAD flags)
// keeps what it can; when nothing of it is left, it is written as one that
// reads as unknown (not as running).
inline uint64_t TranslateTaskState(uint64_t raw, KernelEra from, KernelEra to, StateLoss* loss) {
  using namespace task;
  *loss = StateLoss::kNone;
  if (from == to) return raw;
  uint32_t r = ReadTaskState(raw, from);
  if (r == kInvalid) return to == KernelEra::kSince4_14 ? 0x8000 : raw;  // unknown either way
  uint64_t out = r & kLow;
  if (to == KernelEra::kSince4_14) {
    if (r & kParked) out |= 0x40;
    if (r & kIdle) out |= 0x80;
    if (r & kPreempted) out |= 0x100;
    if (r & (kTaskDead | kWakeKill | kWaking | kNoLoad)) {
      *loss = StateLoss::kApproximated;
      if (out == 0) out = 0x8000;
    }
    return out;
  }
  if (r & kTaskDead) out |= 0x40;
  if (r & kWakeKill) out |= 0x80;
  if (r & kWaking) out |= 0x100;
  if (r & kParked) out |= 0x200;
  if (r & kNoLoad) out |= 0x400;
  if (r & kIdle) {
    out |= kUninterruptible | 0x400;  // read back as idle, when alone
    if (r != kIdle) *loss = StateLoss::kApproximated;
  }
  if (r & kPreempted) out |= to == KernelEra::kBefore4_14 ? 0x1000 : 0x800;
  return out;
}

}  // namespace vpmerge

#endif  // VPERFETTO_MERGE_TASK_STATE_H_
