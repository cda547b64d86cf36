//! Store URLs: how a user names a backend.
//!
//! - `memory://` — in process, gone at exit;
//! - `redb:///abs/dir` or `redb://rel/dir` — the embedded store in that data directory;
//! - `etcd://host1:2379,host2:2379/prefix` — an etcd cluster; keys live under
//!   `/prefix/` (`/sluice/` when no prefix is given); a port defaults to 2379.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use crate::{EtcdOptions, EtcdStore, LocalStore, LocalStoreOptions, Result, Store, StoreError};

/// The default etcd key prefix.
pub const DEFAULT_ETCD_PREFIX: &str = "/sluice";

/// A parsed store URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// `memory://`
    Memory,
    /// `redb://DIR`
    Redb {
        /// The data directory.
        dir: PathBuf,
    },
    /// `etcd://ENDPOINTS/PREFIX`
    Etcd {
        /// `host:port` of each member.
        endpoints: Vec<String>,
        /// Key prefix, starting with `/`, without a trailing `/`.
        prefix: String,
    },
}

impl FromStr for StoreUrl {
    type Err = StoreError;

    fn from_str(url: &str) -> Result<Self> {
        let invalid = |reason: &str| StoreError::InvalidUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(invalid(
                "expected SCHEME://..., with scheme memory, redb or etcd \
                 (for example redb://./sluice-data or etcd://127.0.0.1:2379)",
            ));
        };
        match scheme {
            "memory" if rest.is_empty() => Ok(StoreUrl::Memory),
            "memory" => Err(invalid("memory:// takes nothing after the scheme")),
            "redb" if rest.is_empty() => Err(invalid(
                "redb:// needs a directory, as in redb:///var/lib/sluice",
            )),
            "redb" if rest.contains('\0') => Err(invalid("the directory holds a NUL byte")),
            "redb" => Ok(StoreUrl::Redb {
                dir: PathBuf::from(rest),
            }),
            "etcd" => parse_etcd(rest).map_err(|reason| invalid(&reason)),
            other => Err(invalid(&format!(
                "unknown scheme {other:?}: use memory, redb or etcd"
            ))),
        }
    }
}

fn parse_etcd(rest: &str) -> std::result::Result<StoreUrl, String> {
    let (hosts, prefix) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, ""),
    };
    if hosts.is_empty() {
        return Err("no endpoint: expected etcd://host:port[,host:port...][/prefix]".into());
    }
    let mut endpoints = Vec::new();
    for endpoint in hosts.split(',') {
        let endpoint = endpoint.trim();
        if endpoint.is_empty() {
            return Err("empty endpoint in the list".into());
        }
        let (host, port) = match endpoint.rsplit_once(':') {
            // An IPv6 address without a port, such as [::1].
            Some((host, port)) if !port.contains(']') => (host, Some(port)),
            _ => (endpoint, None),
        };
        if host.is_empty() {
            return Err(format!("endpoint {endpoint:?} has no host"));
        }
        if !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '[' | ']' | ':'))
        {
            return Err(format!("endpoint {endpoint:?} has an invalid host"));
        }
        let port = match port {
            None => 2379,
            Some(port) => port
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("endpoint {endpoint:?} has an invalid port {port:?}"))?,
        };
        endpoints.push(format!("{host}:{port}"));
    }
    let prefix = prefix.trim_end_matches('/');
    let prefix = if prefix.is_empty() {
        DEFAULT_ETCD_PREFIX.to_owned()
    } else {
        if prefix.contains("//")
            || prefix
                .chars()
                .any(|c| c.is_control() || c == '?' || c == '#')
        {
            return Err(format!("invalid key prefix {prefix:?}"));
        }
        prefix.to_owned()
    };
    Ok(StoreUrl::Etcd { endpoints, prefix })
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreUrl::Memory => write!(f, "memory://"),
            StoreUrl::Redb { dir } => write!(f, "redb://{}", dir.display()),
            StoreUrl::Etcd { endpoints, prefix } => {
                write!(f, "etcd://{}{prefix}", endpoints.join(","))
            }
        }
    }
}

impl StoreUrl {
    /// Opens the store this URL names, with default options.
    pub async fn open(&self) -> Result<Arc<dyn Store>> {
        Ok(match self {
            StoreUrl::Memory => Arc::new(LocalStore::memory(LocalStoreOptions::default())?),
            StoreUrl::Redb { dir } => {
                Arc::new(LocalStore::open_redb(dir, LocalStoreOptions::default())?)
            }
            StoreUrl::Etcd { endpoints, prefix } => {
                Arc::new(EtcdStore::connect(endpoints, prefix, EtcdOptions::default()).await?)
            }
        })
    }
}

/// Parses a store URL and opens that store. A malformed URL fails with
/// [`StoreError::InvalidUrl`], an unreachable store with [`StoreError::Unavailable`];
/// both name the URL.
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    url.parse::<StoreUrl>()?.open().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_scheme() {
        assert_eq!("memory://".parse::<StoreUrl>().ok(), Some(StoreUrl::Memory));
        assert_eq!(
            "redb:///var/lib/sluice".parse::<StoreUrl>().ok(),
            Some(StoreUrl::Redb {
                dir: "/var/lib/sluice".into()
            })
        );
        assert_eq!(
            "redb://./sluice-data".parse::<StoreUrl>().ok(),
            Some(StoreUrl::Redb {
                dir: "./sluice-data".into()
            })
        );
        assert_eq!(
            "etcd://h1:2379,h2/team-a".parse::<StoreUrl>().ok(),
            Some(StoreUrl::Etcd {
                endpoints: vec!["h1:2379".into(), "h2:2379".into()],
                prefix: "/team-a".into()
            })
        );
        assert_eq!(
            "etcd://127.0.0.1:23790".parse::<StoreUrl>().ok(),
            Some(StoreUrl::Etcd {
                endpoints: vec!["127.0.0.1:23790".into()],
                prefix: "/sluice".into()
            })
        );
        assert_eq!(
            "etcd://[::1]:2379/".parse::<StoreUrl>().ok(),
            Some(StoreUrl::Etcd {
                endpoints: vec!["[::1]:2379".into()],
                prefix: "/sluice".into()
            })
        );
    }

    #[test]
    fn malformed_urls_name_the_url_and_the_problem() {
        for (url, expected) in [
            ("", "expected SCHEME://"),
            ("sluice-data", "expected SCHEME://"),
            ("redb://", "needs a directory"),
            ("memory://x", "nothing after the scheme"),
            ("postgres://db", "unknown scheme \"postgres\""),
            ("etcd://", "no endpoint"),
            ("etcd://h1:2379,,h2", "empty endpoint"),
            ("etcd://h1:99999", "invalid port \"99999\""),
            ("etcd://h1:abc", "invalid port"),
            ("etcd://:2379", "has no host"),
            ("etcd://h1 h2:2379", "invalid host"),
            ("etcd://h1//a", "invalid key prefix"),
        ] {
            let error = url.parse::<StoreUrl>().expect_err(url).to_string();
            assert!(
                error.contains(&format!("{url:?}")),
                "{error} should name {url:?}"
            );
            assert!(error.contains(expected), "{error} should say {expected:?}");
        }
    }
}
