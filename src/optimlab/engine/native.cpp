// The steady-state confirmation of a fused group step (optimlab/engine_fused.py, Steady.confirm),
// in one pass over the group's tensors.
//
// In Python every fact about a tensor (its address, size, dtype, device, contiguity) is a call
// through torch's bindings, ~0.1 us each: seven list-wide passes over 148 tensors cost ~0.1 ms,
// as much as the kernel itself takes for 1M parameters. Here the same facts are read from the
// tensors directly (~15 ns per tensor). The checks are the Python ones, and a little stricter;
// any doubt returns False and the caller takes its full checks. Nothing here changes a tensor.
//
// Built on demand by optimlab/engine_native.py against the torch it runs with.

#include <Python.h>
#include <torch/csrc/autograd/python_variable.h>

#include <cstdint>
#include <exception>

namespace {

PyTypeObject* tensor_type = nullptr;     // torch.Tensor
PyTypeObject* parameter_type = nullptr;  // torch.nn.Parameter

bool plain(PyObject* object) {
  PyTypeObject* type = Py_TYPE(object);
  return type == tensor_type || type == parameter_type;
}

// set_types(torch.Tensor, torch.nn.Parameter): the only classes taken (subclasses go eager).
PyObject* set_types(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 2 || !PyType_Check(args[0]) || !PyType_Check(args[1])) {
    PyErr_SetString(PyExc_TypeError, "set_types(torch.Tensor, torch.nn.Parameter)");
    return nullptr;
  }
  Py_INCREF(args[0]);
  Py_INCREF(args[1]);
  Py_XDECREF(reinterpret_cast<PyObject*>(tensor_type));
  Py_XDECREF(reinterpret_cast<PyObject*>(parameter_type));
  tensor_type = reinterpret_cast<PyTypeObject*>(args[0]);
  parameter_type = reinterpret_cast<PyTypeObject*>(args[1]);
  Py_RETURN_NONE;
}

// scalar_type(tensor) -> the int code of its dtype, as confirm() takes it.
PyObject* scalar_type(PyObject*, PyObject* tensor) {
  if (tensor_type == nullptr || !plain(tensor)) {
    PyErr_SetString(PyExc_TypeError, "scalar_type: expected a torch.Tensor (call set_types first)");
    return nullptr;
  }
  return PyLong_FromLong(static_cast<long>(THPVariable_Unpack(tensor).scalar_type()));
}

// confirm(params, grads, expected, pointers, numels, dtype) -> bool
//
// True if every params[i] is expected[i] (the same object), still a contiguous CPU tensor at
// pointers[i] with numels[i] elements of dtype, and grads[i] is a plain tensor of that dtype and
// size, on the CPU, strided and contiguous; then pointers[n + i] is set to grads[i]'s address. pointers and numels are
// the addresses of int64 arrays of 2n and n entries. On False the grads' entries may be partly
// written: the caller drops the array.
PyObject* confirm(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 6) {
    PyErr_SetString(PyExc_TypeError, "confirm takes 6 arguments");
    return nullptr;
  }
  PyObject* params = args[0];
  PyObject* grads = args[1];
  PyObject* expected = args[2];
  if (tensor_type == nullptr || !PyList_CheckExact(params) || !PyList_CheckExact(grads) ||
      !PyList_CheckExact(expected)) {
    Py_RETURN_FALSE;
  }
  const Py_ssize_t n = PyList_GET_SIZE(expected);
  if (PyList_GET_SIZE(params) != n || PyList_GET_SIZE(grads) != n) {
    Py_RETURN_FALSE;
  }
  auto* pointers = static_cast<int64_t*>(PyLong_AsVoidPtr(args[3]));
  auto* numels = static_cast<const int64_t*>(PyLong_AsVoidPtr(args[4]));
  const long code = PyLong_AsLong(args[5]);
  if (PyErr_Occurred()) {
    return nullptr;
  }
  if (pointers == nullptr || numels == nullptr) {
    Py_RETURN_FALSE;
  }
  const auto dtype = static_cast<c10::ScalarType>(code);
  try {
    for (Py_ssize_t i = 0; i < n; ++i) {
      PyObject* p = PyList_GET_ITEM(params, i);
      PyObject* g = PyList_GET_ITEM(grads, i);
      if (p != PyList_GET_ITEM(expected, i) || !plain(p) || Py_TYPE(g) != tensor_type) {
        Py_RETURN_FALSE;
      }
      const at::Tensor& param = THPVariable_Unpack(p);
      const at::Tensor& grad = THPVariable_Unpack(g);
      if (!param.defined() || !grad.defined() || param.scalar_type() != dtype || grad.scalar_type() != dtype ||
          !grad.is_cpu() || grad.layout() != c10::kStrided || !param.has_storage() || !grad.has_storage()) {
        Py_RETURN_FALSE;
      }
      const int64_t numel = numels[i];
      if (!param.is_cpu() || param.layout() != c10::kStrided || param.numel() != numel || grad.numel() != numel ||
          !param.is_contiguous() || !grad.is_contiguous() ||
          reinterpret_cast<int64_t>(param.data_ptr()) != pointers[i]) {
        Py_RETURN_FALSE;
      }
      pointers[n + i] = reinterpret_cast<int64_t>(grad.data_ptr());
    }
  } catch (const std::exception&) {  // a tensor torch refuses to give an address for
    Py_RETURN_FALSE;
  }
  Py_RETURN_TRUE;
}

PyMethodDef methods[] = {
    {"set_types", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(set_types)), METH_FASTCALL,
     "set_types(torch.Tensor, torch.nn.Parameter)"},
    {"scalar_type", scalar_type, METH_O, "scalar_type(tensor) -> int"},
    {"confirm", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(confirm)), METH_FASTCALL,
     "confirm(params, grads, expected, pointers, numels, dtype) -> bool"},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef module = {PyModuleDef_HEAD_INIT, "_optimlab_native", "optimlab's steady-state step checks", -1,
                      methods};

}  // namespace

PyMODINIT_FUNC PyInit__optimlab_native() { return PyModule_Create(&module); }
