//! Following a prefix: list it, then watch it from the list's revision, and start
//! over with a fresh list when the watch falls behind compaction.
//!
//! Every consumer of the store (the registry's view, resource indexes, later the
//! gateway's snapshot) holds a complete copy of a prefix this way. Pages of a long
//! list are read at their own revisions, so an event may repeat a change the list
//! already showed: consumers ignore an event whose revision is not newer than what
//! they hold for that key.

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};

use crate::{KeyValue, RangeOptions, Revision, Store, StoreError, WatchEvent};

/// What a follower hands its consumer.
#[derive(Debug)]
pub enum FollowUpdate {
    /// Replace everything held with these keys, read at `revision`.
    Snapshot {
        /// Every key under the prefix.
        kvs: Vec<KeyValue>,
        /// The revision of the (first page of the) list.
        revision: Revision,
    },
    /// The changes of one revision after the snapshot (a transaction's changes
    /// arrive together, so a consumer never shows half of one).
    Events(Vec<WatchEvent>),
}

/// Follows `prefix` until the store closes, calling `apply` with a snapshot and then
/// with every change. Transient store errors are retried with backoff.
pub async fn follow(
    store: Arc<dyn Store>,
    prefix: String,
    mut apply: impl FnMut(FollowUpdate) + Send,
) {
    let mut backoff = Duration::from_millis(50);
    'relist: loop {
        let (kvs, revision) = match list_all(&*store, &prefix).await {
            Ok(listed) => listed,
            Err(StoreError::Closed) => return,
            Err(error) => {
                tracing::warn!(%error, prefix, "listing failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        apply(FollowUpdate::Snapshot { kvs, revision });
        let mut last = revision;
        loop {
            let stream = match store.watch(&prefix, Some(last)).await {
                Ok(stream) => stream,
                Err(StoreError::Closed) => return,
                Err(StoreError::Compacted { .. }) => continue 'relist,
                Err(error) => {
                    tracing::warn!(%error, prefix, "watch failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            backoff = Duration::from_millis(50);
            let mut stream = stream.peekable();
            while let Some(item) = stream.next().await {
                match item {
                    Ok(event) => {
                        let revision = event.revision();
                        let mut batch = vec![event];
                        // Both backends deliver a revision's events together: take the rest
                        // of this revision that is already here.
                        while let Some(Some(Ok(more))) = std::pin::Pin::new(&mut stream)
                            .next_if(|next| matches!(next, Ok(e) if e.revision() == revision))
                            .now_or_never()
                        {
                            batch.push(more);
                        }
                        last = last.max(revision);
                        apply(FollowUpdate::Events(batch));
                    }
                    Err(StoreError::Closed) => return,
                    Err(StoreError::Compacted { .. }) => continue 'relist,
                    Err(error) => {
                        tracing::warn!(%error, prefix, "watch broke; resuming");
                        break;
                    }
                }
            }
            tokio::time::sleep(backoff).await;
        }
    }
}

/// Reads every key under `prefix`, page by page; the revision is the first page's.
pub async fn list_all(
    store: &dyn Store,
    prefix: &str,
) -> Result<(Vec<KeyValue>, Revision), StoreError> {
    let mut options = RangeOptions::default();
    let mut kvs = Vec::new();
    let mut revision = None;
    loop {
        let page = store.range(prefix, options.clone()).await?;
        revision.get_or_insert(page.revision);
        kvs.extend(page.kvs);
        match page.next {
            Some(next) => options.after = Some(next),
            None => return Ok((kvs, revision.unwrap_or(0))),
        }
    }
}
