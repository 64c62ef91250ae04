//go:build linux || windows

package @PACKAGE@

import (
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/ollama/ollama/format"
)

// Vulkan GPUs, probed through the Vulkan loader. The runner built with Vulkan lives in
// the "vulkan" payload, which the scheduler picks for Library "vulkan"; device IDs are
// indices in the loader's enumeration, as GGML_VK_VISIBLE_DEVICES counts them.

const vulkanMinimumMemory = 457 * format.MebiByte

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

func vulkanGetGPUInfo() []GpuInfo {
	if os.Getenv("OLLAMA_SKIP_VULKAN") != "" {
		if !vulkanLogged {
			slog.Info("Vulkan GPU discovery skipped: OLLAMA_SKIP_VULKAN is set")
			vulkanLogged = true
		}
		return nil
	}
	devices, err := vulkanProbe()
	if err != nil {
		slog.Debug("no Vulkan loader", "error", err)
		return nil
	}
	log := slog.Debug
	if !vulkanLogged {
		log = slog.Info
		vulkanLogged = true
	}
	var resp []GpuInfo
	for _, d := range vulkanSelected(devices) {
		gpuInfo := GpuInfo{Library: "vulkan"}
		gpuInfo.ID = strconv.Itoa(d.index)
		gpuInfo.Name = d.name
		gpuInfo.TotalMemory = d.total
		gpuInfo.FreeMemory = d.free
		gpuInfo.MinimumMemory = vulkanMinimumMemory
		resp = append(resp, gpuInfo)
		log("Vulkan GPU", "id", d.index, "name", d.name, "type", d.kind.String(),
			"vendor", fmt.Sprintf("%#04x", d.vendorID), "device", fmt.Sprintf("0x%04x", d.deviceID),
			"total", format.HumanBytes2(d.total), "free", format.HumanBytes2(d.free), "budget", d.budget)
	}
	if len(resp) == 0 {
		log("no Vulkan GPU selected", "devices", len(devices), "hint", "set GGML_VK_VISIBLE_DEVICES to use a CPU-type device")
	}
	return resp
}

func vulkanGetVisibleDevicesEnv(gpuInfo []GpuInfo) (string, string) {
	ids := []string{}
	for _, info := range gpuInfo {
		if info.Library != "vulkan" {
			// TODO shouldn't happen if things are wired correctly...
			slog.Debug("vulkanGetVisibleDevicesEnv skipping over non-vulkan device", "library", info.Library)
			continue
		}
		ids = append(ids, info.ID)
	}
	return "GGML_VK_VISIBLE_DEVICES", strings.Join(ids, ",")
}
