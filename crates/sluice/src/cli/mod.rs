//! The command line's client commands, one module per command group. They talk
//! to the admin API through [`Client`]; tables for people by default, `-o json`
//! for scripts. This module holds what every group shares: where and how to reach
//! Sluice ([`ClientArgs`]), the client, and table formatting.

pub mod alarms;
pub mod ban;
pub mod config;
pub mod errors;
pub mod health;
pub mod mute;
pub mod resources;
pub mod store;
pub mod svc;
pub mod trace;

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

struct Client {
    control: sluice_client::ControlPlane,
    args: ClientArgs,
}

impl Client {
    fn new(args: ClientArgs) -> anyhow::Result<Self> {
        // `--server` may name several nodes (comma-separated): the first that
        // answers is used.
        let nodes = args.server.split(',').map(str::to_owned).collect();
        let control = sluice_client::ControlPlane::new(
            nodes,
            args.token.clone(),
            std::time::Duration::from_secs(600),
        )
        .context("cannot build the HTTP client")?;
        Ok(Client { control, args })
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
        use sluice_client::ClientError;
        match self.control.request(method.clone(), path, body).await {
            Ok(answer) => {
                let value = serde_json::from_slice(&answer.body).unwrap_or_else(|_| {
                    Value::String(String::from_utf8_lossy(&answer.body).into_owned())
                });
                Ok((answer.status, value))
            }
            Err(
                ClientError::Api {
                    status, message, ..
                }
                | ClientError::Server {
                    status, message, ..
                },
            ) => bail!("{method} {path}: {status}: {message}"),
            Err(error) => Err(anyhow::Error::new(error).context(format!(
                "cannot reach Sluice at {} (is `sluice up` running? see --server)",
                self.args.server
            ))),
        }
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

/// Formats a number for the board: up to 2 decimals, `-` when absent.
fn figure(value: &Value) -> String {
    match value.as_f64() {
        Some(v) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{v:.0}"),
        Some(v) => format!("{v:.2}"),
        None => "-".to_owned(),
    }
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{text:?} is not key=value"))
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
