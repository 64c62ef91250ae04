package @PACKAGE@

import "errors"

// The Vulkan probe is Linux-only for now.
func vulkanProbe() ([]vulkanDevice, error) {
	return nil, errors.New("Vulkan probe not implemented on Windows")
}
