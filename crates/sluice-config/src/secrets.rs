//! Sealing secret items: AES-256-GCM (ring) with a key kept outside the store —
//! in the data directory (`secrets.key`, made on first start, mode 0600) or in the
//! file `--secrets-key-file` names. Each version gets a random nonce, and the
//! item's path and version are bound in as associated data, so a sealed value
//! copied to another item or version does not open.

use std::path::Path;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

use crate::item::ItemPath;

/// What a sealed value starts with (format 1).
const MAGIC: &[u8; 4] = b"SLC1";
/// Bytes of the key id after the magic.
const KEY_ID_LEN: usize = 8;
/// What sealing adds to a value's length.
pub const SEAL_OVERHEAD: usize = 4 + KEY_ID_LEN + NONCE_LEN + 16;

/// Why a key could not be loaded or a value not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// The key file is unreadable or malformed.
    #[error("secrets key {path}: {message}")]
    Key {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A stored value does not open with this key.
    #[error("{0}")]
    Open(String),
}

/// The key secret items are sealed with.
pub struct Sealer {
    key: LessSafeKey,
    id: [u8; KEY_ID_LEN],
    random: SystemRandom,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealer(key id {})", hex(&self.id))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Sealer {
    /// A sealer over 32 key bytes.
    pub fn from_key(bytes: &[u8; 32]) -> Self {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(bytes);
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&digest[..KEY_ID_LEN]);
        // AES-256 takes exactly 32 bytes, which the type guarantees.
        let key = UnboundKey::new(&AES_256_GCM, bytes)
            .map(LessSafeKey::new)
            .unwrap_or_else(|_| unreachable!("AES-256-GCM takes a 32-byte key"));
        Sealer {
            key,
            id,
            random: SystemRandom::new(),
        }
    }

    /// Loads the key from `path` (64 hex digits, or 32 raw bytes); when `create`
    /// and the file is missing, makes one with a random key, readable by its owner only.
    pub fn load(path: &Path, create: bool) -> Result<Self, SecretsError> {
        let fail = |message: String| SecretsError::Key {
            path: path.display().to_string(),
            message,
        };
        match std::fs::read(path) {
            Ok(bytes) => parse_key(&bytes)
                .map(|k| Sealer::from_key(&k))
                .map_err(fail),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                let mut key = [0u8; 32];
                SystemRandom::new()
                    .fill(&mut key)
                    .map_err(|_| fail("the system's random source failed".into()))?;
                write_private(path, format!("{}\n", hex(&key)).as_bytes())
                    .map_err(|e| fail(format!("cannot create it: {e}")))?;
                Ok(Sealer::from_key(&key))
            }
            Err(e) => Err(fail(e.to_string())),
        }
    }

    /// The key's id (the first bytes of its SHA-256), hex.
    pub fn key_id(&self) -> String {
        hex(&self.id)
    }

    /// Seals `plain` for `item`'s `version`.
    pub fn seal(
        &self,
        item: &ItemPath,
        version: u64,
        plain: &[u8],
    ) -> Result<Vec<u8>, SecretsError> {
        let mut nonce = [0u8; NONCE_LEN];
        // Without randomness a nonce could repeat: refuse rather than seal weakly.
        self.random.fill(&mut nonce).map_err(|_| {
            SecretsError::Open("the system's random source failed while sealing".into())
        })?;
        let mut out = Vec::with_capacity(plain.len() + SEAL_OVERHEAD);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&nonce);
        let mut body = plain.to_vec();
        let aad = associated(item, version);
        if self
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad.as_bytes()),
                &mut body,
            )
            .is_err()
        {
            return Err(SecretsError::Open(format!(
                "{item} version {version}: sealing failed"
            )));
        }
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Opens what [`Sealer::seal`] made for the same item and version.
    pub fn open(
        &self,
        item: &ItemPath,
        version: u64,
        sealed: &[u8],
    ) -> Result<Vec<u8>, SecretsError> {
        let header = 4 + KEY_ID_LEN + NONCE_LEN;
        if sealed.len() < header + 16 || &sealed[..4] != MAGIC {
            return Err(SecretsError::Open(format!(
                "{item} version {version}: the stored value is not sealed"
            )));
        }
        if sealed[4..4 + KEY_ID_LEN] != self.id {
            return Err(SecretsError::Open(format!(
                "{item} version {version} was sealed with key {}, not this node's key {}; \
                 give every node the same --secrets-key-file",
                hex(&sealed[4..4 + KEY_ID_LEN]),
                self.key_id()
            )));
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&sealed[4 + KEY_ID_LEN..header]);
        let mut body = sealed[header..].to_vec();
        let aad = associated(item, version);
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad.as_bytes()),
                &mut body,
            )
            .map_err(|_| {
                SecretsError::Open(format!(
                    "{item} version {version}: the sealed value does not open (altered or moved)"
                ))
            })?;
        Ok(plain.to_vec())
    }
}

fn associated(item: &ItemPath, version: u64) -> String {
    format!("sluice-config/1:{item}:{version}")
}

fn parse_key(bytes: &[u8]) -> Result<[u8; 32], String> {
    let mut key = [0u8; 32];
    let text = std::str::from_utf8(bytes).map(str::trim).unwrap_or("");
    if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        for (i, chunk) in text.as_bytes().chunks(2).enumerate() {
            let pair = std::str::from_utf8(chunk).map_err(|e| e.to_string())?;
            key[i] = u8::from_str_radix(pair, 16).map_err(|e| e.to_string())?;
        }
        return Ok(key);
    }
    if bytes.len() == 32 {
        key.copy_from_slice(bytes);
        return Ok(key);
    }
    Err("a key is 64 hex digits (or 32 raw bytes); make one with `openssl rand -hex 32`".into())
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(key: &str) -> ItemPath {
        ItemPath::new("default", "app", key).unwrap()
    }

    #[test]
    fn sealed_values_open_only_for_their_item_version_and_key() {
        let sealer = Sealer::from_key(&[7; 32]);
        let sealed = sealer.seal(&item("db"), 3, b"password=hunter2").unwrap();
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(sealed.len(), 16 + SEAL_OVERHEAD);
        assert_eq!(
            sealer.open(&item("db"), 3, &sealed).unwrap(),
            b"password=hunter2"
        );
        assert!(sealer.open(&item("db"), 4, &sealed).is_err());
        assert!(sealer.open(&item("other"), 3, &sealed).is_err());
        let other = Sealer::from_key(&[8; 32]);
        let error = other.open(&item("db"), 3, &sealed).unwrap_err();
        assert!(error.to_string().contains("--secrets-key-file"), "{error}");
        let mut altered = sealed.clone();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        assert!(sealer.open(&item("db"), 3, &altered).is_err());
        // Two seals of one value differ (fresh nonces).
        assert_ne!(
            sealed,
            sealer.seal(&item("db"), 3, b"password=hunter2").unwrap()
        );
    }

    #[test]
    fn a_key_file_is_made_once_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.key");
        let first = Sealer::load(&path, true).unwrap();
        let again = Sealer::load(&path, true).unwrap();
        assert_eq!(first.key_id(), again.key_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(dir.path().join("bad.key"), "short").unwrap();
        let error = Sealer::load(&dir.path().join("bad.key"), false).unwrap_err();
        assert!(error.to_string().contains("64 hex digits"), "{error}");
        assert!(Sealer::load(&dir.path().join("missing.key"), false).is_err());
    }
}
