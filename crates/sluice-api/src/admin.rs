//! Node administration: `GET /v1/admin/backup` streams a backup of the whole
//! store (the format of `sluice_store::backup`, read at one revision) so a cron
//! job can take backups without shell access to the host. Admin tokens only
//! (checked in `auth`): a backup holds every namespace.

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use tokio::io::AsyncReadExt;

use crate::AppState;

/// Bytes the export may run ahead of the client.
const BUFFER: usize = 256 * 1024;

/// `GET /v1/admin/backup`: the backup, streamed as it is read. An export that
/// fails midway ends the body with an error (the client sees a broken transfer,
/// and a backup cut short is refused on import by its missing end line).
pub(crate) async fn backup(State(state): State<AppState>) -> Response {
    let (mut writer, reader) = tokio::io::duplex(BUFFER);
    let store = state.store.clone();
    let (outcome_tx, outcome) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let result = sluice_store::backup::export(&*store, &mut writer).await;
        if let Err(error) = &result {
            tracing::warn!(%error, "backup export failed");
        }
        let _ = outcome_tx.send(result.map(|_| ()).map_err(|e| e.to_string()));
    });
    let chunks = futures::stream::unfold(
        (reader, Some(outcome)),
        |(mut reader, outcome)| async move {
            let mut chunk = vec![0u8; 64 * 1024];
            match reader.read(&mut chunk).await {
                Ok(0) => {
                    // The export is over: say whether it finished.
                    let finished = match outcome?.await {
                        Ok(Ok(())) => return None,
                        Ok(Err(message)) => message,
                        Err(_) => "the export stopped".to_owned(),
                    };
                    Some((Err(std::io::Error::other(finished)), (reader, None)))
                }
                Ok(n) => {
                    chunk.truncate(n);
                    Some((Ok(axum::body::Bytes::from(chunk)), (reader, outcome)))
                }
                Err(error) => Some((Err(error), (reader, None))),
            }
        },
    );
    let name = format!(
        "attachment; filename=\"sluice-backup-{}.jsonl\"",
        sluice_model::format_time(unix_ms()).replace(':', "-")
    );
    (
        [
            (header::CONTENT_TYPE, "application/jsonl".to_owned()),
            (header::CONTENT_DISPOSITION, name),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        Body::from_stream(chunks),
    )
        .into_response()
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
