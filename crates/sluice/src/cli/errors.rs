//! `sluice errors ...`: error groups from error reports.

use super::*;

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
pub async fn run(args: ClientArgs, command: ErrorsCommand) -> anyhow::Result<()> {
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
