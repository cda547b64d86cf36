//! Client commands: `sluice svc ...`, `sluice apply -f`, `sluice get`. They talk to
//! the admin API; tables for people by default, `-o json` for scripts.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{json, Value};

/// Where and how a client command talks to Sluice.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Admin API of a Sluice node.
    #[arg(
        long,
        global = true,
        env = "SLUICE_SERVER",
        default_value = "http://127.0.0.1:7700"
    )]
    server: String,
    /// Bearer token, when the server requires one.
    #[arg(long, global = true, env = "SLUICE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Namespace.
    #[arg(
        short,
        long,
        global = true,
        env = "SLUICE_NAMESPACE",
        default_value = "default"
    )]
    namespace: String,
    /// Output format.
    #[arg(short, long, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns.
    Table,
    /// The API's JSON.
    Json,
}

/// `sluice svc ...`
#[derive(Debug, Subcommand)]
pub enum SvcCommand {
    /// List services with healthy / total counts.
    Ls,
    /// Show a service's instances (all of them, flagged).
    Show {
        /// Service name.
        name: String,
    },
    /// Register an instance.
    Register {
        /// Service name.
        name: String,
        /// host:port
        address: String,
        /// Instance ID [default: derived from the address].
        #[arg(long)]
        id: Option<String>,
        /// Ephemeral with this heartbeat TTL (such as 15s): unhealthy after it, removed after twice it.
        #[arg(long, conflicts_with_all = ["check_http", "check_tcp"])]
        ttl: Option<String>,
        /// Persistent, checked by HTTP GET of this path.
        #[arg(long, conflicts_with = "check_tcp")]
        check_http: Option<String>,
        /// Persistent, checked by TCP connect.
        #[arg(long)]
        check_tcp: bool,
        /// Check interval (with --check-http / --check-tcp).
        #[arg(long)]
        check_interval: Option<String>,
        /// A label, key=value (repeatable).
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// Weight 0-1000.
        #[arg(long)]
        weight: Option<u32>,
    },
    /// Drain an instance: it stays registered but gets no new traffic.
    Drain {
        /// Service name.
        name: String,
        /// Instance ID.
        id: String,
        /// Undrain instead.
        #[arg(long)]
        undo: bool,
    },
    /// Deregister an instance.
    Deregister {
        /// Service name.
        name: String,
        /// Instance ID.
        id: String,
    },
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{text:?} is not key=value"))
}

struct Client {
    http: reqwest::Client,
    args: ClientArgs,
}

impl Client {
    fn new(args: ClientArgs) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Client { http, args })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.args.server.trim_end_matches('/'))
    }

    fn ns(&self) -> &str {
        &self.args.namespace
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut request = self.http.request(method.clone(), self.url(path));
        if let Some(token) = &self.args.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.with_context(|| {
            format!(
                "cannot reach Sluice at {} (is `sluice up` running? see --server)",
                self.args.server
            )
        })?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status >= 400 {
            let message = value
                .pointer("/error/message")
                .and_then(Value::as_str)
                .map_or_else(|| value.to_string(), str::to_owned);
            bail!("{method} {path}: {status}: {message}");
        }
        Ok((status, value))
    }

    /// GETs `path`; with `-o json` prints the answer and gives `None` (nothing more
    /// to print), else gives the answer for a table.
    async fn get_unless_json(&self, path: &str) -> anyhow::Result<Option<Value>> {
        let (_, value) = self.call(reqwest::Method::GET, path, None).await?;
        if self.args.output == Output::Json {
            self.print_json(&value);
            return Ok(None);
        }
        Ok(Some(value))
    }

    fn print_json(&self, value: &Value) {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
    }
}

/// Prints rows as aligned columns.
fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(headers.iter().map(|h| (*h).to_owned()).collect());
    for row in rows {
        line(row);
    }
}

fn text(value: &Value, pointer: &str) -> String {
    match value.pointer(pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// The elements of the array `value[field]` (none when it is missing).
fn items<'a>(value: &'a Value, field: &str) -> impl Iterator<Item = &'a Value> {
    value[field].as_array().into_iter().flatten()
}

fn labels_text(value: &Value) -> String {
    value
        .as_object()
        .map(|map| {
            map.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// Runs `sluice svc ...`.
pub async fn svc(args: ClientArgs, command: SvcCommand) -> anyhow::Result<()> {
    let client = Client::new(args)?;
    let ns = client.ns().to_owned();
    match command {
        SvcCommand::Ls => {
            let Some(value) = client
                .get_unless_json(&format!("/v1/namespaces/{ns}/services"))
                .await?
            else {
                return Ok(());
            };
            let rows = items(&value, "services")
                .map(|s| {
                    vec![
                        text(s, "/name"),
                        text(s, "/healthy"),
                        text(s, "/total"),
                        text(s, "/draining"),
                    ]
                })
                .collect();
            table(&["SERVICE", "HEALTHY", "TOTAL", "DRAINING"], rows);
        }
        SvcCommand::Show { name } => {
            let path = format!("/v1/namespaces/{ns}/services/{name}/instances?all=true");
            let Some(value) = client.get_unless_json(&path).await? else {
                return Ok(());
            };
            let rows = items(&value, "instances")
                .map(|i| {
                    vec![
                        text(i, "/id"),
                        text(i, "/address"),
                        text(i, "/weight"),
                        text(i, "/healthy"),
                        text(i, "/draining"),
                        if i["ephemeral"].as_bool() == Some(true) {
                            "ephemeral".into()
                        } else {
                            "persistent".into()
                        },
                        labels_text(&i["labels"]),
                    ]
                })
                .collect();
            table(
                &[
                    "ID", "ADDRESS", "WEIGHT", "HEALTHY", "DRAINING", "KIND", "LABELS",
                ],
                rows,
            );
        }
        SvcCommand::Register {
            name,
            address,
            id,
            ttl,
            check_http,
            check_tcp,
            check_interval,
            labels,
            weight,
        } => {
            let id = id.unwrap_or_else(|| {
                address
                    .replace(['.', ':', '[', ']'], "-")
                    .trim_matches('-')
                    .to_owned()
            });
            let mut body = json!({"address": address});
            if let Some(ttl) = ttl {
                body["ephemeral"] = json!(true);
                body["ttl"] = json!(ttl);
            }
            let check = match (check_http, check_tcp) {
                (Some(path), _) => Some(json!({"type": "http", "path": path})),
                (None, true) => Some(json!({"type": "tcp"})),
                (None, false) => None,
            };
            if let Some(mut check) = check {
                if let Some(interval) = check_interval {
                    check["interval"] = json!(interval);
                }
                body["check"] = check;
            }
            if !labels.is_empty() {
                body["labels"] = json!(labels.into_iter().collect::<BTreeMap<_, _>>());
            }
            if let Some(weight) = weight {
                body["weight"] = json!(weight);
            }
            let path = format!("/v1/namespaces/{ns}/services/{name}/instances/{id}");
            let (status, value) = client
                .call(reqwest::Method::PUT, &path, Some(&body))
                .await?;
            if client.args.output == Output::Json {
                client.print_json(&value);
            } else {
                let verb = if status == 201 {
                    "registered"
                } else {
                    "updated"
                };
                println!("{verb} {ns}/{name}/{id} at {address}");
                if body["ephemeral"] == json!(true) {
                    println!(
                        "heartbeat with: curl -X PUT {}{path}/heartbeat",
                        client.args.server.trim_end_matches('/')
                    );
                }
            }
        }
        SvcCommand::Drain { name, id, undo } => {
            let path = format!("/v1/namespaces/{ns}/services/{name}/instances/{id}");
            let (_, value) = client
                .call(
                    reqwest::Method::PATCH,
                    &path,
                    Some(&json!({"draining": !undo})),
                )
                .await?;
            if client.args.output == Output::Json {
                client.print_json(&value);
            } else {
                println!(
                    "{} {ns}/{name}/{id}",
                    if undo { "undrained" } else { "draining" }
                );
            }
        }
        SvcCommand::Deregister { name, id } => {
            let path = format!("/v1/namespaces/{ns}/services/{name}/instances/{id}");
            client.call(reqwest::Method::DELETE, &path, None).await?;
            println!("deregistered {ns}/{name}/{id}");
        }
    }
    Ok(())
}

/// Runs `sluice apply -f FILE` (YAML or JSON, several documents allowed).
pub async fn apply(args: ClientArgs, file: PathBuf) -> anyhow::Result<()> {
    let client = Client::new(args)?;
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("cannot read standard input")?
    } else {
        std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?
    };
    let mut documents = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(&text).enumerate() {
        let value = <serde_yaml::Value as serde::Deserialize>::deserialize(document)
            .with_context(|| format!("{} document {}: invalid YAML", file.display(), index + 1))?;
        if value.is_null() {
            continue;
        }
        documents.push(serde_json::to_value(value).with_context(|| {
            format!(
                "{} document {}: not representable as JSON",
                file.display(),
                index + 1
            )
        })?);
    }
    if documents.is_empty() {
        bail!("{} holds no resources", file.display());
    }
    for (index, document) in documents.iter().enumerate() {
        let place = format!("{} document {}", file.display(), index + 1);
        let kind = document["kind"]
            .as_str()
            .with_context(|| format!("{place}: missing \"kind\""))?;
        let name = document
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .with_context(|| format!("{place}: missing \"metadata.name\""))?;
        let ns = document
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or(client.ns());
        let spec = document
            .get("spec")
            .with_context(|| format!("{place}: missing \"spec\""))?;
        let mut body = json!({"spec": spec});
        if let Some(labels) = document.pointer("/metadata/labels") {
            body["metadata"] = json!({"labels": labels});
        }
        let path = format!("/v1/namespaces/{ns}/resources/{kind}/{name}");
        let before = client
            .call(reqwest::Method::GET, &path, None)
            .await
            .ok()
            .map(|(_, v)| v["metadata"]["revision"].clone());
        let (status, value) = client
            .call(reqwest::Method::PUT, &path, Some(&body))
            .await
            .with_context(|| place.clone())?;
        let outcome = match (status, before) {
            (201, _) => "created",
            (_, Some(revision)) if revision == value["metadata"]["revision"] => "unchanged",
            _ => "configured",
        };
        println!(
            "{kind}/{ns}/{name} {outcome} (revision {})",
            value["metadata"]["revision"]
        );
    }
    Ok(())
}

/// Runs `sluice get KIND [NAME]`.
pub async fn get(args: ClientArgs, kind: String, name: Option<String>) -> anyhow::Result<()> {
    let client = Client::new(args)?;
    let ns = client.ns().to_owned();
    match name {
        Some(name) => {
            let (_, value) = client
                .call(
                    reqwest::Method::GET,
                    &format!("/v1/namespaces/{ns}/resources/{kind}/{name}"),
                    None,
                )
                .await?;
            if client.args.output == Output::Json {
                client.print_json(&value);
            } else {
                print!("{}", serde_yaml::to_string(&value).unwrap_or_default());
            }
        }
        None => {
            let Some(value) = client
                .get_unless_json(&format!("/v1/namespaces/{ns}/resources/{kind}"))
                .await?
            else {
                return Ok(());
            };
            let rows = items(&value, "items")
                .map(|r| {
                    vec![
                        text(r, "/metadata/name"),
                        text(r, "/metadata/revision"),
                        labels_text(&r["metadata"]["labels"]),
                    ]
                })
                .collect();
            table(&["NAME", "REVISION", "LABELS"], rows);
        }
    }
    Ok(())
}

/// `sluice ban`: bans of client addresses or header values, as `Ban` resources.
#[derive(Debug, clap::Subcommand)]
pub enum BanCommand {
    /// Ban an IP address or CIDR block (or, with --header, a header value).
    Add {
        /// The address or block, such as 203.0.113.7 or 203.0.113.0/24; with --header, the value.
        target: String,
        /// Ban this header's value instead of an address (such as x-api-key).
        #[arg(long)]
        header: Option<String>,
        /// How long (such as 10m, 2h); without it, until removed.
        #[arg(long = "for")]
        duration: Option<String>,
        /// Only on this route.
        #[arg(long)]
        route: Option<String>,
        /// Why (shown in listings and logs).
        #[arg(long)]
        reason: Option<String>,
        /// The ban's name [default: derived from the target].
        #[arg(long)]
        name: Option<String>,
    },
    /// List bans, with whether each is still in force.
    Ls,
    /// Lift a ban.
    Rm {
        /// The ban's name.
        name: String,
    },
}

/// Unix milliseconds `--for DURATION` from now.
fn ends_after(duration: &str) -> anyhow::Result<i64> {
    let length =
        sluice_model::duration_text::parse(duration).map_err(|e| anyhow::anyhow!("--for: {e}"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    Ok(i64::try_from(now + length.as_millis())?)
}

/// A resource name for a ban target: `203.0.113.0/24` → `ban-203-0-113-0-24`.
fn ban_name(target: &str) -> String {
    let mut name: String = target
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    name = name.trim_matches('-').to_owned();
    name.truncate(58);
    format!("ban-{name}")
}

/// Runs a `sluice ban` command.
pub async fn ban(args: ClientArgs, command: BanCommand) -> anyhow::Result<()> {
    let client = Client::new(args)?;
    let ns = client.ns().to_owned();
    match command {
        BanCommand::Add {
            target,
            header,
            duration,
            route,
            reason,
            name,
        } => {
            let mut spec = serde_json::Map::new();
            match &header {
                Some(header) => {
                    spec.insert("header".into(), header.clone().into());
                    spec.insert("value".into(), target.clone().into());
                }
                None => {
                    spec.insert("ip".into(), target.clone().into());
                }
            }
            if let Some(duration) = duration {
                let until = ends_after(&duration)?;
                spec.insert("expires_at".into(), sluice_model::format_time(until).into());
            }
            if let Some(route) = route {
                spec.insert("route".into(), route.into());
            }
            if let Some(reason) = reason {
                spec.insert("reason".into(), reason.into());
            }
            let name = name.unwrap_or_else(|| match &header {
                Some(header) => ban_name(&format!("{header}-{target}")),
                None => ban_name(&target),
            });
            let body = serde_json::json!({ "spec": spec });
            let path = format!("/v1/namespaces/{ns}/resources/Ban/{name}");
            let (_, value) = client
                .call(reqwest::Method::PUT, &path, Some(&body))
                .await?;
            if client.args.output == Output::Json {
                client.print_json(&value);
            } else {
                println!("banned {target} as Ban/{name}");
            }
        }
        BanCommand::Ls => {
            let path = format!("/v1/namespaces/{ns}/resources/Ban");
            let Some(value) = client.get_unless_json(&path).await? else {
                return Ok(());
            };
            let now = i64::try_from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)?
                    .as_millis(),
            )?;
            let rows = items(&value, "items")
                .map(|item| {
                    let spec = &item["spec"];
                    let target = match spec["ip"].as_str() {
                        Some(ip) => ip.to_owned(),
                        None => format!("{}={}", text(spec, "/header"), text(spec, "/value")),
                    };
                    let expires = spec["expires_at"].as_str();
                    let in_force = expires
                        .and_then(|t| sluice_model::parse_time(t).ok())
                        .is_none_or(|until| until > now);
                    vec![
                        text(item, "/metadata/name"),
                        target,
                        spec["route"].as_str().unwrap_or("*").to_owned(),
                        expires.unwrap_or("never").to_owned(),
                        if in_force { "yes" } else { "expired" }.to_owned(),
                        spec["reason"].as_str().unwrap_or("").to_owned(),
                    ]
                })
                .collect();
            table(
                &["NAME", "TARGET", "ROUTE", "EXPIRES", "IN FORCE", "REASON"],
                rows,
            );
        }
        BanCommand::Rm { name } => {
            let path = format!("/v1/namespaces/{ns}/resources/Ban/{name}");
            client.call(reqwest::Method::DELETE, &path, None).await?;
            println!("lifted Ban/{name}");
        }
    }
    Ok(())
}

/// Formats a number for the board: up to 2 decimals, `-` when absent.
fn figure(value: &Value) -> String {
    match value.as_f64() {
        Some(v) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{v:.0}"),
        Some(v) => format!("{v:.2}"),
        None => "-".to_owned(),
    }
}

fn percent(value: &Value) -> String {
    value
        .as_f64()
        .map_or("-".to_owned(), |v| format!("{:.2}%", v * 100.0))
}

/// Runs `sluice health`: the API-health board as tables.
pub async fn health(
    args: ClientArgs,
    service: Option<String>,
    window: String,
) -> anyhow::Result<()> {
    let client = Client::new(args)?;
    let ns = client.ns().to_owned();
    let mut path = format!("/v1/namespaces/{ns}/health?window={window}");
    if let Some(service) = &service {
        path.push_str(&format!("&service={service}"));
    }
    let Some(board) = client.get_unless_json(&path).await? else {
        return Ok(());
    };
    let scope = service.map_or_else(|| format!("namespace {ns}"), |s| format!("service {s}"));
    println!(
        "{scope}, last {window}: {} requests, {} qps, errors {}, p50 {} ms, p98 {} ms, p99 {} ms",
        figure(&board["requests"]),
        figure(&board["qps"]),
        percent(&board["error_rate"]),
        figure(&board["p50_ms"]),
        figure(&board["p98_ms"]),
        figure(&board["p99_ms"]),
    );
    let codes: Vec<String> = board["codes"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(code, n)| format!("{code}={n}"))
        .collect();
    println!(
        "codes: {}",
        if codes.is_empty() {
            "-".to_owned()
        } else {
            codes.join(" ")
        }
    );
    println!();
    let apis = items(&board, "top_apis")
        .map(|a| {
            vec![
                text(a, "/api"),
                text(a, "/service"),
                figure(&a["qps"]),
                figure(&a["p98_ms"]),
                percent(&a["error_rate"]),
            ]
        })
        .collect();
    table(&["TOP API", "SERVICE", "QPS", "P98 MS", "ERRORS"], apis);
    println!();
    let rows = |scopes: &Value, names: &[&str]| -> Vec<Vec<String>> {
        scopes
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                let mut row: Vec<String> =
                    names.iter().map(|n| text(s, &format!("/{n}"))).collect();
                row.extend([
                    figure(&s["qps"]),
                    percent(&s["error_rate"]),
                    figure(&s["p50_ms"]),
                    figure(&s["p98_ms"]),
                    figure(&s["p99_ms"]),
                ]);
                row
            })
            .collect()
    };
    table(
        &["SERVICE", "QPS", "ERRORS", "P50 MS", "P98 MS", "P99 MS"],
        rows(&board["services"], &["service"]),
    );
    println!();
    table(
        &[
            "SERVICE", "INSTANCE", "QPS", "ERRORS", "P50 MS", "P98 MS", "P99 MS",
        ],
        rows(&board["instances"], &["service", "instance"]),
    );
    Ok(())
}

/// `sluice alarms`: firing and past alarms, acknowledging one.
#[derive(Debug, clap::Subcommand)]
pub enum AlarmsCommand {
    /// List alarms (default: firing ones).
    Ls {
        /// firing, pending, resolved or all.
        #[arg(long, default_value = "firing")]
        state: String,
    },
    /// Acknowledge an alarm: no repeated notifications while it keeps firing.
    Ack {
        /// The alarm's ID (from `sluice alarms ls`).
        id: String,
    },
}

/// Runs `sluice alarms ...`.
pub async fn alarms(args: ClientArgs, command: AlarmsCommand) -> anyhow::Result<()> {
    let client = Client::new(args)?;
    let ns = client.ns().to_owned();
    match command {
        AlarmsCommand::Ls { state } => {
            let path = format!("/v1/namespaces/{ns}/alarms?state={state}");
            let Some(value) = client.get_unless_json(&path).await? else {
                return Ok(());
            };
            let rows = items(&value, "items")
                .map(|a| {
                    vec![
                        text(a, "/id"),
                        text(a, "/rule"),
                        text(a, "/state"),
                        labels_text(&a["labels"]),
                        figure(&a["value"]),
                        text(a, "/count"),
                        text(a, "/first_seen"),
                        text(a, "/last_seen"),
                        if a["acknowledged"].as_bool() == Some(true) {
                            "yes"
                        } else {
                            ""
                        }
                        .to_owned(),
                    ]
                })
                .collect();
            table(
                &[
                    "ID",
                    "RULE",
                    "STATE",
                    "LABELS",
                    "VALUE",
                    "COUNT",
                    "FIRST SEEN",
                    "LAST SEEN",
                    "ACK",
                ],
                rows,
            );
        }
        AlarmsCommand::Ack { id } => {
            let path = format!("/v1/namespaces/{ns}/alarms/{id}/ack");
            client.call(reqwest::Method::POST, &path, None).await?;
            println!("acknowledged alarm {id}");
        }
    }
    Ok(())
}

/// `sluice mute`: silence notifications of matching alarms for a while.
#[derive(Debug, clap::Subcommand)]
pub enum MuteCommand {
    /// Mute alarms matching every --match (label=value; `rule=NAME` for a rule).
    Add {
        /// A matcher, label=value (repeatable).
        #[arg(long = "match", value_parser = parse_label, required = true)]
        matching: Vec<(String, String)>,
        /// How long (such as 30m, 2h).
        #[arg(long = "for", default_value = "1h")]
        duration: String,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
        /// The mute's name [default: mute-<time>].
        #[arg(long)]
        name: Option<String>,
    },
    /// List mutes.
    Ls,
    /// Lift a mute.
    Rm {
        /// The mute's name.
        name: String,
    },
}

/// Runs `sluice mute ...`.
pub async fn mute(args: ClientArgs, command: MuteCommand) -> anyhow::Result<()> {
    let client = Client::new(args)?;
    let ns = client.ns().to_owned();
    let now_ms = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis(),
    )?;
    match command {
        MuteCommand::Add {
            matching,
            duration,
            reason,
            name,
        } => {
            let ends = ends_after(&duration)?;
            let name = name.unwrap_or_else(|| format!("mute-{}", now_ms / 1000));
            let body = json!({"spec": {
                "match": matching.into_iter().collect::<BTreeMap<_, _>>(),
                "ends_at": sluice_model::format_time(ends),
                "created_by": std::env::var("USER").unwrap_or_else(|_| "sluice-cli".to_owned()),
                "reason": reason,
            }});
            let path = format!("/v1/namespaces/{ns}/resources/Mute/{name}");
            client
                .call(reqwest::Method::PUT, &path, Some(&body))
                .await?;
            println!(
                "muted as Mute/{name} until {}",
                sluice_model::format_time(ends)
            );
        }
        MuteCommand::Ls => {
            let path = format!("/v1/namespaces/{ns}/resources/Mute");
            let Some(value) = client.get_unless_json(&path).await? else {
                return Ok(());
            };
            let rows = items(&value, "items")
                .map(|item| {
                    let spec = &item["spec"];
                    let ends = spec["ends_at"].as_str().unwrap_or("");
                    let active = sluice_model::parse_time(ends).is_ok_and(|t| t > now_ms);
                    vec![
                        text(item, "/metadata/name"),
                        labels_text(&spec["match"]),
                        ends.to_owned(),
                        if active { "yes" } else { "ended" }.to_owned(),
                        text(spec, "/created_by"),
                        text(spec, "/reason"),
                    ]
                })
                .collect();
            table(&["NAME", "MATCH", "ENDS", "ACTIVE", "BY", "REASON"], rows);
        }
        MuteCommand::Rm { name } => {
            let path = format!("/v1/namespaces/{ns}/resources/Mute/{name}");
            client.call(reqwest::Method::DELETE, &path, None).await?;
            println!("lifted Mute/{name}");
        }
    }
    Ok(())
}

/// `sluice errors`: error groups from error reports.
#[derive(Debug, clap::Subcommand)]
pub enum ErrorsCommand {
    /// List error groups, most recent first.
    Ls,
    /// Show one group with its stack and sample events.
    Show {
        /// The group's fingerprint (from `sluice errors ls`).
        fingerprint: String,
    },
}

/// Runs `sluice errors ...`.
pub async fn errors(args: ClientArgs, command: ErrorsCommand) -> anyhow::Result<()> {
    let client = Client::new(args)?;
    let ns = client.ns().to_owned();
    match command {
        ErrorsCommand::Ls => {
            let Some(value) = client
                .get_unless_json(&format!("/v1/namespaces/{ns}/errors"))
                .await?
            else {
                return Ok(());
            };
            let rows = items(&value, "items")
                .map(|g| {
                    vec![
                        text(g, "/fingerprint"),
                        text(g, "/type"),
                        text(g, "/message").chars().take(60).collect(),
                        text(g, "/culprit"),
                        text(g, "/count"),
                        text(g, "/first_seen"),
                        text(g, "/last_seen"),
                    ]
                })
                .collect();
            table(
                &[
                    "FINGERPRINT",
                    "TYPE",
                    "MESSAGE",
                    "WHERE",
                    "COUNT",
                    "FIRST SEEN",
                    "LAST SEEN",
                ],
                rows,
            );
        }
        ErrorsCommand::Show { fingerprint } => {
            let path = format!("/v1/namespaces/{ns}/errors/{fingerprint}");
            let Some(group) = client.get_unless_json(&path).await? else {
                return Ok(());
            };
            println!(
                "{}: {}\n{} events, first {}, last {}",
                text(&group, "/type"),
                text(&group, "/message"),
                text(&group, "/count"),
                text(&group, "/first_seen"),
                text(&group, "/last_seen"),
            );
            println!("stack (innermost last):");
            for frame in group["frames"].as_array().into_iter().flatten() {
                println!(
                    "  {} {} in {}{}",
                    if frame["in_app"].as_bool() == Some(true) {
                        "*"
                    } else {
                        " "
                    },
                    text(frame, "/function"),
                    text(frame, "/module"),
                    frame["lineno"]
                        .as_u64()
                        .map_or(String::new(), |l| format!(":{l}")),
                );
            }
        }
    }
    Ok(())
}
