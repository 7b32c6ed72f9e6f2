/* _vperfetto_profile: the callbacks of whole-program tracing, in C.
 *
 * Python >= 3.12: builtins registered with sys.monitoring (PEP 669) for
 * PY_START/PY_RESUME/PY_THROW (a call begins or resumes) and
 * PY_RETURN/PY_YIELD/PY_UNWIND (it ends or suspends), and with --c-calls
 * CALL/C_RETURN/C_RAISE. Python 3.10-3.11: a C profile function
 * (_PyEval_SetProfile on every thread, and on new threads through
 * threading.setprofile's first call).
 *
 * Each code object is decided once: Python's decide(code, module) applies
 * the include/exclude patterns and registers the function with the core
 * (vp_func_register: name + source location), and the answer is kept in the
 * code object's extra slot. The core keeps the per-thread stack of calls
 * (vp_func_enter_keyed/vp_func_exit_keyed). A generator or coroutine is one slice per
 * resumption: it begins at its start or resumption and ends at its yield,
 * await suspension, return or exception.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <frameobject.h>
#include <pthread.h>
#include <vperfetto/vperfetto.h>

#define TLS __thread __attribute__((tls_model("initial-exec")))

static Py_ssize_t g_extra_index = -1;
static uintptr_t g_generation = 1;  /* bumped when the patterns change */
static PyObject *g_decide, *g_decide_c, *g_name_thread, *g_disable;
static int g_c_calls;

/* Per thread: named yet; the C calls entered (callable, core depth after
 * the enter) so that a missing C_RETURN never unbalances the stack. */
#define MAX_C_CALLS 256
static TLS int t_named;  /* attempts so far; NAME_TRIES: done */
static TLS int t_busy;
static TLS int t_ncalls;
/* Allocated on a thread's first C call (and freed with the thread): the
 * static TLS a dlopen'ed module may use is a few hundred bytes. */
struct c_call { void *callable; uint32_t depth; };
static TLS struct c_call *t_calls;
static pthread_key_t g_calls_key;

/* Names the thread's track after its Python thread. A thread's first
 * events may come before threading registered it: tried again on the next
 * events, NAME_TRIES times at most (threads threading never knows). */
#define NAME_TRIES 64
static void name_thread(void) {
  PyObject *r = g_name_thread ? PyObject_CallNoArgs(g_name_thread) : NULL;
  t_named = r == Py_True ? NAME_TRIES : t_named + 1;
  if (r) Py_DECREF(r);
  else PyErr_Clear();
}

/* A code object's extra slots: CPython's _PyCodeObjectExtra (internal,
 * the same from 3.6 to 3.13), read here without a call per event. Other
 * versions go through _PyCode_GetExtra. */
#if PY_VERSION_HEX >= 0x030A0000 && PY_VERSION_HEX < 0x030E0000
#define INLINE_EXTRA 1
typedef struct {
  Py_ssize_t ce_size;
  void *ce_extras[1];
} code_extra;
#endif

static inline void *code_extra_of(PyObject *code) {
#ifdef INLINE_EXTRA
  code_extra *e = (code_extra *)((PyCodeObject *)code)->co_extra;
  return e && g_extra_index < e->ce_size ? e->ce_extras[g_extra_index] : NULL;
#else
  void *extra = NULL;
  if (_PyCode_GetExtra(code, g_extra_index, &extra) < 0) PyErr_Clear();
  return extra;
#endif
}

/* The core's function id for `code` (0: not traced), decided once; -1
 * while deciding another one (no answer to keep). */
static int64_t func_of(PyObject *code) {
  uintptr_t v = (uintptr_t)code_extra_of(code);
  if (v && (v >> 33) == g_generation) return (uint32_t)(v >> 1);
  if (!g_decide || t_busy) return -1;
  /* The module name comes from the running frame's globals: in PY_START
   * and PyTrace_CALL that is the function being called. */
  PyObject *globals = PyEval_GetGlobals(), *mod = NULL;
  if (globals) mod = PyDict_GetItemString(globals, "__name__");
  t_busy = 1;
  PyObject *exc_type, *exc_value, *exc_tb;
  PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
  PyObject *r = PyObject_CallFunctionObjArgs(g_decide, code, mod ? mod : Py_None, NULL);
  uint32_t id = 0;
  if (r) {
    id = (uint32_t)PyLong_AsUnsignedLong(r);
    if (PyErr_Occurred()) id = 0;
    Py_DECREF(r);
  }
  PyErr_Clear();
  PyErr_Restore(exc_type, exc_value, exc_tb);
  t_busy = 0;
  v = (g_generation << 33) | ((uintptr_t)id << 1) | 1;
  if (_PyCode_SetExtra(code, g_extra_index, (void *)v) < 0) PyErr_Clear();
  return id;
}

/* 1: traced, 0: never traced (sys.monitoring may disable the location),
 * -1: not now. */
static inline int enter_code(PyObject *code) {
  if (t_named < NAME_TRIES) name_thread();
  int64_t id = func_of(code);
  if (id <= 0) return (int)id;
  vp_func_enter_keyed((uint32_t)id, code);
  return 1;
}

/* Ends the C calls still open above the innermost Python call. */
static inline void close_c_calls(void) {
  while (t_ncalls > 0 && t_calls[t_ncalls - 1].depth >= vp_func_depth()) {
    t_ncalls--;
    vp_func_exit();
  }
}

/* The common case needs no lookup: the innermost call was entered with this
 * code object. Otherwise: C calls left open above it end first; an
 * untraced function's end (the location can then be disabled) and a call
 * entered before tracing began end nothing. */
static inline int exit_code(PyObject *code) {
  if (vp_func_exit_keyed(code)) return 1;
  int64_t id = func_of(code);
  if (id <= 0) return (int)id;
  if (t_ncalls) {
    close_c_calls();
    vp_func_exit_keyed(code);
  }
  return 1;
}

/* --- C calls ------------------------------------------------------------ */

#define C_CACHE 4096
static struct { void *key1, *key2; uint32_t id; } g_ccache[C_CACHE];

static uint32_t c_func_of(PyObject *callable) {
  void *k1, *k2;
  if (PyCFunction_Check(callable)) {
    PyCFunctionObject *f = (PyCFunctionObject *)callable;
    k1 = f->m_ml;
    k2 = f->m_self && !PyModule_Check(f->m_self) ? (void *)Py_TYPE(f->m_self) : f->m_self;
  } else {
    k1 = Py_TYPE(callable);
    k2 = PyType_Check(callable) ? (void *)callable : NULL;
  }
  size_t h = (((uintptr_t)k1 >> 4) ^ ((uintptr_t)k2 >> 3) * 31) & (C_CACHE - 1);
  for (size_t i = 0; i < 8; i++) {
    size_t j = (h + i) & (C_CACHE - 1);
    if (g_ccache[j].key1 == k1 && g_ccache[j].key2 == k2) return g_ccache[j].id;
    if (!g_ccache[j].key1) {
      uint32_t id = 0;
      if (g_decide_c && !t_busy) {
        t_busy = 1;
        PyObject *exc_type, *exc_value, *exc_tb;
        PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
        PyObject *r = PyObject_CallOneArg(g_decide_c, callable);
        if (r) {
          id = (uint32_t)PyLong_AsUnsignedLong(r);
          Py_DECREF(r);
        }
        PyErr_Clear();
        PyErr_Restore(exc_type, exc_value, exc_tb);
        t_busy = 0;
      }
      g_ccache[j].key1 = k1;
      g_ccache[j].key2 = k2;
      g_ccache[j].id = id;
      return id;
    }
  }
  return 0;  /* a crowded bucket: not traced */
}

static void c_enter(PyObject *callable) {
  if (t_ncalls >= MAX_C_CALLS || PyFunction_Check(callable) || PyMethod_Check(callable)) return;
  if (!t_calls) {
    t_calls = malloc(sizeof(struct c_call) * MAX_C_CALLS);
    if (!t_calls) return;
    pthread_setspecific(g_calls_key, t_calls);
  }
  uint32_t id = c_func_of(callable);
  if (!id) return;
  if (t_named < NAME_TRIES) name_thread();
  vp_func_enter(id);
  t_calls[t_ncalls].callable = callable;
  t_calls[t_ncalls].depth = vp_func_depth();
  t_ncalls++;
}

static void c_exit(PyObject *callable) {
  if (t_ncalls && t_calls[t_ncalls - 1].callable == callable &&
      t_calls[t_ncalls - 1].depth == vp_func_depth()) {
    t_ncalls--;
    vp_func_exit();
  }
}

/* --- sys.monitoring callbacks (3.12+) --------------------------------- */

/* Each callback is an object of its own type with a vectorcall slot:
 * sys.monitoring calls it directly, without a builtin function's wrapper
 * (the recursion check and argument conversion of METH_FASTCALL). */
typedef PyObject *(*callback_fn)(PyObject *const *args, Py_ssize_t n);
typedef struct {
  PyObject_HEAD
  vectorcallfunc vectorcall;
  callback_fn fn;
  const char *name;
} callback;

static PyObject *callback_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf,
                                     PyObject *kwnames) {
  return ((callback *)self)->fn(args, PyVectorcall_NARGS(nargsf));
}

static PyObject *callback_repr(PyObject *self) {
  return PyUnicode_FromFormat("<vperfetto profile callback %s>", ((callback *)self)->name);
}

static PyTypeObject callback_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "vperfetto._vperfetto_profile.callback",
    .tp_basicsize = sizeof(callback),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_vectorcall_offset = offsetof(callback, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_repr = callback_repr,
};

static PyObject *disable_or_none(int traced) {
  return Py_NewRef(traced == 0 && g_disable ? g_disable : Py_None);
}
static PyObject *m_start(PyObject *const *args, Py_ssize_t n) {
  if (n < 1) Py_RETURN_NONE;
  return disable_or_none(enter_code(args[0]));
}
static PyObject *m_end(PyObject *const *args, Py_ssize_t n) {
  if (n < 1) Py_RETURN_NONE;
  return disable_or_none(exit_code(args[0]));
}
/* PY_THROW and PY_UNWIND cannot be disabled: always None. */
static PyObject *m_throw(PyObject *const *args, Py_ssize_t n) {
  if (n >= 1) enter_code(args[0]);
  Py_RETURN_NONE;
}
static PyObject *m_unwind(PyObject *const *args, Py_ssize_t n) {
  if (n >= 1) exit_code(args[0]);
  Py_RETURN_NONE;
}
static PyObject *m_call(PyObject *const *args, Py_ssize_t n) {
  if (n >= 3) c_enter(args[2]);
  Py_RETURN_NONE;
}
static PyObject *m_c_return(PyObject *const *args, Py_ssize_t n) {
  if (n >= 3) c_exit(args[2]);
  Py_RETURN_NONE;
}

static const struct {
  const char *name;
  callback_fn fn;
} callbacks[] = {{"py_start", m_start}, {"py_return", m_end}, {"py_throw", m_throw},
                 {"py_unwind", m_unwind}, {"call", m_call}, {"c_return", m_c_return}};

/* --- the C profile function (3.10, 3.11) ------------------------------ */

static int profile_func(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg) {
  PyObject *code;
  switch (what) {
    case PyTrace_CALL:
    case PyTrace_RETURN:
      code = (PyObject *)PyFrame_GetCode(frame);
      if (what == PyTrace_CALL) enter_code(code);
      else exit_code(code);
      Py_DECREF(code);
      break;
    case PyTrace_C_CALL:
      if (g_c_calls) c_enter(arg);
      break;
    case PyTrace_C_RETURN:
    case PyTrace_C_EXCEPTION:
      if (g_c_calls) c_exit(arg);
      break;
  }
  return 0;
}

/* threading.setprofile(thread_hook): a new thread's first profile event
 * comes here through the Python-level trampoline; from then on the thread
 * uses the C function. */
static PyObject *f_thread_hook(PyObject *m, PyObject *args) {
  PyObject *frame, *event, *arg;
  if (!PyArg_ParseTuple(args, "OOO", &frame, &event, &arg)) return NULL;
  PyEval_SetProfile(profile_func, NULL);
  if (PyFrame_Check(frame) && PyUnicode_Check(event) &&
      PyUnicode_CompareWithASCIIString(event, "call") == 0)
    profile_func(NULL, (PyFrameObject *)frame, PyTrace_CALL, NULL);
  Py_RETURN_NONE;
}

static PyObject *f_set_profile_all(PyObject *m, PyObject *on) {
  int enable = PyObject_IsTrue(on);
  if (enable < 0) return NULL;
#if PY_VERSION_HEX >= 0x030C0000
  PyEval_SetProfileAllThreads(enable ? profile_func : NULL, NULL);
#else
  PyThreadState *ts = PyInterpreterState_ThreadHead(PyThreadState_GetInterpreter(PyThreadState_Get()));
  for (; ts; ts = PyThreadState_Next(ts))
    if (_PyEval_SetProfile(ts, enable ? profile_func : NULL, NULL) < 0) return NULL;
#endif
  Py_RETURN_NONE;
}

/* --- setup ------------------------------------------------------------ */

static PyObject *f_init(PyObject *m, PyObject *args) {
  PyObject *decide, *decide_c, *name, *disable;
  if (!PyArg_ParseTuple(args, "OOOO", &decide, &decide_c, &name, &disable)) return NULL;
  Py_XSETREF(g_decide, Py_NewRef(decide));
  Py_XSETREF(g_decide_c, Py_NewRef(decide_c));
  Py_XSETREF(g_name_thread, Py_NewRef(name));
  Py_XSETREF(g_disable, Py_NewRef(disable));
  Py_RETURN_NONE;
}

/* With `redecide` (new include/exclude patterns), every code object is
 * decided again and the C-function cache is emptied. */
static PyObject *f_configure(PyObject *m, PyObject *args) {
  int c_calls, redecide;
  if (!PyArg_ParseTuple(args, "pp", &c_calls, &redecide)) return NULL;
  if (redecide) {
    g_generation = (g_generation + 1) & ((1u << 30) - 1);
    if (!g_generation) g_generation = 1;
    memset(g_ccache, 0, sizeof(g_ccache));
  }
  g_c_calls = c_calls;
  Py_RETURN_NONE;
}

static PyObject *f_thread_named(PyObject *m, PyObject *unused) {
  t_named = NAME_TRIES;  /* set_thread_name() was called: never overwrite */
  Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"init", f_init, METH_VARARGS, NULL},
    {"configure", f_configure, METH_VARARGS, NULL},
    {"set_profile_all", f_set_profile_all, METH_O, NULL},
    {"thread_hook", f_thread_hook, METH_VARARGS, NULL},
    {"thread_named", f_thread_named, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_vperfetto_profile", NULL, -1,
                                    methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__vperfetto_profile(void) {
  if (g_extra_index < 0) {
    g_extra_index = _PyEval_RequestCodeExtraIndex(NULL);
    if (g_extra_index < 0) return NULL;
    if (pthread_key_create(&g_calls_key, free) != 0) return PyErr_NoMemory();
  }
  if (PyType_Ready(&callback_type) < 0) return NULL;
  PyObject *m = PyModule_Create(&module);
  if (!m) return NULL;
  for (size_t i = 0; i < sizeof(callbacks) / sizeof(callbacks[0]); i++) {
    callback *c = PyObject_New(callback, &callback_type);
    if (!c) goto fail;
    c->vectorcall = callback_vectorcall;
    c->fn = callbacks[i].fn;
    c->name = callbacks[i].name;
    if (PyModule_AddObject(m, callbacks[i].name, (PyObject *)c) < 0) {
      Py_DECREF(c);
      goto fail;
    }
  }
  return m;
fail:
  Py_DECREF(m);
  return NULL;
}
