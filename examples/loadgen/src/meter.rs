//! What a host process costs over a stretch of load: its CPU time, read from `/proc`, or the
//! instructions it ran, counted by valgrind's callgrind.
//!
//! CPU time on a shared, two-core machine varies from run to run by more than the differences
//! `relay` is meant to show (a fleet of 2 against a fleet of 8); an instruction count does not
//! depend on what else the machine is doing. For it, the hosts run under
//! `valgrind --tool=callgrind --callgrind-out-file=<DIR>/callgrind.%p`: the counters are zeroed
//! (`callgrind_control -z`) when the load starts and dumped (`-d`) when it ends, and the dump's
//! `summary:` line is the count.

use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub enum Meter {
    /// utime + stime from `/proc/<pid>/stat`, in microseconds.
    CpuTime,
    /// Instructions counted by callgrind, whose dumps go to this folder.
    Instructions { dumps: PathBuf },
}

/// A reading taken when the load starts, per process.
pub struct Start(Vec<u64>);

impl Meter {
    /// The unit of what [`Meter::since`] gives.
    pub fn unit(&self) -> &'static str {
        match self {
            Meter::CpuTime => "us",
            Meter::Instructions { .. } => "instructions",
        }
    }

    pub async fn start(&self, pids: &[u32]) -> Result<Start> {
        match self {
            Meter::CpuTime => Ok(Start(cpu_us(pids)?)),
            Meter::Instructions { .. } => {
                callgrind_control("-z", pids).await?;
                Ok(Start(vec![0; pids.len()]))
            }
        }
    }

    /// What each process cost since `start`.
    pub async fn since(&self, pids: &[u32], start: &Start) -> Result<Vec<u64>> {
        let now = match self {
            Meter::CpuTime => cpu_us(pids)?,
            Meter::Instructions { dumps } => {
                let before: Vec<usize> = pids.iter().map(|pid| parts(dumps, *pid)).collect();
                callgrind_control("-d", pids).await?;
                let mut counts = Vec::with_capacity(pids.len());
                for (pid, before) in pids.iter().zip(before) {
                    counts.push(newest_summary(dumps, *pid, before).await?);
                }
                counts
            }
        };
        Ok(now.iter().zip(&start.0).map(|(n, s)| n - s).collect())
    }
}

/// utime + stime of each process, in microseconds.
fn cpu_us(pids: &[u32]) -> Result<Vec<u64>> {
    let ticks_per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    pids.iter()
        .map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .with_context(|| format!("no process {pid}"))?;
            // The command name (field 2) may hold spaces: count from the closing parenthesis.
            let rest = stat.rsplit_once(')').context("unreadable stat")?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: u64 = fields[11].parse()?;
            let stime: u64 = fields[12].parse()?;
            Ok((utime + stime) * 1_000_000 / ticks_per_sec)
        })
        .collect()
}

/// Sends one command to every process at once (each takes a moment to answer) and waits.
async fn callgrind_control(command: &'static str, pids: &[u32]) -> Result<()> {
    let children: Vec<(u32, Child)> = pids
        .iter()
        .map(|pid| {
            let child = Command::new("callgrind_control")
                .arg(command)
                .arg(pid.to_string())
                .stdout(Stdio::null())
                .spawn()
                .context("callgrind_control (Debian's valgrind) could not be run")?;
            Ok((*pid, child))
        })
        .collect::<Result<_>>()?;
    tokio::task::spawn_blocking(move || {
        for (pid, mut child) in children {
            if !child.wait()?.success() {
                bail!("callgrind_control {command} {pid} failed: is it running under callgrind?");
            }
        }
        Ok(())
    })
    .await?
}

/// How many dumps of `pid` are in `dumps` (`callgrind.<pid>.<n>`, numbered from 1).
fn parts(dumps: &std::path::Path, pid: u32) -> usize {
    (1..)
        .take_while(|n| dumps.join(format!("callgrind.{pid}.{n}")).exists())
        .count()
}

/// The instruction count of `pid`'s dump after the `before` it already had, once written whole.
async fn newest_summary(dumps: &std::path::Path, pid: u32, before: usize) -> Result<u64> {
    let path = dumps.join(format!("callgrind.{pid}.{}", before + 1));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        // `totals:` is the dump's last line: the file is complete.
        if text.lines().any(|line| line.starts_with("totals:")) {
            let summary = text
                .lines()
                .find_map(|line| line.strip_prefix("summary:"))
                .with_context(|| format!("{} has no summary", path.display()))?;
            return Ok(summary.trim().parse()?);
        }
        if Instant::now() >= deadline {
            bail!("{} was not written within 60 s", path.display());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_count_is_read_from_the_dump_that_follows_those_already_there() {
        let dumps = std::env::temp_dir().join(format!("meter-test-{}", std::process::id()));
        std::fs::create_dir_all(&dumps).unwrap();
        let dump = |n: u32, summary: u64| {
            let text = format!("version: 1\nevents: Ir\nsummary: {summary}\n\ntotals: {summary}\n");
            std::fs::write(dumps.join(format!("callgrind.42.{n}")), text).unwrap();
        };
        dump(1, 100);
        assert_eq!(parts(&dumps, 42), 1);
        assert_eq!(parts(&dumps, 43), 0);
        dump(2, 2_500);
        assert_eq!(newest_summary(&dumps, 42, 1).await.unwrap(), 2_500);
        // A dump being written (no `totals:` yet) is waited for.
        std::fs::write(dumps.join("callgrind.42.3"), "summary: 7\n").unwrap();
        let reading = tokio::spawn({
            let dumps = dumps.clone();
            async move { newest_summary(&dumps, 42, 2).await.unwrap() }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        dump(3, 7);
        assert_eq!(reading.await.unwrap(), 7);
        std::fs::remove_dir_all(&dumps).unwrap();
    }
}
