package @PACKAGE@

/*
#cgo linux LDFLAGS: -ldl

// A real device probe through the Vulkan loader, opened with dlopen so the ollama binary
// does not link libvulkan: without a loader or an ICD there is simply no Vulkan GPU.
#define VK_NO_PROTOTYPES
#include <vulkan/vulkan.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OV_VK_MAX_DEVICES 16

typedef struct {
	char name[VK_MAX_PHYSICAL_DEVICE_NAME_SIZE];
	uint32_t type;
	uint32_t vendor_id;
	uint32_t device_id;
	uint64_t total;
	uint64_t free;
	int has_budget;
} ov_vk_device_t;

typedef struct {
	int count;
	ov_vk_device_t devices[OV_VK_MAX_DEVICES];
	char err[256];
} ov_vk_probe_t;

static int ov_vk_has_extension(PFN_vkEnumerateDeviceExtensionProperties enumerate, VkPhysicalDevice dev, const char *name) {
	uint32_t n = 0;
	if (enumerate(dev, NULL, &n, NULL) != VK_SUCCESS || n == 0) return 0;
	VkExtensionProperties *props = calloc(n, sizeof(*props));
	if (props == NULL) return 0;
	int found = 0;
	if (enumerate(dev, NULL, &n, props) == VK_SUCCESS) {
		for (uint32_t i = 0; i < n; i++) {
			if (strcmp(props[i].extensionName, name) == 0) { found = 1; break; }
		}
	}
	free(props);
	return found;
}

static void ov_vk_probe(const char *lib, ov_vk_probe_t *out) {
	memset(out, 0, sizeof(*out));
	void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		snprintf(out->err, sizeof(out->err), "%s", dlerror());
		return;
	}
	PFN_vkGetInstanceProcAddr gipa = (PFN_vkGetInstanceProcAddr)dlsym(h, "vkGetInstanceProcAddr");
	if (gipa == NULL) {
		snprintf(out->err, sizeof(out->err), "%s has no vkGetInstanceProcAddr", lib);
		dlclose(h);
		return;
	}
	uint32_t api = VK_API_VERSION_1_0;
	PFN_vkEnumerateInstanceVersion eiv = (PFN_vkEnumerateInstanceVersion)gipa(NULL, "vkEnumerateInstanceVersion");
	if (eiv != NULL && eiv(&api) != VK_SUCCESS) api = VK_API_VERSION_1_0;
	if (api > VK_API_VERSION_1_1) api = VK_API_VERSION_1_1;
	PFN_vkCreateInstance create = (PFN_vkCreateInstance)gipa(NULL, "vkCreateInstance");
	VkApplicationInfo app = {VK_STRUCTURE_TYPE_APPLICATION_INFO, NULL, "ollama", 1, NULL, 0, api};
	VkInstanceCreateInfo ci = {VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, NULL, 0, &app, 0, NULL, 0, NULL};
	VkInstance inst = VK_NULL_HANDLE;
	VkResult r = create == NULL ? VK_ERROR_INITIALIZATION_FAILED : create(&ci, NULL, &inst);
	if (r != VK_SUCCESS) {
		snprintf(out->err, sizeof(out->err), "vkCreateInstance failed: %d", (int)r);
		dlclose(h);
		return;
	}
	PFN_vkDestroyInstance destroy = (PFN_vkDestroyInstance)gipa(inst, "vkDestroyInstance");
	PFN_vkEnumeratePhysicalDevices enumerate = (PFN_vkEnumeratePhysicalDevices)gipa(inst, "vkEnumeratePhysicalDevices");
	PFN_vkGetPhysicalDeviceProperties props = (PFN_vkGetPhysicalDeviceProperties)gipa(inst, "vkGetPhysicalDeviceProperties");
	PFN_vkGetPhysicalDeviceMemoryProperties memprops = (PFN_vkGetPhysicalDeviceMemoryProperties)gipa(inst, "vkGetPhysicalDeviceMemoryProperties");
	PFN_vkGetPhysicalDeviceMemoryProperties2 memprops2 = NULL;
	if (api >= VK_API_VERSION_1_1) memprops2 = (PFN_vkGetPhysicalDeviceMemoryProperties2)gipa(inst, "vkGetPhysicalDeviceMemoryProperties2");
	PFN_vkEnumerateDeviceExtensionProperties exts = (PFN_vkEnumerateDeviceExtensionProperties)gipa(inst, "vkEnumerateDeviceExtensionProperties");

	VkPhysicalDevice devs[OV_VK_MAX_DEVICES];
	uint32_t n = OV_VK_MAX_DEVICES;
	r = enumerate(inst, &n, devs);
	if (r != VK_SUCCESS && r != VK_INCOMPLETE) {
		snprintf(out->err, sizeof(out->err), "vkEnumeratePhysicalDevices failed: %d", (int)r);
		n = 0;
	}
	for (uint32_t i = 0; i < n; i++) {
		ov_vk_device_t *d = &out->devices[i];
		VkPhysicalDeviceProperties p;
		props(devs[i], &p);
		snprintf(d->name, sizeof(d->name), "%s", p.deviceName);
		d->type = (uint32_t)p.deviceType;
		d->vendor_id = p.vendorID;
		d->device_id = p.deviceID;

		// As ggml-vulkan sizes a device: its device-local heap. Free memory comes from
		// VK_EXT_memory_budget (budget minus usage) where the driver has it.
		VkPhysicalDeviceMemoryBudgetPropertiesEXT budget;
		memset(&budget, 0, sizeof(budget));
		budget.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_BUDGET_PROPERTIES_EXT;
		VkPhysicalDeviceMemoryProperties2 mp2;
		memset(&mp2, 0, sizeof(mp2));
		mp2.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_PROPERTIES_2;
		VkPhysicalDeviceMemoryProperties *mp = &mp2.memoryProperties;
		if (memprops2 != NULL && p.apiVersion >= VK_API_VERSION_1_1 && exts != NULL &&
		    ov_vk_has_extension(exts, devs[i], VK_EXT_MEMORY_BUDGET_EXTENSION_NAME)) {
			mp2.pNext = &budget;
			memprops2(devs[i], &mp2);
			d->has_budget = 1;
		} else {
			memprops(devs[i], mp);
		}
		for (uint32_t k = 0; k < mp->memoryHeapCount; k++) {
			if (!(mp->memoryHeaps[k].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT)) continue;
			if (mp->memoryHeaps[k].size <= d->total) continue;
			d->total = mp->memoryHeaps[k].size;
			d->free = d->total;
			if (d->has_budget && budget.heapBudget[k] > 0) {
				d->free = budget.heapBudget[k] > budget.heapUsage[k] ? budget.heapBudget[k] - budget.heapUsage[k] : 0;
				if (d->free > d->total) d->free = d->total;
			}
		}
		out->count++;
	}
	if (destroy != NULL) destroy(inst, NULL);
	dlclose(h);
}
*/
import "C"

import (
	"errors"
	"unsafe"
)

var vulkanLibraries = []string{"libvulkan.so.1", "libvulkan.so"}

func vulkanProbe() ([]vulkanDevice, error) {
	var errs []error
	for _, name := range vulkanLibraries {
		lib := C.CString(name)
		var resp C.ov_vk_probe_t
		C.ov_vk_probe(lib, &resp)
		C.free(unsafe.Pointer(lib))
		if resp.err[0] != 0 && resp.count == 0 {
			errs = append(errs, errors.New(C.GoString(&resp.err[0])))
			continue
		}
		devices := make([]vulkanDevice, 0, int(resp.count))
		for i := 0; i < int(resp.count); i++ {
			d := resp.devices[i]
			devices = append(devices, vulkanDevice{
				index:    i,
				name:     C.GoString(&d.name[0]),
				kind:     vulkanDeviceType(d._type),
				vendorID: uint32(d.vendor_id),
				deviceID: uint32(d.device_id),
				total:    uint64(d.total),
				free:     uint64(d.free),
				budget:   d.has_budget != 0,
			})
		}
		return devices, nil
	}
	return nil, errors.Join(errs...)
}
