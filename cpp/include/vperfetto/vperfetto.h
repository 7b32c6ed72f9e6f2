/*
 * vperfetto.h - the C ABI of libvperfetto.
 *
 * This header is the single source of truth for the ABI: C and C++ programs
 * include it, and the build feeds it (preprocessed with -DVPERFETTO_CDEF) to
 * cffi, so the Python binding can never drift from the library.
 *
 * Rules that keep it stable and cffi-friendly:
 *   - plain C99, fixed-width integers, explicit enum values, opaque handles;
 *   - calls that can fail return an int32_t status (VP_OK == 0) and fill a
 *     caller-owned vp_error with a readable message; there is no global error
 *     state;
 *   - hot tracing calls return void and never fail: outside a session, or for
 *     a disabled category, they do nothing and cost almost nothing;
 *   - every *_new has a matching *_free.
 */
#ifndef VPERFETTO_VPERFETTO_H_
#define VPERFETTO_VPERFETTO_H_

#ifndef VPERFETTO_CDEF
#include <stddef.h>
#include <stdint.h>
#endif

/* Bumped whenever a declaration below changes incompatibly. */
#define VPERFETTO_ABI_VERSION 1

#if defined(VPERFETTO_CDEF)
#define VP_API
#elif defined(VPERFETTO_BUILDING)
#define VP_API __attribute__((visibility("default")))
#else
#define VP_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Status codes and errors                                                  */
/* ------------------------------------------------------------------------ */

enum vp_status_code {
  VP_OK = 0,
  VP_E_INVALID_ARGUMENT = 1, /* a bad value was passed */
  VP_E_STATE = 2,            /* wrong state: already tracing, not tracing... */
  VP_E_IO = 3,               /* a file could not be opened, read or written */
  VP_E_NO_MEMORY = 4,        /* an allocation failed or a limit was reached */
  VP_E_FORMAT = 5,           /* input is not a valid trace */
  VP_E_UNSUPPORTED = 6,      /* not available in this build or platform */
  VP_E_INTERNAL = 7          /* a bug: please report it */
};

/* Filled by calls that fail. Owned by the caller; may be NULL. */
typedef struct vp_error {
  int32_t code;
  char message[256];
} vp_error;

/* A short static description of a status code ("invalid argument", ...). */
VP_API const char* vp_status_name(int32_t code);

/* ------------------------------------------------------------------------ */
/* Version                                                                  */
/* ------------------------------------------------------------------------ */

/* VPERFETTO_ABI_VERSION of the library that is loaded. */
VP_API uint32_t vp_abi_version(void);
/* The package version the library was built as, e.g. "0.1.0". */
VP_API const char* vp_version(void);

/* ------------------------------------------------------------------------ */
/* Clocks and ids                                                           */
/* ------------------------------------------------------------------------ */

/* CLOCK_BOOTTIME in nanoseconds: the clock every event timestamp uses. */
VP_API uint64_t vp_boot_time_ns(void);
/* Sleeps at least `us` microseconds (restarted after signals). */
VP_API void vp_sleep_us(uint64_t us);
/* A random, non-zero 64-bit id (the UUID-lsb generator used for tracks). */
VP_API uint64_t vp_uuid_lsb(void);
/* The x86 time-stamp counter; 0 where there is none. */
VP_API uint64_t vp_tsc(void);
/* Writes a clock-sync marker on the calling thread's track: a slice named
 * "guest_clock_sync" with the annotations clock_sync_boottime,
 * clock_sync_monotonic and clock_sync_cputime (the TSC), read back to back.
 * The merge pairs guest and host markers through the shared TSC. */
VP_API void vp_clock_sync_marker(void);

/* ------------------------------------------------------------------------ */
/* Session configuration                                                    */
/* ------------------------------------------------------------------------ */

enum vp_buffer_mode {
  VP_BUFFER_RING = 0,    /* in memory; when full, the oldest data goes */
  VP_BUFFER_DISCARD = 1, /* in memory; when full, new data is dropped */
  VP_BUFFER_STREAM = 2   /* straight to the output file; bounded by disk */
};

typedef struct vp_config vp_config;

VP_API vp_config* vp_config_new(void);
VP_API void vp_config_free(vp_config* config);
/* Where the trace goes. Required. */
VP_API int32_t vp_config_set_output(vp_config* config, const char* path,
                                    vp_error* err);
/* Buffer size in KiB (ignored for streaming, which still uses it as a hint
 * for its chunk size) and one of vp_buffer_mode. Default: 16384 KiB, ring. */
VP_API int32_t vp_config_set_buffer(vp_config* config, uint32_t size_kb,
                                    int32_t mode, vp_error* err);
/* Categories. With no enabled category listed every category is recorded;
 * otherwise only the listed ones. A disabled category is never recorded.
 * Events without a category (id 0) are recorded in every session. */
VP_API int32_t vp_config_enable_category(vp_config* config, const char* name,
                                         vp_error* err);
VP_API int32_t vp_config_disable_category(vp_config* config, const char* name,
                                          vp_error* err);
/* Sequence ids: base + 1 for the session's own packets, base + 2, ... for
 * the writing threads (default base 0). Processes whose traces will be
 * concatenated into one take disjoint ranges. */
VP_API int32_t vp_config_set_sequence_base(vp_config* config, uint32_t base, vp_error* err);
/* Timestamps. Incremental (the default, as the Perfetto SDK writes them):
 * after every incremental-state reset a sequence defines its clock 64
 * (CLOCK_BOOTTIME at that instant, in units of unit_ns) and each packet
 * carries the delta from the sequence's previous timestamp; a timestamp
 * earlier than that one is written absolute. Not incremental: every packet
 * carries its absolute CLOCK_BOOTTIME ns. unit_ns (1 .. 1000000000, 0 means
 * 1) is TrackEventConfig.timestamp_unit_multiplier: times are rounded down
 * to it (relative to the reset), deltas shrink by it. Both are recorded in
 * the trace's TraceConfig (disable_incremental_timestamps). */
VP_API int32_t vp_config_set_incremental_timestamps(vp_config* config, int32_t incremental,
                                                    uint32_t unit_ns, vp_error* err);
/* Crash-proof buffers (default on): the session's chunks live in
 * `<output>.vpbuf`, a file mapped shared, so a process that dies (SIGKILL, a
 * segfault, _exit) leaves every packet it completed there; vp_recover()
 * rebuilds the trace, and so does the next session started on the same
 * output path. The file is removed once the trace is written. 0: the chunks
 * stay in anonymous memory. */
VP_API int32_t vp_config_set_crash_safe(vp_config* config, int32_t on, vp_error* err);
/* Stream mode: every thread's complete packets reach the file at least every
 * `ms` milliseconds (default 100; 0: only when a chunk fills, on flush and at
 * stop). At most 3600000. */
VP_API int32_t vp_config_set_flush_period_ms(vp_config* config, uint32_t ms, vp_error* err);
/* Compression (default 0: none): at stop, once the trace is written, its
 * packets are rewritten in runs, each deflated (zlib, `level` 1 fast .. 9
 * small) in one TracePacket.compressed_packets, as the Perfetto tracing
 * service does for TraceConfig.compression_type = DEFLATE (recorded in the
 * trace's TraceConfig); the Perfetto UI, trace_processor and vperfetto's
 * readers inflate them. Track events of whole-program tracing shrink ~7x.
 * Applies to a regular output file; a crash leaves the uncompressed trace.
 * VP_E_UNSUPPORTED from vp_session_start in a build without zlib. */
VP_API int32_t vp_config_set_compression(vp_config* config, uint32_t level, vp_error* err);

/* ------------------------------------------------------------------------ */
/* Sessions                                                                 */
/* ------------------------------------------------------------------------ */

typedef struct vp_session vp_session;

/* Starts the process's tracing session; one at a time (VP_E_STATE if one is
 * running). The output file is created here, so an unwritable path fails at
 * once. */
VP_API int32_t vp_session_start(const vp_config* config, vp_session** out,
                                vp_error* err);
/* Hands everything written so far to the buffer (and, when streaming, to the
 * file). */
VP_API int32_t vp_session_flush(vp_session* session, vp_error* err);
/* Stops the session and writes the trace file. Idempotent. */
VP_API int32_t vp_session_stop(vp_session* session, vp_error* err);
/* Stops the session if needed (ignoring errors) and frees it. */
VP_API void vp_session_free(vp_session* session);
/* 1 while this session is recording. */
VP_API int32_t vp_session_is_active(const vp_session* session);
/* 1 while any session of this process is recording. */
VP_API int32_t vp_is_tracing(void);

enum vp_stat {
  VP_STAT_PACKETS_WRITTEN = 0,   /* packets in the trace (so far) */
  VP_STAT_BYTES_WRITTEN = 1,     /* bytes of packets handed to the buffer */
  VP_STAT_PACKETS_DROPPED = 2,   /* packets lost: discarded or overwritten */
  VP_STAT_CHUNKS_DISCARDED = 3,  /* chunks refused by a full discard buffer */
  VP_STAT_CHUNKS_OVERWRITTEN = 4,/* chunks evicted from a full ring buffer */
  VP_STAT_SEQUENCES = 5,         /* writer sequences (threads) seen */
  VP_STAT_BUFFER_BYTES = 6       /* bytes the buffer holds now */
};
/* A statistic of the session (see vp_stat); 0 for an unknown one. */
VP_API uint64_t vp_session_stat(const vp_session* session, int32_t stat);
/* Where vp_session_start recovered the trace of a process that had died
 * tracing into the same output path ("" when it found none): beside the
 * output, `<stem>.crash-<pid><ext>`. It also said so on stderr. */
VP_API const char* vp_session_recovered(const vp_session* session);

/* ------------------------------------------------------------------------ */
/* Crash recovery                                                           */
/* ------------------------------------------------------------------------ */

typedef struct vp_recovery {
  uint32_t image_version;    /* format version of the crash image */
  uint32_t pid;              /* the process that died */
  int32_t mode;              /* its vp_buffer_mode */
  uint32_t sequences;        /* writer sequences recovered */
  uint64_t packets;          /* packets recovered from the image */
  uint64_t bytes;
  uint64_t chunks;
  uint64_t stream_bytes;     /* stream mode: bytes kept from the output file */
  uint64_t packets_lost;     /* overwritten or dropped while it ran */
  uint64_t packets_skipped;  /* malformed, or without their incremental state */
  uint64_t chunks_lost;      /* chunks missing between recovered ones */
  uint64_t last_timestamp_ns;/* the newest recovered timestamp (BOOTTIME) */
  char session_output[2048]; /* the output path the dead session wrote */
} vp_recovery;

/* Rebuilds a valid trace from a crash image (`<output>.vpbuf`) into
 * `output` (NULL or "": the dead session's own output path), written to a
 * temporary file and renamed. The image is left alone. `report` may be NULL.
 * A corrupt or truncated image gives VP_E_FORMAT (or fewer packets), a newer
 * format version VP_E_UNSUPPORTED. */
VP_API int32_t vp_recover(const char* image, const char* output, vp_recovery* report,
                          vp_error* err);

/* ------------------------------------------------------------------------ */
/* Names, categories, tracks                                                */
/* ------------------------------------------------------------------------ */

/* Registers a category and returns its id (1..255), the same id for the same
 * name. Returns 0 (= uncategorized) for NULL, an empty name or when the table
 * is full. Thread-safe. */
VP_API uint32_t vp_category(const char* name);
/* Interns an event or annotation name (len bytes, no NUL needed) for the life
 * of the process and returns its id (> 0). Returns 0 when the table is full
 * (use the *_str calls then). Thread-safe. */
VP_API uint32_t vp_intern(const char* name, size_t len);

/* Track handles. 0 is the calling thread's track; VP_TRACK_PROCESS the
 * process track. */
enum vp_track_const { VP_TRACK_THREAD = 0, VP_TRACK_PROCESS = 1 };

/* A named track for slices that are not on a thread (async work), under
 * `parent` (a track handle; 0 means the process track). Every call makes a
 * new track with its own uuid. */
VP_API int32_t vp_track_new(const char* name, uint32_t parent, uint32_t* out,
                            vp_error* err);
/* A counter track under the process track. The same name returns the same
 * track; `unit` may be NULL or one of "ns", "count", "bytes" (the Perfetto
 * built-in units) or any other unit name. */
VP_API int32_t vp_counter_track(const char* name, const char* unit,
                                uint32_t* out, vp_error* err);
/* A track under the calling thread's track for short-lived work, e.g. one
 * asyncio task: named `name`, a new uuid. vp_track_free() gives the handle
 * back when the work is gone; a later vp_track_new_for_thread() may reuse it
 * for a new track (new uuid, described again). Nothing may be written on a
 * freed handle. At most 65536 such tracks live at once. */
VP_API int32_t vp_track_new_for_thread(const char* name, uint32_t* out, vp_error* err);
/* Frees a track from vp_track_new_for_thread (others are ignored). */
VP_API void vp_track_free(uint32_t track);
/* 1 while a session records events of `category` (0: uncategorized). */
VP_API int32_t vp_category_enabled(uint32_t category);
/* The uuid written for a track handle (the calling thread's uuid for 0); 0
 * for an unknown handle. */
VP_API uint64_t vp_track_uuid(uint32_t track);

/* Names of this process's track and of the calling thread's track. */
VP_API void vp_set_process_name(const char* name);
VP_API void vp_set_thread_name(const char* name);
/* Names the process only if no name was set (a default, e.g. the program's). */
VP_API void vp_set_default_process_name(const char* name);

/* ------------------------------------------------------------------------ */
/* Events: the hot path                                                     */
/* ------------------------------------------------------------------------ */

/* A slice on the calling thread's track; `name` is an id from vp_intern. */
VP_API void vp_begin(uint32_t category, uint32_t name);
/* Ends the innermost slice begun on this thread by vp_begin/vp_begin_str.
 * An end without a matching begin is ignored, so the trace stays balanced. */
VP_API void vp_end(void);
VP_API void vp_instant(uint32_t category, uint32_t name);
/* The same with a name that is not interned (written inline). */
VP_API void vp_begin_str(uint32_t category, const char* name, size_t len);
VP_API void vp_instant_str(uint32_t category, const char* name, size_t len);
/* A counter sample on a track from vp_counter_track. */
VP_API void vp_counter_int(uint32_t track, int64_t value);
VP_API void vp_counter_double(uint32_t track, double value);

/* ------------------------------------------------------------------------ */
/* Events: the general form (annotations, tracks, timestamps, flows)        */
/* ------------------------------------------------------------------------ */

enum vp_event_type {
  VP_EVENT_BEGIN = 1,
  VP_EVENT_END = 2,
  VP_EVENT_INSTANT = 3,
  VP_EVENT_COUNTER = 4
};

enum vp_arg_type {
  VP_ARG_INT = 0,     /* uses i */
  VP_ARG_UINT = 1,    /* uses u */
  VP_ARG_DOUBLE = 2,  /* uses d */
  VP_ARG_BOOL = 3,    /* uses i (0 or not) */
  VP_ARG_STRING = 4,  /* uses s and len */
  VP_ARG_POINTER = 5, /* uses u */
  VP_ARG_DICT = 6,    /* u: the next u entries (and theirs) are its named entries */
  VP_ARG_ARRAY = 7,   /* u: the next u entries (and theirs) are its elements; their
                         names are ignored */
  VP_ARG_NAME = 8     /* s and len: the name of the entry that follows, written
                         inline instead of its `name` id (for names not interned) */
};

/* A debug annotation. `name` is an id from vp_intern. Nested values are
 * flattened in pre-order: a VP_ARG_DICT or VP_ARG_ARRAY entry is followed by
 * its u children, each of which may be a container in turn (at most 32
 * levels deep); vp_event.nargs counts every entry. A container whose
 * children run past nargs keeps those that exist. */
typedef struct vp_arg {
  uint32_t name;
  int32_t type;
  int64_t i;
  uint64_t u;
  double d;
  const char* s;
  size_t len;
} vp_arg;

typedef struct vp_event {
  int32_t type;              /* vp_event_type */
  uint32_t category;         /* 0: none */
  uint32_t name;             /* an id from vp_intern, or 0 */
  const char* name_str;      /* used when name == 0: an inline name */
  size_t name_len;
  uint32_t track;            /* 0: the calling thread's track */
  uint64_t timestamp_ns;     /* CLOCK_BOOTTIME; 0: now */
  const vp_arg* args;
  uint32_t nargs;
  const uint64_t* flows;              /* flow ids this event continues */
  uint32_t nflows;
  const uint64_t* terminating_flows;  /* flow ids this event ends */
  uint32_t nterminating_flows;
  int32_t counter_is_double;          /* VP_EVENT_COUNTER: which value */
  int64_t counter_int;
  double counter_double;
} vp_event;

/* Writes one event. Begin/end on the thread track (track 0) take part in the
 * same nesting as vp_begin/vp_end; on other tracks they are written as given
 * (async slices may begin and end on different threads). */
VP_API void vp_emit(const vp_event* event);

/* ------------------------------------------------------------------------ */
/* Whole-program tracing: one slice per function call                       */
/* ------------------------------------------------------------------------ */
/* What `python -m vperfetto run` and vperfetto.profile() write: each call is
 * a slice on the calling thread's track named after the function, with its
 * source location (file, line), both interned once per sequence. */

/* Registers a function (file NULL: no source location, e.g. a C function)
 * and returns its id for vp_func_enter; 0 when the table (1M functions) is
 * full or the strings are longer than 64 KiB. Thread-safe. */
VP_API uint32_t vp_func_register(const char* name, size_t name_len, const char* file,
                                 size_t file_len, uint32_t line);
/* A call of `func` begins on this thread (func 0: kept for nesting, never
 * written). Calls entered outside a session are never written. */
VP_API void vp_func_enter(uint32_t func);
/* The innermost call entered on this thread ends (ignored when none). */
VP_API void vp_func_exit(void);
/* The same with a key (e.g. the code object): vp_func_exit_keyed ends the
 * innermost call only when it was entered with the same key, and returns 1
 * then, 0 otherwise. A caller that sees every end (a profiler) needs no
 * lookup to tell a traced call's end from an untraced one's. */
VP_API void vp_func_enter_keyed(uint32_t func, const void* key);
VP_API int32_t vp_func_exit_keyed(const void* key);
/* Calls shorter than min_duration_ns are not written (their callers are,
 * when something inside them is); calls deeper than max_depth are not
 * written. 0: no minimum, no limit. Process-wide. */
VP_API void vp_profile_set_options(uint64_t min_duration_ns, uint32_t max_depth);
/* Calls entered and not yet ended on this thread. */
VP_API uint32_t vp_func_depth(void);
/* Ends now every call entered on this thread and not ended (before a session
 * stops in the middle of them); their own ends later write nothing. */
VP_API void vp_func_close_all(void);

/* ------------------------------------------------------------------------ */
/* Offline merge                                                            */
/* ------------------------------------------------------------------------ */

enum vp_merge_mode {
  VP_MERGE_HOST_INTO_GUEST = 0, /* the guest is the main timeline (default) */
  VP_MERGE_GUEST_INTO_HOST = 1, /* the host is the main timeline */
  VP_MERGE_ADD_TRACES = 2       /* both in one file, unchanged */
};

typedef struct vp_merge_options vp_merge_options;

VP_API vp_merge_options* vp_merge_options_new(void);
VP_API void vp_merge_options_free(vp_merge_options* opts);
VP_API int32_t vp_merge_set_host(vp_merge_options* opts, const char* path, vp_error* err);
/* Adds a guest trace; `name` labels its processes ("vm1: app"). */
VP_API int32_t vp_merge_add_guest(vp_merge_options* opts, const char* name, const char* path,
                                  vp_error* err);
VP_API int32_t vp_merge_set_output(vp_merge_options* opts, const char* path, vp_error* err);
VP_API int32_t vp_merge_set_mode(vp_merge_options* opts, int32_t mode, vp_error* err);
/* Alignment overrides: guest BOOTTIME - host BOOTTIME; the guest's BOOTTIME
 * when host tracing started; guest TSC - host TSC. */
VP_API void vp_merge_set_time_diff(vp_merge_options* opts, int64_t guest_minus_host_ns);
VP_API void vp_merge_set_guest_boot_time(vp_merge_options* opts, uint64_t guest_boot_ns);
VP_API void vp_merge_set_guest_tsc_offset(vp_merge_options* opts, int64_t guest_minus_host);
/* Tag the moved traces' packets with TracePacket.machine_id instead of
 * offsetting their pids, sequences and cpus. */
VP_API void vp_merge_set_machine_ids(vp_merge_options* opts, int32_t enable);
/* Keep the moved traces' flow ids, so that an id both traces use links their
 * events (ids passed across the VM boundary). By default such ids are
 * renumbered apart, as ids that meet by chance would join unrelated flows. */
VP_API void vp_merge_set_link_flows(vp_merge_options* opts, int32_t enable);
/* Threads that rewrite (0, the default: as many as pay, up to 4). The
 * output is the same bytes whatever the number. */
VP_API void vp_merge_set_threads(vp_merge_options* opts, uint32_t threads);
/* Scan and align only: the report is produced, no output is written (and
 * none need be set). */
VP_API void vp_merge_set_dry_run(vp_merge_options* opts, int32_t enable);
/* A progress line on stderr while merging large inputs on a terminal. */
VP_API void vp_merge_set_progress(vp_merge_options* opts, int32_t enable);
/* Runs the merge. The output is written atomically. On success *report is a
 * JSON description of what was done, to free with vp_string_free. */
VP_API int32_t vp_merge_run(const vp_merge_options* opts, char** report, vp_error* err);
VP_API void vp_string_free(char* s);

/* ------------------------------------------------------------------------ */
/* Inspection                                                               */
/* ------------------------------------------------------------------------ */

enum vp_inspect_flags {
  VP_INSPECT_CHECK = 1, /* also look for what makes Perfetto show it wrongly */
  VP_TIMELINE_INSTANT_ARGS = 2 /* vp_timeline: the tracks JSON also holds
                                  "instant_args", [[ts, name, {key: int}],
                                  ...] of every instant with int debug
                                  annotations, ts in ns on the trace clock */
};
/* Summarises a trace in one streaming pass; *report receives JSON (free it
 * with vp_string_free). VP_E_UNSUPPORTED in the tracing-only build. */
VP_API int32_t vp_inspect(const char* path, uint32_t flags, char** report, vp_error* err);
/* The timeline model of a trace (what vperfetto.timeline draws) from one
 * streaming pass: *tracks receives a JSON object (times, totals, the table of
 * slice names, the tracks in display order) and *rows a JSON array (per
 * track: its slices [ts, dur, name index, depth] and counter points [ts,
 * value], times in ns from start_ns); free both with vp_string_free. At most
 * max_slices slices are kept (the longest) and about max_counter_points
 * points per counter (0: 50000 and 20000). With report non-NULL, the summary
 * vp_inspect gives (with flags) comes from the same pass. VP_E_UNSUPPORTED in
 * the tracing-only build. */
VP_API int32_t vp_timeline(const char* path, uint32_t flags, uint64_t max_slices,
                           uint64_t max_counter_points, char** tracks, char** rows,
                           char** report, vp_error* err);

/* ------------------------------------------------------------------------ */
/* The host-side VM workflow (the original vperfetto online workflow)       */
/* ------------------------------------------------------------------------ */
/* enable -> events -> disable: the host trace is saved, then, once the
 * guest's trace file has stopped growing, the combined trace is written
 * (in the background; vp_vm_wait_saving_done waits for it). Not available
 * in the tracing-only build (VP_E_UNSUPPORTED). */

enum vp_vm_file {
  VP_VM_HOST_FILE = 0,     /* default "vmm.trace"; env VPERFETTO_HOST_FILE */
  VP_VM_GUEST_FILE = 1,    /* env VPERFETTO_GUEST_FILE */
  VP_VM_COMBINED_FILE = 2  /* env VPERFETTO_COMBINED_FILE */
};

/* Sets (NULL: clears) one of the file names. The library keeps a copy. */
VP_API int32_t vp_vm_set_file(int32_t which, const char* path, vp_error* err);
/* The current name, or NULL; valid until it is set again. */
VP_API const char* vp_vm_file(int32_t which);
/* The guest's CLOCK_BOOTTIME now: records guest - host (ignored while
 * tracing is enabled, as in the original). */
VP_API void vp_vm_set_guest_time(uint64_t guest_boot_ns);
/* guest BOOTTIME - host BOOTTIME, as recorded or set; 0 when unknown. */
VP_API void vp_vm_set_time_diff(int64_t guest_minus_host_ns);
VP_API int64_t vp_vm_time_diff(void);
/* 1 once a time diff was recorded or set (else the merge aligns by itself). */
VP_API int32_t vp_vm_has_time_diff(void);
VP_API uint64_t vp_vm_host_start_time(void);
VP_API uint64_t vp_vm_guest_start_time(void);
/* The host's and the guest's BOOTTIME at one instant (both non-zero): sets
 * the time diff to guest_ns - host_ns, as vp_vm_set_guest_time records it. */
VP_API void vp_vm_set_start_times(uint64_t host_ns, uint64_t guest_ns);
/* Combine by concatenation instead of moving the host into guest time. */
VP_API void vp_vm_set_add_traces(int32_t enable);
VP_API int32_t vp_vm_add_traces(void);
/* How the guest file is watched: poll period and give-up time, in ms
 * (default 1000 and 20000; env VPERFETTO_GUEST_POLL_MS overrides the poll). */
VP_API void vp_vm_set_guest_wait(uint32_t poll_ms, uint32_t timeout_ms);
/* Messages on stderr like the original's (default on). */
VP_API void vp_vm_set_verbose(int32_t enable);

/* Starts host tracing into the host file (file names from the environment
 * override). A no-op if already enabled or still saving. */
VP_API int32_t vp_vm_enable(vp_error* err);
/* Stops host tracing and saves: see above. */
VP_API int32_t vp_vm_disable(vp_error* err);
VP_API int32_t vp_vm_is_enabled(void);
VP_API int32_t vp_vm_is_saving(void);
/* A byte that is 1 while tracing is disabled (the original's
 * initialize(const bool**) hands out its address). */
VP_API const uint8_t* vp_vm_disabled_flag(void);
/* Waits until the background save is done; returns its outcome. */
VP_API int32_t vp_vm_wait_saving_done(vp_error* err);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* VPERFETTO_VPERFETTO_H_ */
