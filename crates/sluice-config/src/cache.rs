//! The host cache `sluice agent` keeps: one file per item at
//! `DIR/configs/NS/GROUP/KEY` holding exactly the content (so a service can just
//! read it), and beside it `.KEY.meta` with the version, MD5, format and when it
//! was fetched. Both are written atomically — a temporary file, fsync, rename,
//! fsync of the directory — so a reader never sees half of one, and a crash
//! leaves either the old version or the new one.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::format::Format;
use crate::item::ItemPath;

/// What the cache knows about an item besides its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedMeta {
    /// The version held.
    pub version: u64,
    /// Its MD5, hex.
    pub md5: String,
    /// Its format.
    pub format: Format,
    /// Whether it is a gray candidate (for this host).
    #[serde(default)]
    pub gray: bool,
    /// Whether the item is secret (its file is readable by the owner only).
    #[serde(default)]
    pub secret: bool,
    /// When it was fetched from the control plane, Unix milliseconds.
    pub fetched_ms: u64,
}

/// One cached item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedItem {
    /// Its metadata.
    pub meta: CachedMeta,
    /// Its content.
    pub content: String,
}

/// The cache directory.
#[derive(Debug, Clone)]
pub struct HostCache {
    root: PathBuf,
}

impl HostCache {
    /// A cache under `dir` (its files go to `dir/configs/`).
    pub fn new(dir: &Path) -> Self {
        HostCache {
            root: dir.join("configs"),
        }
    }

    /// The file holding `item`'s content.
    pub fn content_path(&self, item: &ItemPath) -> PathBuf {
        self.root
            .join(&item.namespace)
            .join(&item.group)
            .join(&item.key)
    }

    fn meta_path(&self, item: &ItemPath) -> PathBuf {
        self.root
            .join(&item.namespace)
            .join(&item.group)
            .join(format!(".{}.meta", item.key))
    }

    /// Writes `item` (content first, then its metadata, each atomically).
    pub fn write(&self, item: &ItemPath, cached: &CachedItem) -> std::io::Result<()> {
        let meta = serde_json::to_vec_pretty(&cached.meta).map_err(std::io::Error::other)?;
        write_atomically(
            &self.content_path(item),
            cached.content.as_bytes(),
            cached.meta.secret,
        )?;
        write_atomically(&self.meta_path(item), &meta, false)
    }

    /// Reads `item`, when both its files are there and agree.
    pub fn read(&self, item: &ItemPath) -> Option<CachedItem> {
        let meta: CachedMeta =
            serde_json::from_slice(&std::fs::read(self.meta_path(item)).ok()?).ok()?;
        let content = std::fs::read_to_string(self.content_path(item)).ok()?;
        // A crash between the two renames leaves new content with old metadata:
        // the MD5 tells, and the item is fetched again.
        (crate::center::md5_hex(content.as_bytes()) == meta.md5)
            .then_some(CachedItem { meta, content })
    }

    /// Reads every item of `items` that is cached.
    pub fn read_all(&self, items: &[ItemPath]) -> HashMap<ItemPath, CachedItem> {
        items
            .iter()
            .filter_map(|item| self.read(item).map(|cached| (item.clone(), cached)))
            .collect()
    }

    /// Removes `item`'s files (the item was deleted).
    pub fn remove(&self, item: &ItemPath) -> std::io::Result<()> {
        for path in [self.content_path(item), self.meta_path(item)] {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

fn write_atomically(path: &Path, bytes: &[u8], private: bool) -> std::io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("no parent directory"))?;
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    let mut file = options.open(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_round_trip_and_a_torn_pair_is_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let cache = HostCache::new(dir.path());
        let item = ItemPath::new("default", "app", "db.yaml").unwrap();
        let cached = CachedItem {
            meta: CachedMeta {
                version: 3,
                md5: crate::center::md5_hex(b"pool: 10\n"),
                format: Format::Yaml,
                gray: false,
                secret: false,
                fetched_ms: 1,
            },
            content: "pool: 10\n".into(),
        };
        cache.write(&item, &cached).unwrap();
        assert_eq!(cache.read(&item), Some(cached.clone()));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("configs/default/app/db.yaml")).unwrap(),
            "pool: 10\n"
        );
        std::fs::write(cache.content_path(&item), "pool: 11\n").unwrap();
        assert_eq!(cache.read(&item), None);
        cache.remove(&item).unwrap();
        assert_eq!(cache.read_all(&[item]), HashMap::new());
    }
}
