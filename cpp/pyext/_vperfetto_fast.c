/* _vperfetto_fast: the hot tracing calls as plain CPython builtins.
 *
 * cffi wraps every C call in Py_BEGIN/END_ALLOW_THREADS plus an errno
 * save/restore, and calls a 2-argument function through METH_VARARGS (a
 * tuple per call). For a 30 ns tracing call that is most of the cost, and
 * with several Python threads it hands the GIL over on every event. These
 * builtins call the same C ABI with the GIL held (the calls never wait for
 * anything that needs the GIL: the core never calls back into Python),
 * through METH_NOARGS / METH_O / METH_FASTCALL, and fall back to the Python
 * implementation for everything but the plain forms.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <vperfetto/vperfetto.h>

static PyObject *g_name_ids, *g_category_ids, *g_counter_handles;  /* dicts */
static PyObject *g_begin_slow, *g_end_slow, *g_slice_slow, *g_counter_slow;
static PyObject *g_name_thread;  /* names the calling thread's track after its Python thread */

/* Whether this thread's track was named: the first event of a thread names
 * it after the Python thread; afterwards this is one TLS load. */
static __thread __attribute__((tls_model("initial-exec"))) int t_named;

#define NAME_TRIES 64 /* a thread threading never registers stays unnamed */
static void name_thread_slow(void) {
  PyObject *r = g_name_thread ? PyObject_CallNoArgs(g_name_thread) : NULL;
  t_named = r == Py_True ? NAME_TRIES : t_named + 1;
  if (r) Py_DECREF(r);
  else PyErr_Clear();
}
#define NAMED() do { if (__builtin_expect(t_named < NAME_TRIES, 0)) name_thread_slow(); } while (0)

/* --- asyncio: slices begun inside a Task go on the task's own track ------
 *
 * t_loop is the event loop running on this thread (set by vperfetto's
 * wrapper of asyncio.events._set_running_loop), so outside an event loop
 * the check is one TLS load. Inside, the current task is
 * asyncio.tasks._current_tasks[loop], and its state (its track, the
 * recorded/not-recorded stack of its open slices) lives in g_task_states
 * until the task's done callback ends what it left open and frees the
 * track: nothing is written on a task track once the task is gone. */

static __thread __attribute__((tls_model("initial-exec"))) PyObject *t_loop;
static PyObject *g_current_tasks, *g_task_states, *g_task_done;

#define TASK_BITS 256
typedef struct {
  PyObject_HEAD
  uint32_t track;
  uint32_t depth;
  uint64_t recorded[TASK_BITS / 64];
} TaskState;
static PyTypeObject TaskStateType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "vperfetto._vperfetto_fast.TaskState",
    .tp_basicsize = sizeof(TaskState),
    .tp_flags = Py_TPFLAGS_DEFAULT,
};

/* The running task (borrowed), or NULL outside a task. */
static inline PyObject *current_task(void) {
  if (__builtin_expect(!t_loop, 1) || !g_current_tasks) return NULL;
  PyObject *t = PyDict_GetItemWithError(g_current_tasks, t_loop);
  if (!t) PyErr_Clear();
  return t;
}

/* The state of `task` (borrowed); made on first use when `create`. NULL
 * when there is none or it could not be made (then the thread track is used). */
static TaskState *task_state(PyObject *task, int create) {
  PyObject *st = PyDict_GetItemWithError(g_task_states, task);
  if (st || !create) {
    if (!st) PyErr_Clear();
    return (TaskState *)st;
  }
  PyErr_Clear();
  PyObject *name = PyObject_CallMethod(task, "get_name", NULL);
  const char *utf8 = name && PyUnicode_Check(name) ? PyUnicode_AsUTF8(name) : NULL;
  uint32_t track = 0;
  if (!utf8 || vp_track_new_for_thread(utf8, &track, NULL) != VP_OK) track = 0;
  Py_XDECREF(name);
  PyErr_Clear();
  if (!track) return NULL;
  TaskState *ts = PyObject_New(TaskState, &TaskStateType);
  PyObject *r = NULL;
  if (ts) {
    ts->track = track;
    ts->depth = 0;
    memset(ts->recorded, 0, sizeof(ts->recorded));
    if (PyDict_SetItem(g_task_states, task, (PyObject *)ts) == 0)
      r = PyObject_CallMethod(task, "add_done_callback", "O", g_task_done);
  }
  if (!r) {  /* not kept: never used */
    PyErr_Clear();
    if (ts && PyDict_DelItem(g_task_states, task) < 0) PyErr_Clear();
    Py_XDECREF(ts);
    vp_track_free(track);
    return NULL;
  }
  Py_DECREF(r);
  Py_DECREF(ts); /* the dict holds it */
  return ts;
}

static void emit_on(uint32_t track, int32_t type, uint32_t cid, uint32_t nid, const char *s,
                    size_t len) {
  vp_event ev;
  memset(&ev, 0, sizeof(ev));
  ev.type = type;
  ev.category = cid;
  ev.name = nid;
  ev.name_str = s;
  ev.name_len = len;
  ev.track = track;
  vp_emit(&ev);
}

/* Pushes a slice of `cid` on the task's stack: whether it is recorded. */
static int task_push(TaskState *st, uint32_t cid) {
  int rec = vp_category_enabled(cid);
  uint32_t d = st->depth++;
  if (d < TASK_BITS) {
    uint64_t bit = (uint64_t)1 << (d & 63);
    if (rec) st->recorded[d >> 6] |= bit;
    else st->recorded[d >> 6] &= ~bit;
  }
  return rec;
}
/* Pops the innermost slice: 1 if it was recorded, 0 if not or none. */
static int task_pop(TaskState *st) {
  if (!st->depth) return 0;
  uint32_t d = --st->depth;
  if (d >= TASK_BITS) return vp_is_tracing();
  return (int)((st->recorded[d >> 6] >> (d & 63)) & 1);
}

/* begin/instant/end with the task check; `s`/`len`: a name not interned. */
static inline void do_begin(uint32_t cid, uint32_t nid, const char *s, size_t len) {
  PyObject *task = current_task();
  TaskState *st = task ? task_state(task, 1) : NULL;
  if (st) {
    if (task_push(st, cid)) emit_on(st->track, VP_EVENT_BEGIN, cid, nid, s, len);
  } else if (s) {
    vp_begin_str(cid, s, len);
  } else {
    vp_begin(cid, nid);
  }
}
static inline void do_instant(uint32_t cid, uint32_t nid, const char *s, size_t len) {
  PyObject *task = current_task();
  TaskState *st = task ? task_state(task, 1) : NULL;
  if (st) emit_on(st->track, VP_EVENT_INSTANT, cid, nid, s, len);
  else if (s) vp_instant_str(cid, s, len);
  else vp_instant(cid, nid);
}
static inline void do_end(void) {
  PyObject *task = current_task();
  if (!task) {
    vp_end();
    return;
  }
  TaskState *st = task_state(task, 0);
  if (st && task_pop(st)) emit_on(st->track, VP_EVENT_END, 0, 0, NULL, 0);
}

/* task.add_done_callback(task_done): ends the slices the task left open
 * and frees its track. */
static PyObject *f_task_done(PyObject *m, PyObject *task) {
  PyObject *st = PyDict_GetItemWithError(g_task_states, task);
  if (!st) {
    PyErr_Clear();
    Py_RETURN_NONE;
  }
  Py_INCREF(st);
  TaskState *ts = (TaskState *)st;
  while (ts->depth)
    if (task_pop(ts)) emit_on(ts->track, VP_EVENT_END, 0, 0, NULL, 0);
  vp_track_free(ts->track);
  ts->track = 0;
  if (PyDict_DelItem(g_task_states, task) < 0) PyErr_Clear();
  Py_DECREF(st);
  Py_RETURN_NONE;
}

static PyObject *f_current_task(PyObject *m, PyObject *unused) {
  PyObject *t = current_task();
  return Py_NewRef(t ? t : Py_None);
}

/* Called by the wrapper of asyncio.events._set_running_loop. */
static PyObject *f_set_running_loop(PyObject *m, PyObject *loop) {
  Py_XSETREF(t_loop, loop == Py_None ? NULL : Py_NewRef(loop));
  Py_RETURN_NONE;
}
static PyObject *f_set_current_tasks(PyObject *m, PyObject *d) {
  if (!PyDict_Check(d)) {
    PyErr_SetString(PyExc_TypeError, "a dict is needed");
    return NULL;
  }
  Py_XSETREF(g_current_tasks, Py_NewRef(d));
  Py_RETURN_NONE;
}

/* For the Python paths (annotations, timestamps...): the track a begin,
 * end or instant goes on. 0: not in a task (the thread's track); a handle:
 * the task's track; -1: in a task, and nothing is to be written (an end
 * whose begin was not recorded). A begin is pushed on the task's stack. */
static PyObject *f_task_track(PyObject *m, PyObject *args) {
  int type;
  unsigned int cid;
  if (!PyArg_ParseTuple(args, "iI", &type, &cid)) return NULL;
  PyObject *task = current_task();
  if (!task) return PyLong_FromLong(0);
  TaskState *st = task_state(task, type != VP_EVENT_END);
  if (!st) return PyLong_FromLong(type == VP_EVENT_END ? -1 : 0);
  if (type == VP_EVENT_BEGIN) return PyLong_FromLong(task_push(st, cid) ? (long)st->track : -1);
  if (type == VP_EVENT_END) return PyLong_FromLong(task_pop(st) ? (long)st->track : -1);
  return PyLong_FromLong((long)st->track);
}

/* name (exact str) and category (None or str) -> ids; 0 if unknown. */
static int lookup(PyObject *name, PyObject *category, uint32_t *nid, uint32_t *cid) {
  PyObject *v;
  if (!PyUnicode_CheckExact(name)) return 0;
  v = PyDict_GetItemWithError(g_name_ids, name);
  if (!v || !PyLong_CheckExact(v)) return 0;
  *nid = (uint32_t)PyLong_AsUnsignedLong(v);
  if (*nid == 0) return 0;
  if (category == Py_None) { *cid = 0; return 1; }
  if (!PyUnicode_CheckExact(category)) return 0;
  v = PyDict_GetItemWithError(g_category_ids, category);
  if (!v || !PyLong_CheckExact(v)) return 0;
  *cid = (uint32_t)PyLong_AsUnsignedLong(v);
  return 1;
}

static PyObject *fallback(PyObject *fn, PyObject *const *args, size_t nargsf, PyObject *kw) {
  return PyObject_Vectorcall(fn, args, nargsf, kw);
}

static PyObject *f_begin(PyObject *m, PyObject *const *args, Py_ssize_t n, PyObject *kw) {
  uint32_t nid, cid;
  if (!kw && (n == 1 || n == 2) && lookup(args[0], n == 2 ? args[1] : Py_None, &nid, &cid)) {
    NAMED();
    do_begin(cid, nid, NULL, 0);
    Py_RETURN_NONE;
  }
  if (PyErr_Occurred()) return NULL;
  return fallback(g_begin_slow, args, (size_t)n, kw);
}

static PyObject *f_end(PyObject *m, PyObject *const *args, Py_ssize_t n, PyObject *kw) {
  if (n == 0 && !kw) {
    do_end();
    Py_RETURN_NONE;
  }
  return fallback(g_end_slow, args, (size_t)n, kw);
}

static PyObject *f_end_noargs(PyObject *m, PyObject *unused) {
  do_end();
  Py_RETURN_NONE;
}

/* --- Event's base: begin/end/instant and the context manager in C ------- */

typedef struct {
  PyObject_HEAD
  uint32_t cat, name;
  PyObject *raw; /* bytes of a name that could not be interned, or NULL */
} EventBase;

static int eb_init(PyObject *op, PyObject *args, PyObject *kw) {
  EventBase *self = (EventBase *)op;
  unsigned int cat, name;
  PyObject *raw = Py_None;
  if (kw && PyDict_GET_SIZE(kw)) {
    PyErr_SetString(PyExc_TypeError, "EventBase takes positional arguments");
    return -1;
  }
  if (!PyArg_ParseTuple(args, "II|O", &cat, &name, &raw)) return -1;
  if (raw != Py_None && !PyBytes_CheckExact(raw)) {
    PyErr_SetString(PyExc_TypeError, "raw name must be bytes or None");
    return -1;
  }
  self->cat = cat;
  self->name = name;
  Py_XSETREF(self->raw, raw == Py_None ? NULL : Py_NewRef(raw));
  return 0;
}
static void eb_dealloc(PyObject *op) {
  Py_CLEAR(((EventBase *)op)->raw);
  Py_TYPE(op)->tp_free(op);
}
static PyObject *eb_begin(PyObject *op, PyObject *unused) {
  EventBase *self = (EventBase *)op;
  NAMED();
  if (self->raw)
    do_begin(self->cat, 0, PyBytes_AS_STRING(self->raw), (size_t)PyBytes_GET_SIZE(self->raw));
  else
    do_begin(self->cat, self->name, NULL, 0);
  Py_RETURN_NONE;
}
static PyObject *eb_instant(PyObject *op, PyObject *unused) {
  EventBase *self = (EventBase *)op;
  NAMED();
  if (self->raw)
    do_instant(self->cat, 0, PyBytes_AS_STRING(self->raw), (size_t)PyBytes_GET_SIZE(self->raw));
  else
    do_instant(self->cat, self->name, NULL, 0);
  Py_RETURN_NONE;
}
static PyObject *eb_enter(PyObject *op, PyObject *unused) {
  eb_begin(op, NULL);
  return Py_NewRef(op);
}
static PyObject *eb_exit(PyObject *op, PyObject *const *args, Py_ssize_t n) {
  do_end();
  Py_RETURN_FALSE;
}
static PyObject *f_end_noargs(PyObject *m, PyObject *unused);
static PyMethodDef eb_methods[] = {
    {"begin", eb_begin, METH_NOARGS, "begin()\n--\n\nBegins a slice of this event."},
    {"instant", eb_instant, METH_NOARGS, "instant()\n--\n\nAn instant of this event."},
    {"end", f_end_noargs, METH_NOARGS | METH_STATIC,
     "end()\n--\n\nEnds the innermost slice of this thread."},
    {"__enter__", eb_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))eb_exit, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL}};
static PyTypeObject EventBaseType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "vperfetto._vperfetto_fast.EventBase",
    .tp_basicsize = sizeof(EventBase),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_new = PyType_GenericNew,
    .tp_init = eb_init,
    .tp_dealloc = eb_dealloc,
    .tp_methods = eb_methods,
};

/* --- CounterTrack's set_int/set_float: builtins bound to the handle ------- */

static PyObject *b_counter_int(PyObject *self, PyObject *value) {
  long long v = PyLong_AsLongLong(value);
  if (v == -1 && PyErr_Occurred()) return NULL;
  vp_counter_int((uint32_t)PyLong_AsUnsignedLong(self), v);
  Py_RETURN_NONE;
}
static PyObject *b_counter_double(PyObject *self, PyObject *value) {
  double v = PyFloat_AsDouble(value);
  if (v == -1.0 && PyErr_Occurred()) return NULL;
  vp_counter_double((uint32_t)PyLong_AsUnsignedLong(self), v);
  Py_RETURN_NONE;
}
static PyMethodDef def_set_int = {"set_int", b_counter_int, METH_O, NULL};
static PyMethodDef def_set_float = {"set_float", b_counter_double, METH_O, NULL};

static PyObject *bind(PyMethodDef *def, unsigned long long v) {
  PyObject *self = PyLong_FromUnsignedLongLong(v), *f;
  if (!self) return NULL;
  f = PyCFunction_New(def, self);
  Py_DECREF(self);
  return f;
}
static PyObject *f_bind_counter(PyObject *m, PyObject *args) {
  unsigned int h;
  PyObject *a, *b, *t;
  if (!PyArg_ParseTuple(args, "I", &h)) return NULL;
  a = bind(&def_set_int, h);
  b = bind(&def_set_float, h);
  t = (a && b) ? PyTuple_Pack(2, a, b) : NULL;
  Py_XDECREF(a);
  Py_XDECREF(b);
  return t;
}

/* --- counter(name, value) -------------------------------------------------- */

static PyObject *f_counter(PyObject *m, PyObject *const *args, Py_ssize_t n, PyObject *kw) {
  if (n == 2 && !kw && PyUnicode_CheckExact(args[0])) {
    PyObject *h = PyDict_GetItemWithError(g_counter_handles, args[0]);
    PyObject *v = args[1];
    if (h) {
      uint32_t handle = (uint32_t)PyLong_AsUnsignedLong(h);
      if (PyLong_CheckExact(v)) {
        int overflow;
        long long iv = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (!overflow) {
          vp_counter_int(handle, iv);
          Py_RETURN_NONE;
        }
      } else if (PyFloat_CheckExact(v)) {
        vp_counter_double(handle, PyFloat_AS_DOUBLE(v));
        Py_RETURN_NONE;
      }
    } else if (PyErr_Occurred()) {
      return NULL;
    }
  }
  return fallback(g_counter_slow, args, (size_t)n, kw);
}

/* --- slice(name, category=None): a C context manager ----------------------- */

typedef struct {
  PyObject_HEAD
  uint32_t cat, name;
} FastSlice;

static PyObject *s_enter(PyObject *self, PyObject *unused) {
  FastSlice *s = (FastSlice *)self;
  NAMED();
  do_begin(s->cat, s->name, NULL, 0);
  Py_INCREF(self);
  return self;
}
static PyObject *s_exit(PyObject *self, PyObject *const *args, Py_ssize_t n) {
  do_end();
  Py_RETURN_FALSE;
}
static PyMethodDef s_methods[] = {
    {"__enter__", s_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))s_exit, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL}};
static PyTypeObject FastSliceType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "vperfetto._vperfetto_fast.Slice",
    .tp_basicsize = sizeof(FastSlice),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_methods = s_methods,
};

static PyObject *f_slice(PyObject *m, PyObject *const *args, Py_ssize_t n, PyObject *kw) {
  uint32_t nid, cid;
  if (!kw && (n == 1 || n == 2) && lookup(args[0], n == 2 ? args[1] : Py_None, &nid, &cid)) {
    FastSlice *s = PyObject_New(FastSlice, &FastSliceType);
    if (!s) return NULL;
    s->cat = cid;
    s->name = nid;
    return (PyObject *)s;
  }
  if (PyErr_Occurred()) return NULL;
  return fallback(g_slice_slow, args, (size_t)n, kw);
}

/* --- setup ------------------------------------------------------------------- */

static PyObject *f_ensure_named(PyObject *m, PyObject *unused) {
  NAMED();
  Py_RETURN_NONE;
}
static PyObject *f_thread_named(PyObject *m, PyObject *unused) {
  t_named = NAME_TRIES;
  Py_RETURN_NONE;
}

static PyObject *f_init(PyObject *m, PyObject *args) {
  if (!PyArg_ParseTuple(args, "O!O!O!OOOOO", &PyDict_Type, &g_name_ids, &PyDict_Type,
                        &g_category_ids, &PyDict_Type, &g_counter_handles, &g_begin_slow,
                        &g_end_slow, &g_slice_slow, &g_counter_slow, &g_name_thread))
    return NULL;
  Py_INCREF(g_name_thread);
  if (!g_task_done) g_task_done = PyObject_GetAttrString(m, "task_done");
  if (!g_task_done) return NULL;
  Py_INCREF(g_name_ids); Py_INCREF(g_category_ids); Py_INCREF(g_counter_handles);
  Py_INCREF(g_begin_slow); Py_INCREF(g_end_slow); Py_INCREF(g_slice_slow);
  Py_INCREF(g_counter_slow);
  Py_RETURN_NONE;
}

#define FASTKW(f) (PyCFunction)(void (*)(void))f, METH_FASTCALL | METH_KEYWORDS
static PyMethodDef methods[] = {
    {"init", f_init, METH_VARARGS, NULL},
    {"begin", FASTKW(f_begin), NULL},
    {"end", FASTKW(f_end), NULL},
    {"end_noargs", f_end_noargs, METH_NOARGS, NULL},
    {"slice", FASTKW(f_slice), NULL},
    {"counter", FASTKW(f_counter), NULL},
    {"bind_counter", f_bind_counter, METH_VARARGS, NULL},
    {"ensure_named", f_ensure_named, METH_NOARGS, NULL},
    {"task_done", f_task_done, METH_O, NULL},
    {"current_task", f_current_task, METH_NOARGS, NULL},
    {"task_track", f_task_track, METH_VARARGS, NULL},
    {"set_running_loop", f_set_running_loop, METH_O, NULL},
    {"set_current_tasks", f_set_current_tasks, METH_O, NULL},
    {"thread_named", f_thread_named, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_vperfetto_fast", NULL, -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__vperfetto_fast(void) {
  PyObject *m;
  if (PyType_Ready(&FastSliceType) < 0 || PyType_Ready(&EventBaseType) < 0 ||
      PyType_Ready(&TaskStateType) < 0)
    return NULL;
  if (!g_task_states && !(g_task_states = PyDict_New())) return NULL;
  m = PyModule_Create(&module);
  if (m && PyModule_AddObjectRef(m, "EventBase", (PyObject *)&EventBaseType) < 0) Py_CLEAR(m);
  return m;
}
