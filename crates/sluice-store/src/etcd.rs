//! The etcd v3 backend, for running Sluice on several machines.
//!
//! Everything maps onto etcd's own primitives: puts and deletes are etcd
//! transactions, leases are etcd leases (etcd expires them), and watches are etcd
//! watches. All keys live under a prefix (`/sluice/` unless the URL names another),
//! so several Sluice clusters can share one etcd. The client balances over every
//! endpoint given and retries calls that failed to reach a member; a watch that
//! loses its connection reopens from the last revision it delivered, skipping what
//! it already delivered, so its consumer sees every event exactly once.

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use etcd_client::{
    Client, Compare as EtcdCompare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions,
    Txn as EtcdTxn, TxnOp as EtcdTxnOp, WatchOptions,
};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::types::{validate_key, validate_prefix, validate_ttl};
use crate::{
    Compare, EventKind, KeyValue, LeaseId, RangeOptions, RangePage, Result, Revision, Store,
    StoreError, StoreSnapshot, Txn, TxnOp, TxnOutcome, WatchEvent, WatchStream,
};

const BACKEND: &str = "etcd";
/// etcd responses a watch buffers for a slow consumer before it stops reading from etcd.
const WATCH_BUFFER: usize = 256;

/// Timeouts of the etcd backend.
#[derive(Debug, Clone)]
pub struct EtcdOptions {
    /// How long to wait for a TCP connection to a member.
    pub connect_timeout: Duration,
    /// How long one store call may take, retries included.
    pub request_timeout: Duration,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        EtcdOptions {
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// A [`Store`] on an etcd v3 cluster.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    /// Prefix of every key in etcd, ending in `/`.
    root: String,
    endpoints: Vec<String>,
    options: EtcdOptions,
}

impl EtcdStore {
    /// Connects to the cluster at `endpoints` (`host:port`), keeping keys under
    /// `prefix` (a path such as `/sluice`), and checks that a member answers.
    pub async fn connect(endpoints: &[String], prefix: &str, options: EtcdOptions) -> Result<Self> {
        let url = format!("etcd://{}{prefix}", endpoints.join(","));
        let unavailable = |reason: String| StoreError::Unavailable {
            url: url.clone(),
            reason,
        };
        let urls: Vec<String> = endpoints.iter().map(|e| format!("http://{e}")).collect();
        let connect_options = ConnectOptions::new()
            .with_connect_timeout(options.connect_timeout)
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(3))
            .with_keep_alive_while_idle(true)
            .with_require_leader(true);
        let client = Client::connect(urls, Some(connect_options))
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        // Check that a member answers, giving up sooner than an ordinary call would:
        // a wrong address should fail fast.
        let mut store = EtcdStore {
            client,
            root: format!("{}/", prefix.trim_end_matches('/')),
            endpoints: endpoints.to_vec(),
            options: EtcdOptions {
                request_timeout: options.request_timeout.min(options.connect_timeout * 2),
                ..options.clone()
            },
        };
        store
            .current_revision()
            .await
            .map_err(|e| unavailable(format!("no member answered: {e}")))?;
        store.options = options;
        Ok(store)
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.root)
    }

    fn convert_kv(&self, kv: &etcd_client::KeyValue) -> Result<KeyValue> {
        let key = kv
            .key_str()
            .map_err(|e| StoreError::backend(BACKEND, format!("key is not UTF-8: {e}")))?;
        let key = key.strip_prefix(&self.root).ok_or_else(|| {
            StoreError::backend(BACKEND, format!("key {key:?} is outside {:?}", self.root))
        })?;
        Ok(KeyValue {
            key: key.to_owned(),
            value: kv.value().to_vec(),
            create_revision: revision_of(kv.create_revision()),
            mod_revision: revision_of(kv.mod_revision()),
            version: u64::try_from(kv.version()).unwrap_or(0),
            lease: (kv.lease() != 0).then_some(LeaseId(kv.lease())),
        })
    }

    /// Runs one etcd call, retrying while no member could be reached, within the
    /// request timeout. `idempotent` calls also retry after a member stopped answering.
    async fn call<T, F, Fut>(&self, idempotent: bool, mut call: F) -> Result<T>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = Instant::now() + self.options.request_timeout;
        let attempt_limit = if idempotent {
            self.options.request_timeout / 3
        } else {
            self.options.request_timeout
        };
        let mut backoff = Duration::from_millis(20);
        loop {
            let attempt_deadline = deadline.min(Instant::now() + attempt_limit);
            let error =
                match tokio::time::timeout_at(attempt_deadline, call(self.client.clone())).await {
                    Ok(Ok(value)) => return Ok(value),
                    Ok(Err(error)) if is_unreachable(&error) => map_error(error),
                    Ok(Err(error)) => return Err(map_error(error)),
                    Err(_) if idempotent => StoreError::backend(
                        BACKEND,
                        format!(
                            "no answer from {} within {attempt_limit:?}",
                            self.endpoints.join(",")
                        ),
                    ),
                    Err(_) => {
                        return Err(StoreError::backend(
                            BACKEND,
                            format!(
                                "no answer from {} within {:?}",
                                self.endpoints.join(","),
                                self.options.request_timeout
                            ),
                        ))
                    }
                };
            if Instant::now() + backoff >= deadline {
                return Err(error);
            }
            tracing::debug!(%error, "etcd call failed; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
    }

    async fn compacted_error(&self, requested: Revision) -> StoreError {
        // etcd reports the oldest kept revision only to a watch that starts before it.
        let root = self.root.clone();
        let oldest = self
            .call(true, |mut client| {
                let root = root.clone();
                async move {
                    let mut stream = client
                        .watch(
                            root,
                            Some(WatchOptions::new().with_prefix().with_start_revision(1)),
                        )
                        .await?;
                    while let Some(response) = stream.message().await? {
                        if response.compact_revision() > 0 {
                            return Ok(revision_of(response.compact_revision()));
                        }
                        if !response.events().is_empty() || response.canceled() {
                            break;
                        }
                    }
                    Ok(0)
                }
            })
            .await
            .unwrap_or(0);
        StoreError::Compacted { requested, oldest }
    }
}

fn revision_of(revision: i64) -> Revision {
    u64::try_from(revision).unwrap_or(0)
}

fn etcd_revision(revision: Revision) -> Result<i64> {
    i64::try_from(revision)
        .map_err(|_| StoreError::InvalidRequest(format!("revision {revision} is out of range")))
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Revision {
    header.map_or(0, |h| revision_of(h.revision()))
}

/// Whether the call failed before reaching a member that could serve it.
fn is_unreachable(error: &etcd_client::Error) -> bool {
    match error {
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        etcd_client::Error::GRpcStatus(status) => {
            status.code() == tonic_code_unavailable()
                || status.message().contains("no leader")
                || status.message().contains("leader changed")
        }
        _ => false,
    }
}

fn tonic_code_unavailable() -> tonic::Code {
    tonic::Code::Unavailable
}

fn map_error(error: etcd_client::Error) -> StoreError {
    if let etcd_client::Error::GRpcStatus(status) = &error {
        let message = status.message();
        if message.contains("required revision has been compacted") {
            return StoreError::Compacted {
                requested: 0,
                oldest: 0,
            };
        }
        return StoreError::backend(BACKEND, format!("{:?}: {message}", status.code()));
    }
    StoreError::backend(BACKEND, error)
}

/// Turns etcd's "lease not found" into [`StoreError::LeaseNotFound`].
fn lease_error(error: StoreError, lease: LeaseId) -> StoreError {
    match error {
        StoreError::Backend { message, .. } if message.contains("lease not found") => {
            StoreError::LeaseNotFound(lease)
        }
        error => error,
    }
}

/// The first key after every key that starts with `prefix`.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl EtcdStore {
    /// One page of `prefix`, at `revision` when given (etcd's MVCC read), else now.
    async fn range_at(
        &self,
        prefix: &str,
        options: RangeOptions,
        revision: Option<Revision>,
    ) -> Result<RangePage> {
        validate_prefix(prefix)?;
        let limit = options.page_size()?;
        let full_prefix = self.full_key(prefix);
        let start = match &options.after {
            Some(after) => {
                validate_key(after)?;
                let mut start = self.full_key(after).into_bytes();
                start.push(0);
                start
            }
            None => full_prefix.clone().into_bytes(),
        };
        let end = prefix_end(&full_prefix);
        let limit_i64 = i64::try_from(limit).unwrap_or(i64::MAX);
        let at = revision.map(etcd_revision).transpose()?;
        let response = self
            .call(true, |mut client| {
                let (start, end) = (start.clone(), end.clone());
                async move {
                    let mut get = GetOptions::new().with_range(end).with_limit(limit_i64);
                    if let Some(at) = at {
                        get = get.with_revision(at);
                    }
                    client.get(start, Some(get)).await
                }
            })
            .await?;
        let kvs = response
            .kvs()
            .iter()
            .map(|kv| self.convert_kv(kv))
            .collect::<Result<Vec<_>>>()?;
        let next = if response.more() {
            kvs.last().map(|kv| kv.key.clone())
        } else {
            None
        };
        Ok(RangePage {
            kvs,
            next,
            revision: revision.unwrap_or_else(|| header_revision(response.header())),
        })
    }
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        validate_key(key)?;
        let full = self.full_key(key);
        let response = self
            .call(true, |mut client| {
                let full = full.clone();
                async move { client.get(full, None).await }
            })
            .await?;
        response
            .kvs()
            .first()
            .map(|kv| self.convert_kv(kv))
            .transpose()
    }

    async fn range(&self, prefix: &str, options: RangeOptions) -> Result<RangePage> {
        self.range_at(prefix, options, None).await
    }

    async fn put(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> Result<Revision> {
        validate_key(key)?;
        crate::types::validate_value(key, &value)?;
        let full = self.full_key(key);
        let options = lease.map(|lease| PutOptions::new().with_lease(lease.0));
        let response = self
            .call(false, |mut client| {
                let (full, value, options) = (full.clone(), value.clone(), options.clone());
                async move { client.put(full, value, options).await }
            })
            .await
            .map_err(|error| match lease {
                Some(lease) => lease_error(error, lease),
                None => error,
            })?;
        Ok(header_revision(response.header()))
    }

    async fn delete(&self, key: &str) -> Result<Option<Revision>> {
        validate_key(key)?;
        let full = self.full_key(key);
        let response = self
            .call(false, |mut client| {
                let full = full.clone();
                async move { client.delete(full, None).await }
            })
            .await?;
        Ok((response.deleted() > 0).then(|| header_revision(response.header())))
    }

    async fn txn(&self, txn: Txn) -> Result<TxnOutcome> {
        txn.validate()?;
        let compares: Vec<EtcdCompare> = txn
            .compares
            .iter()
            .map(|compare| match compare {
                Compare::Absent(key) => {
                    EtcdCompare::version(self.full_key(key), CompareOp::Equal, 0)
                }
                Compare::Exists(key) => {
                    EtcdCompare::version(self.full_key(key), CompareOp::Greater, 0)
                }
                Compare::ModRevision(key, revision) => EtcdCompare::mod_revision(
                    self.full_key(key),
                    CompareOp::Equal,
                    i64::try_from(*revision).unwrap_or(i64::MAX),
                ),
                Compare::Value(key, value) => {
                    EtcdCompare::value(self.full_key(key), CompareOp::Equal, value.clone())
                }
            })
            .collect();
        let ops: Vec<EtcdTxnOp> = txn
            .ops
            .iter()
            .map(|op| match op {
                TxnOp::Put { key, value, lease } => EtcdTxnOp::put(
                    self.full_key(key),
                    value.clone(),
                    lease.map(|lease| PutOptions::new().with_lease(lease.0)),
                ),
                TxnOp::Delete { key } => EtcdTxnOp::delete(self.full_key(key), None),
            })
            .collect();
        let first_lease = txn.ops.iter().find_map(|op| match op {
            TxnOp::Put { lease, .. } => *lease,
            TxnOp::Delete { .. } => None,
        });
        let response = self
            .call(false, |mut client| {
                let request = EtcdTxn::new().when(compares.clone()).and_then(ops.clone());
                async move { client.txn(request).await }
            })
            .await
            .map_err(|error| match first_lease {
                Some(lease) => lease_error(error, lease),
                None => error,
            })?;
        Ok(TxnOutcome {
            succeeded: response.succeeded(),
            revision: header_revision(response.header()),
        })
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId> {
        validate_ttl(ttl)?;
        // etcd counts TTLs in whole seconds: round up, never expire early.
        let seconds = i64::try_from(ttl.as_millis().div_ceil(1000)).unwrap_or(i64::MAX);
        let response = self
            .call(false, |mut client| async move {
                client.lease_grant(seconds, None).await
            })
            .await?;
        Ok(LeaseId(response.id()))
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<Duration> {
        let ttl = self
            .call(true, |mut client| async move {
                let (mut keeper, mut responses) = client.lease_keep_alive(lease.0).await?;
                keeper.keep_alive().await?;
                Ok(responses.message().await?.map_or(0, |r| r.ttl()))
            })
            .await
            .map_err(|error| lease_error(error, lease))?;
        match u64::try_from(ttl) {
            Ok(seconds) if seconds > 0 => Ok(Duration::from_secs(seconds)),
            _ => Err(StoreError::LeaseNotFound(lease)),
        }
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<()> {
        self.call(true, |mut client| async move {
            client.lease_revoke(lease.0).await
        })
        .await
        .map(drop)
        .map_err(|error| lease_error(error, lease))
    }

    async fn watch(&self, prefix: &str, after: Option<Revision>) -> Result<WatchStream> {
        validate_prefix(prefix)?;
        let current = self.current_revision().await?;
        let start = match after {
            None => current + 1,
            Some(after) if after > current => {
                return Err(StoreError::FutureRevision {
                    requested: after,
                    current,
                })
            }
            Some(after) => after + 1,
        };
        if start <= current {
            // Ask for the start revision now, so a compacted start fails here, not in the stream.
            let full_prefix = self.full_key(prefix);
            let at = etcd_revision(start)?;
            let check = self
                .call(true, |mut client| {
                    let key = full_prefix.clone();
                    async move {
                        client
                            .get(
                                key,
                                Some(
                                    GetOptions::new()
                                        .with_prefix()
                                        .with_count_only()
                                        .with_revision(at),
                                ),
                            )
                            .await
                    }
                })
                .await;
            match check {
                Err(StoreError::Compacted { .. }) => return Err(self.compacted_error(start).await),
                Err(error) => return Err(error),
                Ok(_) => {}
            }
        }
        let (events, receiver) = mpsc::channel(WATCH_BUFFER);
        let follower = WatchFollower {
            store: self.clone(),
            full_prefix: self.full_key(prefix),
            last: None,
            start,
            delivered_at_last: HashSet::new(),
            events,
        };
        tokio::spawn(follower.run());
        Ok(tokio_stream_from(receiver))
    }

    async fn current_revision(&self) -> Result<Revision> {
        let key = self.root.clone();
        let response = self
            .call(true, |mut client| {
                let key = key.clone();
                async move {
                    client
                        .get(key, Some(GetOptions::new().with_count_only()))
                        .await
                }
            })
            .await?;
        Ok(header_revision(response.header()))
    }

    async fn snapshot(&self, prefix: &str) -> Result<StoreSnapshot<'_>> {
        let first = self.range_at(prefix, RangeOptions::default(), None).await?;
        let revision = first.revision;
        let prefix = prefix.to_owned();
        let pages = futures::stream::unfold(Some(Ok(first)), move |page| {
            let prefix = prefix.clone();
            async move {
                match page? {
                    Err(error) => Some((futures::stream::iter(vec![Err(error)]), None)),
                    Ok(page) => {
                        let next = match page.next {
                            Some(after) => Some(
                                self.range_at(
                                    &prefix,
                                    RangeOptions {
                                        limit: 0,
                                        after: Some(after),
                                    },
                                    Some(revision),
                                )
                                .await,
                            ),
                            None => None,
                        };
                        let kvs: Vec<Result<KeyValue>> = page.kvs.into_iter().map(Ok).collect();
                        Some((futures::stream::iter(kvs), next))
                    }
                }
            }
        });
        Ok(StoreSnapshot {
            revision,
            kvs: Box::pin(pages.flatten()),
        })
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let current = self.current_revision().await?;
        if revision > current {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current,
            });
        }
        let at = etcd_revision(revision)?;
        match self
            .call(
                true,
                |mut client| async move { client.compact(at, None).await },
            )
            .await
        {
            // Compacting to a revision at or before the last compaction changes nothing.
            Ok(_) | Err(StoreError::Compacted { .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }
}

/// Turns the follower's batches (one etcd response each, so whole revisions) into a
/// stream of events; a batch's events are all ready together.
fn tokio_stream_from(mut receiver: mpsc::Receiver<Result<Vec<WatchEvent>>>) -> WatchStream {
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))
        .flat_map(|batch| match batch {
            Ok(events) => futures::stream::iter(events.into_iter().map(Ok).collect::<Vec<_>>()),
            Err(error) => futures::stream::iter(vec![Err(error)]),
        })
        .boxed()
}

/// Follows one etcd watch for a consumer, reopening it after connection losses.
struct WatchFollower {
    store: EtcdStore,
    full_prefix: String,
    /// The revision of the last event delivered.
    last: Option<Revision>,
    /// Where to start when nothing was delivered yet.
    start: Revision,
    /// Keys delivered at revision `last` (a revision's events may span responses).
    delivered_at_last: HashSet<String>,
    events: mpsc::Sender<Result<Vec<WatchEvent>>>,
}

impl WatchFollower {
    async fn run(mut self) {
        let mut backoff = Duration::from_millis(50);
        let consumer = self.events.clone();
        loop {
            let outcome = tokio::select! {
                outcome = self.follow_once() => outcome,
                () = consumer.closed() => return,
            };
            match outcome {
                Ok(()) => return,
                Err(error @ StoreError::Compacted { .. }) => {
                    let _ = self.events.send(Err(error)).await;
                    return;
                }
                Err(error) => {
                    tracing::debug!(%error, "etcd watch interrupted; reopening");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = consumer.closed() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// Opens the watch and forwards events until it breaks (`Err`) or the consumer
    /// leaves (`Ok`).
    async fn follow_once(&mut self) -> Result<()> {
        let from = self.last.unwrap_or(self.start);
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(etcd_revision(from)?)
            .with_progress_notify();
        let mut client = self.store.client.clone();
        let mut stream = client
            .watch(self.full_prefix.clone(), Some(options))
            .await
            .map_err(map_error)?;
        while let Some(response) = stream.message().await.map_err(map_error)? {
            if response.compact_revision() > 0 {
                return Err(StoreError::Compacted {
                    requested: from,
                    oldest: revision_of(response.compact_revision()),
                });
            }
            if response.canceled() {
                return Err(StoreError::backend(
                    BACKEND,
                    format!("watch canceled by etcd: {}", response.cancel_reason()),
                ));
            }
            // etcd never splits a revision across responses: forward each response whole.
            let mut batch = Vec::with_capacity(response.events().len());
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                let converted = self.store.convert_kv(kv)?;
                let revision = converted.mod_revision;
                match self.last {
                    Some(last) if revision < last => continue,
                    Some(last) if revision == last => {
                        if !self.delivered_at_last.insert(converted.key.clone()) {
                            continue;
                        }
                    }
                    _ => {
                        self.last = Some(revision);
                        self.delivered_at_last.clear();
                        self.delivered_at_last.insert(converted.key.clone());
                    }
                }
                let kind = match event.event_type() {
                    EventType::Put => EventKind::Put,
                    EventType::Delete => EventKind::Delete,
                };
                batch.push(WatchEvent {
                    kind,
                    kv: converted,
                });
            }
            if !batch.is_empty() && self.events.send(Ok(batch)).await.is_err() {
                return Ok(());
            }
        }
        Err(StoreError::backend(BACKEND, "watch stream closed"))
    }
}
