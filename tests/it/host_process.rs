//! A `gamehost` process under test: started, stopped by signal or `kill -9`, its log kept when
//! asked.

use crate::cluster_support::{Shared, free_port, unique_prefix};
use crate::support::{Endpoint, target_dir};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `gamehost` binary the tests run (`GAMEHOST_BIN`, else the debug build).
pub fn gamehost_binary() -> std::path::PathBuf {
    let binary = std::env::var_os("GAMEHOST_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| target_dir().join("debug/gamehost"));
    assert!(
        binary.is_file(),
        "{} is missing: `cargo xtask test` builds it (or `cargo build -p host`)",
        binary.display()
    );
    binary
}

/// A `gamehost` process sharing `redis` under `prefix`.
pub struct HostProcess {
    pub port: u16,
    pub instance_id: String,
    child: Child,
    /// Where its standard error goes, when kept ([`HostProcess::standalone_logged`]).
    log: Option<std::path::PathBuf>,
}

impl Endpoint for HostProcess {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl HostProcess {
    pub async fn spawn(redis: &impl Shared, prefix: &str, env: &[(&str, &str)]) -> HostProcess {
        let (variable, value) = redis.env();
        let mut shared = vec![(variable, value.as_str()), ("REDIS_PREFIX", prefix)];
        shared.extend_from_slice(env);
        HostProcess::start(&shared, None, None).await
    }

    /// A `gamehost` process on its own, in memory.
    pub async fn standalone(env: &[(&str, &str)]) -> HostProcess {
        HostProcess::start(env, None, None).await
    }

    /// A `gamehost` process on its own whose standard error is kept ([`HostProcess::log`]).
    pub async fn standalone_logged(env: &[(&str, &str)]) -> HostProcess {
        let log = std::env::temp_dir().join(format!(
            "gamehost-{}.log",
            unique_prefix().trim_end_matches(':').replace(':', "-")
        ));
        HostProcess::start(env, None, Some(log)).await
    }

    /// What it wrote to standard error so far (kept by [`HostProcess::standalone_logged`]).
    pub fn log(&self) -> String {
        let path = self
            .log
            .as_ref()
            .expect("a process started with its log kept");
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// Whether the process still runs.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// A `gamehost` process on its own that may open at most `files` files (`ulimit -n`).
    pub async fn standalone_with_open_files(files: u32, env: &[(&str, &str)]) -> HostProcess {
        HostProcess::start(env, Some(files), None).await
    }

    async fn start(
        env: &[(&str, &str)],
        open_files: Option<u32>,
        log: Option<std::path::PathBuf>,
    ) -> HostProcess {
        let binary = gamehost_binary();
        let port = free_port();
        let instance_id = format!("proc-{port}");
        let mut command = match open_files {
            None => Command::new(&binary),
            Some(files) => {
                let mut limited = Command::new("bash");
                limited
                    .arg("-c")
                    .arg(format!("ulimit -n {files} && exec \"$0\""))
                    .arg(&binary);
                limited
            }
        };
        // `GAMEHOST_TEST_LOG=<filter> cargo test ...` shows what the processes log (on standard
        // output), filtered as `RUST_LOG` would.
        let shown_filter = std::env::var("GAMEHOST_TEST_LOG").ok();
        let shown = shown_filter.is_some();
        let log_filter = shown_filter.unwrap_or_else(|| "warn".into());
        let child = command
            .env("APP_PORT", port.to_string())
            .env("BIND_ADDR", "127.0.0.1")
            .env("RULES_DIR", target_dir().join("rules"))
            .env("INSTANCE_ID", &instance_id)
            .env("HEARTBEAT_TTL_MS", "1000")
            .env("RUST_LOG", &log_filter)
            .envs(env.iter().copied())
            .stdout(if shown {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .stderr(match &log {
                Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
                None => Stdio::inherit(),
            })
            .spawn()
            .expect("gamehost starts");
        let process = HostProcess {
            port,
            instance_id,
            child,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = reqwest::Client::new();
        while Instant::now() < deadline {
            let ready = client
                .get(format!("{}/health/ready", process.url()))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return process;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("gamehost on port {port} never became ready");
    }

    /// Where it listens.
    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The process's resident memory now, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    /// `kill -9`: no goodbye, no cleanup.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `kill -TERM`, without waiting.
    pub fn send_term(&self) {
        self.signal("TERM");
    }

    /// `kill -<name>` (`STOP` freezes the process as a long pause would, `CONT` thaws it).
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().to_string();
        let flag = format!("-{name}");
        let status = Command::new("kill").args([&flag, &pid]).status().unwrap();
        assert!(status.success());
    }

    /// `kill -TERM`, then waits for the process to finish.
    pub async fn terminate(self) {
        self.send_term();
        self.wait_exit().await;
    }

    /// Waits for the process to finish (after [`HostProcess::send_term`]).
    pub async fn wait_exit(mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("gamehost did not stop within 15 s of SIGTERM");
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
