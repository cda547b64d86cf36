//! Backups of a whole store, independent of any backend's file format: what
//! `sluice store export / import / copy` and `GET /v1/admin/backup` read and write.
//!
//! A backup is JSON lines (UTF-8, one object per line, `\n` after each):
//!
//! ```text
//! {"format":"sluice-store-backup","version":1,"source":"redb","revision":812,"created":"2026-12-02T14:00:00.000Z","created_unix_ms":1796220000000}
//! {"key":"res/Route/default/shop","value":"{\"kind\":\"Route\",…}"}
//! {"key":"some/binary/key","value_base64":"AAEC"}
//! {"end":{"records":2,"leased_left_out":3,"sha256":"9f2c…"}}
//! ```
//!
//! - The header names the format and its version, the source backend, the
//!   revision every record was read at (one [`Store::snapshot`]) and when.
//! - One record per key, in byte order of the keys: `value` when the value is
//!   UTF-8 (Sluice's values are JSON), else `value_base64`. Revisions and versions
//!   are not kept: the target store gives its own.
//! - Keys attached to a lease (ephemeral instances, locks, heartbeats) are left
//!   out and counted: their owners create them again.
//! - The trailer counts the records and carries the SHA-256 of every byte before
//!   it (header and records, newlines included): a truncated or edited file is
//!   refused before anything is written.
//!
//! The file is written and read as a stream: neither side holds it whole.

use std::path::Path;

use base64::Engine as _;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::{validate_key, validate_value, RangeOptions, Store, StoreError, Txn, TxnOp};

/// The `format` of a backup's header.
pub const BACKUP_FORMAT: &str = "sluice-store-backup";
/// The version of the format this build writes and reads.
pub const BACKUP_VERSION: u32 = 1;
/// The most bytes of values one import transaction carries (etcd takes 1.5 MiB
/// per request by default).
const IMPORT_TXN_BYTES: usize = 1024 * 1024;
/// Bytes gathered before a write to the output.
const WRITE_CHUNK: usize = 64 * 1024;
/// The longest line a backup may hold: a largest value, escaped, with its key.
const MAX_LINE_BYTES: usize = 8 * 1024 * 1024;

/// A backup's first line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupHeader {
    /// Always [`BACKUP_FORMAT`].
    pub format: String,
    /// The format version ([`BACKUP_VERSION`] when written by this build).
    pub version: u32,
    /// The backend read: `memory`, `redb` or `etcd`.
    pub source: String,
    /// The store revision every record was read at.
    pub revision: u64,
    /// When the export started, RFC 3339 UTC.
    pub created: String,
    /// The same, Unix milliseconds.
    pub created_unix_ms: i64,
}

/// A backup's last line, under `"end"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupTrailer {
    /// Records in the file.
    pub records: u64,
    /// Keys attached to leases, left out.
    pub leased_left_out: u64,
    /// SHA-256 (lowercase hex) of every byte before this line.
    pub sha256: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value_base64: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct End {
    end: BackupTrailer,
}

/// A whole backup, as read or written: its header and trailer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSummary {
    /// The first line.
    pub header: BackupHeader,
    /// The last line.
    pub trailer: BackupTrailer,
}

/// Why a backup could not be taken or restored.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading or writing the file failed.
    #[error("{what}: {reason}")]
    Io {
        /// What was being read or written.
        what: String,
        /// The system's reason.
        reason: String,
    },
    /// A line is not what the format says.
    #[error("line {line}: {message}")]
    Format {
        /// 1-based line number.
        line: u64,
        /// What is wrong with it.
        message: String,
    },
    /// The file is of a format version this build does not read.
    #[error("backup format version {found} is not supported (this Sluice reads version {supported}); import it with the Sluice that wrote it, or a newer one")]
    Version {
        /// The file's version.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// The file ends before its trailer: it was cut short.
    #[error("the backup is truncated: it ends after {records} records without its end line")]
    Truncated {
        /// Records read before the end of the file.
        records: u64,
    },
    /// The trailer's checksum or count does not match the file.
    #[error("the backup does not match its end line: {message}; the file was changed or damaged")]
    Mismatch {
        /// Which figure differs.
        message: String,
    },
    /// The target store holds keys and `--replace` was not given.
    #[error("the target store is not empty: it holds {}{}; import into an empty store, or replace what it holds (--replace)", keys.join(", "), if *more { " and more" } else { "" })]
    NotEmpty {
        /// The first keys found.
        keys: Vec<String>,
        /// Whether there are more.
        more: bool,
    },
}

impl BackupError {
    fn io(what: impl Into<String>, error: &std::io::Error) -> Self {
        BackupError::Io {
            what: what.into(),
            reason: error.to_string(),
        }
    }

    fn format(line: u64, message: impl Into<String>) -> Self {
        BackupError::Format {
            line,
            message: message.into(),
        }
    }
}

/// Writes a backup of everything in `store` (one snapshot) to `out`, streamed.
pub async fn export<W: AsyncWrite + Unpin + Send>(
    store: &dyn Store,
    out: &mut W,
) -> Result<BackupSummary, BackupError> {
    let created_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let mut snapshot = store.snapshot("").await?;
    let header = BackupHeader {
        format: BACKUP_FORMAT.to_owned(),
        version: BACKUP_VERSION,
        source: store.backend().to_owned(),
        revision: snapshot.revision,
        created: sluice_model::format_time(created_unix_ms),
        created_unix_ms,
    };
    let mut hasher = Sha256::new();
    let mut buffer: Vec<u8> = Vec::with_capacity(WRITE_CHUNK * 2);
    let write_error = |e: std::io::Error| BackupError::io("writing the backup", &e);
    push_line(&mut buffer, &mut hasher, &header);
    let (mut records, mut leased) = (0u64, 0u64);
    while let Some(kv) = snapshot.kvs.next().await {
        let kv = kv?;
        if kv.lease.is_some() {
            leased += 1;
            continue;
        }
        let record = match String::from_utf8(kv.value) {
            Ok(text) => Record {
                key: kv.key,
                value: Some(text),
                value_base64: None,
            },
            Err(bytes) => Record {
                key: kv.key,
                value: None,
                value_base64: Some(
                    base64::engine::general_purpose::STANDARD.encode(bytes.into_bytes()),
                ),
            },
        };
        push_line(&mut buffer, &mut hasher, &record);
        records += 1;
        if buffer.len() >= WRITE_CHUNK {
            out.write_all(&buffer).await.map_err(write_error)?;
            buffer.clear();
        }
    }
    let trailer = BackupTrailer {
        records,
        leased_left_out: leased,
        sha256: hex(&hasher.finalize()),
    };
    let mut unhashed = Sha256::new();
    push_line(
        &mut buffer,
        &mut unhashed,
        &End {
            end: trailer.clone(),
        },
    );
    out.write_all(&buffer).await.map_err(write_error)?;
    out.flush().await.map_err(write_error)?;
    Ok(BackupSummary { header, trailer })
}

fn push_line(buffer: &mut Vec<u8>, hasher: &mut Sha256, line: &impl Serialize) {
    let start = buffer.len();
    // Serialising these plain structs into memory cannot fail.
    let _ = serde_json::to_writer(&mut *buffer, line);
    buffer.push(b'\n');
    hasher.update(&buffer[start..]);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads a backup line by line, checking each line, the key order, and at the
/// end the count and checksum.
struct BackupReader<R> {
    input: R,
    line: Vec<u8>,
    number: u64,
    hasher: Sha256,
    records: u64,
    last_key: Option<String>,
    header: Option<BackupHeader>,
}

impl<R: AsyncBufRead + Unpin> BackupReader<R> {
    async fn open(input: R) -> Result<Self, BackupError> {
        let mut reader = BackupReader {
            input,
            line: Vec::new(),
            number: 0,
            hasher: Sha256::new(),
            records: 0,
            last_key: None,
            header: None,
        };
        if !reader.read_line().await? {
            return Err(BackupError::format(1, "the file is empty: no header"));
        }
        let header: BackupHeader = serde_json::from_slice(reader.text())
            .map_err(|e| BackupError::format(1, format!("not a backup header: {e}")))?;
        if header.format != BACKUP_FORMAT {
            return Err(BackupError::format(
                1,
                format!("format is {:?}, not {BACKUP_FORMAT:?}", header.format),
            ));
        }
        if header.version != BACKUP_VERSION {
            return Err(BackupError::Version {
                found: header.version,
                supported: BACKUP_VERSION,
            });
        }
        reader.hasher.update(&reader.line);
        reader.header = Some(header);
        Ok(reader)
    }

    /// Reads the next line into `self.line`; false at the end of the file.
    async fn read_line(&mut self) -> Result<bool, BackupError> {
        self.line.clear();
        let read = (&mut self.input)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut self.line)
            .await
            .map_err(|e| BackupError::io("reading the backup", &e))?;
        self.number += 1;
        if read == 0 {
            return Ok(false);
        }
        if self.line.len() > MAX_LINE_BYTES {
            return Err(BackupError::format(
                self.number,
                format!("longer than {MAX_LINE_BYTES} bytes"),
            ));
        }
        if self.line.last() != Some(&b'\n') {
            // A last line without its newline: the file was cut.
            return Err(BackupError::Truncated {
                records: self.records,
            });
        }
        Ok(true)
    }

    fn text(&self) -> &[u8] {
        self.line.strip_suffix(b"\n").unwrap_or(&self.line)
    }

    /// The next record as (key, value); `None` once the trailer is read and holds.
    async fn next_record(&mut self) -> Result<Option<(String, Vec<u8>)>, BackupError> {
        if !self.read_line().await? {
            return Err(BackupError::Truncated {
                records: self.records,
            });
        }
        let number = self.number;
        if let Ok(end) = serde_json::from_slice::<End>(self.text()) {
            self.check_end(&end.end)?;
            return Ok(None);
        }
        let record: Record = serde_json::from_slice(self.text())
            .map_err(|e| BackupError::format(number, format!("not a record: {e}")))?;
        self.hasher.update(&self.line);
        let value = match (record.value, record.value_base64) {
            (Some(text), None) => text.into_bytes(),
            (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|e| BackupError::format(number, format!("value_base64: {e}")))?,
            _ => {
                return Err(BackupError::format(
                    number,
                    "a record has exactly one of value and value_base64",
                ))
            }
        };
        validate_key(&record.key).map_err(|e| BackupError::format(number, e.to_string()))?;
        validate_value(&record.key, &value)
            .map_err(|e| BackupError::format(number, e.to_string()))?;
        if self
            .last_key
            .as_deref()
            .is_some_and(|last| last >= record.key.as_str())
        {
            return Err(BackupError::format(
                number,
                format!("key {:?} is out of order", record.key),
            ));
        }
        self.last_key = Some(record.key.clone());
        self.records += 1;
        Ok(Some((record.key, value)))
    }

    fn check_end(&mut self, trailer: &BackupTrailer) -> Result<(), BackupError> {
        let found = hex(&std::mem::take(&mut self.hasher).finalize());
        if trailer.records != self.records {
            return Err(BackupError::Mismatch {
                message: format!(
                    "it says {} records, the file holds {}",
                    trailer.records, self.records
                ),
            });
        }
        if trailer.sha256 != found {
            return Err(BackupError::Mismatch {
                message: format!("SHA-256 is {found}, the end line says {}", trailer.sha256),
            });
        }
        Ok(())
    }

    /// After the trailer: the file must end there.
    async fn finish(mut self, trailer: BackupTrailer) -> Result<BackupSummary, BackupError> {
        if self.read_line().await? {
            return Err(BackupError::format(
                self.number,
                "there is more after the end line",
            ));
        }
        let header = self
            .header
            .take()
            .ok_or(BackupError::Truncated { records: 0 })?;
        Ok(BackupSummary { header, trailer })
    }

    fn trailer(&self) -> Result<BackupTrailer, BackupError> {
        serde_json::from_slice::<End>(self.text())
            .map(|end| end.end)
            .map_err(|e| BackupError::format(self.number, e.to_string()))
    }
}

/// Reads a whole backup and checks it (header, every record, order, count,
/// checksum) without writing anything.
pub async fn verify<R: AsyncBufRead + Unpin>(input: R) -> Result<BackupSummary, BackupError> {
    let mut reader = BackupReader::open(input).await?;
    while reader.next_record().await?.is_some() {}
    let trailer = reader.trailer()?;
    reader.finish(trailer).await
}

/// How [`import_file`] treats a store that already holds keys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportOptions {
    /// Delete everything the store holds first (otherwise a non-empty store is refused).
    pub replace: bool,
}

/// Restores the backup in `path` into `store`: checks the whole file first (a
/// truncated or edited file is refused with nothing written), then refuses a
/// store that holds keys (unless `replace`), then writes the records in
/// transactions of bounded size, calling `progress(written, total)` along the way.
pub async fn import_file(
    store: &dyn Store,
    path: &Path,
    options: ImportOptions,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<BackupSummary, BackupError> {
    let open = || async {
        tokio::fs::File::open(path)
            .await
            .map(tokio::io::BufReader::new)
            .map_err(|e| BackupError::io(format!("opening {}", path.display()), &e))
    };
    let summary = verify(open().await?).await?;
    let total = summary.trailer.records;
    let existing = store.range("", RangeOptions::limit(5)).await?;
    if !existing.kvs.is_empty() {
        if !options.replace {
            return Err(BackupError::NotEmpty {
                keys: existing.kvs.into_iter().map(|kv| kv.key).collect(),
                more: existing.next.is_some(),
            });
        }
        delete_everything(store).await?;
    }
    let mut reader = BackupReader::open(open().await?).await?;
    let mut txn = Txn::new();
    let mut txn_bytes = 0usize;
    let mut written = 0u64;
    while let Some((key, value)) = reader.next_record().await? {
        if !txn.ops.is_empty()
            && (txn.ops.len() == crate::MAX_TXN_OPS || txn_bytes + value.len() > IMPORT_TXN_BYTES)
        {
            written += txn.ops.len() as u64;
            store.txn(std::mem::take(&mut txn)).await?;
            txn_bytes = 0;
            progress(written, total);
        }
        txn_bytes += key.len() + value.len();
        txn.ops.push(TxnOp::put(key, value));
    }
    if !txn.ops.is_empty() {
        written += txn.ops.len() as u64;
        store.txn(txn).await?;
    }
    progress(written, total);
    let trailer = reader.trailer()?;
    reader.finish(trailer).await
}

/// Deletes every key of `store`, in transactions.
async fn delete_everything(store: &dyn Store) -> Result<(), StoreError> {
    loop {
        let page = store.range("", RangeOptions::default()).await?;
        if page.kvs.is_empty() {
            return Ok(());
        }
        for chunk in page.kvs.chunks(crate::MAX_TXN_OPS) {
            let mut txn = Txn::new();
            for kv in chunk {
                txn = txn.then(TxnOp::delete(kv.key.clone()));
            }
            store.txn(txn).await?;
        }
    }
}
