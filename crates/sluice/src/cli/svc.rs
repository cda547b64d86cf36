//! `sluice svc ...`: services and instances — list, show, register, deregister,
//! heartbeat, drain.

use super::*;

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

/// Runs `sluice svc ...`.
pub async fn run(args: ClientArgs, command: SvcCommand) -> anyhow::Result<()> {
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
