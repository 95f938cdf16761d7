//! Whether the process that owns a `running` run is still alive. A run
//! records its host, its process id and that process's start time; a pid
//! alone can be reused, and a heartbeat cannot tell a long silent run from a
//! dead one. The heartbeat is the fallback for runs of another machine
//! sharing the database, where neither can be checked.

use std::path::Path;

/// This machine's name.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            let out = std::process::Command::new("hostname").output().ok()?;
            Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
        })
        .unwrap_or_default()
}

/// What the system says of a process id.
#[derive(Debug, PartialEq)]
pub(crate) enum Probe {
    /// Running, started at this moment (in a form that differs between two
    /// processes that had the same pid).
    Started(String),
    NoSuchProcess,
    /// This system cannot tell.
    Unknown,
}

/// Asks the system about process `pid`.
pub(crate) fn probe(pid: i64) -> Probe {
    let proc = Path::new("/proc");
    if proc.is_dir() {
        let stat = match std::fs::read_to_string(proc.join(pid.to_string()).join("stat")) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Probe::NoSuchProcess,
            Err(_) => return Probe::Unknown,
        };
        // Field 22 of /proc/PID/stat, after the parenthesised command name
        // (which may itself hold spaces and parentheses).
        let field = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().nth(19));
        return field.map_or(Probe::Unknown, |f| Probe::Started(f.to_string()));
    }
    // macOS and the BSDs: ps prints the start time, and fails for no process.
    let Ok(out) = std::process::Command::new("ps")
        .args(["-o", "lstart=", "-p", &pid.to_string()])
        .output()
    else {
        return Probe::Unknown;
    };
    let start = String::from_utf8_lossy(&out.stdout).trim().to_string();
    match (out.status.success(), start.is_empty()) {
        (true, false) => Probe::Started(start),
        (false, true) => Probe::NoSuchProcess,
        _ => Probe::Unknown,
    }
}

/// This process's start time, recorded with its runs.
pub(crate) fn own_start() -> Option<String> {
    match probe(std::process::id() as i64) {
        Probe::Started(s) => Some(s),
        _ => None,
    }
}

/// What is known of the owner of a running run.
#[derive(Debug, PartialEq)]
pub(crate) enum Owner {
    Alive,
    Gone,
    /// Another machine's process, or a system where it cannot be checked.
    Unknown,
}

/// The owner of a run recorded with `host`, `pid` and `start` (the latter
/// absent in runs of older hosts, and where the system could not tell).
pub(crate) fn owner(host: &str, pid: i64, start: Option<&str>, this_host: &str) -> Owner {
    if host != this_host {
        return Owner::Unknown;
    }
    match (probe(pid), start) {
        (Probe::NoSuchProcess, _) => Owner::Gone,
        (Probe::Started(now), Some(recorded)) if now != recorded => Owner::Gone,
        (Probe::Started(_), _) => Owner::Alive,
        (Probe::Unknown, _) => Owner::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_made_up_one_is_not() {
        let me = std::process::id() as i64;
        let host = hostname();
        let start = own_start().expect("this process has a start time");
        assert_eq!(owner(&host, me, Some(&start), &host), Owner::Alive);
        // The same pid with another start time is another process.
        assert_eq!(owner(&host, me, Some("1"), &host), Owner::Gone);
        assert_eq!(owner(&host, 999_999_999, Some(&start), &host), Owner::Gone);
        assert_eq!(
            owner("another-machine", me, Some(&start), &host),
            Owner::Unknown
        );
    }
}
