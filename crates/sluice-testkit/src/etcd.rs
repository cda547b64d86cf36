//! Real etcd members for tests: one, or a cluster of several, on loopback.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::{find_program, free_port, http_get, http_request, wait_until};

/// One etcd member: its ports, data directory and process (when running).
pub struct EtcdMember {
    name: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log_path: PathBuf,
    process: Option<Child>,
}

impl EtcdMember {
    /// `127.0.0.1:PORT` of the client API.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// The client port.
    pub fn client_port(&self) -> u16 {
        self.client_port
    }

    /// Whether the process is running.
    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    fn healthy(&self) -> bool {
        http_get(self.client_port, "/health").is_some_and(|r| r.contains("\"health\":\"true\""))
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A cluster of real etcd members, stopped (SIGKILL) and deleted when dropped.
///
/// Members run with a 50 ms heartbeat and 500 ms election timeout, which puts
/// etcd's minimum lease TTL at 1 s (with the defaults it would be 2 s).
pub struct EtcdCluster {
    members: Vec<EtcdMember>,
    token: String,
    _dir: TempDir,
}

impl EtcdCluster {
    /// Starts a one-member cluster and waits until it is healthy.
    pub fn single() -> Self {
        Self::start(1)
    }

    /// Starts `size` members and waits until every one is healthy.
    pub fn start(size: usize) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("sluice-etcd-")
            .tempdir()
            .unwrap();
        let members = (0..size)
            .map(|i| EtcdMember {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                data_dir: dir.path().join(format!("m{i}")),
                log_path: dir.path().join(format!("m{i}.log")),
                process: None,
            })
            .collect();
        let mut cluster = EtcdCluster {
            members,
            token: format!("sluice-test-{}", std::process::id()),
            _dir: dir,
        };
        for i in 0..size {
            cluster.spawn(i, "new");
        }
        cluster.wait_healthy();
        cluster
    }

    /// Every member's `host:port`.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(EtcdMember::endpoint).collect()
    }

    /// A store URL for this cluster with the given key prefix (`/...`).
    pub fn url(&self, prefix: &str) -> String {
        format!("etcd://{}{prefix}", self.endpoints().join(","))
    }

    /// The members.
    pub fn members(&self) -> &[EtcdMember] {
        &self.members
    }

    /// The index of the member that is the Raft leader now, if one answers.
    pub fn leader(&self) -> Option<usize> {
        // etcd's JSON gateway: status tells each member's own ID and the leader's.
        let field = |json: &str, name: &str| -> Option<String> {
            let start = json.find(&format!("\"{name}\":\""))? + name.len() + 4;
            let end = start + json[start..].find('"')?;
            Some(json[start..end].to_owned())
        };
        self.members.iter().position(|member| {
            member.is_running()
                && http_request(member.client_port, "POST", "/v3/maintenance/status", "{}")
                    .is_some_and(|status| {
                        field(&status, "member_id").is_some()
                            && field(&status, "member_id") == field(&status, "leader")
                    })
        })
    }

    /// Kills member `i` (SIGKILL), keeping its data directory.
    pub fn stop_member(&mut self, i: usize) {
        self.members[i].kill();
    }

    /// Starts member `i` again on its data directory and waits until it is healthy.
    pub fn restart_member(&mut self, i: usize) {
        self.members[i].kill();
        self.spawn(i, "existing");
        self.wait_healthy();
    }

    fn spawn(&mut self, i: usize, state: &str) {
        let etcd = find_program("etcd").unwrap_or_else(|| {
            panic!("etcd is not installed: run scripts/test.sh (it installs Debian's etcd-server)")
        });
        let initial_cluster = self
            .members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        let member = &self.members[i];
        let client_url = format!("http://127.0.0.1:{}", member.client_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&member.log_path)
            .unwrap();
        let child = Command::new(etcd)
            .args(["--name", &member.name])
            .arg("--data-dir")
            .arg(&member.data_dir)
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &member.peer_url()])
            .args(["--initial-advertise-peer-urls", &member.peer_url()])
            .args(["--initial-cluster", &initial_cluster])
            .args(["--initial-cluster-token", &self.token])
            .args(["--initial-cluster-state", state])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--logger", "zap", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start etcd: {e}"));
        self.members[i].process = Some(child);
    }

    fn wait_healthy(&mut self) {
        let healthy = wait_until(Duration::from_secs(30), || {
            self.members
                .iter()
                .filter(|m| m.is_running())
                .all(EtcdMember::healthy)
        });
        if !healthy {
            let logs: Vec<String> = self
                .members
                .iter()
                .map(|m| {
                    let log = std::fs::read_to_string(&m.log_path).unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(20).collect();
                    format!(
                        "--- {} ---\n{}",
                        m.name,
                        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                    )
                })
                .collect();
            panic!(
                "etcd did not become healthy within 30 s:\n{}",
                logs.join("\n")
            );
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for member in &mut self.members {
            member.kill();
        }
    }
}
