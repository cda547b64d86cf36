//! `sluice mute ...`: silencing notifications of matching alarms for a while.

use super::*;

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
pub async fn run(args: ClientArgs, command: MuteCommand) -> anyhow::Result<()> {
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
