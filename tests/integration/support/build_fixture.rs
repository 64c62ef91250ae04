//! Source files of the buildable fixture upstreams: a tiny "ggml" (a CMake C library whose
//! Vulkan option compiles a compute shader with glslc, embeds the SPIR-V and builds a
//! compute pipeline on every selected device), a Go main that loads it, and the era glue
//! (gen_linux.sh for 1b, CMake presets for 4, llama/server presets for 5). All our own
//! few lines, shaped like upstream's.

/// The compute shader every Vulkan build compiles with glslc.
pub const PROBE_COMP: &str = "#version 450\nlayout(local_size_x = 1) in;\nlayout(binding = 0) buffer B { uint v[]; };\nvoid main() { v[gl_GlobalInvocationID.x] += 1u; }\n";

/// A shader that needs GL_EXT_integer_dot_product (compiled only when the probe says so).
const DOT_COMP: &str = "#version 450\n#extension GL_EXT_integer_dot_product : require\nlayout(local_size_x = 1) in;\nlayout(binding = 0) buffer B { int v[]; };\nvoid main() { v[0] = dotEXT(ivec4(1), ivec4(2)); }\n";

/// The feature-test shader ggml-vulkan's CMake probes glslc with.
const FEATURE_TEST: &str =
    "#version 460\n\n#extension GL_EXT_integer_dot_product : require\n\nvoid main()\n{\n}\n";

/// Compiles IN with GLSLC and writes OUT as a C array NAME; like vulkan-shaders-gen, a
/// shader that fails prints "cannot compile" and is left out (its symbols stay undefined).
const EMBED_CMAKE: &str = r#"execute_process(COMMAND ${GLSLC} -fshader-stage=compute --target-env=vulkan1.2 ${IN} -o ${OUT}.spv
                RESULT_VARIABLE rc ERROR_VARIABLE err)
if (NOT rc EQUAL 0)
  message(WARNING "cannot compile ${NAME}: ${err}")
  file(WRITE ${OUT} "/* ${NAME}: cannot compile */\n")
  return()
endif()
file(READ ${OUT}.spv hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," arr "${hex}")
file(WRITE ${OUT} "const unsigned char ${NAME}_data[] __attribute__((aligned(4))) = {${arr}};\nconst unsigned int ${NAME}_len = sizeof(${NAME}_data);\n")
"#;

/// The "ggml" library. `opt` is the Vulkan option's name (LLAMA_VULKAN in era 1,
/// GGML_VULKAN later); `tests` where the feature-test shader lives (ggml-vulkan's
/// vulkan-shaders/feature-tests, which Ollama's vendoring leaves out).
fn lib_cmake(opt: &str, tests: &str, vk_cpp: &str) -> String {
    format!(
        r#"cmake_minimum_required(VERSION 3.14)
project(ggml C CXX)
option({opt} "Vulkan backend" OFF)
set(CMAKE_RUNTIME_OUTPUT_DIRECTORY ${{CMAKE_BINARY_DIR}}/bin)
set(CMAKE_LIBRARY_OUTPUT_DIRECTORY ${{CMAKE_BINARY_DIR}}/bin)
add_library(ggml-base SHARED base.c)
if ({opt})
  find_package(Vulkan REQUIRED)
  find_program(GLSLC glslc REQUIRED)
  set(S ${{CMAKE_CURRENT_SOURCE_DIR}})
  set(B ${{CMAKE_CURRENT_BINARY_DIR}})
  # ggml-vulkan's probe: only "extension not supported" counts as unsupported, so a
  # missing test file reads as "supported".
  execute_process(COMMAND ${{GLSLC}} -o - -fshader-stage=compute --target-env=vulkan1.3 ${{S}}/{tests}/integer_dot.comp
                  OUTPUT_QUIET ERROR_VARIABLE glslc_error)
  if ("${{glslc_error}}" MATCHES ".*extension not supported: GL_EXT_integer_dot_product.*")
    message(STATUS "GL_EXT_integer_dot_product not supported by glslc")
    set(INTDOT OFF)
  else()
    message(STATUS "GL_EXT_integer_dot_product supported by glslc")
    set(INTDOT ON)
  endif()
  add_custom_command(OUTPUT ${{B}}/probe_spv.c
    COMMAND ${{CMAKE_COMMAND}} -DGLSLC=${{GLSLC}} -DIN=${{S}}/probe.comp -DOUT=${{B}}/probe_spv.c -DNAME=probe -P ${{S}}/embed.cmake
    DEPENDS ${{S}}/probe.comp ${{S}}/embed.cmake)
  set(SRCS probe.c {vk_cpp} ${{B}}/probe_spv.c)
  if (INTDOT)
    add_custom_command(OUTPUT ${{B}}/dot_spv.c
      COMMAND ${{CMAKE_COMMAND}} -DGLSLC=${{GLSLC}} -DIN=${{S}}/dot.comp -DOUT=${{B}}/dot_spv.c -DNAME=dot -P ${{S}}/embed.cmake
      DEPENDS ${{S}}/dot.comp ${{S}}/embed.cmake)
    list(APPEND SRCS ${{B}}/dot_spv.c)
  endif()
  add_library(ggml-vulkan SHARED ${{SRCS}})
  if (INTDOT)
    target_compile_definitions(ggml-vulkan PRIVATE GGML_VULKAN_INTEGER_DOT_GLSLC_SUPPORT)
  endif()
  target_link_libraries(ggml-vulkan PRIVATE Vulkan::Vulkan)
  add_executable(ollama_llama_server server.c)
  target_link_libraries(ollama_llama_server PRIVATE ggml-vulkan)
endif()
"#
    )
}

const BASE_C: &str = "int ggml_base_version(void) { return 1; }\n";

/// Enumerates devices the way ggml does (CPU-type devices such as lavapipe only when
/// GGML_VK_VISIBLE_DEVICES selects them) and proves the glslc-made SPIR-V: a device, a
/// shader module and a compute pipeline on each selected device.
const PROBE_C: &str = r#"#include <vulkan/vulkan.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ggml_vk_memory(int device, size_t *free, size_t *total);
long ggml_vk_pipeline_cache_probe(const unsigned char *spv, unsigned int size, char *path, int n);
extern const unsigned char probe_data[];
extern const unsigned int probe_len;
#ifdef GGML_VULKAN_INTEGER_DOT_GLSLC_SUPPORT
extern const unsigned int dot_len;
#endif

static int visible(const char *list, unsigned i) {
  char buf[256];
  snprintf(buf, sizeof buf, "%s", list);
  for (char *t = strtok(buf, ","); t; t = strtok(NULL, ","))
    if ((unsigned)atoi(t) == i) return 1;
  return 0;
}

int ggml_vk_probe(char *out, int n) {
  int used = 0, found = 0;
#ifdef GGML_VULKAN_INTEGER_DOT_GLSLC_SUPPORT
  used += snprintf(out + used, n - used, "ggml_vulkan: integer dot shader: %u bytes\n", dot_len);
#endif
  VkApplicationInfo app = {VK_STRUCTURE_TYPE_APPLICATION_INFO, NULL, "probe", 1, NULL, 0, VK_API_VERSION_1_2};
  VkInstanceCreateInfo ci = {VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, NULL, 0, &app, 0, NULL, 0, NULL};
  VkInstance inst;
  if (vkCreateInstance(&ci, NULL, &inst) != VK_SUCCESS) {
    snprintf(out + used, n - used, "ggml_vulkan: vkCreateInstance failed\n");
    return -1;
  }
  uint32_t count = 16;
  VkPhysicalDevice devs[16];
  vkEnumeratePhysicalDevices(inst, &count, devs);
  const char *vis = getenv("GGML_VK_VISIBLE_DEVICES");
  for (uint32_t i = 0; i < count; i++) {
    VkPhysicalDeviceProperties p;
    vkGetPhysicalDeviceProperties(devs[i], &p);
    if (vis ? !visible(vis, i) : p.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU) continue;
    uint32_t nq = 8;
    VkQueueFamilyProperties qf[8];
    vkGetPhysicalDeviceQueueFamilyProperties(devs[i], &nq, qf);
    uint32_t q = 0;
    while (q < nq && !(qf[q].queueFlags & VK_QUEUE_COMPUTE_BIT)) q++;
    float prio = 1.0f;
    VkDeviceQueueCreateInfo qi = {VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO, NULL, 0, q, 1, &prio};
    VkDeviceCreateInfo di = {VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, NULL, 0, 1, &qi, 0, NULL, 0, NULL, NULL};
    VkDevice dev;
    if (vkCreateDevice(devs[i], &di, NULL, &dev) != VK_SUCCESS) continue;
    VkShaderModuleCreateInfo si = {VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO, NULL, 0, probe_len, (const uint32_t *)probe_data};
    VkShaderModule sm;
    VkDescriptorSetLayoutBinding b = {0, VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, 1, VK_SHADER_STAGE_COMPUTE_BIT, NULL};
    VkDescriptorSetLayoutCreateInfo li = {VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO, NULL, 0, 1, &b};
    VkDescriptorSetLayout dl;
    VkPipelineLayoutCreateInfo pli = {VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO, NULL, 0, 1, &dl, 0, NULL};
    VkPipelineLayout pl;
    VkPipeline pipe;
    int ok = vkCreateShaderModule(dev, &si, NULL, &sm) == VK_SUCCESS
      && vkCreateDescriptorSetLayout(dev, &li, NULL, &dl) == VK_SUCCESS
      && vkCreatePipelineLayout(dev, &pli, NULL, &pl) == VK_SUCCESS;
    if (ok) {
      VkComputePipelineCreateInfo cpi = {VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO, NULL, 0,
        {VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO, NULL, 0, VK_SHADER_STAGE_COMPUTE_BIT, sm, "main", NULL}, pl, VK_NULL_HANDLE, 0};
      ok = vkCreateComputePipelines(dev, VK_NULL_HANDLE, 1, &cpi, NULL, &pipe) == VK_SUCCESS;
      if (ok) vkDestroyPipeline(dev, pipe, NULL);
      vkDestroyPipelineLayout(dev, pl, NULL);
      vkDestroyDescriptorSetLayout(dev, dl, NULL);
      vkDestroyShaderModule(dev, sm, NULL);
    }
    vkDestroyDevice(dev, NULL);
    size_t mem_free = 0, mem_total = 0;
    ggml_vk_memory((int)i, &mem_free, &mem_total);
    used += snprintf(out + used, n - used, "ggml_vulkan: %u = %s (type %d) | compute pipeline %s | memory free %zu total %zu\n",
                     i, p.deviceName, (int)p.deviceType, ok ? "ok" : "FAILED", mem_free, mem_total);
    found += ok;
  }
  if (!found) used += snprintf(out + used, n - used, "ggml_vulkan: No devices found.\n");
  vkDestroyInstance(inst, NULL);
  if (found && getenv("GGML_VK_PIPELINE_CACHE_DIR")) {
    char path[512] = "";
    long bytes = ggml_vk_pipeline_cache_probe(probe_data, probe_len, path, sizeof path);
    snprintf(out + used, n - used, "ggml_vulkan: pipeline cache %s: %ld bytes\n", path, bytes);
  }
  return found;
}
"#;

/// Where ggml-vulkan.cpp lives in the mini llama.cpp and in era 4's vendored ggml.
const LLAMA_VK_CPP: &str = "ggml/src/ggml-vulkan/ggml-vulkan.cpp";
const VENDORED_VK_CPP: &str = "src/ggml-vulkan/ggml-vulkan.cpp";

/// ggml-vulkan's device memory report, with upstream's shape and lines where our `venus`
/// series patches it (the end of ggml_backend_vk_get_device_memory, the next function's
/// signature); era 4's takes a device context, as Ollama's vendored copy does. The probe
/// prints what it reports.
const GGML_VULKAN_CPP: &str = r#"#include <vulkan/vulkan.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <vector>

#define GGML_LOG_INFO(...) fprintf(stderr, __VA_ARGS__)
#define GGML_LOG_WARN(...) fprintf(stderr, __VA_ARGS__)

struct ggml_backend_vk_device_context {
    int device;
};

static struct {
    vk::Instance instance;
    std::vector<size_t> device_indices;
    bool debug_utils_support = false;
} vk_instance;

static void ggml_vk_instance_init() {
    if (vk_instance.instance) {
        return;
    }
    vk::ApplicationInfo app("fixture", 1, nullptr, 0, VK_API_VERSION_1_2);
    vk_instance.instance = vk::createInstance(vk::InstanceCreateInfo({}, &app));
    for (size_t i = 0; i < vk_instance.instance.enumeratePhysicalDevices().size(); i++) {
        vk_instance.device_indices.push_back(i);
    }
}

void ggml_backend_vk_get_device_memory(int device, size_t * free, size_t * total) {
    vk::PhysicalDevice vkdev = vk_instance.instance.enumeratePhysicalDevices()[vk_instance.device_indices[device]];
    vk::PhysicalDeviceMemoryProperties2 memprops = {};
    vkdev.getMemoryProperties2(&memprops);

    *total = 0;
    *free = 0;

    for (uint32_t i = 0; i < memprops.memoryProperties.memoryHeapCount; ++i) {
        const vk::MemoryHeap & heap = memprops.memoryProperties.memoryHeaps[i];

        if (heap.flags & vk::MemoryHeapFlagBits::eDeviceLocal) {
            *total += heap.size;

            if (false) {
            } else {
                *free += heap.size;
            }
        }
    }
}

static vk::PhysicalDeviceType ggml_backend_vk_get_device_type(int device_idx) {
    return vk_instance.instance.enumeratePhysicalDevices()[vk_instance.device_indices[device_idx]].getProperties().deviceType;
}

extern "C" int ggml_vk_memory(int device, size_t * free, size_t * total) {
    ggml_vk_instance_init();
    ggml_backend_vk_get_device_memory(device, free, total);
    return (int) ggml_backend_vk_get_device_type(device);
}

// A device, its pipelines compiled on first use and a graph, with upstream's lines where
// our vk-pipeline-cache series patches them.
#include <array>
#include <iostream>
#include <memory>
#include <mutex>
#include <future>
#include <condition_variable>
#include <thread>

#if defined(_MSC_VER)
# define NOMINMAX 1
#endif
#define VK_LOG_DEBUG(msg) ((void) 0)

enum ggml_status { GGML_STATUS_SUCCESS = 0 };
struct ggml_cgraph { int n_nodes; };
struct ggml_backend { void * context; };
typedef ggml_backend * ggml_backend_t;

struct vk_pipeline_struct {
    std::string name;
    vk::Pipeline pipeline;
};
typedef std::shared_ptr<vk_pipeline_struct> vk_pipeline;

struct vk_device_struct {
    vk::PhysicalDevice physical_device;
    vk::PhysicalDeviceProperties properties;
    std::string name;
    uint64_t max_memory_allocation_size;
    uint64_t max_buffer_size;
    uint64_t suballocation_block_size;
    vk::Device device;
    uint32_t compute_queue {};
    bool device_fault {};
    PFN_vkGetDeviceFaultInfoEXT pfn_vkGetDeviceFaultInfoEXT {};
    vk::DescriptorSetLayout dsl;
    vk::PipelineLayout layout;
    vk_pipeline probe;
    ggml_cgraph * diag_cgraph {};
    int diag_prev_start {};

    ~vk_device_struct() {
        if (probe) device.destroyPipeline(probe->pipeline);
        device.destroyPipelineLayout(layout);

        device.destroyDescriptorSetLayout(dsl);

        device.destroy();
    }
};
typedef std::shared_ptr<vk_device_struct> vk_device;

struct ggml_backend_vk_context { vk_device device; };

static const uint32_t * probe_spv;
static size_t probe_spv_size;

static bool ggml_vk_is_spirv(const uint32_t * code, size_t word_count) {
    if (word_count < 5 || code[0] != 0x07230203) {
        return false;
    }
    return true;
}

static void ggml_vk_create_pipeline_func(vk_device& device, vk_pipeline& pipeline, size_t spv_size, const void* spv_data, const std::string entrypoint,
                                         uint32_t parameter_count, std::array<uint32_t, 3> wg_denoms, std::vector<uint32_t> specialization_constants,
                                         bool disable_robustness, bool require_full_subgroups, uint32_t required_subgroup_size) {
    (void) parameter_count; (void) wg_denoms; (void) specialization_constants;
    (void) require_full_subgroups; (void) required_subgroup_size;
    if (!ggml_vk_is_spirv(static_cast<const uint32_t *>(spv_data), spv_size / 4)) {
        throw std::runtime_error("not SPIR-V");
    }
    vk::ShaderModule module = device->device.createShaderModule({ {}, spv_size, static_cast<const uint32_t *>(spv_data) });
    vk::ComputePipelineCreateInfo compute_pipeline_create_info({}, { {}, vk::ShaderStageFlagBits::eCompute, module, entrypoint.c_str() }, device->layout);
#if defined(VK_EXT_pipeline_robustness)
    (void) disable_robustness;  // upstream chains vk::PipelineRobustnessCreateInfoEXT here
#endif

    try {
        pipeline->pipeline = device->device.createComputePipeline(VK_NULL_HANDLE, compute_pipeline_create_info).value;
    } catch (const vk::SystemError& e) {
        std::cerr << "ggml_vulkan: Compute pipeline creation failed for " << pipeline->name << std::endl;
        std::cerr << "ggml_vulkan: " << e.what() << std::endl;
        device->device.destroyShaderModule(module);
        throw;
    }
    device->device.destroyShaderModule(module);
}

static void ggml_vk_create_queue(vk_device& device, uint32_t& queue, uint32_t family, uint32_t index, vk::PipelineStageFlags stage_flags, bool transfer_only) {
    (void) device; (void) index; (void) stage_flags; (void) transfer_only;
    queue = family;
}

static vk_device ggml_vk_get_device(size_t idx) {
    static vk_device devices[16];
    if (devices[idx]) {
        return devices[idx];
    }
    ggml_vk_instance_init();
    vk_device device = std::make_shared<vk_device_struct>();
    device->physical_device = vk_instance.instance.enumeratePhysicalDevices()[vk_instance.device_indices[idx]];
    device->properties = device->physical_device.getProperties();
    device->name = device->properties.deviceName.data();
    {
        uint32_t compute_queue_family_index = 0;
        std::vector<vk::QueueFamilyProperties> families = device->physical_device.getQueueFamilyProperties();
        while (!(families[compute_queue_family_index].queueFlags & vk::QueueFlagBits::eCompute)) {
            compute_queue_family_index++;
        }
        float priority = 1.0f;
        vk::DeviceQueueCreateInfo queue_info({}, compute_queue_family_index, 1, &priority);
        std::vector<const char *> device_extensions;
        vk::PhysicalDeviceFeatures2 device_features2;
        vk::DeviceCreateInfo device_create_info;
        device_create_info
            .setQueueCreateInfos(queue_info)
            .setPEnabledExtensionNames(device_extensions);
        device_create_info.setPNext(&device_features2);
        device->device = device->physical_device.createDevice(device_create_info);

        if (device->device_fault) {
            device->pfn_vkGetDeviceFaultInfoEXT = (PFN_vkGetDeviceFaultInfoEXT)
                vkGetDeviceProcAddr(device->device, "vkGetDeviceFaultInfoEXT");
        }
    }
    vk::DescriptorSetLayoutBinding binding(0, vk::DescriptorType::eStorageBuffer, 1, vk::ShaderStageFlagBits::eCompute);
    device->dsl = device->device.createDescriptorSetLayout({ {}, binding });
    device->layout = device->device.createPipelineLayout({ {}, device->dsl });
    devices[idx] = device;
    return device;
}

static ggml_status ggml_backend_vk_graph_compute(ggml_backend_t backend, ggml_cgraph * cgraph) {
    VK_LOG_DEBUG("ggml_backend_vk_graph_compute(" << cgraph->n_nodes << " nodes)");
    ggml_backend_vk_context * ctx = (ggml_backend_vk_context *)backend->context;

    ctx->device->diag_cgraph = nullptr;
    ctx->device->diag_prev_start = -1;
    // As ggml does: a node's pipeline is compiled the first time a graph needs it.
    if (!ctx->device->probe) {
        ctx->device->probe = std::make_shared<vk_pipeline_struct>();
        ctx->device->probe->name = "probe";
        ggml_vk_create_pipeline_func(ctx->device, ctx->device->probe, probe_spv_size, probe_spv, "main", 1, {1, 1, 1}, {}, false, false, 0);
    }
    return GGML_STATUS_SUCCESS;
}

// One graph on device 0 with the probe shader; the size of the pipeline cache file that
// GGML_VK_PIPELINE_CACHE_DIR then holds (-1: none).
extern "C" long ggml_vk_pipeline_cache_probe(const unsigned char * spv, unsigned int size, char * path, int n) {
    probe_spv = reinterpret_cast<const uint32_t *>(spv);
    probe_spv_size = size;
    vk_device device = ggml_vk_get_device(0);
    ggml_backend_vk_context ctx { device };
    ggml_backend backend { &ctx };
    ggml_cgraph graph { 1 };
    ggml_backend_vk_graph_compute(&backend, &graph);
    const char * dir = getenv("GGML_VK_PIPELINE_CACHE_DIR");
    if (dir == nullptr || *dir == '\0') {
        return -1;
    }
    for (const auto & entry : std::filesystem::directory_iterator(dir)) {
        if (entry.path().extension() == ".bin") {
            snprintf(path, n, "%s", entry.path().c_str());
            return (long) entry.file_size();
        }
    }
    return -1;
}
"#;

/// Era 1b's runner: a separate process that prints what the probe finds.
const SERVER_C: &str = "#include <stdio.h>\nint ggml_vk_probe(char *out, int n);\nint main(void) { char buf[4096]; int f = ggml_vk_probe(buf, sizeof buf); fputs(buf, stdout); return f > 0 ? 0 : 2; }\n";

/// The mini llama.cpp's library files at a Vulkan-capable commit.
pub fn llama_files() -> Vec<(&'static str, String)> {
    vec![
        ("CMakeLists.txt", lib_cmake("GGML_VULKAN", "feature-tests", LLAMA_VK_CPP) .replace("option(GGML_VULKAN", "option(LLAMA_VULKAN \"legacy switch\" OFF)\nif (LLAMA_VULKAN)\n  set(GGML_VULKAN ON)\nendif()\noption(GGML_VULKAN")),
        ("base.c", BASE_C.into()),
        ("probe.c", PROBE_C.into()),
        ("server.c", SERVER_C.into()),
        (LLAMA_VK_CPP, GGML_VULKAN_CPP.into()),
        ("probe.comp", PROBE_COMP.into()),
        ("dot.comp", DOT_COMP.into()),
        ("embed.cmake", EMBED_CMAKE.into()),
        ("feature-tests/integer_dot.comp", FEATURE_TEST.into()),
    ]
}

/// The mini llama.cpp's `ggml/src/ggml-vulkan/` as a directory of its own: what era 3's
/// `[llamacpp] backend` places into the vendored ggml. Its CMakeLists.txt builds only the
/// `ggml-vulkan` target (added by our vulkan-era3-cmake series with add_subdirectory), and
/// the glslc feature test comes with it, as llama.cpp's test_*_support.comp do.
pub fn llama_backend_files() -> Vec<(String, String)> {
    let dir = "ggml/src/ggml-vulkan";
    let cmake = lib_cmake("GGML_VULKAN", "vulkan-shaders", "ggml-vulkan.cpp");
    // Only the Vulkan part of the library's CMake: the target, always on.
    let start = cmake
        .find("  find_package(Vulkan REQUIRED)")
        .expect("vulkan part");
    let end = cmake
        .find("  add_executable(ollama_llama_server")
        .expect("server");
    let body = cmake[start..end].replace("integer_dot.comp", "test_integer_dot_support.comp");
    vec![
        (
            format!("{dir}/CMakeLists.txt"),
            format!("cmake_minimum_required(VERSION 3.19)\n{body}"),
        ),
        (format!("{dir}/probe.c"), PROBE_C.into()),
        (format!("{dir}/probe.comp"), PROBE_COMP.into()),
        (format!("{dir}/dot.comp"), DOT_COMP.into()),
        (format!("{dir}/embed.cmake"), EMBED_CMAKE.into()),
        (
            format!("{dir}/vulkan-shaders/test_integer_dot_support.comp"),
            FEATURE_TEST.into(),
        ),
    ]
}

/// Era 3's vendored ggml: the base library only (no ggml-vulkan, as Ollama vendored it).
pub fn era3_vendored_files() -> Vec<(String, String)> {
    let dir = "ml/backend/ggml/ggml";
    vec![
        (
            format!("{dir}/CMakeLists.txt"),
            "cmake_minimum_required(VERSION 3.14)\nproject(ggml C CXX)\nadd_library(ggml-base SHARED base.c)\n".into(),
        ),
        (format!("{dir}/base.c"), BASE_C.into()),
    ]
}

/// Era 3's root CMakeLists.txt: upstream's shape where our vulkan-era3-cmake series
/// appends (the HIP block's closing lines end the file).
pub const ERA3_CMAKE: &str = r#"cmake_minimum_required(VERSION 3.21)
project(Ollama C CXX)
set(CMAKE_LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/lib/ollama)
add_subdirectory(ml/backend/ggml/ggml)
install(TARGETS ggml-base LIBRARY DESTINATION lib/ollama COMPONENT CPU)

if(CMAKE_HIP_COMPILER)
    if(AMDGPU_TARGETS)
        foreach(HIP_LIB_BIN_INSTALL_DIR IN ITEMS ${HIP_BIN_INSTALL_DIR})
        endforeach()
    endif()
endif()
"#;

/// Era 3's CMakePresets.json: no Vulkan preset; the lines around the end of each preset
/// list are upstream's (v0.5.8–v0.12.5), where our series adds one.
pub const ERA3_PRESETS: &str = r#"{
  "version": 3,
  "configurePresets": [
    {
      "name": "Default",
      "binaryDir": "${sourceDir}/build",
      "installDir": "${sourceDir}/dist",
      "cacheVariables": {
        "CMAKE_BUILD_TYPE": "Release"
      }
    },
    {
      "name": "CPU",
      "inherits": [ "Default" ]
    },
    {
      "name": "ROCm",
      "inherits": [ "Default" ],
      "cacheVariables": {
        "CMAKE_HIP_PLATFORM": "amd"
      }
    },
    {
      "name": "ROCm 6",
      "inherits": [ "ROCm" ],
      "cacheVariables": {
        "AMDGPU_TARGETS": "gfx900"
      }
    }
  ],
  "buildPresets": [
    {
      "name": "Default",
      "configurePreset": "Default",
      "configuration": "Release"
    },
    {
      "name": "CPU",
      "configurePreset": "Default",
      "targets": [ "ggml-base" ]
    },
    {
      "name": "ROCm",
      "configurePreset": "ROCm"
    },
    {
      "name": "ROCm 6",
      "inherits": [ "ROCm" ],
      "configurePreset": "ROCm 6"
    }
  ]
}
"#;

/// Era 3: the server asks discover (with our series' Vulkan probe) whether a Vulkan GPU
/// was found, and passes the visible-devices variable on, as Ollama's scheduler does.
pub const ERA3_DISCOVER_MAIN_GO: &str = r#"package main

import (
	"log/slog"
	"os"

	"github.com/ollama/ollama/discover"
)

func init() {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, nil)))
	vulkanGate = func() bool {
		l := discover.GetGPUInfo()
		if k, v := l.GetVisibleDevicesEnv(); k != "" && v != "" {
			os.Setenv(k, v)
		}
		return len(l) > 0 && l[0].Library == "vulkan"
	}
}
"#;

/// Era 3 from v0.11.9: `GetVisibleDevicesEnv` returns `KEY=value` strings (the rocm hook's
/// lines are upstream's, where our vulkan-era3-discover-0.11.9 series adds Vulkan's).
pub fn era3_late_gpu_go() -> String {
    let start = GPU_GO
        .find("func (l GpuInfoList) GetVisibleDevicesEnv()")
        .expect("hook");
    format!(
        "{}{}",
        &GPU_GO[..start].replace("package gpu", "package discover"),
        r#"func (l GpuInfoList) GetVisibleDevicesEnv() []string {
	if len(l) == 0 {
		return nil
	}
	vd := []string{}
	// Only filter the AMD GPUs at this level, let all NVIDIA devices through
	if tmp := rocmGetVisibleDevicesEnv(l); tmp != "" {
		vd = append(vd, tmp)
	}
	return vd
}

func rocmGetVisibleDevicesEnv(l []GpuInfo) string { slog.Debug("rocm", "gpus", len(l)); return "" }
"#
    )
}

/// The main hook for the late shape: the variables come as `KEY=value`.
pub const ERA3_LATE_DISCOVER_MAIN_GO: &str = r#"package main

import (
	"log/slog"
	"os"
	"strings"

	"github.com/ollama/ollama/discover"
)

func init() {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, nil)))
	vulkanGate = func() bool {
		l := discover.GetGPUInfo()
		for _, kv := range l.GetVisibleDevicesEnv() {
			if k, v, ok := strings.Cut(kv, "="); ok {
				os.Setenv(k, v)
			}
		}
		return len(l) > 0 && l[0].Library == "vulkan"
	}
}
"#;

/// Upstream's lines (v0.11.5–v0.12.3) where vulkan-era3-device-id hooks in: both engines
/// match layers to devices by `props.id`. Context for the series only: the fixture's main
/// does not import these packages, so they are never compiled.
pub const ERA3_LATE_LLAMA_GO: &str = r#"package llama

// The fixture keeps only the lines our series patches (not built).

func EnumerateGPUs() []string {
	var ids []string

	for i := range C.ggml_backend_dev_count() {
		device := C.ggml_backend_dev_get(i)

		if C.ggml_backend_dev_type(device) == C.GGML_BACKEND_DEVICE_TYPE_GPU {
			var props C.struct_ggml_backend_dev_props
			C.ggml_backend_dev_get_props(device, &props)
			ids = append(ids, C.GoString(props.id))
		}
	}

	return ids
}
"#;

pub const ERA3_LATE_GGML_GO: &str = r#"package ggml

// The fixture keeps only the lines our series patches (not built).

func New(modelPath string, params ml.BackendParams) (ml.Backend, error) {
	for i, d := range gpus {
		requiredMemory.GPUs[i].Name = C.GoString(C.ggml_backend_dev_name(d))
		var props C.struct_ggml_backend_dev_props
		C.ggml_backend_dev_get_props(d, &props)
		requiredMemory.GPUs[i].ID = C.GoString(props.id)
		requiredMemory.GPUs[i].Weights = make([]ml.Memory, blocks+1)
		requiredMemory.GPUs[i].Cache = make([]ml.Memory, blocks+1)
	}
}
"#;

/// Era 4's vendored ggml under ml/backend/ggml/ggml, without the feature tests (as
/// Ollama's .rsync-filter leaves them out).
pub fn vendored_ggml_files() -> Vec<(String, String)> {
    let dir = "ml/backend/ggml/ggml";
    vec![
        (
            format!("{dir}/CMakeLists.txt"),
            lib_cmake(
                "GGML_VULKAN",
                "src/ggml-vulkan/vulkan-shaders/feature-tests",
                VENDORED_VK_CPP,
            ),
        ),
        (format!("{dir}/{VENDORED_VK_CPP}"), vendored_vk_cpp()),
        (format!("{dir}/base.c"), BASE_C.into()),
        (format!("{dir}/probe.c"), PROBE_C.into()),
        (format!("{dir}/server.c"), SERVER_C.into()),
        (format!("{dir}/probe.comp"), PROBE_COMP.into()),
        (format!("{dir}/dot.comp"), DOT_COMP.into()),
        (format!("{dir}/embed.cmake"), EMBED_CMAKE.into()),
    ]
}

/// Ollama's vendored ggml-vulkan.cpp (era 4): the device memory report takes a device
/// context, and the lines around our vk-pipeline-cache hooks are the vendored copy's.
fn vendored_vk_cpp() -> String {
    let mut s = GGML_VULKAN_CPP
        .replace("void ggml_backend_vk_get_device_memory(int device,", "void ggml_backend_vk_get_device_memory(ggml_backend_vk_device_context *ctx,")
        .replace("device_indices[device]", "device_indices[ctx->device]")
        .replace("ggml_backend_vk_get_device_memory(device,", "ggml_backend_vk_device_context ctx{device};\n    ggml_backend_vk_get_device_memory(&ctx,");
    for (from, to) in [
        ("#include <future>\n#include <condition_variable>\n#include <thread>\n",
         "#include <condition_variable>\n#include <mutex>\n#include <future>\n#include <thread>\n"),
        ("    return true;\n}\n\nstatic void ggml_vk_create_pipeline_func(",
         "    return true;\n}\n\nstatic std::mutex compile_count_mutex;\nstatic std::condition_variable compile_count_cond;\n\nstatic void ggml_vk_create_pipeline_func("),
        ("#if defined(VK_EXT_pipeline_robustness)\n    (void) disable_robustness;  // upstream chains vk::PipelineRobustnessCreateInfoEXT here\n#endif\n",
         "    if (disable_robustness) {\n        (void) compile_count_mutex; (void) compile_count_cond;\n    }\n"),
        ("        vk::DeviceCreateInfo device_create_info;\n        device_create_info\n            .setQueueCreateInfos(queue_info)\n            .setPEnabledExtensionNames(device_extensions);\n",
         "        vk::DeviceCreateInfo device_create_info {\n            vk::DeviceCreateFlags(),\n            queue_info,\n            {},\n            device_extensions\n        };\n"),
        ("\n        if (device->device_fault) {\n            device->pfn_vkGetDeviceFaultInfoEXT = (PFN_vkGetDeviceFaultInfoEXT)\n                vkGetDeviceProcAddr(device->device, \"vkGetDeviceFaultInfoEXT\");\n        }\n",
         "\n        // Queues\n        ggml_vk_create_queue(device, device->compute_queue, compute_queue_family_index, 0, { vk::PipelineStageFlagBits::eComputeShader | vk::PipelineStageFlagBits::eTransfer }, false);\n"),
        ("ggml_backend_vk_graph_compute(ggml_backend_t backend, ggml_cgraph * cgraph) {",
         "ggml_backend_vk_graph_compute(ggml_backend_t backend, ggml_cgraph * cgraph, int batch_size) {"),
        ("\n    ctx->device->diag_cgraph = nullptr;\n    ctx->device->diag_prev_start = -1;\n",
         "\n    if (vk_instance.debug_utils_support) {\n        vk::DebugUtilsLabelEXT dul = {};\n    }\n    (void) batch_size;\n"),
        ("ggml_backend_vk_graph_compute(&backend, &graph);", "ggml_backend_vk_graph_compute(&backend, &graph, 1);"),
    ] {
        assert!(s.contains(from), "vendored ggml-vulkan.cpp: {from}");
        s = s.replace(from, to);
    }
    s
}

/// The series that restores the vendored feature tests, as ours does for real Ollama.
pub fn feature_test_path() -> &'static str {
    "ml/backend/ggml/ggml/src/ggml-vulkan/vulkan-shaders/feature-tests/integer_dot.comp"
}

pub const ERA4_CMAKE: &str = r#"cmake_minimum_required(VERSION 3.21)
project(Ollama C CXX)
add_subdirectory(ml/backend/ggml/ggml)
install(TARGETS ggml-base LIBRARY DESTINATION lib/ollama COMPONENT CPU)
if (TARGET ggml-vulkan)
  install(TARGETS ggml-vulkan LIBRARY DESTINATION lib/ollama/vulkan COMPONENT Vulkan)
endif()
"#;

pub const ERA4_PRESETS: &str = r#"{
  "version": 3,
  "configurePresets": [
    {"name": "Default", "binaryDir": "${sourceDir}/build", "installDir": "${sourceDir}/dist",
     "cacheVariables": {"CMAKE_BUILD_TYPE": "Release"}},
    {"name": "CPU", "inherits": ["Default"]},
    {"name": "Vulkan", "inherits": ["Default"], "cacheVariables": {"GGML_VULKAN": "ON", "OLLAMA_RUNNER_DIR": "vulkan"}}
  ],
  "buildPresets": [
    {"name": "CPU", "configurePreset": "CPU", "targets": ["ggml-base"]},
    {"name": "Vulkan", "configurePreset": "Vulkan", "targets": ["ggml-vulkan"]}
  ]
}
"#;

pub const ERA5_SERVER_CMAKE: &str = r#"cmake_minimum_required(VERSION 3.21)
project(llama_server C)
if (NOT FETCHCONTENT_SOURCE_DIR_LLAMA_CPP)
  message(FATAL_ERROR "the fixture never fetches: pass FETCHCONTENT_SOURCE_DIR_LLAMA_CPP")
endif()
add_subdirectory(${FETCHCONTENT_SOURCE_DIR_LLAMA_CPP} llama)
set(dest lib/ollama)
if (OLLAMA_RUNNER_DIR)
  set(dest lib/ollama/${OLLAMA_RUNNER_DIR})
endif()
if (TARGET ggml-vulkan)
  install(TARGETS ggml-vulkan LIBRARY DESTINATION ${dest} COMPONENT llama-server)
else()
  install(TARGETS ggml-base LIBRARY DESTINATION ${dest} COMPONENT llama-server)
endif()
"#;

pub const ERA5_PRESETS: &str = r#"{
  "version": 3,
  "configurePresets": [
    {"name": "default", "binaryDir": "${sourceDir}/../../build/llama-server", "cacheVariables": {"CMAKE_BUILD_TYPE": "Release"}},
    {"name": "cpu", "inherits": ["default"], "binaryDir": "${sourceDir}/../../build/llama-server-cpu", "cacheVariables": {"OLLAMA_RUNNER_DIR": ""}},
    {"name": "vulkan", "inherits": ["default"], "binaryDir": "${sourceDir}/../../build/llama-server-vulkan",
     "cacheVariables": {"GGML_VULKAN": "ON", "OLLAMA_RUNNER_DIR": "vulkan"}}
  ]
}
"#;

/// Era 1b's gen_linux.sh, shaped like upstream's v0.1.48 (init_vars/build/compress/
/// cleanup, gzipped payloads under ../build/linux/$ARCH/<variant>/bin): the CPU runner only.
/// Our shipped `legacy-llama-vulkan` series adds the Vulkan one; its context lines are
/// upstream's, so they are here too.
pub const GEN_LINUX_SH: &str = r#"#!/bin/bash
# mini gen_linux.sh
set -ex
set -o pipefail
COMMON_CMAKE_DEFS="-DCMAKE_POSITION_INDEPENDENT_CODE=on"
init_vars() {
    ARCH=x86_64
    LLAMACPP_DIR=../llama.cpp
    CMAKE_DEFS=""
}
build() {
    cmake -S ${LLAMACPP_DIR} -B ${BUILD_DIR} ${CMAKE_DEFS}
    cmake --build ${BUILD_DIR} -j2
}
compress() {
    rm -rf ${BUILD_DIR}/bin/*.gz
    for f in ${BUILD_DIR}/bin/* ; do
        gzip -n --best -f ${f}
    done
}
cleanup() {
    echo "nothing to clean"
}

init_vars
if [ -z "${OLLAMA_CPU_TARGET}" -o "${OLLAMA_CPU_TARGET}" = "cpu" ]; then
    init_vars
    CMAKE_DEFS="${COMMON_CMAKE_DEFS} ${CMAKE_DEFS}"
    BUILD_DIR="../build/linux/${ARCH}/cpu"
    build
    compress
fi

cleanup
echo "go generate completed.  LLM runners: $(cd ${BUILD_DIR}/..; echo *)"
"#;

/// Era 1b's gpu package, shaped like upstream's v0.1.45–v0.1.48 where our series hooks in
/// (GPU lists assembled in GetGPUInfo, GetVisibleDevicesEnv per library); no CUDA/ROCm.
pub const GPU_TYPES_GO: &str = r#"package gpu

type memInfo struct {
	TotalMemory uint64 `json:"total_memory,omitempty"`
	FreeMemory  uint64 `json:"free_memory,omitempty"`
}

type GpuInfo struct {
	memInfo
	Library       string `json:"library,omitempty"`
	MinimumMemory uint64 `json:"-"`
	ID            string `json:"gpu_id"`
	Name          string `json:"name"`
}

type GpuInfoList []GpuInfo

type CPUInfo struct{ GpuInfo }

type OneapiGPUInfo struct{ GpuInfo }
"#;

pub const GPU_GO: &str = r#"package gpu

import "log/slog"

var (
	cpus       = []CPUInfo{{GpuInfo: GpuInfo{Library: "cpu", ID: "0"}}}
	oneapiGPUs []OneapiGPUInfo
)

func GetGPUInfo() GpuInfoList {
	resp := []GpuInfo{}
	for _, gpu := range oneapiGPUs {
		resp = append(resp, gpu.GpuInfo)
	}
	if len(resp) == 0 {
		resp = append(resp, cpus[0].GpuInfo)
	}
	return resp
}

func (l GpuInfoList) GetVisibleDevicesEnv() (string, string) {
	if len(l) == 0 {
		return "", ""
	}
	switch l[0].Library {
	case "rocm":
		return rocmGetVisibleDevicesEnv(l)
	case "oneapi":
		return oneapiGetVisibleDevicesEnv(l)
	default:
		slog.Debug("no filter required for library " + l[0].Library)
		return "", ""
	}
}

func rocmGetVisibleDevicesEnv(l []GpuInfo) (string, string)   { return "HIP_VISIBLE_DEVICES", "" }
func oneapiGetVisibleDevicesEnv(l []GpuInfo) (string, string) { return "ONEAPI_DEVICE_SELECTOR", "" }
"#;

pub const FORMAT_GO: &str = r#"package format

import "fmt"

const MebiByte = 1024 * 1024

func HumanBytes2(b uint64) string { return fmt.Sprintf("%d B", b) }
"#;

/// `go run ./cmd/gpus`: what GetGPUInfo finds, and the visible-devices variable, as JSON.
pub const GPUS_MAIN_GO: &str = r#"package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"

	"github.com/ollama/ollama/gpu"
)

func main() {
	// As `ollama serve` logs: logfmt on stderr.
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, nil)))
	l := gpu.GetGPUInfo()
	k, v := l.GetVisibleDevicesEnv()
	b, _ := json.Marshal(map[string]any{"gpus": l, "env": k + "=" + v})
	fmt.Println(string(b))
}
"#;

/// Era 5: Vulkan on by default.
pub const VULKAN_DEFAULT_GO: &str = "package main\n\nfunc init() { vulkanOptIn = false }\n";

pub const GENERATE_GO: &str = "package generate\n\n//go:generate bash ./gen_linux.sh\n";

/// The Go main: `ollama devices` loads the Vulkan library the era's way and prints what
/// it finds.
pub const MAIN_GO: &str = r#"package main

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdlib.h>
typedef int (*probe_fn)(char *, int);
static int run_probe(void *f, char *buf, int n) { return ((probe_fn)f)(buf, n); }
*/
import "C"

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unsafe"
)

// runEmbedded is set by era 1b's embed.go: it runs the embedded runner.
var runEmbedded func() int

// vulkanOptIn: Vulkan needs OLLAMA_VULKAN=1 (era 4); era 5's vulkan_default.go turns it
// on unless OLLAMA_VULKAN=0.
var vulkanOptIn = true

// vulkanGate, when set (era 3's discover hook), decides instead of OLLAMA_VULKAN.
var vulkanGate func() bool

// probe loads the era's Vulkan library and returns what it found.
func probe() (string, int) {
	exe, _ := os.Executable()
	lib := filepath.Join(filepath.Dir(exe), "..", "lib", "ollama", "vulkan", "libggml-vulkan.so")
	cs := C.CString(lib)
	defer C.free(unsafe.Pointer(cs))
	h := C.dlopen(cs, C.RTLD_NOW)
	if h == nil {
		return "load " + lib + " failed: " + C.GoString(C.dlerror()) + "\n", -1
	}
	sym := C.CString("ggml_vk_probe")
	defer C.free(unsafe.Pointer(sym))
	buf := (*C.char)(C.malloc(4096))
	defer C.free(unsafe.Pointer(buf))
	n := C.run_probe(C.dlsym(h, sym), buf, 4096)
	return C.GoString(buf), int(n)
}

func logf(level, msg string, kv ...string) {
	fmt.Fprintf(os.Stderr, "time=%s level=%s msg=%q %s\n", time.Now().Format(time.RFC3339), level, msg, strings.Join(kv, " "))
}

func main() {
	if len(os.Args) < 2 {
		fmt.Println("mini ollama")
		return
	}
	switch os.Args[1] {
	case "devices":
		if runEmbedded != nil {
			os.Exit(runEmbedded())
		}
		out, n := probe()
		fmt.Print(out)
		if n <= 0 {
			os.Exit(2)
		}
	case "serve":
		serve()
	case "create":
		create()
	default:
		fmt.Println("mini ollama")
	}
}

func host() string {
	if h := os.Getenv("OLLAMA_HOST"); h != "" {
		return h
	}
	return "127.0.0.1:11434"
}

// serve: a tiny stand-in for Ollama's server with the same API shapes and log lines.
func serve() {
	vulkan := false
	device := ""
	layers := 2
	v := os.Getenv("OLLAMA_VULKAN")
	on := v == "1" || (!vulkanOptIn && v != "0")
	if vulkanGate != nil {
		on = vulkanGate()
	}
	if on {
		out, n := probe()
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			fmt.Fprintln(os.Stderr, l)
		}
		if n > 0 {
			vulkan = true
			name := strings.SplitN(strings.SplitN(out, " = ", 2)[1], " (type", 2)[0]
			device = name
			logf("INFO", "inference compute", "library=Vulkan", fmt.Sprintf("description=%q", name))
		}
	} else {
		logf("INFO", "experimental Vulkan support disabled.  To enable, set OLLAMA_VULKAN=1")
	}
	if !vulkan {
		logf("INFO", "inference compute", "library=cpu")
	}
	var mu sync.Mutex
	models := map[string]int64{}
	loaded := ""
	http.HandleFunc("/api/version", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"version": "0.0.0"})
	})
	http.HandleFunc("/api/create", func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Model, Path string }
		json.NewDecoder(r.Body).Decode(&req)
		st, err := os.Stat(req.Path)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		mu.Lock()
		models[req.Model] = st.Size()
		mu.Unlock()
		json.NewEncoder(w).Encode(map[string]string{"status": "success"})
	})
	http.HandleFunc("/api/generate", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Model   string
			Options struct {
				NumPredict int `json:"num_predict"`
			}
		}
		json.NewDecoder(r.Body).Decode(&req)
		mu.Lock()
		_, ok := models[req.Model]
		mu.Unlock()
		if !ok {
			http.Error(w, "model not found", 404)
			return
		}
		if vulkan {
			logf("INFO", "loading model", "device="+fmt.Sprintf("%q", device))
			fmt.Fprintf(os.Stderr, "load_tensors: offloaded %d/%d layers to GPU\n", layers, layers)
		}
		mu.Lock()
		loaded = req.Model
		mu.Unlock()
		start := time.Now()
		for i := 0; i < req.Options.NumPredict; i++ {
			if vulkan {
				probe() // a compute pipeline on the device per token
			}
		}
		json.NewEncoder(w).Encode(map[string]any{
			"model": req.Model, "response": strings.Repeat(" vulkan", req.Options.NumPredict), "done": true,
			"eval_count": req.Options.NumPredict, "eval_duration": time.Since(start).Nanoseconds() + 1,
		})
	})
	http.HandleFunc("/api/ps", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		list := []map[string]any{}
		if loaded != "" {
			size := models[loaded]
			vram := int64(0)
			if vulkan {
				vram = size
			}
			list = append(list, map[string]any{"name": loaded, "size": size, "size_vram": vram})
		}
		json.NewEncoder(w).Encode(map[string]any{"models": list})
	})
	logf("INFO", "Listening on "+host())
	if err := http.ListenAndServe(host(), nil); err != nil {
		logf("ERROR", err.Error())
		os.Exit(1)
	}
}

// create NAME -f Modelfile: FROM <path> registered with the server.
func create() {
	if len(os.Args) < 5 {
		fmt.Fprintln(os.Stderr, "usage: ollama create NAME -f Modelfile")
		os.Exit(2)
	}
	mf, err := os.ReadFile(os.Args[4])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	from := strings.TrimSpace(strings.TrimPrefix(strings.SplitN(string(mf), "\n", 2)[0], "FROM "))
	body, _ := json.Marshal(map[string]string{"model": os.Args[2], "path": from})
	resp, err := http.Post("http://"+host()+"/api/create", "application/json", bytes.NewReader(body))
	if err != nil || resp.StatusCode != 200 {
		fmt.Fprintln(os.Stderr, "create failed:", err)
		os.Exit(1)
	}
	fmt.Println("success")
}
"#;

/// Era 1b: the runners are embedded in the binary and run as a subprocess.
pub const EMBED_GO: &str = r#"package main

import (
	"compress/gzip"
	"embed"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

//go:embed llm/build/linux/x86_64/vulkan/bin
var runners embed.FS

func init() {
	runEmbedded = func() int {
		dir, _ := os.MkdirTemp("", "ollama-runners")
		defer os.RemoveAll(dir)
		entries, _ := runners.ReadDir("llm/build/linux/x86_64/vulkan/bin")
		for _, e := range entries {
			f, _ := runners.Open("llm/build/linux/x86_64/vulkan/bin/" + e.Name())
			var r io.Reader = f
			name := e.Name()
			if strings.HasSuffix(name, ".gz") { // gen_linux.sh's compress
				r, _ = gzip.NewReader(f)
				name = strings.TrimSuffix(name, ".gz")
			}
			b, _ := io.ReadAll(r)
			os.WriteFile(filepath.Join(dir, name), b, 0o755)
		}
		cmd := exec.Command(filepath.Join(dir, "ollama_llama_server"))
		cmd.Env = append(os.Environ(), "LD_LIBRARY_PATH="+dir)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			return 2
		}
		return 0
	}
}
"#;

/// Era 5's llm package: Ollama's buffer classification (upstream's lines, which our
/// cpu-amx-buffers series patches) and its test.
pub const ERA5_LLAMA_SERVER_GO: &str = r#"package llm

import "strings"

// isGPUBuffer returns true if the backend buffer name represents GPU memory.
// CPU, BLAS, and host-pinned buffers (*_Host) are not GPU memory.
func isGPUBuffer(name string) bool {
	if name == "CPU" || name == "BLAS" || strings.HasPrefix(name, "CPU_") {
		return false
	}
	if strings.HasSuffix(name, "_Host") {
		return false
	}
	return true
}
"#;

pub const ERA5_LLAMA_SERVER_TEST_GO: &str = r#"package llm

import "testing"

func TestIsGPUBuffer(t *testing.T) {
	gpu := []string{"Vulkan0", "CUDA0", "MTL0_Mapped"}
	for _, name := range gpu {
		if !isGPUBuffer(name) {
			t.Errorf("isGPUBuffer(%q) = false, want true", name)
		}
	}
	notGPU := []string{
		"CPU", "BLAS", "CUDA_Host", "ROCm_Host", "Vulkan_Host",
		"CPU_Mapped", "CPU_REPACK",
	}
	for _, name := range notGPU {
		if isGPUBuffer(name) {
			t.Errorf("isGPUBuffer(%q) = true, want false", name)
		}
	}
}
"#;

// ---------------------------------------------------------------------------------------
// Era 2 (v0.4.0–v0.5.7): llama.cpp vendored flat into llama/ (a cgo package), runners
// (`ollama_llama_server`, a cgo Go main) built by GNU make; ggml-vulkan is placed from the
// llama.cpp commit llama/vendoring names, in its old layout (ggml/src/ggml-vulkan.cpp +
// ggml/src/vulkan-shaders/, v0.4.x's pins) or its new one (ggml/src/ggml-vulkan/, v0.5.2+).

/// ggml-vulkan's public header (ggml/include/ggml-vulkan.h), placed at llama/ggml-vulkan.h.
pub const ERA2_GGML_VULKAN_H: &str = r##"#pragma once

#include "ggml.h"

#ifdef  __cplusplus
extern "C" {
#endif

#define GGML_VK_NAME "Vulkan"

// Enumerates the Vulkan devices ggml uses and builds a compute pipeline on each; a line
// per device in `out`, the number of devices that work.
int ggml_vk_probe(char * out, int n);

#ifdef  __cplusplus
}
#endif
"##;

/// A tiny vulkan-shaders-gen with the real one's arguments (`--glslc --input-dir
/// --output-dir --target-hpp --target-cpp --no-clean`): compiles every shader of the input
/// directory (the glslc feature tests, test_*_support.comp, aside) to SPIR-V and writes
/// them as C arrays; a shader glslc refuses is reported and left out.
pub const ERA2_SHADERS_GEN_CPP: &str = r##"#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

namespace fs = std::filesystem;

int main(int argc, char ** argv) {
    std::map<std::string, std::string> args;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        if (a == "--no-clean") {
            args[a] = "1";
        } else if (a.rfind("--", 0) == 0 && i + 1 < argc) {
            args[a] = argv[++i];
        } else {
            std::cerr << "vulkan-shaders-gen: unknown argument " << a << std::endl;
            return 1;
        }
    }
    for (const char * k : {"--glslc", "--input-dir", "--output-dir", "--target-hpp", "--target-cpp"}) {
        if (!args.count(k)) {
            std::cerr << "vulkan-shaders-gen: missing " << k << std::endl;
            return 1;
        }
    }
    fs::create_directories(args["--output-dir"]);
    std::vector<fs::path> shaders;
    for (const auto & e : fs::directory_iterator(args["--input-dir"])) {
        std::string name = e.path().filename().string();
        if (e.path().extension() == ".comp" && name.rfind("test_", 0) != 0) {
            shaders.push_back(e.path());
        }
    }
    std::sort(shaders.begin(), shaders.end());
    std::ofstream hpp(args["--target-hpp"]);
    std::ofstream cpp(args["--target-cpp"]);
    hpp << "#include <cstdint>\n\n";
    cpp << "#include \"" << fs::path(args["--target-hpp"]).filename().string() << "\"\n\n";
    std::vector<fs::path> spvs;
    for (const auto & s : shaders) {
        std::string name = s.stem().string();
        fs::path spv = fs::path(args["--output-dir"]) / (name + ".spv");
        std::string cmd = args["--glslc"] + " -fshader-stage=compute --target-env=vulkan1.2 \"" + s.string() + "\" -o \"" + spv.string() + "\"";
        if (std::system(cmd.c_str()) != 0) {
            std::cerr << "cannot compile " << name << std::endl;
            continue;
        }
        std::ifstream in(spv, std::ios::binary);
        std::vector<unsigned char> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        hpp << "extern unsigned char " << name << "_data[" << data.size() << "];\n";
        hpp << "const uint64_t " << name << "_len = " << data.size() << ";\n";
        cpp << "alignas(4) unsigned char " << name << "_data[" << data.size() << "] = {";
        for (size_t i = 0; i < data.size(); i++) {
            cpp << (i ? "," : "") << (unsigned) data[i];
        }
        cpp << "};\n";
        spvs.push_back(spv);
        std::cout << "vulkan-shaders-gen: " << name << ": " << data.size() << " bytes" << std::endl;
    }
    if (!args.count("--no-clean")) {
        for (const auto & p : spvs) {
            fs::remove(p);
        }
    }
    return 0;
}
"##;

/// The glslc feature test ggml's build probes for GL_NV_cooperative_matrix2 (new layout;
/// our Makefile.vulkan builds those shaders only where it compiles).
const ERA2_COOPMAT2_TEST: &str =
    "#version 460\n\n#extension GL_NV_cooperative_matrix2 : require\n\nvoid main()\n{\n}\n";

/// The era-2 backend: the fixture's ggml-vulkan.cpp (a device, its pipelines, memory)
/// with the device probe, on the SPIR-V vulkan-shaders-gen wrote (ggml-vulkan-shaders.hpp).
pub fn era2_ggml_vulkan_cpp() -> String {
    let probe = PROBE_C
        .replace("extern const unsigned char probe_data[];\nextern const unsigned int probe_len;\n", "")
        .replace("#ifdef GGML_VULKAN_INTEGER_DOT_GLSLC_SUPPORT\nextern const unsigned int dot_len;\n#endif\n", "");
    assert!(!probe.contains("extern const"), "era-2 probe: {probe}");
    format!(
        "#include \"ggml-vulkan.h\"\n#include \"ggml-vulkan-shaders.hpp\"\n\n{GGML_VULKAN_CPP}\n{probe}"
    )
}

/// The llama.cpp commit of v0.4.x's pins: the backend in ggml/src/ggml-vulkan.cpp and
/// ggml/src/vulkan-shaders/ (with vulkan-shaders-gen.cpp), the header in ggml/include/.
pub fn era2_llama_old_layout() -> Vec<(String, String)> {
    vec![
        (
            "ggml/include/ggml-vulkan.h".into(),
            ERA2_GGML_VULKAN_H.into(),
        ),
        ("ggml/src/ggml-vulkan.cpp".into(), era2_ggml_vulkan_cpp()),
        (
            "ggml/src/vulkan-shaders/CMakeLists.txt".into(),
            "add_executable(vulkan-shaders-gen vulkan-shaders-gen.cpp)\n".into(),
        ),
        (
            "ggml/src/vulkan-shaders/vulkan-shaders-gen.cpp".into(),
            ERA2_SHADERS_GEN_CPP.into(),
        ),
        (
            "ggml/src/vulkan-shaders/probe.comp".into(),
            PROBE_COMP.into(),
        ),
    ]
}

/// The llama.cpp commit of v0.5.2+'s pins: everything in ggml/src/ggml-vulkan/.
pub fn era2_llama_new_layout() -> Vec<(String, String)> {
    let d = "ggml/src/ggml-vulkan";
    vec![
        ("ggml/include/ggml-vulkan.h".into(), ERA2_GGML_VULKAN_H.into()),
        (format!("{d}/CMakeLists.txt"), "add_subdirectory(vulkan-shaders)\nggml_add_backend_library(ggml-vulkan ggml-vulkan.cpp)\n".into()),
        (format!("{d}/ggml-vulkan.cpp"), era2_ggml_vulkan_cpp()),
        (format!("{d}/vulkan-shaders/CMakeLists.txt"), "add_executable(vulkan-shaders-gen vulkan-shaders-gen.cpp)\n".into()),
        (format!("{d}/vulkan-shaders/vulkan-shaders-gen.cpp"), ERA2_SHADERS_GEN_CPP.into()),
        (format!("{d}/vulkan-shaders/probe.comp"), PROBE_COMP.into()),
        (format!("{d}/vulkan-shaders/test_coopmat2_support.comp"), ERA2_COOPMAT2_TEST.into()),
    ]
}

/// Ollama's vendored llama.cpp, flat in llama/ (a cgo package): a tiny ggml and llama
/// whose backend is ggml-vulkan where GGML_USE_VULKAN is set (our Makefile.vulkan's
/// CGO_CFLAGS/CGO_CXXFLAGS), with ggml-vulkan.h then from the placement, not vendored.
const ERA2_GGML_H: &str = r##"#pragma once

#ifdef  __cplusplus
extern "C" {
#endif

const char * ggml_cpu_features(void);

#ifdef  __cplusplus
}
#endif
"##;

const ERA2_GGML_C: &str = r##"#include "ggml.h"

const char * ggml_cpu_features(void) {
#if defined(__AVX2__)
    return "AVX = 1 | AVX2 = 1";
#elif defined(__AVX__)
    return "AVX = 1 | AVX2 = 0";
#else
    return "AVX = 0 | AVX2 = 0";
#endif
}
"##;

const ERA2_LLAMA_H: &str = r##"#pragma once

#ifdef  __cplusplus
extern "C" {
#endif

int llama_backend_probe(char * out, int n);
const char * llama_print_system_info(void);

#ifdef  __cplusplus
}
#endif
"##;

const ERA2_LLAMA_CPP: &str = r##"#include "llama.h"
#include "ggml.h"

#include <cstdio>

#ifdef GGML_USE_VULKAN
#include "ggml-vulkan.h"
#endif

int llama_backend_probe(char * out, int n) {
#ifdef GGML_USE_VULKAN
    return ggml_vk_probe(out, n);
#else
    snprintf(out, n, "llama: no GPU backend in this build\n");
    return 0;
#endif
}

const char * llama_print_system_info(void) {
    return ggml_cpu_features();
}
"##;

const ERA2_LLAMA_GO: &str = r##"package llama

/*
#cgo CFLAGS: -std=c11
#cgo CXXFLAGS: -std=c++17
#cgo avx CFLAGS: -mavx
#cgo avx CXXFLAGS: -mavx
#cgo avx2 CFLAGS: -mavx2 -mfma -mf16c
#cgo avx2 CXXFLAGS: -mavx2 -mfma -mf16c
#include <stdlib.h>
#include "llama.h"
*/
import "C"

import "unsafe"

// CpuFeatures is set at build time (Makefile.default's -X).
var CpuFeatures = ""

// Probe: what the backend this runner was built with finds (a line per device), and how
// many devices work (0: CPU only).
func Probe() (string, int) {
	buf := (*C.char)(C.malloc(8192))
	defer C.free(unsafe.Pointer(buf))
	n := C.llama_backend_probe(buf, 8192)
	return C.GoString(buf), int(n)
}

func PrintSystemInfo() string {
	return C.GoString(C.llama_print_system_info())
}
"##;

/// The runner (`ollama_llama_server`): reports its backend's devices, then generates
/// -n-predict tokens (one per line on stdout), each through the backend (a compute
/// pipeline on the Vulkan device where there is one). `package main` in v0.4.x; v0.5.2+
/// moved main to cmd/runner and this became `package runner`.
const ERA2_RUNNER_GO: &str = r##"package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/ollama/ollama/llama"
)

func Execute(args []string) error {
	fs := flag.NewFlagSet("runner", flag.ExitOnError)
	nPredict := fs.Int("n-predict", 0, "tokens to generate")
	if err := fs.Parse(args); err != nil {
		return err
	}
	out, n := llama.Probe()
	fmt.Fprint(os.Stderr, out)
	fmt.Fprintf(os.Stderr, "system info: %s | CpuFeatures=%q\n", llama.PrintSystemInfo(), llama.CpuFeatures)
	token := "cpu"
	if n > 0 {
		fmt.Fprintf(os.Stderr, "llm_load_tensors: offloaded 2/2 layers to GPU\n")
		token = "vulkan"
	}
	var failed error
	s := &server{seqs: []*sequence{{numPredict: *nPredict}}}
	for s.processBatch(func(i int) {
		if n > 0 && failed == nil {
			if _, m := llama.Probe(); m <= 0 {
				failed = fmt.Errorf("token %d: no Vulkan device", i)
			}
		}
		fmt.Println(token)
	}) {
	}
	return failed
}

type sequence struct{ numPredict, numPredicted int }

type server struct{ seqs []*sequence }

func (s *server) removeSequence(i int, reason string) { s.seqs[i] = nil }

// processBatch is upstream's limit check in its loop over sequences: v0.4.0-v0.4.1 let
// one token past num_predict through (`>`), fixed in v0.4.2 (`>=`).
func (s *server) processBatch(emit func(int)) bool {
	live := false
	for seqIdx, seq := range s.seqs {
		if seq == nil {
			continue
		}

		// if past the num predict limit
		if seq.numPredict > 0 && seq.numPredicted > seq.numPredict {
			s.removeSequence(seqIdx, "limit")
			continue
		}

		if seq.numPredict <= 0 || seq.numPredicted >= 4096 {
			s.removeSequence(seqIdx, "stop")
			continue
		}
		live = true
		emit(seq.numPredicted)
		seq.numPredicted++
	}
	return live
}

func main() {
	if err := Execute(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "error: %s\n", err)
		os.Exit(1)
	}
}
"##;

/// v0.5.2+'s cmd/runner/main.go (upstream's, verbatim).
const ERA2_CMD_RUNNER_GO: &str = r##"package main

import (
	"fmt"
	"os"

	"github.com/ollama/ollama/llama/runner"
)

func main() {
	if err := runner.Execute(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "error: %s\n", err)
		os.Exit(1)
	}
}
"##;

/// runners/common.go: where the runners are and which the scheduler picks for a GPU
/// (ServersForGpu, upstream's logic: by the GPU's Library and Variant, then the best CPU
/// runner as the fallback).
const ERA2_RUNNERS_GO: &str = r##"package runners

import (
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/ollama/ollama/discover"
)

var (
	runnersDir = ""
	once       = sync.Once{}
)

// Return the location where runners were located
func Locate() string {
	once.Do(locateRunnersOnce)
	return runnersDir
}

// searches for runners in a prioritized set of locations
// 1. local build, with executable at the top of the tree
// 2. lib directory relative to executable
func locateRunnersOnce() {
	exe, err := os.Executable()
	if err != nil {
		slog.Debug("runner locate", "error", err)
	}
	paths := []string{
		filepath.Join(filepath.Dir(exe), "llama", "build", runtime.GOOS+"-"+runtime.GOARCH, "runners"),
		filepath.Join(filepath.Dir(exe), "..", "lib", "ollama", "runners"),
	}
	for _, path := range paths {
		if _, err := os.Stat(path); err == nil {
			runnersDir = path
			slog.Debug("runners located", "dir", runnersDir)
			return
		}
	}
	slog.Warn("unable to locate runners", "paths", strings.Join(paths, ","))
}

// Return the list of servers (runner dirs) in payloadsDir
func GetAvailableServers(payloadsDir string) map[string]string {
	files, err := filepath.Glob(filepath.Join(payloadsDir, "*", "ollama_llama_server*"))
	if err != nil {
		slog.Debug("could not glob", "pattern", payloadsDir, "error", err)
		return nil
	}
	servers := make(map[string]string)
	for _, file := range files {
		servers[filepath.Base(filepath.Dir(file))] = filepath.Dir(file)
	}
	return servers
}

// serversForGpu returns a list of compatible servers give the provided GPU
// info, ordered by performance. assumes Init() has been called
func ServersForGpu(info discover.GpuInfo) []string {
	availableServers := GetAvailableServers(Locate())
	requested := info.Library
	if info.Variant != discover.CPUCapabilityNone.String() {
		requested += "_" + info.Variant
	}

	servers := []string{}

	// exact match first
	for a := range availableServers {
		if a == requested {
			servers = []string{a}
			break
		}
	}

	alt := []string{}

	// Then for GPUs load alternates and sort the list for consistent load ordering
	if info.Library != "cpu" {
		for a := range availableServers {
			if info.Library == strings.Split(a, "_")[0] && a != requested {
				alt = append(alt, a)
			}
		}

		slices.Sort(alt)
		servers = append(servers, alt...)
	}

	// Load up the best CPU variant if not primary requested
	if info.Library != "cpu" {
		variant := discover.GetCPUCapability()
		if variant != discover.CPUCapabilityNone {
			for cmp := range availableServers {
				if cmp == "cpu_"+variant.String() {
					servers = append(servers, cmp)
					break
				}
			}
		} else {
			servers = append(servers, "cpu")
		}
	}

	if len(servers) == 0 {
		servers = []string{"cpu"}
	}

	return servers
}
"##;

/// discover/cpu_common.go: the CPU's vector extensions (upstream reads them with
/// golang.org/x/sys/cpu; the fixture has no dependencies) and the CPU entry's Variant.
const ERA2_CPU_COMMON_GO: &str = r##"package discover

import (
	"os"
	"strings"
)

type CPUCapability uint32

const (
	CPUCapabilityNone CPUCapability = iota
	CPUCapabilityAVX
	CPUCapabilityAVX2
)

func (c CPUCapability) String() string {
	switch c {
	case CPUCapabilityAVX:
		return "avx"
	case CPUCapabilityAVX2:
		return "avx2"
	default:
		return "no vector extensions"
	}
}

func GetCPUCapability() CPUCapability {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(l, "flags") {
			continue
		}
		flags := " " + strings.Join(strings.Fields(l), " ") + " "
		if strings.Contains(flags, " avx2 ") {
			return CPUCapabilityAVX2
		}
		if strings.Contains(flags, " avx ") {
			return CPUCapabilityAVX
		}
		break
	}
	return CPUCapabilityNone
}

// As upstream's GetCPUInfo: the CPU entry asks for the runner of its best variant.
func init() {
	cpus[0].Variant = GetCPUCapability().String()
}
"##;

/// The server's side of era 2 (package main): discover's first GPU picks the runner
/// (runners.ServersForGpu by its Library: runners/vulkan for the GpuInfo{Library:
/// "vulkan"} our discover series adds), which then reports the device and generates.
const ERA2_SERVER_GO: &str = r##"package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ollama/ollama/discover"
	"github.com/ollama/ollama/runners"
)

var runner string

func init() {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, nil)))
	vulkanGate = func() bool {
		l := discover.GetGPUInfo()
		if k, v := l.GetVisibleDevicesEnv(); k != "" && v != "" {
			os.Setenv(k, v)
		}
		servers := runners.ServersForGpu(l[0])
		runner = servers[0]
		slog.Info("runners", "library", l[0].Library, "variant", l[0].Variant, "servers", strings.Join(servers, ","), "dir", runners.Locate())
		return l[0].Library == "vulkan"
	}
}

// runRunner runs the picked runner for n tokens: its tokens (stdout) and log (stderr,
// which goes to the server's log too).
func runRunner(n int) ([]string, string, error) {
	exe := filepath.Join(runners.Locate(), runner, "ollama_llama_server")
	slog.Info("starting llama server", "cmd", exe+" -n-predict "+strconv.Itoa(n))
	cmd := exec.Command(exe, "-n-predict", strconv.Itoa(n))
	var out, log bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &log
	err := cmd.Run()
	os.Stderr.Write(log.Bytes())
	if err != nil {
		return nil, log.String(), fmt.Errorf("%s: %w", exe, err)
	}
	return strings.Fields(out.String()), log.String(), nil
}

// runnerProbe: the devices the picked runner's backend finds.
func runnerProbe() (string, int) {
	_, log, err := runRunner(0)
	if err != nil {
		return err.Error() + "\n", -1
	}
	return log, strings.Count(log, "compute pipeline ok")
}

func runnerGenerate(n int) ([]string, error) {
	tokens, _, err := runRunner(n)
	return tokens, err
}
"##;

/// Era 2's main.go: the fixture's server, whose device probe and generation go through
/// the runner the scheduler picked.
pub fn era2_main_go() -> String {
    let mut s = MAIN_GO.to_string();
    for (from, to) in [
        (
            "func probe() (string, int) {\n",
            "func probe() (string, int) {\n\tif runner != \"\" {\n\t\treturn runnerProbe()\n\t}\n",
        ),
        (
            r#"		for i := 0; i < req.Options.NumPredict; i++ {
			if vulkan {
				probe() // a compute pipeline on the device per token
			}
		}
		json.NewEncoder(w).Encode(map[string]any{
			"model": req.Model, "response": strings.Repeat(" vulkan", req.Options.NumPredict), "done": true,
			"eval_count": req.Options.NumPredict, "eval_duration": time.Since(start).Nanoseconds() + 1,
		})"#,
            r#"		tokens, err := runnerGenerate(req.Options.NumPredict)
		if err != nil {
			logf("ERROR", "llama runner process has terminated", fmt.Sprintf("error=%q", err.Error()))
			http.Error(w, err.Error(), 500)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{
			"model": req.Model, "response": " " + strings.Join(tokens, " "), "done": true,
			"eval_count": len(tokens), "eval_duration": time.Since(start).Nanoseconds() + 1,
		})"#,
        ),
    ] {
        assert!(s.contains(from), "era-2 main.go: {from}");
        s = s.replacen(from, to, 1);
    }
    s
}

/// v0.4.x's llama/make/common-defs.make: upstream's variables (Linux only).
const ERA2_V04_COMMON_DEFS: &str = r##"# Common definitions for the various Makefiles
# No rules are defined here so this is safe to include at the beginning of other makefiles

OS := $(shell uname -s)
ARCH ?= $(subst aarch64,arm64,$(subst x86_64,amd64,$(shell uname -m)))
ifeq ($(OS),Linux)
	OS := linux
endif
comma:= ,
empty:=
space:= $(empty) $(empty)

export CGO_CFLAGS_ALLOW = -mfma|-mf16c
export CGO_CXXFLAGS_ALLOW = -mfma|-mf16c
export CGO_ENABLED=1

SRC_DIR := $(dir $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST))))))
BUILD_DIR = $(SRC_DIR)build/$(OS)-$(ARCH)
DIST_BASE = $(abspath $(SRC_DIR)/../dist/$(OS)-$(ARCH))
DIST_LIB_DIR = $(DIST_BASE)/lib/ollama
RUNNERS_DIST_DIR = $(DIST_LIB_DIR)/runners
RUNNERS_PAYLOAD_DIR = $(abspath $(SRC_DIR)/../build/$(OS)/$(ARCH))
RUNNERS_BUILD_DIR = $(BUILD_DIR)/runners
DEFAULT_RUNNER := cpu
GZIP:=$(shell command -v pigz 2>/dev/null || echo "gzip")
CCACHE:=$(shell command -v ccache 2>/dev/null || echo "")
VERSION?=$(shell git describe --tags --first-parent --abbrev=7 --long --dirty --always | sed -e "s/^v//g")

# Conditionally enable ccache for cgo builds too
ifneq ($(CCACHE),)
	CC=$(CCACHE) gcc
	CXX=$(CCACHE) g++
	export CC
	export CXX
endif

# Override in environment space separated to tune GPU runner CPU vector flags
ifeq ($(ARCH),amd64)
	GPU_RUNNER_CPU_FLAGS ?= avx
endif

CP := cp -af
OBJ_EXT := o
SHARED_EXT := so
SHARED_PREFIX := lib
CPU_FLAG_PREFIX := -m

COMMON_SRCS := \
	$(wildcard *.c) \
	$(wildcard *.cpp)
COMMON_HDRS := \
	$(wildcard *.h) \
	$(wildcard *.hpp)
"##;

/// v0.4.x's llama/Makefile (run from llama/): the `default` runners, CUDA/ROCm where found.
const ERA2_V04_LLAMA_MAKEFILE: &str = r##"# top level makefile for Go server
include make/common-defs.make

RUNNER_TARGETS := default

# Determine which if any GPU runners we should build
HIP_PATH?=/opt/rocm
HIP_LIB_DIR := $(shell ls -d $(HIP_PATH)/lib 2>/dev/null)
CUDA_PATH?=/usr/local/cuda
CUDA_11:=$(shell ls -d $(CUDA_PATH)-11 2>/dev/null)
CUDA_12:=$(shell ls -d $(CUDA_PATH)-12 2>/dev/null)

ifeq ($(OLLAMA_SKIP_CUDA_GENERATE),)
ifneq ($(CUDA_11),)
	RUNNER_TARGETS += cuda_v11
endif
ifneq ($(CUDA_12),)
	RUNNER_TARGETS += cuda_v12
endif
endif
ifeq ($(OLLAMA_SKIP_ROCM_GENERATE),)
ifneq ($(HIP_LIB_DIR),)
	RUNNER_TARGETS += rocm
endif
endif


all: clean-payload .WAIT runners

runners: $(RUNNER_TARGETS)

$(RUNNER_TARGETS):
	$(MAKE) -f make/Makefile.$@

clean:
	rm -rf $(BUILD_DIR) $(DIST_RUNNERS) $(PAYLOAD_RUNNERS)
	go clean -cache

clean-payload:
	rm -rf $(addprefix $(RUNNERS_PAYLOAD_DIR)/, $(RUNNER_TARGETS) metal cpu cpu_avx cpu_avx2)

.PHONY: all runners clean clean-payload $(RUNNER_TARGETS) .WAIT

# Handy debugging for make variables
print-%:
	@echo '$*=$($*)'
"##;

/// v0.4.x's llama/make/Makefile.default: cpu, cpu_avx, cpu_avx2 from ./runner.
const ERA2_V04_MAKEFILE_DEFAULT: &str = r##"# Build the default runner(s) for the platform which do not rely on 3rd party GPU libraries
# On other platforms this builds the CPU runner(s)

include make/common-defs.make

CPU_GOFLAGS="-ldflags=-w -s \"-X=github.com/ollama/ollama/version.Version=$(VERSION)\" \"-X=github.com/ollama/ollama/llama.CpuFeatures=$(subst $(space),$(comma),$(TARGET_CPU_FLAGS))\" $(TARGET_LDFLAGS)"
RUNNERS := $(DEFAULT_RUNNER)
ifeq ($(ARCH),amd64)
ifeq ($(CUSTOM_CPU_FLAGS),)
	RUNNERS += cpu_avx cpu_avx2
endif
endif

DIST_RUNNERS = $(addprefix $(RUNNERS_DIST_DIR)/,$(addsuffix /ollama_llama_server$(EXE_EXT),$(RUNNERS)))
PAYLOAD_RUNNERS = $(addprefix $(RUNNERS_PAYLOAD_DIR)/,$(addsuffix /ollama_llama_server$(EXE_EXT).gz,$(RUNNERS)))
BUILD_RUNNERS = $(addprefix $(RUNNERS_BUILD_DIR)/,$(addsuffix /ollama_llama_server$(EXE_EXT),$(RUNNERS)))

all: $(BUILD_RUNNERS) $(DIST_RUNNERS) $(PAYLOAD_RUNNERS)

$(RUNNERS_BUILD_DIR)/$(DEFAULT_RUNNER)/ollama_llama_server$(EXE_EXT): TARGET_CPU_FLAGS=$(CUSTOM_CPU_FLAGS)
$(RUNNERS_BUILD_DIR)/$(DEFAULT_RUNNER)/ollama_llama_server$(EXE_EXT): *.go ./runner/*.go $(COMMON_SRCS) $(COMMON_HDRS)
	@-mkdir -p $(dir $@)
	GOARCH=$(ARCH) go build -buildmode=pie $(CPU_GOFLAGS) -trimpath $(if $(CUSTOM_CPU_FLAGS),-tags $(subst $(space),$(comma),$(CUSTOM_CPU_FLAGS)))  -o $@ ./runner

$(RUNNERS_BUILD_DIR)/cpu_avx/ollama_llama_server$(EXE_EXT): TARGET_CPU_FLAGS="avx"
$(RUNNERS_BUILD_DIR)/cpu_avx/ollama_llama_server$(EXE_EXT): *.go ./runner/*.go $(COMMON_SRCS) $(COMMON_HDRS)
	@-mkdir -p $(dir $@)
	GOARCH=$(ARCH) go build -buildmode=pie $(CPU_GOFLAGS) -trimpath -tags $(subst $(space),$(comma),$(TARGET_CPU_FLAGS)) -o $@ ./runner

$(RUNNERS_BUILD_DIR)/cpu_avx2/ollama_llama_server$(EXE_EXT): TARGET_CPU_FLAGS="avx avx2"
$(RUNNERS_BUILD_DIR)/cpu_avx2/ollama_llama_server$(EXE_EXT): *.go ./runner/*.go $(COMMON_SRCS) $(COMMON_HDRS)
	@-mkdir -p $(dir $@)
	GOARCH=$(ARCH) go build -buildmode=pie $(CPU_GOFLAGS) -trimpath -tags $(subst $(space),$(comma),$(TARGET_CPU_FLAGS)) -o $@ ./runner

$(RUNNERS_DIST_DIR)/%: $(RUNNERS_BUILD_DIR)/%
	@-mkdir -p $(dir $@)
	cp $< $@

$(RUNNERS_PAYLOAD_DIR)/%/ollama_llama_server$(EXE_EXT).gz: $(RUNNERS_BUILD_DIR)/%/ollama_llama_server$(EXE_EXT)
	@-mkdir -p $(dir $@)
	${GZIP} --best -c $< > $@

clean:
	rm -f $(BUILD_RUNNERS) $(DIST_RUNNERS) $(PAYLOAD_RUNNERS)

.PHONY: clean all

# Handy debugging for make variables
print-%:
	@echo '$*=$($*)'
"##;

/// v0.5.2+'s make/common-defs.make (run from the root).
const ERA2_V05_COMMON_DEFS: &str = r##"# Common definitions for the various Makefiles
# No rules are defined here so this is safe to include at the beginning of other makefiles

OS := $(shell uname -s)
ARCH ?= $(subst aarch64,arm64,$(subst x86_64,amd64,$(shell uname -m)))
ifeq ($(OS),Linux)
	OS := linux
endif
comma:= ,
empty:=
space:= $(empty) $(empty)

export CGO_CFLAGS_ALLOW = -mfma|-mf16c
export CGO_CXXFLAGS_ALLOW = -mfma|-mf16c
export CGO_ENABLED=1

BUILD_DIR = ./llama/build/$(OS)-$(ARCH)
DIST_BASE = ./dist/$(OS)-$(ARCH)

CCACHE:=$(shell command -v ccache 2>/dev/null || echo "")
DIST_OLLAMA_EXE=$(DIST_BASE)/bin/ollama$(EXE_EXT)
DIST_LIB_DIR = $(DIST_BASE)/lib/ollama
RUNNERS_DIST_DIR = $(DIST_LIB_DIR)/runners
RUNNERS_BUILD_DIR = $(BUILD_DIR)/runners
VERSION?=$(shell git describe --tags --first-parent --abbrev=7 --long --dirty --always | sed -e "s/^v//g")

# Conditionally enable ccache for cgo builds too
ifneq ($(CCACHE),)
	CC?=$(CCACHE) gcc
	CXX?=$(CCACHE) g++
	export CC
	export CXX
endif


# Override in environment to tune CPU vector flags
ifeq ($(ARCH),amd64)
ifeq ($(origin CUSTOM_CPU_FLAGS),undefined)
	GPU_RUNNER_CPU_FLAGS=avx
	GPU_RUNNER_EXTRA_VARIANT=_avx
else
	GPU_RUNNER_CPU_FLAGS=$(subst $(comma),$(space),$(CUSTOM_CPU_FLAGS))
endif
endif

CP := cp -df
OBJ_EXT := o
SHARED_EXT := so
SHARED_PREFIX := lib
CPU_FLAG_PREFIX := -m

COMMON_SRCS := \
	$(wildcard ./llama/*.c) \
	$(wildcard ./llama/*.cpp)
COMMON_HDRS := \
	$(wildcard ./llama/*.h) \
	$(wildcard ./llama/*.hpp)

OLLAMA_EXE=./ollama$(EXE_EXT)
"##;

/// v0.5.2+'s make/Makefile.cpu: cpu_avx and cpu_avx2 from ./cmd/runner.
const ERA2_V05_MAKEFILE_CPU: &str = r##"# Build the discrete cpu runner(s) for the platform which do not rely on 3rd party GPU libraries

include make/common-defs.make

CPU_GOFLAGS="-ldflags=-w -s \"-X=github.com/ollama/ollama/version.Version=$(VERSION)\"  $(TARGET_LDFLAGS)"
ifeq ($(ARCH),amd64)
ifeq ($(origin CUSTOM_CPU_FLAGS),undefined)
	RUNNERS = cpu_avx cpu_avx2
endif
endif

DIST_RUNNERS = $(addprefix $(RUNNERS_DIST_DIR)/,$(addsuffix /ollama_llama_server$(EXE_EXT),$(RUNNERS)))
BUILD_RUNNERS = $(addprefix $(RUNNERS_BUILD_DIR)/,$(addsuffix /ollama_llama_server$(EXE_EXT),$(RUNNERS)))

cpu: $(BUILD_RUNNERS)

dist: $(DIST_RUNNERS)

$(RUNNERS_BUILD_DIR)/cpu_avx/ollama_llama_server$(EXE_EXT): TARGET_CPU_FLAGS="avx"
$(RUNNERS_BUILD_DIR)/cpu_avx/ollama_llama_server$(EXE_EXT): ./llama/*.go ./llama/runner/*.go $(COMMON_SRCS) $(COMMON_HDRS)
	@-mkdir -p $(dir $@)
	GOARCH=$(ARCH) go build -buildmode=pie $(CPU_GOFLAGS) -trimpath -tags $(subst $(space),$(comma),$(TARGET_CPU_FLAGS)) -o $@ ./cmd/runner

$(RUNNERS_BUILD_DIR)/cpu_avx2/ollama_llama_server$(EXE_EXT): TARGET_CPU_FLAGS="avx avx2"
$(RUNNERS_BUILD_DIR)/cpu_avx2/ollama_llama_server$(EXE_EXT): ./llama/*.go ./llama/runner/*.go $(COMMON_SRCS) $(COMMON_HDRS)
	@-mkdir -p $(dir $@)
	GOARCH=$(ARCH) go build -buildmode=pie $(CPU_GOFLAGS) -trimpath -tags $(subst $(space),$(comma),$(TARGET_CPU_FLAGS)) -o $@ ./cmd/runner

$(RUNNERS_DIST_DIR)/%: $(RUNNERS_BUILD_DIR)/%
	@-mkdir -p $(dir $@)
	cp $< $@

clean:
	rm -f $(BUILD_RUNNERS) $(DIST_RUNNERS)

.PHONY: clean cpu dist

# Handy debugging for make variables
print-%:
	@echo '$*=$($*)'
"##;

/// v0.5.2+'s root Makefile (the runner targets; the fixture has no exe target).
const ERA2_V05_MAKEFILE: &str = r##"# top level makefile for Ollama
include make/common-defs.make

ifeq ($(CUSTOM_CPU_FLAGS),)
ifeq ($(ARCH),amd64)
	RUNNER_TARGETS=cpu
endif
endif

all: runners

dist: $(addprefix dist_, $(RUNNER_TARGETS))

dist_%:
	@$(MAKE) --no-print-directory -f make/Makefile.$* dist

runners: $(RUNNER_TARGETS)

$(RUNNER_TARGETS):
	@$(MAKE) --no-print-directory -f make/Makefile.$@

.PHONY: all dist runners $(RUNNER_TARGETS)
"##;

/// An era-2 Ollama tree (besides go.mod and hello.go): `late` is v0.5.2+'s layout (root
/// make/, runner main in cmd/runner), else v0.4.x's (llama/Makefile + llama/make/, main
/// in llama/runner).
pub fn era2_ollama_files(base: &str, late: bool) -> Vec<(String, String)> {
    let mut f: Vec<(String, String)> = vec![
        ("llama/vendoring".into(), format!("LLAMACPP_BASE_COMMIT={base}\n")),
        ("main.go".into(), era2_main_go()),
        ("server.go".into(), ERA2_SERVER_GO.into()),
        ("runners/common.go".into(), ERA2_RUNNERS_GO.into()),
        (
            "discover/types.go".into(),
            GPU_TYPES_GO.replace("package gpu", "package discover").replace(
                "\tLibrary       string `json:\"library,omitempty\"`\n",
                "\tLibrary       string `json:\"library,omitempty\"`\n\tVariant       string `json:\"variant\"`\n",
            ),
        ),
        ("discover/gpu.go".into(), GPU_GO.replace("package gpu", "package discover")),
        ("discover/cpu_common.go".into(), ERA2_CPU_COMMON_GO.into()),
        ("format/bytes.go".into(), FORMAT_GO.into()),
        ("llama/ggml.h".into(), ERA2_GGML_H.into()),
        ("llama/ggml.c".into(), ERA2_GGML_C.into()),
        ("llama/llama.h".into(), ERA2_LLAMA_H.into()),
        ("llama/llama.cpp".into(), ERA2_LLAMA_CPP.into()),
        ("llama/llama.go".into(), ERA2_LLAMA_GO.into()),
    ];
    assert!(f[4].1.contains("Variant"), "era-2 GpuInfo has a Variant");
    if late {
        f.extend([
            ("Makefile".into(), ERA2_V05_MAKEFILE.into()),
            ("make/common-defs.make".into(), ERA2_V05_COMMON_DEFS.into()),
            ("make/Makefile.cpu".into(), ERA2_V05_MAKEFILE_CPU.into()),
            (
                "llama/runner/runner.go".into(),
                ERA2_RUNNER_GO
                    .replacen("package main", "package runner", 1)
                    .replace("seq.numPredicted > seq.numPredict {", "seq.numPredicted >= seq.numPredict {")
                    .replace("\nfunc main() {\n\tif err := Execute(os.Args[1:]); err != nil {\n\t\tfmt.Fprintf(os.Stderr, \"error: %s\\n\", err)\n\t\tos.Exit(1)\n\t}\n}\n", ""),
            ),
            ("cmd/runner/main.go".into(), ERA2_CMD_RUNNER_GO.into()),
        ]);
    } else {
        f.extend([
            (
                "Makefile".into(),
                "GOALS := $(or $(MAKECMDGOALS),all)\n.PHONY: $(GOALS)\n$(GOALS):\n\t$(MAKE) -C llama $@\n".into(),
            ),
            ("llama/Makefile".into(), ERA2_V04_LLAMA_MAKEFILE.into()),
            ("llama/make/common-defs.make".into(), ERA2_V04_COMMON_DEFS.into()),
            ("llama/make/Makefile.default".into(), ERA2_V04_MAKEFILE_DEFAULT.into()),
            ("llama/runner/runner.go".into(), ERA2_RUNNER_GO.into()),
        ]);
    }
    f
}
