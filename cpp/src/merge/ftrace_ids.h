// Which fields of each ftrace event hold pids (or tgids, tids) and cpu
// numbers: facts of the public Perfetto protos (protos/perfetto/trace/ftrace/
// *.proto: the event's number in FtraceEvent, then the field numbers in its
// message), listed for every event that has such fields. The merge offsets
// them so a moved side's processes and cpus never meet the main side's.
#ifndef VPERFETTO_MERGE_FTRACE_IDS_H_
#define VPERFETTO_MERGE_FTRACE_IDS_H_

#include <algorithm>
#include <array>
#include <cstdint>
#include <iterator>

namespace vpmerge {

struct FtraceEventIds {
  uint32_t event;    // FtraceEvent field number
  uint32_t pids[4];  // fields holding a pid, tgid or tid (0: none)
  uint32_t cpus[2];  // fields holding a cpu number
};

// Sorted by event.
constexpr FtraceEventIds kFtraceEventIds[] = {
    {4, {2, 6, 0, 0}, {0, 0}},  // sched_switch
    {11, {0, 0, 0, 0}, {2, 0}},  // cpu_frequency
    {12, {0, 0, 0, 0}, {3, 0}},  // cpu_frequency_limits
    {13, {0, 0, 0, 0}, {2, 0}},  // cpu_idle
    {14, {0, 0, 0, 0}, {3, 0}},  // clock_enable
    {15, {0, 0, 0, 0}, {3, 0}},  // clock_disable
    {16, {0, 0, 0, 0}, {3, 0}},  // clock_set_rate
    {17, {2, 0, 0, 0}, {5, 0}},  // sched_wakeup
    {18, {1, 0, 0, 0}, {0, 0}},  // sched_blocked_reason
    {19, {0, 0, 0, 0}, {1, 0}},  // sched_cpu_hotplug
    {20, {2, 0, 0, 0}, {5, 0}},  // sched_waking
    {35, {2, 0, 0, 0}, {0, 0}},  // lowmemory_kill
    {50, {3, 4, 0, 0}, {0, 0}},  // binder_transaction
    {52, {1, 2, 0, 0}, {0, 0}},  // binder_set_priority
    {59, {0, 0, 0, 0}, {5, 0}},  // workqueue_queue_work
    {67, {3, 0, 0, 0}, {0, 0}},  // cgroup_attach_task
    {71, {3, 0, 0, 0}, {0, 0}},  // cgroup_transfer_tasks
    {80, {1, 0, 0, 0}, {0, 0}},  // tracing_mark_write
    {88, {1, 0, 0, 0}, {0, 0}},  // mdp_trace_counter
    {114, {2, 0, 0, 0}, {5, 0}},  // sched_wakeup_new
    {235, {1, 0, 0, 0}, {0, 0}},  // task_newtask
    {236, {1, 0, 0, 0}, {0, 0}},  // task_rename
    {237, {2, 3, 0, 0}, {0, 0}},  // sched_process_exec
    {238, {2, 3, 0, 0}, {0, 0}},  // sched_process_exit
    {239, {2, 4, 0, 0}, {0, 0}},  // sched_process_fork
    {240, {2, 0, 0, 0}, {0, 0}},  // sched_process_free
    {241, {2, 0, 0, 0}, {0, 0}},  // sched_process_hang
    {242, {2, 0, 0, 0}, {0, 0}},  // sched_process_wait
    {325, {4, 0, 0, 0}, {0, 0}},  // signal_generate
    {326, {3, 0, 0, 0}, {0, 0}},  // oom_score_adj_update
    {331, {3, 0, 0, 0}, {0, 0}},  // zero
    {333, {1, 0, 0, 0}, {0, 0}},  // sde_tracing_mark_write
    {334, {1, 0, 0, 0}, {0, 0}},  // mark_victim
    {343, {0, 0, 0, 0}, {1, 0}},  // cpuhp_exit
    {344, {0, 0, 0, 0}, {1, 0}},  // cpuhp_multi_enter
    {345, {0, 0, 0, 0}, {1, 0}},  // cpuhp_enter
    {346, {0, 0, 0, 0}, {1, 0}},  // cpuhp_latency
    {348, {1, 0, 0, 0}, {0, 0}},  // dpu_tracing_mark_write
    {349, {1, 0, 0, 0}, {0, 0}},  // g2d_tracing_mark_write
    {350, {2, 0, 0, 0}, {0, 0}},  // mali_tracing_mark_write
    {353, {4, 0, 0, 0}, {0, 0}},  // sched_pi_setprio
    {354, {2, 0, 0, 0}, {0, 0}},  // sde_sde_evtlog
    {421, {0, 0, 0, 0}, {4, 0}},  // sched_cpu_util_cfs
    {432, {7, 0, 0, 0}, {0, 0}},  // android_fs_dataread_start
    {434, {7, 0, 0, 0}, {0, 0}},  // android_fs_datawrite_start
    {436, {5, 0, 0, 0}, {0, 0}},  // android_fs_fsync_start
    {467, {3, 0, 0, 0}, {0, 0}},  // lwis_tracing_mark_write
    {470, {5, 0, 0, 0}, {0, 0}},  // mali_mali_KCPU_CQS_SET
    {471, {5, 0, 0, 0}, {0, 0}},  // mali_mali_KCPU_CQS_WAIT_START
    {472, {5, 0, 0, 0}, {0, 0}},  // mali_mali_KCPU_CQS_WAIT_END
    {473, {3, 0, 0, 0}, {0, 0}},  // mali_mali_KCPU_FENCE_SIGNAL
    {474, {3, 0, 0, 0}, {0, 0}},  // mali_mali_KCPU_FENCE_WAIT_START
    {475, {3, 0, 0, 0}, {0, 0}},  // mali_mali_KCPU_FENCE_WAIT_END
    {482, {1, 0, 0, 0}, {0, 0}},  // mali_mali_CSF_INTERRUPT_START
    {483, {1, 0, 0, 0}, {0, 0}},  // mali_mali_CSF_INTERRUPT_END
    {484, {1, 0, 0, 0}, {0, 0}},  // samsung_tracing_mark_write
    {487, {1, 2, 13, 18}, {0, 0}},  // sched_switch_with_ctrs
    {490, {1, 0, 0, 0}, {0, 0}},  // panel_write_generic
    {491, {2, 0, 0, 0}, {4, 5}},  // sched_migrate_task
    {508, {0, 0, 0, 0}, {1, 0}},  // dcvsh_freq
    {518, {1, 0, 0, 0}, {0, 0}},  // mali_mali_PM_MCU_IN_SLEEP
    {519, {1, 0, 0, 0}, {0, 0}},  // mali_mali_PM_MCU_OFF
    {520, {1, 0, 0, 0}, {0, 0}},  // mali_mali_PM_MCU_ON
    {523, {1, 0, 0, 0}, {0, 0}},  // mali_mali_PM_MCU_ON_HALT
    {526, {1, 0, 0, 0}, {0, 0}},  // mali_mali_PM_MCU_ON_PEND_HALT
    {527, {1, 0, 0, 0}, {0, 0}},  // mali_mali_PM_MCU_ON_PEND_SLEEP
    {529, {1, 0, 0, 0}, {0, 0}},  // mali_mali_PM_MCU_PEND_OFF
    {530, {1, 0, 0, 0}, {0, 0}},  // mali_mali_PM_MCU_PEND_ON_RELOAD
    {531, {1, 0, 0, 0}, {0, 0}},  // mali_mali_PM_MCU_POWER_DOWN
    {532, {1, 0, 0, 0}, {0, 0}},  // mali_mali_PM_MCU_RESET_WAIT
    {540, {1, 0, 0, 0}, {0, 0}},  // sched_wakeup_task_attr
    {603, {3, 0, 0, 0}, {0, 0}},  // f2fs_lock_elapsed_time
    {604, {2, 0, 0, 0}, {0, 0}},  // sched_group_tracker
    {614, {0, 0, 0, 0}, {1, 0}},  // psci_domain_idle_exit
    {615, {0, 0, 0, 0}, {1, 0}},  // psci_domain_idle_enter

};

inline const FtraceEventIds* FindFtraceEventIds(uint32_t event) {
  const FtraceEventIds* end = std::end(kFtraceEventIds);
  const FtraceEventIds* it = std::lower_bound(
      std::begin(kFtraceEventIds), end, event,
      [](const FtraceEventIds& e, uint32_t id) { return e.event < id; });
  return it != end && it->event == event ? it : nullptr;
}

// The same as bit masks, looked up in O(1) on the hot paths: bit k is set
// when field k of the event holds a pid (or a cpu). Every such field number
// is below 64 and every event number below kMaxFtraceEventId (checked at
// compile time).
struct FtraceFieldMasks {
  uint64_t pids = 0, cpus = 0;
};
constexpr uint32_t kMaxFtraceEventId = 1024;

constexpr std::array<FtraceFieldMasks, kMaxFtraceEventId> MakeFtraceMasks() {
  std::array<FtraceFieldMasks, kMaxFtraceEventId> t{};
  for (const FtraceEventIds& e : kFtraceEventIds) {
    for (uint32_t id : e.pids)
      if (id) t[e.event].pids |= uint64_t{1} << id;
    for (uint32_t id : e.cpus)
      if (id) t[e.event].cpus |= uint64_t{1} << id;
  }
  return t;
}
constexpr std::array<FtraceFieldMasks, kMaxFtraceEventId> kFtraceMasks = MakeFtraceMasks();

constexpr bool FtraceIdsFitMasks() {
  for (const FtraceEventIds& e : kFtraceEventIds) {
    if (e.event >= kMaxFtraceEventId) return false;
    for (uint32_t id : e.pids)
      if (id >= 64) return false;
    for (uint32_t id : e.cpus)
      if (id >= 64) return false;
  }
  return true;
}
static_assert(FtraceIdsFitMasks(), "an ftrace event or field number beyond the masks");

inline FtraceFieldMasks FtraceMasks(uint32_t event) {
  return event < kMaxFtraceEventId ? kFtraceMasks[event] : FtraceFieldMasks{};
}
inline bool InMask(uint64_t mask, uint32_t field) { return field < 64 && ((mask >> field) & 1); }

}  // namespace vpmerge

#endif  // VPERFETTO_MERGE_FTRACE_IDS_H_
