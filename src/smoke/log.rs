//! Reading the server log: the Vulkan device, the memory rule, the offload and the
//! engine's verdict, across eras' log formats.

/// The engine's error in a container's log: its `Error: …` lines (podman's verdict), else
/// its `level=error`/`level=fatal` log lines, each once.
pub(super) fn engine_error(log: &str) -> Option<String> {
    let pick = |f: &dyn Fn(&str) -> bool| {
        let mut lines: Vec<&str> = Vec::new();
        for l in log.lines().map(str::trim).filter(|l| f(l)) {
            if !lines.contains(&l) {
                lines.push(l);
            }
        }
        (!lines.is_empty()).then(|| lines.join("\n"))
    };
    pick(&|l| l.starts_with("Error:"))
        .or_else(|| pick(&|l| l.contains("level=error") || l.contains("level=fatal")))
}

/// The line where the server says it gave up on the GPU: Ollama's discovery failure, or
/// a CPU-only `inference compute` line.
pub(super) fn find_fallback(log: &str) -> Option<String> {
    log.lines()
        .find(|l| l.contains("failure during GPU discovery"))
        .or_else(|| {
            log.lines()
                .find(|l| l.contains("inference compute") && l.contains("library=cpu"))
        })
        .map(|l| l.trim().to_string())
}

/// On Venus: the device is Mesa's Venus device, and the memory rule took its Venus branch
/// with the default fraction (0.75), not an explicit one.
pub(super) fn check_venus(device: Option<&str>, rule: Option<&str>) -> Result<(), String> {
    let device = device.unwrap_or("");
    if !device.contains("Virtio-GPU Venus") {
        return Err(format!(
            "device {device:?} is not a Venus device (\"Virtio-GPU Venus (…)\")"
        ));
    }
    match rule {
        // ggml-vulkan's rule (eras 4, 5): the Venus branch names itself.
        Some(r) if r.contains(": reporting ") => {
            if r.contains("(Venus): reporting 0.75 of") {
                Ok(())
            } else {
                Err(format!("the memory rule did not take its Venus default (0.75): {r}"))
            }
        }
        // The legacy probe (eras 1a, 1b) applies 0.75 to every Vulkan device.
        Some(r) if r.contains("fraction 0.75") => Ok(()),
        Some(r) => Err(format!("the memory rule is not 0.75: {r}")),
        None => Err("no memory-rule line in the log (the Venus branch logs \"(Venus): reporting 0.75 of …\")".into()),
    }
}

pub(super) fn find_device(log: &str) -> Option<String> {
    for l in log.lines() {
        if l.contains("inference compute") && l.contains("library=Vulkan") {
            if let Some(d) = field(l, "description") {
                return Some(d);
            }
        }
        // llama.cpp b3171–b3862: "Vulkan0: llvmpipe (LLVM 15.0.6, 256 bits) (llvmpipe) | uma: 0 | ..."
        if let Some(rest) = l.trim_start().strip_prefix("Vulkan") {
            if let Some((idx, name)) = rest.split_once(": ") {
                if !idx.is_empty()
                    && idx.chars().all(|c| c.is_ascii_digit())
                    && name.contains(" | uma: ")
                {
                    return Some(name.split(" | ").next().unwrap_or(name).trim().to_string());
                }
            }
        }
        // llama.cpp b1999: "ggml_vulkan: Using llvmpipe (LLVM 19.1.7, 256 bits) | fp16: 1 | …"
        if let Some(rest) = l.split("ggml_vulkan: Using ").nth(1) {
            return Some(rest.split(" | ").next().unwrap_or(rest).trim().to_string());
        }
        // ggml_vulkan: 0 = llvmpipe (LLVM 19.1.7, 256 bits) (llvmpipe) | uma: ...
        if let Some(rest) = l.split("ggml_vulkan: ").nth(1) {
            if let Some((idx, name)) = rest.split_once(" = ") {
                if idx.trim().chars().all(|c| c.is_ascii_digit()) {
                    return Some(name.split(" | ").next().unwrap_or(name).trim().to_string());
                }
            }
        }
    }
    None
}

/// The last report of our memory rule: the legacy probe's `msg="Vulkan GPU"` line
/// (eras 1a/1b) or ggml-vulkan's "reporting F of N free bytes" line (venus series).
pub(super) fn find_memory_rule(log: &str) -> Option<String> {
    let mut found = None;
    for l in log.lines() {
        if l.contains("msg=\"Vulkan GPU\"") {
            if let (Some(name), Some(free), Some(usable), Some(f)) = (
                field(l, "name"),
                field(l, "free"),
                field(l, "usable"),
                field(l, "memory_fraction"),
            ) {
                found = Some(format!(
                    "{name}: free {free}, usable {usable} (fraction {f})"
                ));
            }
        }
        if let Some(rest) = l.split("ggml_vulkan: ").nth(1) {
            if rest.contains(": reporting ") && rest.contains(" free bytes as free: ") {
                found = Some(rest.trim().to_string());
            }
        }
    }
    found
}

/// `key="value"` or `key=value` in a logfmt line.
pub(super) fn field(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!("{key}="))? + key.len() + 1;
    let rest = &line[start..];
    if let Some(q) = rest.strip_prefix('"') {
        q.split('"').next().map(String::from)
    } else {
        rest.split_whitespace().next().map(String::from)
    }
}

/// "3/3" from "offloaded 3/3 layers to GPU" (llama.cpp) or Ollama's
/// `layers.offload=3 ... layers.model=3`.
pub(super) fn find_offload(log: &str) -> Option<String> {
    let mut found = None;
    for l in log.lines() {
        if let Some(rest) = l.split("offloaded ").nth(1) {
            if let Some(frac) = rest.split_whitespace().next() {
                if frac.contains('/') && rest.contains("layers to GPU") {
                    found = Some(frac.to_string());
                }
            }
        }
        if let (Some(o), Some(m)) = (field(l, "layers.offload"), field(l, "layers.model")) {
            found = Some(format!("{o}/{m}"));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    // Lines from real server logs (v0.1.48 with our legacy series on lavapipe).
    const LEGACY: &str = r#"time=2026-11-25T23:14:44.913Z level=INFO source=gpu_vulkan.go:123 msg="Vulkan GPU" id=0 name="llvmpipe (LLVM 19.1.7, 256 bits)" type=cpu vendor=0x10005 device=0x0000 total="23.5 GiB" free="21.7 GiB" usable="16.3 GiB" memory_fraction=0.75 budget=true
ggml_vulkan: Found 1 Vulkan devices:
Vulkan0: llvmpipe (LLVM 19.1.7, 256 bits) (llvmpipe) | uma: 0 | fp16: 1 | warp size: 8
llm_load_tensors: offloaded 3/3 layers to GPU
"#;

    #[test]
    fn legacy_logs_give_device_offload_and_memory_rule() {
        assert_eq!(
            find_device(LEGACY).as_deref(),
            Some("llvmpipe (LLVM 19.1.7, 256 bits) (llvmpipe)")
        );
        assert_eq!(find_offload(LEGACY).as_deref(), Some("3/3"));
        assert_eq!(
            find_memory_rule(LEGACY).as_deref(),
            Some(
                "llvmpipe (LLVM 19.1.7, 256 bits): free 21.7 GiB, usable 16.3 GiB (fraction 0.75)"
            )
        );
    }

    #[test]
    fn era_1a_device_line() {
        let log = "loading library /tmp/x/vulkan/libext_server.so\nggml_vulkan: Using llvmpipe (LLVM 19.1.7, 256 bits) | fp16: 1 | warp size: 8\n";
        assert_eq!(
            find_device(log).as_deref(),
            Some("llvmpipe (LLVM 19.1.7, 256 bits)")
        );
    }

    #[test]
    fn the_engines_verdict_is_quoted_not_its_noise() {
        let log = "time=\"x\" level=error msg=\"Removing timer for container c healthcheck: unable to get systemd connection\"\nError: OCI runtime error: crun: cgroups in hybrid mode not supported, drop all controllers from cgroupv2\ntime=\"x\" level=error msg=\"Removing timer\"\nError: OCI runtime error: crun: cgroups in hybrid mode not supported, drop all controllers from cgroupv2\n";
        assert_eq!(
            engine_error(log).as_deref(),
            Some("Error: OCI runtime error: crun: cgroups in hybrid mode not supported, drop all controllers from cgroupv2")
        );
        assert_eq!(
            engine_error(
                "time=\"x\" level=fatal msg=\"netavark: No such file or directory (os error 2)\"\n"
            )
            .as_deref(),
            Some("time=\"x\" level=fatal msg=\"netavark: No such file or directory (os error 2)\"")
        );
        assert_eq!(engine_error("time=x level=info msg=ok\n"), None);
    }

    #[test]
    fn venus_checks_the_device_and_the_default_fraction() {
        let venus = "Virtio-GPU Venus (llvmpipe (LLVM 19.1.7, 256 bits))";
        let rule = "Virtio-GPU Venus (llvmpipe (LLVM 19.1.7, 256 bits)) (Venus): reporting 0.75 of 25276502016 free bytes as free: 18957376512";
        assert_eq!(check_venus(Some(venus), Some(rule)), Ok(()));
        assert!(
            check_venus(Some("llvmpipe (LLVM 19.1.7, 256 bits)"), Some(rule))
                .unwrap_err()
                .contains("not a Venus device")
        );
        let explicit = rule.replace("0.75", "0.50");
        assert!(check_venus(Some(venus), Some(&explicit))
            .unwrap_err()
            .contains("Venus default"));
        assert!(check_venus(Some(venus), None)
            .unwrap_err()
            .contains("no memory-rule"));
    }

    #[test]
    fn the_cpu_fallback_line_is_found() {
        let log = "time=x level=INFO source=runner.go:462 msg=\"failure during GPU discovery\" error=\"failed to finish discovery before timeout\"\ntime=y msg=\"inference compute\" id=cpu library=cpu\n";
        assert!(find_fallback(log)
            .unwrap()
            .contains("failed to finish discovery"));
        assert!(find_fallback("msg=\"inference compute\" library=cpu").is_some());
        assert_eq!(
            find_fallback("msg=\"inference compute\" library=Vulkan"),
            None
        );
    }

    #[test]
    fn venus_line_is_the_memory_rule() {
        let log = "ggml_vulkan: llvmpipe (LLVM 19.1.7, 256 bits): reporting 0.50 of 1000 free bytes as free: 500\n";
        assert_eq!(
            find_memory_rule(log).as_deref(),
            Some(
                "llvmpipe (LLVM 19.1.7, 256 bits): reporting 0.50 of 1000 free bytes as free: 500"
            )
        );
        assert_eq!(find_device(log), None, "not a device report");
        // "Vulkan0:" alone, without the device report's fields, is no device either.
        assert_eq!(find_device("Vulkan0: buffer size = 5 MiB\n"), None);
    }
}
