/* A DLPack 1.3 producer for the tests: a 1-d float64 "Tensor" whose type
 * carries __dlpack_c_exchange_api__ and which implements __dlpack__.
 * The DLPack structs below are written from the DLPack 1.3 specification.
 * Counters (made(), deleted()) let tests check that every tensor handed out
 * is deleted exactly once. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef struct { uint32_t major, minor; } Version;
typedef struct { int32_t device_type, device_id; } Device;
typedef struct { uint8_t code, bits; uint16_t lanes; } DType;
typedef struct {
    void *data; Device device; int32_t ndim; DType dtype;
    int64_t *shape, *strides; uint64_t byte_offset;
} Tensor_;
typedef struct ManagedV {
    Version version; void *manager_ctx; void (*deleter)(struct ManagedV *);
    uint64_t flags; Tensor_ dl_tensor;
} ManagedV;
typedef struct Managed {
    Tensor_ dl_tensor; void *manager_ctx; void (*deleter)(struct Managed *);
} Managed;
typedef struct Header { Version version; struct Header *prev_api; } Header;
typedef struct {
    Header header;
    int (*allocator)(Tensor_ *, ManagedV **, void *, void (*)(void *, const char *, const char *));
    int (*from_py)(void *, ManagedV **);
    int (*to_py)(ManagedV *, void **);
    int (*dltensor_from_py)(void *, Tensor_ *);
    int (*current_work_stream)(int32_t, int32_t, void **);
} ExchangeAPI;

typedef struct {
    PyObject_HEAD
    double *data;
    int64_t shape[1], strides[1];
    int readonly, device_type, major, legacy;
    char capsule_name[64];
    PyObject *on_delete; /* called (Python code) by every deleter of this tensor's exports */
    PyObject *fail;      /* exception type its managed export raises, or NULL */
} TensorObject;

static long made_count, deleted_count;
static PyTypeObject *TensorType;

typedef struct { PyObject *owner; int64_t shape[1], strides[1]; ManagedV v; Managed l; } Ctx;

static void free_ctx(Ctx *c) {
    if (!Py_IsInitialized()) return;
    PyGILState_STATE g = PyGILState_Ensure();
    PyObject *cb = c->owner ? ((TensorObject *)c->owner)->on_delete : NULL;
    if (cb) {
        /* Python code in a deleter (as a ctypes or Cython deleter runs):
         * an exception set on entry makes the call fail (SystemError); one
         * it raises is left set, the worst a deleter can do. */
        PyObject *r = PyObject_CallNoArgs(cb);
        Py_XDECREF(r);
    }
    Py_XDECREF(c->owner);
    PyMem_RawFree(c);
    __atomic_fetch_add(&deleted_count, 1, __ATOMIC_RELAXED);
    PyGILState_Release(g);
}
static void del_v(ManagedV *m) { free_ctx((Ctx *)m->manager_ctx); }
static void del_l(Managed *m) { free_ctx((Ctx *)m->manager_ctx); }

static Ctx *make(TensorObject *t) {
    Ctx *c = PyMem_RawCalloc(1, sizeof(Ctx));
    if (!c) { PyErr_NoMemory(); return NULL; }
    c->owner = Py_NewRef((PyObject *)t);
    c->shape[0] = t->shape[0];
    c->strides[0] = 1;
    Tensor_ x = {t->data, {t->device_type, 0}, 1, {2, 64, 1}, c->shape, c->strides, 0};
    c->v.version.major = (uint32_t)t->major; c->v.version.minor = 3;
    c->v.manager_ctx = c; c->v.deleter = del_v;
    c->v.flags = t->readonly ? 1 : 0;
    c->v.dl_tensor = x;
    c->l.dl_tensor = x; c->l.manager_ctx = c; c->l.deleter = del_l;
    __atomic_fetch_add(&made_count, 1, __ATOMIC_RELAXED);
    return c;
}

static int api_from_py(void *obj, ManagedV **out) {
    if (!PyObject_TypeCheck((PyObject *)obj, TensorType)) { PyErr_SetString(PyExc_TypeError, "not a Tensor"); return -1; }
    if (((TensorObject *)obj)->fail) { PyErr_SetString(((TensorObject *)obj)->fail, "producer refuses (managed)"); return -1; }
    Ctx *c = make((TensorObject *)obj);
    if (!c) return -1;
    *out = &c->v;
    return 0;
}
static int api_dltensor(void *obj, Tensor_ *out) {
    TensorObject *t = (TensorObject *)obj;
    Tensor_ x = {t->data, {t->device_type, 0}, 1, {2, 64, 1}, t->shape, t->strides, 0};
    *out = x;
    return 0;
}
static PyObject *new_tensor(int64_t n);
static int api_to_py(ManagedV *m, void **out) {
    int64_t n = m->dl_tensor.shape[0];
    PyObject *o = new_tensor(n);
    if (o) memcpy(((TensorObject *)o)->data, m->dl_tensor.data, (size_t)n * sizeof(double));
    m->deleter(m);
    if (!o) return -1;
    *out = o;
    return 0;
}
static int api_alloc(Tensor_ *p, ManagedV **out, void *ctx, void (*set_error)(void *, const char *, const char *)) {
    if (p->dtype.code != 2 || p->dtype.bits != 64) { set_error(ctx, "TypeError", "float64 only"); return -1; }
    PyGILState_STATE g = PyGILState_Ensure();
    PyObject *o = new_tensor(p->ndim == 1 ? p->shape[0] : 1);
    int rc = -1;
    if (o) { rc = api_from_py(o, out); Py_DECREF(o); }
    if (rc) { PyErr_Clear(); set_error(ctx, "MemoryError", "allocation failed"); }
    PyGILState_Release(g);
    return rc;
}
static int api_stream(int32_t t, int32_t id, void **out) { (void)t; (void)id; *out = NULL; return 0; }

static ExchangeAPI API = {{{1, 3}, NULL}, api_alloc, api_from_py, api_to_py, api_dltensor, api_stream};

static void cap_destructor(PyObject *cap) {
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
    const char *name = PyCapsule_GetName(cap);
    if (PyCapsule_GetContext(cap) == (void *)1) {
        /* a test's odd name: nobody may consume it, this producer deletes */
        ManagedV *m = PyCapsule_GetPointer(cap, name); m->deleter(m);
    } else if (PyCapsule_IsValid(cap, "dltensor_versioned")) {
        ManagedV *m = PyCapsule_GetPointer(cap, "dltensor_versioned"); m->deleter(m);
    } else if (PyCapsule_IsValid(cap, "dltensor")) {
        Managed *m = PyCapsule_GetPointer(cap, "dltensor"); m->deleter(m);
    }
    PyErr_Clear();
    PyErr_Restore(et, ev, tb);
}

static PyObject *t_dlpack(PyObject *self, PyObject *args, PyObject *kw) {
    static char *names[] = {"stream", "max_version", "dl_device", "copy", NULL};
    PyObject *stream = Py_None, *maxv = Py_None, *dev = Py_None, *copy = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|$OOOO", names, &stream, &maxv, &dev, &copy)) return NULL;
    TensorObject *t = (TensorObject *)self;
    Ctx *c = make(t);
    if (!c) return NULL;
    int versioned = maxv != Py_None && !t->legacy;
    const char *name = t->capsule_name[0] ? t->capsule_name : versioned ? "dltensor_versioned" : "dltensor";
    /* the capsule name must outlive the capsule: keep it in a static copy */
    static char names_buf[8][64]; static int next;
    char *stable = names_buf[__atomic_fetch_add(&next, 1, __ATOMIC_RELAXED) % 8];
    snprintf(stable, 64, "%s", name);
    PyObject *cap = PyCapsule_New(versioned ? (void *)&c->v : (void *)&c->l, stable, cap_destructor);
    if (!cap) { free_ctx(c); return NULL; }
    if (t->capsule_name[0] && PyCapsule_SetContext(cap, (void *)1) < 0) { Py_DECREF(cap); return NULL; }
    return cap;
}
static PyObject *t_device(PyObject *self, PyObject *u) { (void)u; return Py_BuildValue("(ii)", ((TensorObject *)self)->device_type, 0); }

static PyObject *new_tensor(int64_t n) {
    TensorObject *t = PyObject_New(TensorObject, TensorType);
    if (!t) return NULL;
    t->data = PyMem_Calloc((size_t)(n ? n : 1), sizeof(double));
    t->shape[0] = n; t->strides[0] = 1;
    t->readonly = 0; t->device_type = 1; t->major = 1; t->legacy = 0; t->capsule_name[0] = 0;
    t->on_delete = NULL; t->fail = NULL;
    for (int64_t i = 0; i < n; i++) t->data[i] = (double)i;
    return (PyObject *)t;
}
static PyObject *t_new(PyTypeObject *tp, PyObject *args, PyObject *kw) {
    static char *names[] = {"n", "readonly", "device_type", "major", "legacy", "capsule_name", "on_delete", "fail", NULL};
    long long n; int ro = 0, dev = 1, major = 1, legacy = 0; const char *cn = "";
    PyObject *on_delete = NULL, *fail = NULL;
    (void)tp;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "L|$iiiisOO", names, &n, &ro, &dev, &major, &legacy, &cn, &on_delete, &fail)) return NULL;
    TensorObject *t = (TensorObject *)new_tensor(n);
    if (!t) return NULL;
    t->readonly = ro; t->device_type = dev; t->major = major; t->legacy = legacy;
    t->on_delete = on_delete == Py_None ? NULL : Py_XNewRef(on_delete);
    t->fail = fail == Py_None ? NULL : Py_XNewRef(fail);
    snprintf(t->capsule_name, sizeof t->capsule_name, "%s", cn);
    return (PyObject *)t;
}
static void t_dealloc(PyObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    PyMem_Free(((TensorObject *)self)->data);
    Py_XDECREF(((TensorObject *)self)->on_delete);
    Py_XDECREF(((TensorObject *)self)->fail);
    PyObject_Free(self);
    Py_DECREF(tp);
}
static PyObject *t_get(PyObject *self, PyObject *i) {
    Py_ssize_t k = PyLong_AsSsize_t(i);
    if (k == -1 && PyErr_Occurred()) return NULL;
    return PyFloat_FromDouble(((TensorObject *)self)->data[k]);
}
static PyMethodDef t_methods[] = {
    {"__dlpack__", (PyCFunction)(void (*)(void))t_dlpack, METH_VARARGS | METH_KEYWORDS, NULL},
    {"__dlpack_device__", t_device, METH_NOARGS, NULL},
    {"get", t_get, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};
static PyType_Slot t_slots[] = {
    {Py_tp_new, t_new}, {Py_tp_dealloc, t_dealloc}, {Py_tp_methods, t_methods}, {0, NULL},
};
static PyType_Spec t_spec = {"dlpack_producer.Tensor", sizeof(TensorObject), 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE, t_slots};

static PyObject *m_made(PyObject *m, PyObject *u) { (void)m; (void)u; return PyLong_FromLong(__atomic_load_n(&made_count, __ATOMIC_RELAXED)); }
static PyObject *m_deleted(PyObject *m, PyObject *u) { (void)m; (void)u; return PyLong_FromLong(__atomic_load_n(&deleted_count, __ATOMIC_RELAXED)); }
/* Round trip through a foreign table from C: allocator, to_py, from_py,
 * dltensor_from_py, current_work_stream of the table in capsule `cap`,
 * applied to `obj`. Returns (ndim, shape0, dtype_code, stream_is_null,
 * to_py result, alloc ndim). */
static void set_err(void *ctx, const char *kind, const char *msg) { snprintf((char *)ctx, 256, "%s: %s", kind, msg); }
static PyObject *m_exercise(PyObject *m, PyObject *args) {
    PyObject *cap, *obj; (void)m;
    if (!PyArg_ParseTuple(args, "OO", &cap, &obj)) return NULL;
    ExchangeAPI *api = PyCapsule_GetPointer(cap, "dlpack_exchange_api");
    if (!api) return NULL;
    if (!api->allocator || !api->from_py || !api->to_py || !api->dltensor_from_py || !api->current_work_stream) {
        PyErr_SetString(PyExc_AssertionError, "NULL entry"); return NULL;
    }
    Tensor_ t; memset(&t, 0, sizeof t);
    if (api->dltensor_from_py(obj, &t)) return NULL;
    void *stream = (void *)1;
    if (api->current_work_stream(1, 0, &stream)) return NULL;
    ManagedV *mt = NULL;
    if (api->from_py(obj, &mt)) return NULL;
    void *back = NULL;
    if (api->to_py(mt, &back)) return NULL; /* steals mt */
    int64_t shape[2] = {2, 3};
    Tensor_ proto = {NULL, {1, 0}, 2, t.dtype, shape, NULL, 0};
    char err[256] = "";
    ManagedV *al = NULL;
    if (api->allocator(&proto, &al, err, set_err)) { Py_DECREF((PyObject *)back); PyErr_SetString(PyExc_RuntimeError, err); return NULL; }
    int an = al->dl_tensor.ndim; long long as1 = al->dl_tensor.strides ? al->dl_tensor.strides[0] : -1;
    al->deleter(al);
    Tensor_ bad = {NULL, {1, 0}, 1, {5, 7, 1}, shape, NULL, 0};
    ManagedV *bd = NULL;
    int bad_rc = api->allocator(&bad, &bd, err, set_err);
    return Py_BuildValue("(iLiiNiLis)", t.ndim, t.ndim ? (long long)t.shape[0] : -1LL, t.dtype.code, stream == NULL,
                         (PyObject *)back, an, as1, bad_rc, err);
}
static PyMethodDef m_methods[] = {
    {"made", m_made, METH_NOARGS, NULL},
    {"deleted", m_deleted, METH_NOARGS, NULL},
    {"exercise", m_exercise, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};
static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "dlpack_producer", NULL, -1, m_methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit_dlpack_producer(void) {
    PyObject *m = PyModule_Create(&moddef);
    if (!m) return NULL;
#ifdef Py_GIL_DISABLED
    /* counters are atomic; the capsule-name ring is only a test helper */
    PyUnstable_Module_SetGIL(m, Py_MOD_GIL_NOT_USED);
#endif
    TensorType = (PyTypeObject *)PyType_FromSpec(&t_spec);
    if (!TensorType) return NULL;
    PyObject *cap = PyCapsule_New(&API, "dlpack_exchange_api", NULL);
    if (!cap || PyObject_SetAttrString((PyObject *)TensorType, "__dlpack_c_exchange_api__", cap) < 0) return NULL;
    Py_DECREF(cap);
    if (PyModule_AddObjectRef(m, "Tensor", (PyObject *)TensorType) < 0) return NULL;
    return m;
}
