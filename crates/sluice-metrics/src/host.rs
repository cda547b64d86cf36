//! Host metrics from `/proc`: CPU busy share, memory, load, network and disk
//! throughput, sampled each step for the host `sluice up` runs on (and by every
//! `sluice agent`, which pushes them to the control plane). Series are gauges named
//! `host_*` with a `host` label.

use std::collections::BTreeMap;
use std::time::Instant;

use parking_lot::Mutex;

use crate::recorder::StepSource;
use crate::{Agg, SeriesKey};

/// Cumulative counters read at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Counters {
    cpu_busy: u64,
    cpu_total: u64,
    net_rx: u64,
    net_tx: u64,
    disk_read: u64,
    disk_write: u64,
}

/// Parses `/proc/stat`'s first line into (busy, total) jiffies.
fn parse_cpu(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    if fields.len() < 4 {
        return None;
    }
    let total: u64 = fields.iter().take(8).sum();
    // idle and iowait are not busy.
    let idle = fields[3] + fields.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// Parses `/proc/meminfo` into (used, total) bytes.
fn parse_memory(meminfo: &str) -> Option<(u64, u64)> {
    let field = |name: &str| -> Option<u64> {
        meminfo
            .lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
            .map(|kib| kib * 1024)
    };
    let total = field("MemTotal:")?;
    let available = field("MemAvailable:")?;
    Some((total.saturating_sub(available), total))
}

/// Parses `/proc/loadavg`.
fn parse_load(loadavg: &str) -> Option<[f64; 3]> {
    let mut fields = loadavg.split_whitespace().map(|f| f.parse::<f64>().ok());
    Some([fields.next()??, fields.next()??, fields.next()??])
}

/// Parses `/proc/net/dev` into (received, sent) bytes over every interface but `lo`.
fn parse_network(dev: &str) -> (u64, u64) {
    let mut totals = (0, 0);
    for line in dev.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        if name.trim() == "lo" {
            continue;
        }
        let fields: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        if fields.len() >= 9 {
            totals.0 += fields[0];
            totals.1 += fields[8];
        }
    }
    totals
}

/// Parses `/proc/diskstats` into (read, written) bytes over whole disks (`is_disk`).
fn parse_disks(diskstats: &str, is_disk: impl Fn(&str) -> bool) -> (u64, u64) {
    let mut totals = (0, 0);
    for line in diskstats.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 10 || !is_disk(fields[2]) {
            continue;
        }
        let sectors = |i: usize| fields[i].parse::<u64>().unwrap_or(0) * 512;
        totals.0 += sectors(5);
        totals.1 += sectors(9);
    }
    totals
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The host's name (from the kernel).
pub fn hostname() -> String {
    let name = read("/proc/sys/kernel/hostname");
    let name = name.trim();
    if name.is_empty() {
        "localhost".to_owned()
    } else {
        name.to_owned()
    }
}

/// Samples the host each step.
pub struct HostSampler {
    host: String,
    previous: Mutex<Option<(Counters, Instant)>>,
}

impl std::fmt::Debug for HostSampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostSampler")
            .field("host", &self.host)
            .finish()
    }
}

impl HostSampler {
    /// A sampler labelling its series with `host`.
    pub fn new(host: String) -> Self {
        HostSampler {
            host,
            previous: Mutex::new(None),
        }
    }

    fn counters() -> Counters {
        let (cpu_busy, cpu_total) = parse_cpu(&read("/proc/stat")).unwrap_or_default();
        let (net_rx, net_tx) = parse_network(&read("/proc/net/dev"));
        let (disk_read, disk_write) = parse_disks(&read("/proc/diskstats"), |name| {
            !name.starts_with("loop")
                && !name.starts_with("ram")
                && std::path::Path::new("/sys/block").join(name).exists()
        });
        Counters {
            cpu_busy,
            cpu_total,
            net_rx,
            net_tx,
            disk_read,
            disk_write,
        }
    }

    /// The current values, by series name (rates need a previous sample).
    pub fn sample(&self) -> BTreeMap<&'static str, f64> {
        let mut values = BTreeMap::new();
        if let Some((used, total)) = parse_memory(&read("/proc/meminfo")) {
            values.insert("host_mem_used_bytes", used as f64);
            values.insert("host_mem_total_bytes", total as f64);
        }
        if let Some([one, five, fifteen]) = parse_load(&read("/proc/loadavg")) {
            values.insert("host_load1", one);
            values.insert("host_load5", five);
            values.insert("host_load15", fifteen);
        }
        let now = Self::counters();
        let at = Instant::now();
        let mut previous = self.previous.lock();
        if let Some((before, then)) = previous.as_ref() {
            let seconds = at.duration_since(*then).as_secs_f64().max(1e-3);
            let per_second = |a: u64, b: u64| a.saturating_sub(b) as f64 / seconds;
            let total = now.cpu_total.saturating_sub(before.cpu_total);
            if total > 0 {
                let busy = now.cpu_busy.saturating_sub(before.cpu_busy);
                values.insert("host_cpu_percent", 100.0 * busy as f64 / total as f64);
            }
            values.insert(
                "host_net_rx_bytes_per_s",
                per_second(now.net_rx, before.net_rx),
            );
            values.insert(
                "host_net_tx_bytes_per_s",
                per_second(now.net_tx, before.net_tx),
            );
            values.insert(
                "host_disk_read_bytes_per_s",
                per_second(now.disk_read, before.disk_read),
            );
            values.insert(
                "host_disk_write_bytes_per_s",
                per_second(now.disk_write, before.disk_write),
            );
        }
        *previous = Some((now, at));
        values
    }

    /// The host this sampler labels.
    pub fn host(&self) -> &str {
        &self.host
    }
}

/// Series of host values pushed for `host`.
pub fn host_series(host: &str, values: &BTreeMap<String, f64>) -> Vec<(SeriesKey, Agg)> {
    values
        .iter()
        .map(|(name, value)| {
            (
                SeriesKey::new(name, [("host", host)]),
                Agg::of_values([*value], false),
            )
        })
        .collect()
}

impl StepSource for HostSampler {
    fn drain(&self) -> Vec<(SeriesKey, Agg)> {
        let values: BTreeMap<String, f64> = self
            .sample()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        host_series(&self.host, &values)
    }
}

/// Host values pushed by agents, held until the next step.
#[derive(Debug, Default)]
pub struct AgentMetrics {
    step: Mutex<Vec<(SeriesKey, Agg)>>,
}

impl AgentMetrics {
    /// Takes an agent's values for `host`; names must be `host_*`, values finite.
    pub fn push(
        &self,
        host: &str,
        values: &BTreeMap<String, f64>,
    ) -> Result<usize, crate::MetricsError> {
        if host.is_empty()
            || host.len() > 253
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        {
            return Err(crate::MetricsError::invalid(
                "host",
                format!("host {host:?} is not a host name"),
            ));
        }
        for (name, value) in values {
            if !name.starts_with("host_")
                || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                || name.len() > 128
            {
                return Err(crate::MetricsError::invalid(
                    format!("values.{name}"),
                    format!("values.{name}: host metrics are named host_*"),
                ));
            }
            if !value.is_finite() {
                return Err(crate::MetricsError::invalid(
                    format!("values.{name}"),
                    format!("values.{name}: must be a finite number"),
                ));
            }
        }
        self.step.lock().extend(host_series(host, values));
        Ok(values.len())
    }
}

impl StepSource for AgentMetrics {
    fn drain(&self) -> Vec<(SeriesKey, Agg)> {
        std::mem::take(&mut *self.step.lock())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_parse() {
        let stat = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\n";
        assert_eq!(parse_cpu(stat), Some((150, 1000)));
        let meminfo = "MemTotal:       1000 kB\nMemFree:         100 kB\nMemAvailable:    400 kB\n";
        assert_eq!(parse_memory(meminfo), Some((600 * 1024, 1000 * 1024)));
        assert_eq!(
            parse_load("0.50 1.00 1.50 1/100 123\n"),
            Some([0.5, 1.0, 1.5])
        );
        let dev = "Inter-|   Receive\n face |bytes\n    lo: 999 1 0 0 0 0 0 0 999 1 0 0 0 0 0 0\n  eth0: 100 1 0 0 0 0 0 0 200 2 0 0 0 0 0 0\n";
        assert_eq!(parse_network(dev), (100, 200));
        let disks =
            "   8       0 sda 10 0 4 0 20 0 8 0 0 0 0\n   8       1 sda1 10 0 4 0 20 0 8 0 0 0 0\n";
        assert_eq!(parse_disks(disks, |n| n == "sda"), (4 * 512, 8 * 512));
    }

    #[test]
    fn this_host_samples_real_values() {
        let sampler = HostSampler::new("test".into());
        let first = sampler.sample();
        assert!(first["host_mem_total_bytes"] > 0.0);
        assert!(first.contains_key("host_load1"));
        std::thread::sleep(std::time::Duration::from_millis(50));
        let second = sampler.sample();
        let cpu = second["host_cpu_percent"];
        assert!((0.0..=100.0).contains(&cpu), "{cpu}");
        assert!(second.contains_key("host_net_rx_bytes_per_s"));
    }

    #[test]
    fn agent_pushes_are_checked() {
        let agents = AgentMetrics::default();
        let ok = BTreeMap::from([("host_load1".to_owned(), 0.5)]);
        assert_eq!(agents.push("web-1", &ok), Ok(1));
        assert!(agents.push("bad host", &ok).is_err());
        let bad = BTreeMap::from([("cpu".to_owned(), 1.0)]);
        assert!(agents
            .push("web-1", &bad)
            .unwrap_err()
            .to_string()
            .contains("values.cpu"));
        let drained = agents.drain();
        assert_eq!(drained[0].0.label("host"), "web-1");
    }
}
