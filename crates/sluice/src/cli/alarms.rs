//! `sluice alarms ...`: firing and past alarms; acknowledging one.

use super::*;

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
pub async fn run(args: ClientArgs, command: AlarmsCommand) -> anyhow::Result<()> {
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
