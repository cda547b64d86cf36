//! `sluice config ...`: the config center from the command line — read, publish
//! (from a file, stdin or `$EDITOR`, with the diff shown first), history, diffs,
//! rollback, gray candidates and watches. Items are named `GROUP/KEY` in the
//! namespace `-n` selects.

use std::io::{Read, Write};

use super::*;

/// `sluice config`: configuration items.
#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// List the namespace's items.
    Ls,
    /// Print an item's content (the version this client would be served).
    Get {
        /// GROUP/KEY.
        item: String,
        /// Labels to be served as (`canary=true,zone=a`), for gray rules.
        #[arg(long)]
        labels: Option<String>,
        /// A kept version instead of the served one.
        #[arg(long)]
        at: Option<u64>,
    },
    /// Publish a new version from FILE (`-` or nothing: stdin).
    Put {
        /// GROUP/KEY.
        item: String,
        /// The content's file.
        file: Option<PathBuf>,
        /// Format: text, json, yaml, toml, properties [default: from the key's extension].
        #[arg(long)]
        format: Option<String>,
        /// A comment for the history.
        #[arg(short, long)]
        message: Option<String>,
        /// Mark the item secret (sealed in the store, masked in lists).
        #[arg(long)]
        secret: bool,
    },
    /// Edit the item in $EDITOR, show the diff, and publish when confirmed.
    Edit {
        /// GROUP/KEY.
        item: String,
        /// A comment for the history.
        #[arg(short, long)]
        message: Option<String>,
        /// Publish without asking.
        #[arg(short, long)]
        yes: bool,
    },
    /// The diff between two kept versions (default: the released one and the one before).
    Diff {
        /// GROUP/KEY.
        item: String,
        /// From this version.
        from: Option<u64>,
        /// To this version.
        to: Option<u64>,
    },
    /// The kept versions, newest first, and the audit trail.
    History {
        /// GROUP/KEY.
        item: String,
    },
    /// Publish a new version with the content of a kept one.
    Rollback {
        /// GROUP/KEY.
        item: String,
        /// The kept version to go back to.
        to: u64,
    },
    /// Publish a gray candidate from FILE for the clients the rule matches.
    Gray {
        /// GROUP/KEY.
        item: String,
        /// The content's file (`-` or nothing: stdin).
        file: Option<PathBuf>,
        /// Clients with these labels (`canary=true,zone=a`).
        #[arg(long)]
        labels: Option<String>,
        /// Clients at these addresses or blocks (`10.0.0.7,10.1.0.0/16`).
        #[arg(long, value_delimiter = ',')]
        addresses: Vec<String>,
        /// This percentage of client ids.
        #[arg(long)]
        percent: Option<f64>,
        /// Format [default: the key's extension].
        #[arg(long)]
        format: Option<String>,
        /// A comment for the history.
        #[arg(short, long)]
        message: Option<String>,
    },
    /// Release the gray candidate to every client.
    Promote {
        /// GROUP/KEY.
        item: String,
    },
    /// Drop the gray candidate: its clients go back to the released version.
    Abort {
        /// GROUP/KEY.
        item: String,
    },
    /// Print the item's content now and every time it changes.
    Watch {
        /// GROUP/KEY.
        item: String,
        /// Labels to be served as.
        #[arg(long)]
        labels: Option<String>,
    },
    /// Delete the item (its audit trail stays).
    Rm {
        /// GROUP/KEY.
        item: String,
    },
}

fn item_path(ns: &str, item: &str) -> anyhow::Result<String> {
    let Some((group, key)) = item.split_once('/') else {
        bail!("{item:?} is not GROUP/KEY");
    };
    Ok(format!("/v1/namespaces/{ns}/configs/{group}/{key}"))
}

fn read_content(file: Option<&PathBuf>) -> anyhow::Result<String> {
    match file {
        Some(path) if path.as_os_str() != "-" => {
            std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
        }
        _ => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            Ok(text)
        }
    }
}

fn labels_query(labels: Option<&String>) -> String {
    labels.map_or_else(String::new, |l| format!("labels={l}"))
}

/// Runs `sluice config ...`.
pub async fn run(args: ClientArgs, command: ConfigCommand) -> anyhow::Result<()> {
    let client = Client::new(args)?;
    let ns = client.ns().to_owned();
    match command {
        ConfigCommand::Ls => list(&client, &ns).await,
        ConfigCommand::Get { item, labels, at } => {
            let base = item_path(&ns, &item)?;
            let path = match at {
                Some(v) => format!("{base}/versions/{v}"),
                None => format!("{base}?{}", labels_query(labels.as_ref())),
            };
            let Some(value) = client.get_unless_json(&path).await? else {
                return Ok(());
            };
            print!("{}", text(&value, "/content"));
            Ok(())
        }
        ConfigCommand::Put {
            item,
            file,
            format,
            message,
            secret,
        } => {
            let mut body = json!({"content": read_content(file.as_ref())?});
            if let Some(format) = format {
                body["format"] = Value::from(format);
            }
            if let Some(message) = message {
                body["comment"] = Value::from(message);
            }
            if secret {
                body["secret"] = Value::from(true);
            }
            publish(&client, &item_path(&ns, &item)?, &body).await
        }
        ConfigCommand::Edit { item, message, yes } => {
            edit(&client, &item_path(&ns, &item)?, message, yes).await
        }
        ConfigCommand::Diff { item, from, to } => {
            let mut query = Vec::new();
            if let Some(from) = from {
                query.push(format!("from={from}"));
            }
            if let Some(to) = to {
                query.push(format!("to={to}"));
            }
            let path = format!("{}/diff?{}", item_path(&ns, &item)?, query.join("&"));
            let Some(value) = client.get_unless_json(&path).await? else {
                return Ok(());
            };
            print!("{}", text(&value, "/diff"));
            Ok(())
        }
        ConfigCommand::History { item } => history(&client, &item_path(&ns, &item)?).await,
        ConfigCommand::Rollback { item, to } => {
            let path = format!("{}/rollback", item_path(&ns, &item)?);
            let body = json!({"version": to});
            let (_, value) = client
                .call(reqwest::Method::POST, &path, Some(&body))
                .await?;
            done(&client, &value, "rolled back; published version");
            Ok(())
        }
        ConfigCommand::Gray {
            item,
            file,
            labels,
            addresses,
            percent,
            format,
            message,
        } => {
            let mut rule = json!({});
            if let Some(labels) = labels {
                let pairs: Result<BTreeMap<String, String>, String> =
                    labels.split(',').map(parse_label).collect();
                rule["labels"] = json!(pairs.map_err(|e| anyhow::anyhow!("--labels: {e}"))?);
            }
            if !addresses.is_empty() {
                rule["addresses"] = json!(addresses);
            }
            if let Some(percent) = percent {
                rule["percent"] = json!(percent);
            }
            let mut body = json!({"content": read_content(file.as_ref())?, "match": rule});
            if let Some(format) = format {
                body["format"] = Value::from(format);
            }
            if let Some(message) = message {
                body["comment"] = Value::from(message);
            }
            let path = format!("{}/gray", item_path(&ns, &item)?);
            let (_, value) = client
                .call(reqwest::Method::PUT, &path, Some(&body))
                .await?;
            done(&client, &value, "gray candidate is version");
            Ok(())
        }
        ConfigCommand::Promote { item } => {
            let path = format!("{}/gray/promote", item_path(&ns, &item)?);
            let (_, value) = client.call(reqwest::Method::POST, &path, None).await?;
            done(&client, &value, "promoted; every client now gets version");
            Ok(())
        }
        ConfigCommand::Abort { item } => {
            let path = format!("{}/gray/abort", item_path(&ns, &item)?);
            let (_, value) = client.call(reqwest::Method::POST, &path, None).await?;
            done(&client, &value, "aborted; clients are back on version");
            Ok(())
        }
        ConfigCommand::Watch { item, labels } => {
            watch(&client, &item_path(&ns, &item)?, labels.as_ref()).await
        }
        ConfigCommand::Rm { item } => {
            let (_, value) = client
                .call(reqwest::Method::DELETE, &item_path(&ns, &item)?, None)
                .await?;
            if client.args.output == Output::Json {
                client.print_json(&value);
            } else {
                println!("deleted {item}");
            }
            Ok(())
        }
    }
}

fn done(client: &Client, value: &Value, what: &str) {
    if client.args.output == Output::Json {
        client.print_json(value);
    } else {
        let version = if what.starts_with("aborted") {
            text(value, "/released")
        } else {
            text(value, "/version")
        };
        println!("{what} {version}");
    }
}

async fn publish(client: &Client, path: &str, body: &Value) -> anyhow::Result<()> {
    let (_, value) = client.call(reqwest::Method::PUT, path, Some(body)).await?;
    if client.args.output == Output::Json {
        client.print_json(&value);
    } else {
        println!(
            "published version {} (md5 {})",
            text(&value, "/version"),
            text(&value, "/md5")
        );
    }
    Ok(())
}

async fn list(client: &Client, ns: &str) -> anyhow::Result<()> {
    let Some(value) = client
        .get_unless_json(&format!("/v1/namespaces/{ns}/configs"))
        .await?
    else {
        return Ok(());
    };
    let rows = items(&value, "items")
        .map(|item| {
            vec![
                format!("{}/{}", text(item, "/group"), text(item, "/key")),
                text(item, "/released/format"),
                text(item, "/released/version"),
                text(item, "/gray/candidate/version"),
                if item["secret"].as_bool() == Some(true) {
                    "yes".into()
                } else {
                    String::new()
                },
                text(item, "/released/author"),
            ]
        })
        .collect();
    table(
        &["ITEM", "FORMAT", "VERSION", "GRAY", "SECRET", "AUTHOR"],
        rows,
    );
    Ok(())
}

async fn history(client: &Client, path: &str) -> anyhow::Result<()> {
    let Some(value) = client.get_unless_json(&format!("{path}/history")).await? else {
        return Ok(());
    };
    let rows = items(&value, "versions")
        .map(|v| {
            let state = if v["released"].as_bool() == Some(true) {
                "released"
            } else if v["candidate"].as_bool() == Some(true) {
                "gray"
            } else {
                ""
            };
            vec![
                text(v, "/version"),
                state.to_owned(),
                text(v, "/md5"),
                text(v, "/author"),
                text(v, "/published_ms"),
                text(v, "/comment"),
            ]
        })
        .collect();
    table(
        &[
            "VERSION",
            "STATE",
            "MD5",
            "AUTHOR",
            "PUBLISHED_MS",
            "COMMENT",
        ],
        rows,
    );
    Ok(())
}

async fn edit(
    client: &Client,
    path: &str,
    message: Option<String>,
    yes: bool,
) -> anyhow::Result<()> {
    let (_, current) = client.call(reqwest::Method::GET, path, None).await?;
    let old = text(&current, "/content");
    let version = current["version"].as_u64().unwrap_or(0);
    let dir = tempfile::tempdir()?;
    let key = path.rsplit('/').next().unwrap_or("item");
    let file = dir.path().join(key);
    std::fs::write(&file, &old)?;
    let editor = std::env::var("VISUAL")
        .or_else(|_| std::env::var("EDITOR"))
        .unwrap_or_else(|_| "vi".to_owned());
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(&file)
        .status()
        .with_context(|| format!("cannot run the editor {editor:?}"))?;
    if !status.success() {
        bail!("the editor exited with {status}; nothing published");
    }
    let new = std::fs::read_to_string(&file)?;
    if new == old {
        println!("no change; nothing published");
        return Ok(());
    }
    print!(
        "{}",
        sluice_config::unified_diff(&old, &new, &format!("version {version}"), "edited")
    );
    if !yes {
        print!("publish this? [y/N] ");
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            println!("nothing published");
            return Ok(());
        }
    }
    let mut body = json!({
        "content": new,
        "format": text(&current, "/format"),
        "expect_version": version,
    });
    if let Some(message) = message {
        body["comment"] = Value::from(message);
    }
    publish(client, path, &body).await
}

async fn watch(client: &Client, path: &str, labels: Option<&String>) -> anyhow::Result<()> {
    let labels = labels_query(labels);
    let mut held = 0u64;
    loop {
        let url = format!("{path}?version={held}&wait=60s&{labels}");
        match client.call(reqwest::Method::GET, &url, None).await {
            Ok((304, _)) => continue,
            Ok((_, value)) => {
                // The watermark moves only once the content is in hand.
                held = value["version"].as_u64().unwrap_or(held);
                if client.args.output == Output::Json {
                    client.print_json(&value);
                } else {
                    println!(
                        "--- version {}{} ---",
                        held,
                        if value["gray"].as_bool() == Some(true) {
                            " (gray)"
                        } else {
                            ""
                        }
                    );
                    print!("{}", text(&value, "/content"));
                }
                std::io::stdout().flush()?;
            }
            Err(error) => {
                eprintln!("sluice config watch: {error:#}; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }
}
