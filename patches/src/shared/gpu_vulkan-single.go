//go:build linux || windows

package @PACKAGE@

import (
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
)

// Vulkan GPUs, probed through the Vulkan loader. The runner library built with Vulkan lives
// in the "vulkan" payload, which getDynLibs picks for Library "vulkan"; device IDs are
// indices in the loader's enumeration, as GGML_VK_VISIBLE_DEVICES counts them.

type vulkanDeviceType uint32

// VkPhysicalDeviceType
func (t vulkanDeviceType) String() string {
	switch t {
	case 1:
		return "integrated"
	case 2:
		return "discrete"
	case 3:
		return "virtual"
	case 4:
		return "cpu"
	default:
		return "other"
	}
}

type vulkanDevice struct {
	index              int
	name               string
	kind               vulkanDeviceType
	vendorID, deviceID uint32
	total, free        uint64
	budget             bool
}

// Set after the first probe has been logged at info level (GetGPUInfo holds gpuMutex).
var vulkanLogged bool

// vulkanSelected picks the devices ggml-vulkan will use: those GGML_VK_VISIBLE_DEVICES
// names, else every device that is not a CPU (software rasterisers such as lavapipe are
// slower than the CPU runner).
func vulkanSelected(devices []vulkanDevice) []vulkanDevice {
	env, set := os.LookupEnv("GGML_VK_VISIBLE_DEVICES")
	var out []vulkanDevice
	if set {
		for _, f := range strings.FieldsFunc(env, func(r rune) bool { return r == ',' || r == ' ' }) {
			i, err := strconv.Atoi(f)
			if err != nil || i < 0 || i >= len(devices) {
				slog.Warn("GGML_VK_VISIBLE_DEVICES names no Vulkan device", "value", f, "devices", len(devices))
				continue
			}
			out = append(out, devices[i])
		}
		return out
	}
	for _, d := range devices {
		if d.kind.String() != "cpu" {
			out = append(out, d)
		}
	}
	return out
}

// vulkanGetGPUInfo: this era's GetGPUInfo reports one GpuInfo for all devices of one
// library, so the selected Vulkan devices' memory is summed. The runner is in-process
// (libext_server.so): GGML_VK_VISIBLE_DEVICES is set to the devices counted here, so ggml
// uses exactly those.
func vulkanGetGPUInfo() (GpuInfo, bool) {
	resp := GpuInfo{}
	if os.Getenv("OLLAMA_SKIP_VULKAN") != "" {
		if !vulkanLogged {
			slog.Info("Vulkan GPU discovery skipped: OLLAMA_SKIP_VULKAN is set")
			vulkanLogged = true
		}
		return resp, false
	}
	devices, err := vulkanProbe()
	if err != nil {
		slog.Debug("no Vulkan loader", "error", err)
		return resp, false
	}
	log := slog.Debug
	if !vulkanLogged {
		log = slog.Info
		vulkanLogged = true
	}
	ids := []string{}
	for _, d := range vulkanSelected(devices) {
		resp.TotalMemory += d.total
		resp.FreeMemory += d.free
		resp.DeviceCount++
		ids = append(ids, strconv.Itoa(d.index))
		log("Vulkan GPU", "id", d.index, "name", d.name, "type", d.kind.String(),
			"vendor", fmt.Sprintf("%#04x", d.vendorID), "device", fmt.Sprintf("%#04x", d.deviceID),
			"total", vulkanBytes(d.total), "free", vulkanBytes(d.free), "budget", d.budget)
	}
	if resp.DeviceCount == 0 {
		log("no Vulkan GPU selected", "devices", len(devices), "hint", "set GGML_VK_VISIBLE_DEVICES to use a CPU-type device")
		return resp, false
	}
	resp.Library = "vulkan"
	if _, set := os.LookupEnv("GGML_VK_VISIBLE_DEVICES"); !set {
		os.Setenv("GGML_VK_VISIBLE_DEVICES", strings.Join(ids, ","))
	}
	return resp, true
}

func vulkanBytes(b uint64) string {
	return fmt.Sprintf("%.1f GiB", float64(b)/float64(1<<30))
}
