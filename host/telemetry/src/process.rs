//! The host process's resident memory.

/// Bytes of this process resident in memory, where the platform says
/// without privileges: Linux's `/proc/self/status`. Other platforms: none
/// (macOS has it through `task_info`, not read yet).
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}
