//! The background sampler behind [`ResourceManager`].
//!
//! One thread per manager reads the machine every `interval` and keeps the latest
//! [`Snapshot`] plus a bounded history; callers only take a lock and copy. CPU usage needs two
//! readings some time apart, so the very first snapshot is ready ~200 ms after the manager
//! starts; the first caller waits for it once, and never again.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sysinfo::{CpuRefreshKind, Disks, MemoryRefreshKind, RefreshKind, System};

use super::cgroup::{self, CgroupPaths, CgroupReading};
use super::{Availability, Snapshot, Thresholds, WorkerSizing};
use crate::config::{ConfigError, ConfigResult};

/// Settings of a [`ResourceManager`].
#[derive(Debug, Clone)]
pub struct ResourceConfig {
    /// Above these, the machine takes no more workers.
    pub thresholds: Thresholds,
    /// How big a worker is.
    pub sizing: WorkerSizing,
    /// The path whose filesystem is checked (e.g. the results folder).
    pub disk_path: PathBuf,
    /// Time between readings.
    pub interval: Duration,
    /// Readings kept in the history.
    pub history_len: usize,
    /// Where the cgroup files are (tests point this at fixture trees).
    pub cgroup: CgroupPaths,
}

impl Default for ResourceConfig {
    fn default() -> Self {
        Self {
            thresholds: Thresholds::default(),
            sizing: WorkerSizing::default(),
            disk_path: PathBuf::from("/"),
            interval: Duration::from_secs(1),
            history_len: 600,
            cgroup: CgroupPaths::default(),
        }
    }
}

impl ResourceConfig {
    /// Checks every setting.
    pub fn validate(&self) -> ConfigResult<()> {
        self.thresholds.validate()?;
        self.sizing.validate()?;
        if self.interval < Duration::from_millis(200) {
            return Err(ConfigError::invalid(
                "sample_interval",
                format!("{:?}", self.interval),
                "at least 0.2 s (CPU usage needs that much time between readings)",
            ));
        }
        if self.history_len == 0 {
            return Err(ConfigError::invalid("history_size", 0, "at least 1"));
        }
        if !self.disk_path.exists() {
            return Err(ConfigError::invalid(
                "disk_path",
                self.disk_path.display(),
                "an existing path",
            ));
        }
        Ok(())
    }
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

struct State {
    history: VecDeque<Snapshot>,
    stopping: bool,
}

/// Watches this machine's resources in the background (see the module docs).
pub struct ResourceManager {
    config: ResourceConfig,
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The sampler thread belongs to this process; a forked child must start its own.
    pid: Mutex<u32>,
}

impl ResourceManager {
    /// Starts sampling with `config`.
    pub fn start(config: ResourceConfig) -> ConfigResult<Self> {
        config.validate()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                history: VecDeque::with_capacity(config.history_len.min(4096)),
                stopping: false,
            }),
            changed: Condvar::new(),
        });
        let thread = spawn_sampler(config.clone(), Arc::clone(&shared));
        Ok(Self {
            config,
            shared,
            thread: Mutex::new(Some(thread)),
            pid: Mutex::new(std::process::id()),
        })
    }

    /// The settings in use.
    pub fn config(&self) -> &ResourceConfig {
        &self.config
    }

    /// The latest reading (waits only for the very first one, ~200 ms after start).
    pub fn snapshot(&self) -> Snapshot {
        self.restart_after_fork();
        let state = lock(&self.shared.state);
        let state = self
            .shared
            .changed
            .wait_while(state, |s| s.history.is_empty() && !s.stopping)
            .unwrap_or_else(PoisonError::into_inner);
        state
            .history
            .back()
            .cloned()
            .unwrap_or_else(|| Sampler::new(&self.config).read())
    }

    /// The seed's `check_resource_availability` decision on the latest reading.
    pub fn availability(&self) -> (Snapshot, Availability) {
        let snapshot = self.snapshot();
        let availability = super::availability(&snapshot, &self.config.thresholds);
        (snapshot, availability)
    }

    /// The seed's `get_optimal_worker_count` on the latest reading.
    pub fn optimal_worker_count(&self, current_workers: u64, pending_jobs: u64) -> u64 {
        super::optimal_worker_count(
            &self.snapshot(),
            &self.config.thresholds,
            &self.config.sizing,
            current_workers,
            pending_jobs,
        )
    }

    /// The readings kept so far, oldest first.
    pub fn history(&self) -> Vec<Snapshot> {
        self.restart_after_fork();
        lock(&self.shared.state).history.iter().cloned().collect()
    }

    /// Stops the sampler thread (also done on drop).
    pub fn stop(&self) {
        lock(&self.shared.state).stopping = true;
        self.shared.changed.notify_all();
        if let Some(thread) = lock(&self.thread).take()
            && *lock(&self.pid) == std::process::id()
        {
            let _ = thread.join();
        }
    }

    fn restart_after_fork(&self) {
        let mut pid = lock(&self.pid);
        if *pid == std::process::id() {
            return;
        }
        *pid = std::process::id();
        let mut thread = lock(&self.thread);
        // The parent's thread does not exist here; its handle must not be joined.
        std::mem::forget(thread.take());
        if !lock(&self.shared.state).stopping {
            *thread = Some(spawn_sampler(self.config.clone(), Arc::clone(&self.shared)));
        }
    }
}

impl Drop for ResourceManager {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic in the sampler cannot leave a half-written snapshot: keep going.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn spawn_sampler(config: ResourceConfig, shared: Arc<Shared>) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("scraperv4-resources".to_owned())
        .spawn(move || run(&config, &shared))
        .expect("the operating system refused to start the resource sampler thread")
}

fn run(config: &ResourceConfig, shared: &Shared) {
    let mut sampler = Sampler::new(config);
    // CPU usage is a difference between two readings: prime, then wait the minimum.
    let mut wait = sysinfo::MINIMUM_CPU_UPDATE_INTERVAL;
    loop {
        let state = lock(&shared.state);
        let (state, _) = shared
            .changed
            .wait_timeout_while(state, wait, |s| !s.stopping)
            .unwrap_or_else(PoisonError::into_inner);
        if state.stopping {
            return;
        }
        drop(state);
        let snapshot = sampler.read();
        let mut state = lock(&shared.state);
        if state.history.len() == config.history_len {
            state.history.pop_front();
        }
        state.history.push_back(snapshot);
        drop(state);
        shared.changed.notify_all();
        wait = config.interval;
    }
}

/// Reads the machine; keeps the previous cgroup CPU counter for usage deltas.
struct Sampler {
    system: System,
    disks: Disks,
    disk_path: PathBuf,
    cgroup_paths: CgroupPaths,
    previous_cgroup_cpu: Option<(Instant, u64)>,
}

impl Sampler {
    fn new(config: &ResourceConfig) -> Self {
        let refresh = RefreshKind::nothing()
            .with_cpu(CpuRefreshKind::nothing().with_cpu_usage())
            .with_memory(MemoryRefreshKind::nothing().with_ram());
        let system = System::new_with_specifics(refresh);
        let disks = Disks::new_with_refreshed_list();
        let disk_path =
            std::fs::canonicalize(&config.disk_path).unwrap_or_else(|_| config.disk_path.clone());
        let mut sampler = Self {
            system,
            disks,
            disk_path,
            cgroup_paths: config.cgroup.clone(),
            previous_cgroup_cpu: None,
        };
        sampler.cgroup_cpu_usage(cgroup::read(&sampler.cgroup_paths).as_ref());
        sampler
    }

    fn read(&mut self) -> Snapshot {
        self.system.refresh_cpu_usage();
        self.system
            .refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
        let group = cgroup::read(&self.cgroup_paths);
        #[allow(clippy::cast_precision_loss)]
        let logical = self.system.cpus().len().max(1) as f64;
        let quota = group.as_ref().and_then(|g| g.cpu_limit_cores);
        let cpu_cores = quota.map_or(logical, |q| q.min(logical));
        let cpu_usage = match (quota, self.cgroup_cpu_usage(group.as_ref())) {
            (Some(cores), Some(used_cores)) => (used_cores / cores * 100.0).clamp(0.0, 100.0),
            _ => f64::from(self.system.global_cpu_usage()),
        };
        let host_total = self.system.total_memory();
        let host_available = self.system.available_memory();
        let (memory_total_bytes, memory_available_bytes) = match group
            .as_ref()
            .and_then(|g| g.memory_limit_bytes.zip(g.memory_working_set_bytes))
        {
            Some((limit, used)) if limit < host_total => (limit, limit.saturating_sub(used)),
            _ => (host_total, host_available),
        };
        #[allow(clippy::cast_precision_loss)]
        let memory_usage = if memory_total_bytes == 0 {
            0.0
        } else {
            (memory_total_bytes - memory_available_bytes.min(memory_total_bytes)) as f64
                / memory_total_bytes as f64
                * 100.0
        };
        let (disk_usage, disk_free_bytes) = self.disk_usage();
        Snapshot {
            timestamp: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            cpu_usage,
            memory_usage,
            disk_usage,
            load_average: System::load_average().one,
            cpu_cores,
            memory_total_bytes,
            memory_available_bytes,
            disk_free_bytes,
            limits_source: match group {
                Some(CgroupReading {
                    version,
                    cpu_limit_cores,
                    memory_limit_bytes,
                    ..
                }) if cpu_limit_cores.is_some()
                    || memory_limit_bytes.is_some_and(|l| l < host_total) =>
                {
                    format!("cgroup v{version}")
                }
                _ => "host".to_owned(),
            },
        }
    }

    /// Cores used by the cgroup since the previous reading.
    fn cgroup_cpu_usage(&mut self, group: Option<&CgroupReading>) -> Option<f64> {
        let now = Instant::now();
        let usage = group?.cpu_usage_usec?;
        let previous = self.previous_cgroup_cpu.replace((now, usage));
        let (then, before) = previous?;
        let elapsed = now.duration_since(then).as_secs_f64();
        #[allow(clippy::cast_precision_loss)]
        (elapsed > 0.0).then(|| usage.saturating_sub(before) as f64 / 1e6 / elapsed)
    }

    /// Percent used and bytes free on the filesystem holding `disk_path`.
    fn disk_usage(&mut self) -> (f64, u64) {
        let path = &self.disk_path;
        let Some(disk) = self
            .disks
            .list_mut()
            .iter_mut()
            .filter(|disk| path.starts_with(disk.mount_point()))
            .max_by_key(|disk| disk.mount_point().as_os_str().len())
        else {
            return (0.0, 0);
        };
        disk.refresh();
        let (total, free) = (disk.total_space(), disk.available_space());
        #[allow(clippy::cast_precision_loss)]
        let used = if total == 0 {
            0.0
        } else {
            (total - free.min(total)) as f64 / total as f64 * 100.0
        };
        (used, free)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_on_this_machine_are_sane() {
        let manager = ResourceManager::start(ResourceConfig {
            interval: Duration::from_millis(200),
            ..ResourceConfig::default()
        })
        .unwrap();
        let snapshot = manager.snapshot();
        for value in [
            snapshot.cpu_usage,
            snapshot.memory_usage,
            snapshot.disk_usage,
        ] {
            assert!((0.0..=100.0).contains(&value), "{snapshot:?}");
        }
        assert!(
            snapshot.cpu_cores > 0.0 && snapshot.memory_total_bytes > 0,
            "{snapshot:?}"
        );
        assert!(snapshot.memory_available_bytes <= snapshot.memory_total_bytes);
        assert!(snapshot.load_average >= 0.0);
        std::thread::sleep(Duration::from_millis(700));
        let history = manager.history();
        assert!(history.len() >= 2, "{}", history.len());
        assert!(history.windows(2).all(|w| w[0].timestamp < w[1].timestamp));
    }

    #[test]
    fn history_is_bounded() {
        let manager = ResourceManager::start(ResourceConfig {
            interval: Duration::from_millis(200),
            history_len: 2,
            ..ResourceConfig::default()
        })
        .unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(manager.history().len(), 2);
    }

    #[test]
    fn a_cgroup_quota_sets_the_cores_and_the_cpu_share() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("cgroup");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("cgroup.controllers"), "cpu memory").unwrap();
        std::fs::write(root.join("cpu.max"), "50000 100000").unwrap();
        std::fs::write(root.join("cpu.stat"), "usage_usec 0").unwrap();
        std::fs::write(root.join("memory.max"), "1048576").unwrap();
        std::fs::write(root.join("memory.current"), "262144").unwrap();
        std::fs::write(dir.path().join("membership"), "0::/").unwrap();
        let config = ResourceConfig {
            cgroup: CgroupPaths {
                root: root.clone(),
                membership: dir.path().join("membership"),
            },
            ..ResourceConfig::default()
        };
        let mut sampler = Sampler::new(&config);
        std::thread::sleep(Duration::from_millis(100));
        // 0.5 cores allowed; the group used 25 ms of CPU in ~100 ms: about 50 % of its quota.
        std::fs::write(root.join("cpu.stat"), "usage_usec 25000").unwrap();
        let snapshot = sampler.read();
        assert!((snapshot.cpu_cores - 0.5).abs() < f64::EPSILON);
        assert!(
            snapshot.cpu_usage > 5.0 && snapshot.cpu_usage <= 50.0,
            "{snapshot:?}"
        );
        assert_eq!(snapshot.memory_total_bytes, 1_048_576);
        assert_eq!(snapshot.memory_available_bytes, 786_432);
        assert!((snapshot.memory_usage - 25.0).abs() < 1e-9);
        assert_eq!(snapshot.limits_source, "cgroup v2");
    }

    #[test]
    fn invalid_settings_are_rejected() {
        let bad = |config: ResourceConfig| ResourceManager::start(config).err().unwrap();
        assert!(
            bad(ResourceConfig {
                interval: Duration::from_millis(10),
                ..ResourceConfig::default()
            })
            .to_string()
            .contains("sample_interval")
        );
        assert!(
            bad(ResourceConfig {
                disk_path: PathBuf::from("/no/such/dir"),
                ..ResourceConfig::default()
            })
            .to_string()
            .contains("disk_path")
        );
    }
}
