//! `sluice store ...`: open a store by URL and check that every primitive works;
//! and the hidden `sluice debug write-keys` used by the crash test.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use futures::StreamExt;
use sluice_store::{EventKind, RangeOptions, StoreUrl};

/// The store a command works on.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Store URL: redb://DIR (embedded), etcd://HOST:PORT[,HOST:PORT...][/PREFIX], or memory://.
    #[arg(long, env = "SLUICE_STORE", default_value = "redb://./sluice-data")]
    store: String,
}

/// `sluice store ...`
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Open the store and exercise put, get, range, transaction, lease and watch.
    Check(StoreArgs),
}

/// `sluice debug ...`
#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// Write COUNT keys one by one, printing each key once its put returned.
    WriteKeys {
        #[command(flatten)]
        store: StoreArgs,
        /// How many keys to write.
        #[arg(long, default_value_t = 1000)]
        count: usize,
        /// Key prefix.
        #[arg(long, default_value = "crash/")]
        prefix: String,
    },
}

impl StoreCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            StoreCommand::Check(args) => check(&args.store).await,
        }
    }
}

impl DebugCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            DebugCommand::WriteKeys {
                store,
                count,
                prefix,
            } => write_keys(&store.store, count, &prefix).await,
        }
    }
}

async fn check(url: &str) -> anyhow::Result<()> {
    let parsed: StoreUrl = url.parse()?;
    let started = Instant::now();
    let store = parsed.open().await?;
    println!("store      {parsed} ({} backend)", store.backend());
    println!("opened in  {:?}", started.elapsed());
    let key = format!("selfcheck/{}", std::process::id());
    let before = store.current_revision().await?;
    let mut watch = store.watch(&key, Some(before)).await?;

    let started = Instant::now();
    let revision = store.put(&key, b"ok".to_vec(), None).await?;
    println!("put        revision {revision} in {:?}", started.elapsed());
    let event = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .context("the watch saw no event within 5 s")?
        .context("the watch ended")??;
    if event.kind != EventKind::Put || event.revision() != revision {
        bail!("the watch saw {event:?}, expected the put at revision {revision}");
    }
    println!("watch      saw the put");
    match store.get(&key).await? {
        Some(kv) if kv.value == b"ok" => println!("get        ok"),
        other => bail!("get returned {other:?}"),
    }
    let page = store.range("selfcheck/", RangeOptions::limit(10)).await?;
    println!("range      {} key(s) under selfcheck/", page.kvs.len());
    let lease = store.grant_lease(Duration::from_secs(5)).await?;
    store.put(&key, b"leased".to_vec(), Some(lease)).await?;
    store.revoke_lease(lease).await?;
    if store.get(&key).await?.is_some() {
        bail!("the key outlived its revoked lease");
    }
    println!("lease      grant, attach, revoke ok");
    println!("revision   {}", store.current_revision().await?);
    println!("store check passed");
    Ok(())
}

async fn write_keys(url: &str, count: usize, prefix: &str) -> anyhow::Result<()> {
    let store = sluice_store::open(url).await?;
    let mut stdout = std::io::stdout().lock();
    for i in 0..count {
        let key = format!("{prefix}{i:08}");
        store.put(&key, key.clone().into_bytes(), None).await?;
        writeln!(stdout, "{key}")?;
        stdout.flush()?;
    }
    Ok(())
}
