//! What `/proc` says about a process: CPU time, memory, load.

/// The fields of `/proc/<pid>/stat` after the command name (field 3
/// first), or none if the process is gone.
fn stat_fields(pid: u32) -> Vec<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may contain spaces; count from its `)`.
    stat.rsplit_once(')').map_or(Vec::new(), |(_, rest)| {
        rest.split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect()
    })
}

/// Field `n` (1-based, as in proc(5)) of `fields`, 0 if missing.
fn field(fields: &[u64], n: usize) -> u64 {
    fields.get(n - 3).copied().unwrap_or(0)
}

/// User + system CPU seconds of process `pid` so far (all threads), from
/// `/proc/<pid>/stat` (fields 14 and 15, in clock ticks of 1/100 s).
pub(crate) fn cpu_secs(pid: u32) -> f64 {
    let fields = stat_fields(pid);
    (field(&fields, 14) + field(&fields, 15)) as f64 / 100.0
}

/// CPU seconds of PostgreSQL so far: user + system time of every live
/// `postgres` process, plus the postmaster's (the one whose parent is not
/// `postgres`) reaped children (fields 16 and 17), so a backend that ended
/// between two readings still counts. 0 when PostgreSQL runs elsewhere.
pub(crate) fn postgres_cpu_secs() -> f64 {
    let comm = |pid: u64| std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    let ticks: u64 = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| comm(pid.into()).trim() == "postgres")
        .map(|pid| {
            let f = stat_fields(pid);
            let own = field(&f, 14) + field(&f, 15);
            if comm(field(&f, 4)).trim() == "postgres" {
                own
            } else {
                own + field(&f, 16) + field(&f, 17)
            }
        })
        .sum();
    ticks as f64 / 100.0
}

/// This process's memory from `/proc/self/status`, in KiB.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Memory {
    /// `VmRSS`: resident now.
    pub(crate) rss: u64,
    /// `VmHWM`: peak resident.
    pub(crate) hwm: u64,
    /// `RssAnon`: heap, stacks.
    pub(crate) anon: u64,
    /// `RssFile`: mapped files (the binary, libc).
    pub(crate) file: u64,
}

pub(crate) fn memory_kb() -> Memory {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    Memory {
        rss: field("VmRSS:"),
        hwm: field("VmHWM:"),
        anon: field("RssAnon:"),
        file: field("RssFile:"),
    }
}

/// The 1-, 5- and 15-minute load averages (other work on the machine skews
/// the figures).
pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}
