//! `sluice ban ...`: bans of client addresses or header values, as `Ban` resources.

use super::*;

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
pub async fn run(args: ClientArgs, command: BanCommand) -> anyhow::Result<()> {
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
