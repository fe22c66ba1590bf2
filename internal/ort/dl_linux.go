package ort

// The dynamic loader, asked directly: which CUDA libraries dlopen finds (the
// way ONNX Runtime's CUDA provider will look for them), and what the NVIDIA
// driver's libcuda.so.1 says about GPUs. Nothing here touches ONNX Runtime.

/*
#cgo LDFLAGS: -ldl
#define _GNU_SOURCE
#include <dlfcn.h>
#include <link.h>
#include <stdlib.h>
#include <string.h>

// tf_dlopen loads name as the provider's own NEEDED entries are loaded
// (lazy binding, local symbols). On success it copies the path the loader
// chose into path; on failure, dlerror's message.
static void* tf_dlopen(const char* name, char* path, size_t n) {
	void* h = dlopen(name, RTLD_LAZY | RTLD_LOCAL);
	if (h == NULL) {
		const char* e = dlerror();
		strncpy(path, e ? e : "dlopen failed", n - 1);
		path[n - 1] = 0;
		return NULL;
	}
	struct link_map* lm = NULL;
	path[0] = 0;
	if (dlinfo(h, RTLD_DI_LINKMAP, &lm) == 0 && lm != NULL && lm->l_name != NULL) {
		strncpy(path, lm->l_name, n - 1);
		path[n - 1] = 0;
	}
	return h;
}

static void* tf_dlsym(void* h, const char* name) { return dlsym(h, name); }
static void tf_dlclose(void* h) { dlclose(h); }

// Calls through the CUDA driver API's function pointers (CUresult is an
// int-sized enum, CUdevice an int).
typedef int (*cu_flags_fn)(unsigned int);
typedef int (*cu_intp_fn)(int*);
typedef int (*cu_get_fn)(int*, int);
typedef int (*cu_name_fn)(char*, int, int);
typedef int (*cu_mem_fn)(size_t*, int);
typedef int (*cu_attr_fn)(int*, int, int);
typedef int (*cu_errname_fn)(int, const char**);

static int tf_cu_init(void* f) { return ((cu_flags_fn)f)(0); }
static int tf_cu_intp(void* f, int* out) { return ((cu_intp_fn)f)(out); }
static int tf_cu_get(void* f, int* dev, int ordinal) { return ((cu_get_fn)f)(dev, ordinal); }
static int tf_cu_name(void* f, char* buf, int n, int dev) { return ((cu_name_fn)f)(buf, n, dev); }
static int tf_cu_mem(void* f, size_t* out, int dev) { return ((cu_mem_fn)f)(out, dev); }
static int tf_cu_attr(void* f, int* out, int attr, int dev) { return ((cu_attr_fn)f)(out, attr, dev); }
static const char* tf_cu_errname(void* f, int code) {
	const char* s = NULL;
	if (f == NULL || ((cu_errname_fn)f)(code, &s) != 0 || s == NULL) return "";
	return s;
}
*/
import "C"

import (
	"cmp"
	"errors"
	"fmt"
	"strings"
	"unsafe"
)

// dlopenCheck loads name by the dynamic loader's search (LD_LIBRARY_PATH,
// the ldconfig cache, the default folders), reports the path it found, and
// unloads it again.
func dlopenCheck(name string) (string, error) {
	h, path, err := dlopen(name)
	if err == nil {
		C.tf_dlclose(h)
	}
	return path, err
}

// dlopen loads name as dlopenCheck does and keeps it loaded.
func dlopen(name string) (unsafe.Pointer, string, error) {
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	buf := make([]byte, 4096)
	h := C.tf_dlopen(cname, (*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)))
	msg := C.GoString((*C.char)(unsafe.Pointer(&buf[0])))
	if h == nil {
		return nil, "", errors.New(dlMessage(msg, name))
	}
	return h, msg, nil
}

// dlMessage shortens dlerror's "name: cannot open shared object file: No
// such file or directory" to its cause.
func dlMessage(msg, name string) string {
	msg = strings.TrimPrefix(msg, name+": ")
	if strings.Contains(msg, "cannot open shared object file") {
		return "not found by the dynamic loader"
	}
	return msg
}

// Device attributes of the CUDA driver API (cuda.h, CUdevice_attribute).
const (
	cuAttrComputeCapabilityMajor = 75
	cuAttrComputeCapabilityMinor = 76
)

// probeGPU asks the NVIDIA driver's libcuda.so.1 for its CUDA version and
// its devices, as the CUDA runtime will when the provider starts.
func probeGPU() GPUStatus {
	var g GPUStatus
	g.DeviceNode = fileExists("/dev/nvidia0")
	h, _, err := dlopen(driverLib)
	if err != nil {
		g.Err = fmt.Errorf("%s (NVIDIA driver) %v", driverLib, err)
		return g
	}
	// libcuda.so.1 stays loaded: once cuInit has run, the driver has
	// threads and state that unloading would pull away, and the CUDA
	// runtime loads it again anyway.
	sym := func(name string) unsafe.Pointer {
		cs := C.CString(name)
		defer C.free(unsafe.Pointer(cs))
		return C.tf_dlsym(h, cs)
	}
	errName := sym("cuGetErrorName")
	// fail is g with the error of a driver call that returned code.
	fail := func(call string, code C.int) GPUStatus {
		name := C.GoString(C.tf_cu_errname(errName, code))
		g.Err = fmt.Errorf("%s: %s", call, cmp.Or(name, fmt.Sprintf("error %d", int(code))))
		return g
	}
	fns := map[string]unsafe.Pointer{}
	for _, n := range []string{"cuDriverGetVersion", "cuInit", "cuDeviceGetCount", "cuDeviceGet", "cuDeviceGetName", "cuDeviceTotalMem_v2", "cuDeviceGetAttribute"} {
		if fns[n] = sym(n); fns[n] == nil {
			g.Err = fmt.Errorf("%s has no %s: not an NVIDIA driver library", driverLib, n)
			return g
		}
	}
	var v C.int
	if rc := C.tf_cu_intp(fns["cuDriverGetVersion"], &v); rc != 0 {
		return fail("cuDriverGetVersion", rc)
	}
	g.DriverCUDA = int(v)
	if rc := C.tf_cu_init(fns["cuInit"]); rc != 0 {
		return fail("cuInit", rc)
	}
	var n C.int
	if rc := C.tf_cu_intp(fns["cuDeviceGetCount"], &n); rc != 0 {
		return fail("cuDeviceGetCount", rc)
	}
	for i := range int(n) {
		var dev C.int
		if rc := C.tf_cu_get(fns["cuDeviceGet"], &dev, C.int(i)); rc != 0 {
			return fail("cuDeviceGet", rc)
		}
		d := GPUDevice{Index: i}
		name := make([]byte, 256)
		if C.tf_cu_name(fns["cuDeviceGetName"], (*C.char)(unsafe.Pointer(&name[0])), C.int(len(name)), dev) == 0 {
			d.Name = C.GoString((*C.char)(unsafe.Pointer(&name[0])))
		}
		var mem C.size_t
		if C.tf_cu_mem(fns["cuDeviceTotalMem_v2"], &mem, dev) == 0 {
			d.MemoryMB = int(mem >> 20)
		}
		var major, minor C.int
		if C.tf_cu_attr(fns["cuDeviceGetAttribute"], &major, cuAttrComputeCapabilityMajor, dev) == 0 &&
			C.tf_cu_attr(fns["cuDeviceGetAttribute"], &minor, cuAttrComputeCapabilityMinor, dev) == 0 {
			d.Capability = fmt.Sprintf("%d.%d", int(major), int(minor))
		}
		g.Devices = append(g.Devices, d)
	}
	if len(g.Devices) == 0 {
		g.Err = errors.New("cuDeviceGetCount: no CUDA device")
	}
	return g
}
