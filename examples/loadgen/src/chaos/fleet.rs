//! What the chaos run starts and breaks: its own `redis-server` (append-only file, fsync on
//! every write, so a restart loses nothing it acknowledged) and `gamehost` processes, each
//! with its output kept in the run's folder.

use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port nobody listens on now.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub struct Redis {
    pub port: u16,
    dir: PathBuf,
    /// Arguments beyond the run's own (a cluster node's settings).
    extra: Vec<String>,
    child: Option<Child>,
}

impl Redis {
    /// A server on `port` keeping its files in `dir`, started with `extra` arguments too.
    pub async fn start(dir: PathBuf, port: u16, extra: Vec<String>) -> Result<Redis> {
        let mut redis = Redis {
            port,
            dir,
            extra,
            child: None,
        };
        std::fs::create_dir_all(&redis.dir)?;
        redis.launch().await?;
        Ok(redis)
    }

    async fn launch(&mut self) -> Result<()> {
        let log = std::fs::File::create(self.dir.join("redis.log"))?;
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .context("redis-server does not start (Debian's redis-server package has it)")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.ping().await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("redis-server on port {} never answered", self.port)
    }

    async fn ping(&self) -> Result<()> {
        let mut conn = self.client()?.get_multiplexed_async_connection().await?;
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn client(&self) -> Result<redis::Client> {
        Ok(redis::Client::open(self.url())?)
    }

    /// `kill -9`, `down_for`, and back on the same port with what its append-only file kept.
    pub async fn restart(&mut self, down_for: Duration) -> Result<()> {
        self.stop();
        tokio::time::sleep(down_for).await;
        self.launch().await
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How every instance is started; one slot per instance, each on its own port for the run.
pub struct Fleet {
    pub binary: PathBuf,
    pub dir: PathBuf,
    pub env: Vec<(String, String)>,
    pub slots: Vec<Slot>,
    http: reqwest::Client,
}

pub struct Slot {
    pub port: u16,
    /// Starts so far (the instance id is `chaos-<slot>-<generation>`).
    pub generation: u32,
    child: Option<Child>,
    /// Processes that stopped without being told to, with their exit status.
    pub crashes: Vec<String>,
}

impl Fleet {
    pub fn new(
        binary: PathBuf,
        dir: PathBuf,
        env: Vec<(String, String)>,
        size: usize,
    ) -> Result<Fleet> {
        let slots = (0..size)
            .map(|_| {
                Ok(Slot {
                    port: free_port()?,
                    generation: 0,
                    child: None,
                    crashes: Vec::new(),
                })
            })
            .collect::<Result<_>>()?;
        Ok(Fleet {
            binary,
            dir,
            env,
            slots,
            http: reqwest::Client::new(),
        })
    }

    pub fn url(&self, slot: usize) -> String {
        format!("http://127.0.0.1:{}", self.slots[slot].port)
    }

    pub fn urls(&self) -> Vec<String> {
        (0..self.slots.len()).map(|slot| self.url(slot)).collect()
    }

    /// Starts the instance of `slot` and waits until it is ready.
    pub async fn start(&mut self, slot: usize) -> Result<()> {
        let url = self.url(slot);
        let this = &mut self.slots[slot];
        this.generation += 1;
        let id = format!("chaos-{slot}-{}", this.generation);
        // Its log (standard output) and panics (standard error), in one file.
        let stdout = std::fs::File::create(self.dir.join(format!("{id}.log")))?;
        let stderr = stdout.try_clone()?;
        let child = Command::new(&self.binary)
            .env("APP_PORT", this.port.to_string())
            .env("BIND_ADDR", "127.0.0.1")
            .env("INSTANCE_ID", &id)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("cannot start {}", self.binary.display()))?;
        this.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let ready = self
                .http
                .get(format!("{url}/health/ready"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return Ok(());
            }
            self.note_crashes();
            if self.slots[slot].child.is_none() {
                bail!("{id} stopped before it was ready (see {id}.log)");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("{id} was not ready within 60 s")
    }

    /// `kill -9`: no goodbye.
    pub fn kill(&mut self, slot: usize) {
        if let Some(mut child) = self.slots[slot].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `kill -TERM`, then waits for the instance to drain and stop.
    pub async fn terminate(&mut self, slot: usize) -> Result<()> {
        let Some(mut child) = self.slots[slot].child.take() else {
            return Ok(());
        };
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -TERM failed");
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                if !status.success() {
                    self.slots[slot]
                        .crashes
                        .push(format!("exited with {status} after SIGTERM"));
                }
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        bail!("instance {slot} did not stop within 30 s of SIGTERM")
    }

    /// Whether the instance of `slot` runs (one that stopped on its own is noted as a crash).
    pub fn running(&mut self, slot: usize) -> bool {
        self.note_crashes();
        self.slots[slot].child.is_some()
    }

    /// Notes every instance that stopped without being told to.
    pub fn note_crashes(&mut self) {
        for slot in &mut self.slots {
            if let Some(child) = &mut slot.child
                && let Ok(Some(status)) = child.try_wait()
            {
                slot.crashes.push(format!(
                    "generation {} exited with {status}",
                    slot.generation
                ));
                slot.child = None;
            }
        }
    }

    /// Every instance's standard error so far, by file name.
    pub fn logs(&self) -> Result<Vec<(String, String)>> {
        let mut logs = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            if name.starts_with("chaos-") && name.ends_with(".log") {
                logs.push((name, std::fs::read_to_string(&path)?));
            }
        }
        logs.sort();
        Ok(logs)
    }

    /// SIGTERM to every running instance, waiting for each.
    pub async fn stop_all(&mut self) -> Result<()> {
        for slot in 0..self.slots.len() {
            self.terminate(slot).await?;
        }
        Ok(())
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for slot in 0..self.slots.len() {
            self.kill(slot);
        }
    }
}
