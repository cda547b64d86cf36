//! Harness for end-to-end tests: a real `sluice` process on free loopback ports,
//! killed when the handle drops (also when the test fails).

pub mod browser;

/// Every page of the console (with a service `echo` and a route `echo`).
pub const CONSOLE_PAGES: [&str; 8] = [
    "/ui/",
    "/ui/services",
    "/ui/services/echo",
    "/ui/resources",
    "/ui/resources/Route/echo",
    "/ui/alarms",
    "/ui/errors",
    "/ui/hosts",
];

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// Metrics tiers for tests: 1 s steps, so series fill within seconds.
pub const FAST_METRICS: [&str; 2] = ["--metrics-tiers", "1s:10m,1m:1h"];

/// Whether the node on `port` answers `/readyz` with 200.
fn ready_on_readyz(port: u16) -> bool {
    sluice_testkit::http_get(port, "/readyz").is_some_and(|r| {
        r.lines()
            .next()
            .is_some_and(|status| status.contains(" 200 "))
    })
}

/// A running `sluice up` or `sluice server`.
pub struct Sluice {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// The admin port.
    pub port: u16,
    /// `http://127.0.0.1:PORT` of the gateway (`sluice up` only).
    pub gateway: Option<String>,
    /// `http://127.0.0.1:PORT` of the OTLP/HTTP and Zipkin listeners (`up` and
    /// `server`, on free ports unless the arguments name them).
    pub otlp: Option<String>,
    /// See `otlp`.
    pub zipkin: Option<String>,
    log: PathBuf,
}

impl Sluice {
    /// Starts `sluice ROLE --admin 127.0.0.1:FREE ARGS...` and waits until /readyz answers 200.
    pub fn start(role: &str, args: &[&str], log_dir: &Path) -> Self {
        Self::start_ready(role, args, log_dir, &ready_on_readyz)
    }

    /// As [`start`](Self::start), ready when `ready(port)` holds.
    pub fn start_ready(
        role: &str,
        args: &[&str],
        log_dir: &Path,
        ready: &dyn Fn(u16) -> bool,
    ) -> Self {
        // A port free a moment ago can be taken (by another test's outgoing
        // connection) before Sluice binds it: then another port.
        for _ in 0..4 {
            let port = sluice_testkit::free_port();
            match Self::launch(role, args, log_dir, port, ready) {
                Ok(sluice) => return sluice,
                Err(log) if log.contains("Address already in use") => continue,
                Err(log) => panic!("sluice did not become ready:\n{log}"),
            }
        }
        panic!("sluice found no free port in four tries");
    }

    /// As [`start`](Self::start), on a given port (to restart on the same address).
    pub fn start_on(role: &str, args: &[&str], log_dir: &Path, port: u16) -> Self {
        Self::start_until(role, args, log_dir, port, ready_on_readyz)
    }

    /// Starts it on `port` and waits until `ready(port)` holds (a gateway port
    /// taken meanwhile is picked again; the given port is tried a few times).
    pub fn start_until(
        role: &str,
        args: &[&str],
        log_dir: &Path,
        port: u16,
        ready: impl Fn(u16) -> bool,
    ) -> Self {
        let mut last = String::new();
        for _ in 0..4 {
            match Self::launch(role, args, log_dir, port, &ready) {
                Ok(sluice) => return sluice,
                Err(log) if log.contains("Address already in use") => {
                    last = log;
                    std::thread::sleep(Duration::from_millis(300));
                }
                Err(log) => panic!("sluice did not become ready:\n{log}"),
            }
        }
        panic!("sluice did not become ready:\n{last}");
    }

    /// One start: the running node, or what it printed when it exited or never
    /// became ready.
    fn launch(
        role: &str,
        args: &[&str],
        log_dir: &Path,
        port: u16,
        ready: &dyn Fn(u16) -> bool,
    ) -> Result<Self, String> {
        static LAUNCHES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let launch = LAUNCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = log_dir.join(format!("sluice-{port}-{}-{launch}.log", std::process::id()));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        // Never the default gateway port: tests run in parallel.
        let gateway =
            (role == "up" && !args.contains(&"--gateway")).then(sluice_testkit::free_port);
        // Nor the standard trace ports (4318, 9411).
        let trace_ports = (matches!(role, "up" | "server")
            && !args.contains(&"--tracing-otlp")
            && !args.contains(&"--tracing-zipkin"))
        .then(|| (sluice_testkit::free_port(), sluice_testkit::free_port()));
        let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
        // `port` is the admin port of `up` and `server`, the listening port of `gateway`.
        let listen_flag = if role == "gateway" {
            "--gateway"
        } else {
            "--admin"
        };
        // Relative defaults (`./sluice-data`) land in the test's own directory,
        // never in the source tree.
        command.current_dir(log_dir).arg(role);
        // An agent listens nowhere.
        if role != "agent" {
            command.args([listen_flag, &format!("127.0.0.1:{port}")]);
        }
        if let Some(gateway) = gateway {
            command.args(["--gateway", &format!("127.0.0.1:{gateway}")]);
        }
        if let Some((otlp, zipkin)) = trace_ports {
            command.args(["--tracing-otlp", &format!("127.0.0.1:{otlp}")]);
            command.args(["--tracing-zipkin", &format!("127.0.0.1:{zipkin}")]);
        }
        let child = command
            .args(args)
            .env_remove("SLUICE_STORE")
            .env_remove("SLUICE_CONFIG")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start sluice");
        let mut sluice = Sluice {
            child: Some(child),
            url: format!("http://127.0.0.1:{port}"),
            port,
            gateway: gateway.map(|g| format!("http://127.0.0.1:{g}")),
            otlp: trace_ports.map(|(p, _)| format!("http://127.0.0.1:{p}")),
            zipkin: trace_ports.map(|(_, p)| format!("http://127.0.0.1:{p}")),
            log,
        };
        let mut exited = false;
        let ready = sluice_testkit::wait_until(Duration::from_secs(30), || {
            exited = sluice
                .child
                .as_mut()
                .is_some_and(|c| c.try_wait().ok().flatten().is_some());
            exited || ready(port)
        });
        if ready && !exited {
            Ok(sluice)
        } else {
            sluice.kill();
            Err(sluice.log_text())
        }
    }

    /// `sluice up` with its data in `dir/d` (and a free gateway port).
    pub fn up(dir: &Path) -> Self {
        Self::up_with(dir, &[])
    }

    /// `sluice up` with its data in `dir/d`, the `[[tokens]]` of `tokens` (TOML) in
    /// `dir/sluice.toml`, and `extra` arguments. Ready when `/healthz` answers 401
    /// (every path needs a token then).
    pub fn up_with_tokens(dir: &Path, tokens: &str, extra: &[&str]) -> Self {
        let config = dir.join("sluice.toml");
        std::fs::write(&config, tokens).unwrap();
        let data = dir.join("d");
        let mut args = vec![
            "--data",
            data.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        Self::start_ready("up", &args, dir, &|port| {
            sluice_testkit::http_get(port, "/healthz").is_some_and(|r| r.contains(" 401 "))
        })
    }

    /// `sluice up` with its data in `dir/d` and `extra` arguments.
    pub fn up_with(dir: &Path, extra: &[&str]) -> Self {
        let data = dir.join("d");
        let mut args = vec!["--data", data.to_str().unwrap()];
        args.extend_from_slice(extra);
        Self::start("up", &args, dir)
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// What the process printed.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the process with SIGKILL and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs a client command against this node and returns its stdout (panics on failure).
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(args)
            .args(["--server", &self.url])
            .env_remove("SLUICE_TOKEN")
            .output()
            .expect("run sluice");
        assert!(
            out.status.success(),
            "sluice {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A small JSON HTTP client for tests, over the admin API's own client
/// (`sluice_client::ControlPlane::exchange`: the bearer token, any status).
#[derive(Clone)]
pub struct Http {
    plane: std::sync::Arc<sluice_client::ControlPlane>,
}

impl Http {
    /// A client for `base` (`http://127.0.0.1:PORT`).
    pub fn new(base: &str) -> Self {
        Self::client(base, None)
    }

    /// The same, sending a bearer token.
    pub fn with_token(base: &str, token: &str) -> Self {
        Self::client(base, Some(token.to_owned()))
    }

    fn client(base: &str, token: Option<String>) -> Self {
        let plane = sluice_client::ControlPlane::new(
            vec![base.to_owned()],
            token,
            // Longer than any blocking query a test makes.
            Duration::from_secs(120),
        )
        .unwrap();
        Http {
            plane: std::sync::Arc::new(plane),
        }
    }

    /// Sends a request with a raw body; returns status, the X-Sluice-Index header and the JSON body.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> (u16, Option<u64>, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let body = body.map(|b| bytes::Bytes::from(b.to_owned()));
        // A server refusing a large body may close before the client is done
        // sending it, so the client never reads the answer; and a connection the
        // server closed after such an answer may be reused once. Send again, up
        // to five times.
        let mut last = None;
        for _ in 0..5 {
            match self
                .plane
                .exchange(method.clone(), path, body.clone())
                .await
            {
                Ok(answer) => {
                    let value = serde_json::from_slice(&answer.body).unwrap_or_else(|_| {
                        Value::String(String::from_utf8_lossy(&answer.body).into_owned())
                    });
                    return (answer.status, answer.index, value);
                }
                Err(error) => last = Some(error),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("send request: {last:?}");
    }

    /// GET, expecting 200.
    pub async fn get(&self, path: &str) -> (Option<u64>, Value) {
        let (status, index, value) = self.send("GET", path, None).await;
        assert_eq!(status, 200, "GET {path}: {value}");
        (index, value)
    }

    /// Registers a persistent instance of `service` in `default`.
    pub async fn register(&self, service: &str, id: &str, address: &str) {
        let path = format!("/v1/namespaces/default/services/{service}/instances/{id}");
        self.put(&path, &format!(r#"{{"address":"{address}"}}"#))
            .await;
    }

    /// Creates or replaces the route `name` in `default` with this spec (JSON).
    pub async fn route(&self, name: &str, spec: &str) {
        let path = format!("/v1/namespaces/default/resources/Route/{name}");
        self.put(&path, &format!(r#"{{"spec": {spec}}}"#)).await;
    }

    /// Seeds the `echo` service with two instances (`e1`, `e2`, each an
    /// [`echo_upstream`] answering with its name) and the route `echo` for `/echo`.
    pub async fn echo_service_with_two_instances(&self) {
        self.register("echo", "e1", &echo_upstream("e1").await)
            .await;
        self.register("echo", "e2", &echo_upstream("e2").await)
            .await;
        self.route(
            "echo",
            r#"{"match": {"path_prefix": "/echo"}, "service": "echo"}"#,
        )
        .await;
    }

    /// PUT a JSON body, expecting 200 or 201.
    pub async fn put(&self, path: &str, body: &str) -> Value {
        let (status, _, value) = self.send("PUT", path, Some(body)).await;
        assert!(
            status == 200 || status == 201,
            "PUT {path}: {status} {value}"
        );
        value
    }
}

/// Polls `url` until it answers `status` (a hang guard of 10 s); returns the body.
pub async fn until_status(client: &reqwest::Client, url: &str, status: u16) -> Value {
    for _ in 0..400 {
        if let Ok(response) = client.get(url).send().await {
            if response.status().as_u16() == status {
                return response.json().await.unwrap_or(Value::Null);
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{url} never answered {status}");
}

pub use sluice_testkit::upstream::{controlled_upstream, echo_upstream};

/// A peer process a test started (Prometheus, Alertmanager, an SMTP server),
/// killed when dropped — also when the test fails.
pub struct Peer(std::process::Child);

impl Peer {
    /// Starts `command` with its output discarded (or sent where the command says).
    pub fn spawn(command: &mut Command) -> Self {
        Peer(command.spawn().expect("start a peer process"))
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `python3` command that can import the Python packages scripts/setup.sh installs
/// under target/pylib (the Sentry SDK, aiosmtpd); panics naming the fix when
/// `package` is not there.
pub fn python_with(package: &str) -> Command {
    let pylib = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/pylib");
    assert!(
        Path::new(pylib).join(package).exists(),
        "{package} is not installed in target/pylib: run scripts/test.sh (scripts/setup.sh installs it)"
    );
    let mut python = Command::new(sluice_testkit::find_program("python3").expect("python3"));
    python.env("PYTHONPATH", pylib);
    python
}

/// Polls `check` every 100 ms until it gives a value (a hang guard of 30 s).
pub async fn until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    for _ in 0..300 {
        if let Some(found) = check() {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} never happened");
}

/// Runs a future to completion from a synchronous check (on a helper thread).
pub fn block_on<T: Send + 'static>(
    future: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    let handle = tokio::runtime::Handle::current();
    std::thread::spawn(move || handle.block_on(future))
        .join()
        .expect("the helper thread panicked")
}

/// Starts Debian's Prometheus with `config` (YAML) on a free port, its data under
/// `dir`; gives the process (stopped on drop) and its URL.
pub fn start_prometheus(dir: &Path, config: &str) -> (Peer, String) {
    let binary = sluice_testkit::find_program("prometheus").expect(
        "prometheus is not installed: run scripts/test.sh (it installs Debian's prometheus)",
    );
    let port = sluice_testkit::free_port();
    let config_file = dir.join("prometheus.yml");
    std::fs::write(&config_file, config).unwrap();
    let prometheus = Peer::spawn(
        Command::new(binary)
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    (prometheus, format!("http://127.0.0.1:{port}"))
}

/// Asserts that `PUT`ting each `(kind, spec, field)` is refused with 400 and a
/// message naming `field`.
pub async fn assert_refused_naming_the_field(api: &Http, cases: &[(&str, &str, &str)]) {
    for (kind, spec, field) in cases {
        let (status, _, error) = api
            .send(
                "PUT",
                &format!("/v1/namespaces/default/resources/{kind}/bad"),
                Some(&format!(r#"{{"spec": {spec}}}"#)),
            )
            .await;
        let message = error["error"]["message"].as_str().unwrap_or_default();
        assert_eq!(status, 400, "{kind} {spec}: {error}");
        assert!(message.contains(field), "{kind} {spec}: {message}");
    }
}
