//! `sluice store ...`: open a store by URL and check that every primitive works;
//! back it up (`export`, from the store or from a running node's API), restore a
//! backup (`import`), move a store (`copy`, e.g. `redb://` to `etcd://`); and the
//! hidden `sluice debug write-keys` used by the crash test.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use futures::StreamExt;
use sluice_store::backup::{BackupSummary, ImportOptions};
use sluice_store::{EventKind, RangeOptions, Store, StoreUrl};
use tokio::io::AsyncWriteExt;

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
    /// Write a backup of everything in the store, read at one revision (keys on
    /// leases — ephemeral instances, locks — are left out: their owners make them
    /// again). The store of a running embedded node is locked by it: export
    /// through that node with --server instead.
    Export {
        #[command(flatten)]
        store: StoreArgs,
        /// Export through a running node's admin API (GET /v1/admin/backup)
        /// instead of opening the store.
        #[arg(long)]
        server: Option<String>,
        /// Admin token for --server.
        #[arg(long, env = "SLUICE_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// The backup file (written whole or not at all); standard output when absent.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Restore a backup into an empty store (the whole file is checked first).
    Import {
        #[command(flatten)]
        store: StoreArgs,
        /// Delete everything the store holds first, instead of refusing a store that is not empty.
        #[arg(long)]
        replace: bool,
        /// The backup file.
        file: PathBuf,
    },
    /// Check a backup file whole (header, every record, key order, count and
    /// SHA-256) without writing anything.
    Verify {
        /// The backup file.
        file: PathBuf,
    },
    /// Copy everything from one store into another (an export piped into an import),
    /// e.g. from the embedded store to etcd when a team outgrows one machine.
    Copy {
        /// The store to read: redb://DIR, etcd://..., memory://.
        #[arg(long)]
        from: String,
        /// The store to write (empty, unless --replace).
        #[arg(long)]
        to: String,
        /// Delete everything the target holds first.
        #[arg(long)]
        replace: bool,
    },
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
            StoreCommand::Export {
                store,
                server,
                token,
                out,
            } => match server {
                Some(server) => export_from_server(&server, token, out.as_deref()).await,
                None => export_from_store(&store.store, out.as_deref()).await,
            },
            StoreCommand::Import {
                store,
                replace,
                file,
            } => import(&store.store, &file, replace).await,
            StoreCommand::Verify { file } => verify(&file).await,
            StoreCommand::Copy { from, to, replace } => copy(&from, &to, replace).await,
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

/// Opens the store at `url`, saying what to do when a running node holds it.
async fn open_store(url: &str) -> anyhow::Result<std::sync::Arc<dyn Store>> {
    let parsed: StoreUrl = url.parse()?;
    let held = matches!(parsed, StoreUrl::Redb { .. });
    parsed.open().await.with_context(|| {
        if held {
            format!(
                "cannot open {url} (if a running Sluice holds it, export through that node: \
                 sluice store export --server http://HOST:PORT)"
            )
        } else {
            format!("cannot open {url}")
        }
    })
}

/// Where a backup is written: `path` whole or not at all (a temporary file
/// beside it, renamed when complete), or standard output.
struct BackupOut {
    writer: tokio::io::BufWriter<Box<dyn tokio::io::AsyncWrite + Unpin + Send>>,
    /// The temporary file and the name it gets when complete.
    partial: Option<(PathBuf, PathBuf)>,
}

impl BackupOut {
    async fn create(path: Option<&Path>) -> anyhow::Result<Self> {
        let (writer, partial): (Box<dyn tokio::io::AsyncWrite + Unpin + Send>, _) = match path {
            Some(path) => {
                let mut name = path.file_name().unwrap_or_default().to_os_string();
                name.push(".partial");
                let partial = path.with_file_name(name);
                let file = tokio::fs::File::create(&partial)
                    .await
                    .with_context(|| format!("cannot create {}", partial.display()))?;
                (Box::new(file), Some((partial, path.to_owned())))
            }
            None => (Box::new(tokio::io::stdout()), None),
        };
        Ok(BackupOut {
            writer: tokio::io::BufWriter::with_capacity(256 * 1024, writer),
            partial,
        })
    }

    /// Flushes and, for a file, puts it on disk and gives it its name.
    async fn finish(mut self) -> anyhow::Result<()> {
        self.writer.flush().await?;
        if let Some((partial, path)) = self.partial.take() {
            tokio::fs::File::open(&partial).await?.sync_all().await?;
            tokio::fs::rename(&partial, &path).await.with_context(|| {
                format!("cannot rename {} to {}", partial.display(), path.display())
            })?;
        }
        Ok(())
    }
}

impl Drop for BackupOut {
    fn drop(&mut self) {
        // Not finished: no half backup is left under the wanted name or beside it.
        if let Some((partial, _)) = self.partial.take() {
            let _ = std::fs::remove_file(partial);
        }
    }
}

fn report_export(summary: &BackupSummary, to: Option<&Path>) {
    eprintln!(
        "exported {} records from {} at revision {} ({} keys on leases left out){}",
        summary.trailer.records,
        summary.header.source,
        summary.header.revision,
        summary.trailer.leased_left_out,
        to.map(|p| format!(" to {}", p.display()))
            .unwrap_or_default()
    );
}

async fn export_from_store(url: &str, out: Option<&Path>) -> anyhow::Result<()> {
    let store = open_store(url).await?;
    let mut file = BackupOut::create(out).await?;
    let summary = sluice_store::backup::export(&*store, &mut file.writer).await?;
    file.finish().await?;
    report_export(&summary, out);
    Ok(())
}

async fn export_from_server(
    server: &str,
    token: Option<String>,
    out: Option<&Path>,
) -> anyhow::Result<()> {
    let nodes = server.split(',').map(str::to_owned).collect();
    let control = sluice_client::ControlPlane::new(nodes, token, Duration::from_secs(3600))?;
    let mut body = control.download("/v1/admin/backup").await?;
    let mut file = BackupOut::create(out).await?;
    let mut bytes = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        bytes += chunk.len() as u64;
        file.writer.write_all(&chunk).await?;
    }
    file.finish().await?;
    // What came over the network is checked like any backup before it is kept.
    if let Some(path) = out {
        let reader = tokio::io::BufReader::new(tokio::fs::File::open(path).await?);
        match sluice_store::backup::verify(reader).await {
            Ok(summary) => report_export(&summary, out),
            Err(error) => {
                let _ = std::fs::remove_file(path);
                bail!("the backup from {server} is damaged ({error}); nothing was kept");
            }
        }
    } else {
        eprintln!("exported {bytes} bytes from {server}");
    }
    Ok(())
}

async fn verify(file: &Path) -> anyhow::Result<()> {
    let reader = tokio::io::BufReader::new(
        tokio::fs::File::open(file)
            .await
            .with_context(|| format!("cannot open {}", file.display()))?,
    );
    let summary = sluice_store::backup::verify(reader)
        .await
        .with_context(|| format!("{} is not a sound backup", file.display()))?;
    println!(
        "{}: {} records from {} at revision {}, taken {}; {} keys on leases were left out; SHA-256 {}",
        file.display(),
        summary.trailer.records,
        summary.header.source,
        summary.header.revision,
        summary.header.created,
        summary.trailer.leased_left_out,
        summary.trailer.sha256
    );
    Ok(())
}

async fn import(url: &str, file: &Path, replace: bool) -> anyhow::Result<()> {
    let store = open_store(url).await?;
    import_into(&*store, url, file, replace).await
}

async fn import_into(
    store: &dyn Store,
    url: &str,
    file: &Path,
    replace: bool,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut progress = |written: u64, total: u64| {
        if last_report.elapsed() >= Duration::from_secs(1) || written == total {
            eprintln!("imported {written}/{total} records");
            last_report = Instant::now();
        }
    };
    let summary =
        sluice_store::backup::import_file(store, file, ImportOptions { replace }, &mut progress)
            .await
            .with_context(|| format!("cannot import {} into {url}", file.display()))?;
    eprintln!(
        "imported {} records (from {} at revision {}, taken {}) into {url} in {:.1?}",
        summary.trailer.records,
        summary.header.source,
        summary.header.revision,
        summary.header.created,
        started.elapsed()
    );
    Ok(())
}

async fn copy(from: &str, to: &str, replace: bool) -> anyhow::Result<()> {
    let source = open_store(from).await?;
    let target = open_store(to).await?;
    // Through a checked file, as an export and an import would go.
    let dir = std::env::temp_dir().join(format!("sluice-copy-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("backup.jsonl");
    let outcome = async {
        let mut file = BackupOut::create(Some(&path)).await?;
        let summary = sluice_store::backup::export(&*source, &mut file.writer).await?;
        file.finish().await?;
        report_export(&summary, None);
        import_into(&*target, to, &path, replace).await
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}
