//! Limits and usage of the control group this process runs in (cgroup v1 or v2).
//!
//! Inside Docker or Kubernetes the host's totals are the wrong numbers: a pod limited to
//! 1 CPU and 512 MiB on a 64-core host must plan for 1 CPU and 512 MiB. This module reads the
//! cgroup files directly; its paths are parameters so tests can point it at fixture trees.
//! Controllers are looked up at their conventional mount points under the cgroup root
//! (`/sys/fs/cgroup` for v2; `/sys/fs/cgroup/{cpu,cpuacct,memory}` for v1).

use std::fs;
use std::path::{Path, PathBuf};

/// Where to look.
#[derive(Debug, Clone)]
pub struct CgroupPaths {
    /// The cgroup filesystem root, normally `/sys/fs/cgroup`.
    pub root: PathBuf,
    /// This process's membership file, normally `/proc/self/cgroup`.
    pub membership: PathBuf,
}

impl Default for CgroupPaths {
    fn default() -> Self {
        Self {
            root: PathBuf::from("/sys/fs/cgroup"),
            membership: PathBuf::from("/proc/self/cgroup"),
        }
    }
}

/// What the cgroup says (each `None` when not limited or not readable).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CgroupReading {
    /// 1 or 2.
    pub version: u8,
    /// CPU quota in cores (`quota / period`), `None` when unlimited.
    pub cpu_limit_cores: Option<f64>,
    /// Total CPU time used by the group, in microseconds (for usage deltas).
    pub cpu_usage_usec: Option<u64>,
    /// Memory limit in bytes, `None` when unlimited.
    pub memory_limit_bytes: Option<u64>,
    /// Working set in bytes: usage minus inactive file cache, as the kubelet counts it for
    /// eviction (page cache that can be dropped does not make a pod OOM).
    pub memory_working_set_bytes: Option<u64>,
}

/// v1 reports "no limit" as a huge page-aligned number; anything above this is unlimited.
const V1_UNLIMITED: u64 = 1 << 60;

/// Reads the current cgroup; `None` when the process is not in a readable cgroup.
pub fn read(paths: &CgroupPaths) -> Option<CgroupReading> {
    let membership = fs::read_to_string(&paths.membership).ok()?;
    if paths.root.join("cgroup.controllers").exists() {
        let group = membership
            .lines()
            .find_map(|line| line.strip_prefix("0::"))
            .unwrap_or("/");
        Some(read_v2(&group_dir(&paths.root, group)))
    } else {
        read_v1(&paths.root, &membership)
    }
}

/// The group's directory, or the root when the group path is not visible (a container with
/// its own cgroup namespace sees its group mounted at the root).
fn group_dir(mount: &Path, group: &str) -> PathBuf {
    let nested = mount.join(group.trim_start_matches('/'));
    if nested.is_dir() {
        nested
    } else {
        mount.to_path_buf()
    }
}

fn read_v2(dir: &Path) -> CgroupReading {
    let cpu_limit_cores = read_trimmed(&dir.join("cpu.max")).and_then(|text| {
        let mut fields = text.split_whitespace();
        let quota = fields.next()?;
        let period: f64 = fields.next().unwrap_or("100000").parse().ok()?;
        let quota: f64 = quota.parse().ok()?; // "max" fails to parse: unlimited
        (period > 0.0).then_some(quota / period)
    });
    let cpu_usage_usec =
        read_trimmed(&dir.join("cpu.stat")).and_then(|text| stat_value(&text, "usage_usec"));
    let memory_limit_bytes = read_trimmed(&dir.join("memory.max")).and_then(|t| t.parse().ok());
    let usage: Option<u64> = read_trimmed(&dir.join("memory.current")).and_then(|t| t.parse().ok());
    let inactive = read_trimmed(&dir.join("memory.stat"))
        .and_then(|text| stat_value(&text, "inactive_file"))
        .unwrap_or(0);
    CgroupReading {
        version: 2,
        cpu_limit_cores,
        cpu_usage_usec,
        memory_limit_bytes,
        memory_working_set_bytes: usage.map(|u| u.saturating_sub(inactive)),
    }
}

fn read_v1(root: &Path, membership: &str) -> Option<CgroupReading> {
    // Lines look like `4:cpu,cpuacct:/docker/abc` or `9:memory:/kubepods/pod1/c1`.
    let group_of = |controller: &str| {
        membership.lines().find_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            controllers
                .split(',')
                .any(|c| c == controller)
                .then(|| path.to_owned())
        })
    };
    let mount_of = |names: &[&str]| {
        names
            .iter()
            .map(|name| root.join(name))
            .find(|dir| dir.is_dir())
    };
    let cpu_dir = group_of("cpu")
        .zip(mount_of(&["cpu,cpuacct", "cpu", "cpuacct,cpu"]))
        .map(|(group, mount)| group_dir(&mount, &group));
    let cpuacct_dir = group_of("cpuacct")
        .zip(mount_of(&["cpu,cpuacct", "cpuacct", "cpuacct,cpu"]))
        .map(|(group, mount)| group_dir(&mount, &group));
    let memory_dir = group_of("memory")
        .zip(mount_of(&["memory"]))
        .map(|(group, mount)| group_dir(&mount, &group));
    if cpu_dir.is_none() && memory_dir.is_none() {
        return None;
    }
    let cpu_limit_cores = cpu_dir.as_ref().and_then(|dir| {
        let quota: i64 = read_trimmed(&dir.join("cpu.cfs_quota_us"))?.parse().ok()?;
        let period: i64 = read_trimmed(&dir.join("cpu.cfs_period_us"))?.parse().ok()?;
        #[allow(clippy::cast_precision_loss)]
        (quota > 0 && period > 0).then(|| quota as f64 / period as f64)
    });
    let cpu_usage_usec = cpuacct_dir.as_ref().and_then(|dir| {
        let nanos: u64 = read_trimmed(&dir.join("cpuacct.usage"))?.parse().ok()?;
        Some(nanos / 1000)
    });
    let memory_limit_bytes = memory_dir.as_ref().and_then(|dir| {
        let limit: u64 = read_trimmed(&dir.join("memory.limit_in_bytes"))?
            .parse()
            .ok()?;
        (limit < V1_UNLIMITED).then_some(limit)
    });
    let memory_working_set_bytes = memory_dir.as_ref().and_then(|dir| {
        let usage: u64 = read_trimmed(&dir.join("memory.usage_in_bytes"))?
            .parse()
            .ok()?;
        let inactive = read_trimmed(&dir.join("memory.stat"))
            .and_then(|text| stat_value(&text, "total_inactive_file"))
            .unwrap_or(0);
        Some(usage.saturating_sub(inactive))
    });
    Some(CgroupReading {
        version: 1,
        cpu_limit_cores,
        cpu_usage_usec,
        memory_limit_bytes,
        memory_working_set_bytes,
    })
}

fn read_trimmed(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_owned())
}

/// The value of `key` in a `key value` per line stat file.
fn stat_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(' ')?;
        (name == key).then(|| value.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, relative: &str, content: &str) {
        let path = root.join(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }

    fn paths(dir: &tempfile::TempDir, membership: &str) -> CgroupPaths {
        let root = dir.path().join("sys/fs/cgroup");
        fs::create_dir_all(&root).unwrap();
        write(dir.path(), "proc/self/cgroup", membership);
        CgroupPaths {
            root,
            membership: dir.path().join("proc/self/cgroup"),
        }
    }

    #[test]
    fn v2_with_quota_and_memory_limit() {
        let dir = tempfile::tempdir().unwrap();
        let paths = paths(&dir, "0::/kubepods/pod1/c1\n");
        let group = "sys/fs/cgroup/kubepods/pod1/c1";
        write(
            dir.path(),
            "sys/fs/cgroup/cgroup.controllers",
            "cpu memory\n",
        );
        write(dir.path(), &format!("{group}/cpu.max"), "150000 100000\n");
        write(
            dir.path(),
            &format!("{group}/cpu.stat"),
            "usage_usec 4200\nuser_usec 4000\n",
        );
        write(dir.path(), &format!("{group}/memory.max"), "536870912\n");
        write(
            dir.path(),
            &format!("{group}/memory.current"),
            "300000000\n",
        );
        write(
            dir.path(),
            &format!("{group}/memory.stat"),
            "anon 1\ninactive_file 100000000\n",
        );
        let reading = read(&paths).unwrap();
        assert_eq!(
            reading,
            CgroupReading {
                version: 2,
                cpu_limit_cores: Some(1.5),
                cpu_usage_usec: Some(4200),
                memory_limit_bytes: Some(536_870_912),
                memory_working_set_bytes: Some(200_000_000),
            }
        );
    }

    #[test]
    fn v2_unlimited_reads_as_none_and_a_namespaced_group_falls_back_to_the_root() {
        let dir = tempfile::tempdir().unwrap();
        // Inside a cgroup namespace the group path is not visible under the mount.
        let paths = paths(&dir, "0::/not/visible\n");
        write(
            dir.path(),
            "sys/fs/cgroup/cgroup.controllers",
            "cpu memory\n",
        );
        write(dir.path(), "sys/fs/cgroup/cpu.max", "max 100000\n");
        write(dir.path(), "sys/fs/cgroup/memory.max", "max\n");
        write(dir.path(), "sys/fs/cgroup/memory.current", "1000\n");
        let reading = read(&paths).unwrap();
        assert_eq!(reading.cpu_limit_cores, None);
        assert_eq!(reading.memory_limit_bytes, None);
        assert_eq!(reading.memory_working_set_bytes, Some(1000));
    }

    #[test]
    fn v1_with_separate_or_joined_controllers() {
        let dir = tempfile::tempdir().unwrap();
        let paths = paths(
            &dir,
            "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/\n",
        );
        write(
            dir.path(),
            "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us",
            "50000\n",
        );
        write(
            dir.path(),
            "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us",
            "100000\n",
        );
        write(
            dir.path(),
            "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpuacct.usage",
            "7000000\n",
        );
        write(
            dir.path(),
            "sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes",
            "1073741824\n",
        );
        write(
            dir.path(),
            "sys/fs/cgroup/memory/docker/abc/memory.usage_in_bytes",
            "600000000\n",
        );
        write(
            dir.path(),
            "sys/fs/cgroup/memory/docker/abc/memory.stat",
            "cache 5\ntotal_inactive_file 100000000\n",
        );
        let reading = read(&paths).unwrap();
        assert_eq!(
            reading,
            CgroupReading {
                version: 1,
                cpu_limit_cores: Some(0.5),
                cpu_usage_usec: Some(7000),
                memory_limit_bytes: Some(1_073_741_824),
                memory_working_set_bytes: Some(500_000_000),
            }
        );
    }

    #[test]
    fn v1_unlimited_values_read_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let paths = paths(&dir, "5:memory:/\n3:cpu:/\n2:cpuacct:/\n");
        write(dir.path(), "sys/fs/cgroup/cpu/cpu.cfs_quota_us", "-1\n");
        write(
            dir.path(),
            "sys/fs/cgroup/cpu/cpu.cfs_period_us",
            "100000\n",
        );
        write(dir.path(), "sys/fs/cgroup/cpuacct/cpuacct.usage", "1000\n");
        write(
            dir.path(),
            "sys/fs/cgroup/memory/memory.limit_in_bytes",
            "9223372036854771712\n",
        );
        write(
            dir.path(),
            "sys/fs/cgroup/memory/memory.usage_in_bytes",
            "4096\n",
        );
        let reading = read(&paths).unwrap();
        assert_eq!(reading.cpu_limit_cores, None);
        assert_eq!(reading.cpu_usage_usec, Some(1));
        assert_eq!(reading.memory_limit_bytes, None);
    }

    #[test]
    fn no_membership_file_means_no_cgroup() {
        let paths = CgroupPaths {
            root: PathBuf::from("/nonexistent/cgroup"),
            membership: PathBuf::from("/nonexistent/proc/self/cgroup"),
        };
        assert_eq!(read(&paths), None);
    }
}
