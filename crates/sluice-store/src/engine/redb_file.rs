//! The redb persistence of the embedded engine: one file, `store.redb`, in the data directory.
//!
//! Tables: `kv` (key → encoded [`KeyValue`]), `history` (revision → that revision's
//! events), `leases` (lease → TTL and wall-clock deadline) and `meta` (current
//! revision, oldest retained revision). Each batch is one redb write transaction
//! with immediate durability: when `commit` returns, the batch survives a crash.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::committer::{Changes, Loaded, PersistedLease, Persistence};
use crate::{KeyValue, LeaseId, Result, StoreError, WatchEvent};

const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
const HISTORY: TableDefinition<u64, &[u8]> = TableDefinition::new("history");
const LEASES: TableDefinition<i64, &[u8]> = TableDefinition::new("leases");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

const META_REVISION: &str = "revision";
const META_FIRST_RETAINED: &str = "first_retained";
const META_FORMAT: &str = "format";
/// The on-disk format of this file; bumped on incompatible changes, checked at open.
const FORMAT_VERSION: u64 = 1;

/// The file name inside the data directory.
pub(crate) const FILE_NAME: &str = "store.redb";

pub(super) struct RedbFile {
    db: Database,
    path: PathBuf,
}

fn failed(path: &Path, what: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::backend("redb", format!("{what} {}: {error}", path.display()))
}

impl RedbFile {
    pub(super) fn open(dir: &Path) -> Result<Self> {
        let url = format!("redb://{}", dir.display());
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Unavailable {
            url: url.clone(),
            reason: format!("cannot create the data directory: {e}"),
        })?;
        let path = dir.join(FILE_NAME);
        let db = Database::create(&path).map_err(|e| StoreError::Unavailable {
            url: url.clone(),
            reason: match e {
                redb::DatabaseError::DatabaseAlreadyOpen => format!(
                    "{} is in use by another Sluice process (or another store in this one)",
                    path.display()
                ),
                other => format!("cannot open {}: {other}", path.display()),
            },
        })?;
        let file = RedbFile { db, path };
        file.init().map_err(|e| StoreError::Unavailable {
            url,
            reason: e.to_string(),
        })?;
        Ok(file)
    }

    /// Creates the tables and checks the format version.
    fn init(&self) -> Result<()> {
        let txn = self
            .db
            .begin_write()
            .map_err(|e| failed(&self.path, "cannot write", e))?;
        {
            txn.open_table(KV)
                .map_err(|e| failed(&self.path, "cannot open table kv in", e))?;
            txn.open_table(HISTORY)
                .map_err(|e| failed(&self.path, "cannot open table history in", e))?;
            txn.open_table(LEASES)
                .map_err(|e| failed(&self.path, "cannot open table leases in", e))?;
            let mut meta = txn
                .open_table(META)
                .map_err(|e| failed(&self.path, "cannot open table meta in", e))?;
            let format = meta
                .get(META_FORMAT)
                .map_err(|e| failed(&self.path, "cannot read", e))?
                .map(|v| v.value());
            match format {
                None => {
                    meta.insert(META_FORMAT, FORMAT_VERSION)
                        .map_err(|e| failed(&self.path, "cannot write", e))?;
                }
                Some(FORMAT_VERSION) => {}
                Some(other) => {
                    return Err(StoreError::backend(
                        "redb",
                        format!(
                        "{} has store format {other}, this Sluice reads format {FORMAT_VERSION}; \
                             export it with the Sluice that wrote it",
                        self.path.display()
                    ),
                    ))
                }
            }
        }
        txn.commit()
            .map_err(|e| failed(&self.path, "cannot commit to", e))
    }

    fn load_all(&self) -> std::result::Result<Loaded, String> {
        let txn = self.db.begin_read().map_err(|e| e.to_string())?;
        let mut loaded = Loaded::default();
        let kv = txn.open_table(KV).map_err(|e| e.to_string())?;
        for entry in kv.iter().map_err(|e| e.to_string())? {
            let (key, value) = entry.map_err(|e| e.to_string())?;
            let kv: KeyValue = postcard::from_bytes(value.value())
                .map_err(|e| format!("corrupt value of key {:?}: {e}", key.value()))?;
            loaded.kvs.insert(key.value().to_owned(), kv);
        }
        let history = txn.open_table(HISTORY).map_err(|e| e.to_string())?;
        let mut events = VecDeque::new();
        for entry in history.iter().map_err(|e| e.to_string())? {
            let (revision, value) = entry.map_err(|e| e.to_string())?;
            let batch: Vec<WatchEvent> = postcard::from_bytes(value.value())
                .map_err(|e| format!("corrupt history at revision {}: {e}", revision.value()))?;
            events.extend(batch);
        }
        loaded.history = events;
        let leases = txn.open_table(LEASES).map_err(|e| e.to_string())?;
        let mut lease_map = HashMap::new();
        for entry in leases.iter().map_err(|e| e.to_string())? {
            let (id, value) = entry.map_err(|e| e.to_string())?;
            let lease: PersistedLease = postcard::from_bytes(value.value())
                .map_err(|e| format!("corrupt lease {}: {e}", id.value()))?;
            lease_map.insert(LeaseId(id.value()), lease);
        }
        loaded.leases = lease_map;
        let meta = txn.open_table(META).map_err(|e| e.to_string())?;
        let read_meta = |name: &str| -> std::result::Result<u64, String> {
            Ok(meta
                .get(name)
                .map_err(|e| e.to_string())?
                .map_or(0, |v| v.value()))
        };
        loaded.revision = read_meta(META_REVISION)?;
        loaded.first_retained = read_meta(META_FIRST_RETAINED)?;
        Ok(loaded)
    }

    fn write(&self, changes: &Changes<'_>) -> std::result::Result<(), String> {
        let txn = self.db.begin_write().map_err(|e| e.to_string())?;
        {
            let mut kv = txn.open_table(KV).map_err(|e| e.to_string())?;
            for (key, value) in changes.kvs {
                match value {
                    Some(value) => {
                        let bytes = postcard::to_stdvec(value).map_err(|e| e.to_string())?;
                        kv.insert(key.as_str(), bytes.as_slice())
                            .map_err(|e| e.to_string())?;
                    }
                    None => {
                        kv.remove(key.as_str()).map_err(|e| e.to_string())?;
                    }
                }
            }
            let mut history = txn.open_table(HISTORY).map_err(|e| e.to_string())?;
            let mut by_revision: BTreeMap<u64, Vec<&WatchEvent>> = BTreeMap::new();
            for event in changes.events {
                by_revision.entry(event.revision()).or_default().push(event);
            }
            for (revision, events) in by_revision {
                let bytes = postcard::to_stdvec(&events).map_err(|e| e.to_string())?;
                history
                    .insert(revision, bytes.as_slice())
                    .map_err(|e| e.to_string())?;
            }
            if changes.first_retained > 0 {
                history
                    .retain_in(..changes.first_retained, |_, _| false)
                    .map_err(|e| e.to_string())?;
            }
            let mut leases = txn.open_table(LEASES).map_err(|e| e.to_string())?;
            for (id, lease) in changes.leases {
                match lease {
                    Some(lease) => {
                        let bytes = postcard::to_stdvec(lease).map_err(|e| e.to_string())?;
                        leases
                            .insert(id.0, bytes.as_slice())
                            .map_err(|e| e.to_string())?;
                    }
                    None => {
                        leases.remove(id.0).map_err(|e| e.to_string())?;
                    }
                }
            }
            let mut meta = txn.open_table(META).map_err(|e| e.to_string())?;
            meta.insert(META_REVISION, changes.revision)
                .map_err(|e| e.to_string())?;
            if changes.first_retained > 0 {
                meta.insert(META_FIRST_RETAINED, changes.first_retained)
                    .map_err(|e| e.to_string())?;
            }
        }
        txn.commit().map_err(|e| e.to_string())
    }
}

impl Persistence for RedbFile {
    fn load(&mut self) -> Result<Loaded> {
        self.load_all()
            .map_err(|e| failed(&self.path, "cannot load", e))
    }

    fn commit(&mut self, changes: &Changes<'_>) -> Result<()> {
        self.write(changes)
            .map_err(|e| failed(&self.path, "cannot commit to", e))
    }
}
