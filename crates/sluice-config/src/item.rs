//! What a config item is: its path (`namespace / group / key`), the record kept
//! for it in the store (the released version, an optional gray candidate with its
//! rule, the versions kept), and which version a given client is served.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use sluice_model::validate_name;

use crate::format::Format;
use crate::ConfigError;

/// Largest content of one version, in bytes (1 MiB).
pub const MAX_CONTENT_BYTES: usize = 1024 * 1024;
/// Versions kept per item unless the item says otherwise.
pub const DEFAULT_HISTORY: usize = 50;
/// Most versions an item may keep.
pub const MAX_HISTORY: usize = 100;
/// Audit records kept per item (the oldest are dropped).
pub const MAX_AUDIT: u64 = 500;
/// Longest comment.
pub const MAX_COMMENT: usize = 1024;

/// Where an item lives: `namespace / group / key`, each validated like other names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ItemPath {
    /// The namespace (tenant).
    pub namespace: String,
    /// The group (usually the application).
    pub group: String,
    /// The key (`db.yaml`).
    pub key: String,
}

impl ItemPath {
    /// A validated path.
    pub fn new(namespace: &str, group: &str, key: &str) -> Result<Self, ConfigError> {
        validate_name("namespace", namespace)?;
        validate_name("group", group)?;
        validate_name("config key", key)?;
        Ok(ItemPath {
            namespace: namespace.to_owned(),
            group: group.to_owned(),
            key: key.to_owned(),
        })
    }

    /// Parses `NS/GROUP/KEY`.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let mut parts = text.split('/');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(ns), Some(group), Some(key), None) => ItemPath::new(ns, group, key),
            _ => Err(ConfigError::invalid(
                "item",
                format!("{text:?} is not NAMESPACE/GROUP/KEY"),
            )),
        }
    }

    /// The record's store key.
    pub fn record_key(&self) -> String {
        sluice_model::keys::config_item_key(&self.namespace, &self.group, &self.key)
    }

    /// A version's content key.
    pub fn data_key(&self, version: u64) -> String {
        sluice_model::keys::config_data_key(&self.namespace, &self.group, &self.key, version)
    }

    /// An audit record's key.
    pub fn audit_key(&self, seq: u64) -> String {
        sluice_model::keys::config_audit_key(&self.namespace, &self.group, &self.key, seq)
    }
}

impl std::fmt::Display for ItemPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.namespace, self.group, self.key)
    }
}

/// One published version (its content is stored apart, under its own key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionMeta {
    /// The version number: per item, increasing, never reused.
    pub version: u64,
    /// The content's format.
    pub format: Format,
    /// MD5 of the content, hex (empty in the store for secret items; computed on read).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub md5: String,
    /// Content size in bytes.
    pub size: usize,
    /// Who published it (the token's name, or `anonymous`).
    pub author: String,
    /// When, in Unix milliseconds.
    pub published_ms: u64,
    /// The publisher's comment.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub comment: String,
    /// Set on a version made by a rollback: the version whose content it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_of: Option<u64>,
    /// Whether it was published as a gray candidate.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub gray: bool,
    /// Whether its stored content is sealed (the item was secret when it was published).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sealed: bool,
}

/// Which clients get a gray candidate. Every condition given must hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrayRule {
    /// Client addresses: IPs or CIDR blocks (`10.0.0.0/8`), or `*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addresses: Option<Vec<String>>,
    /// Labels the client must send, each equal (a value of `*` takes any value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Percentage (0 < p ≤ 100) of client ids, by a stable hash of item and id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
}

impl GrayRule {
    /// Checks the rule: it must name at least one condition, and none may be empty.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.addresses.is_none() && self.labels.is_none() && self.percent.is_none() {
            return Err(ConfigError::invalid(
                "match",
                "the rule is empty and would match no client: give addresses, labels or percent",
            ));
        }
        if let Some(addresses) = &self.addresses {
            if addresses.is_empty() {
                return Err(ConfigError::invalid(
                    "match.addresses",
                    "the list is empty and would match no client",
                ));
            }
            for (i, address) in addresses.iter().enumerate() {
                if address != "*" && parse_block(address).is_none() {
                    return Err(ConfigError::invalid(
                        format!("match.addresses[{i}]"),
                        format!("{address:?} is not an IP address, a CIDR block or *"),
                    ));
                }
            }
        }
        if let Some(labels) = &self.labels {
            if labels.is_empty() {
                return Err(ConfigError::invalid(
                    "match.labels",
                    "no labels given; the rule would match no client",
                ));
            }
            for (key, value) in labels {
                validate_name("label key", key)
                    .map_err(|e| ConfigError::invalid(format!("match.labels.{key}"), e))?;
                if value.is_empty() || value.len() > 256 {
                    return Err(ConfigError::invalid(
                        format!("match.labels.{key}"),
                        "a label value needs 1 to 256 characters",
                    ));
                }
            }
        }
        if let Some(percent) = self.percent {
            if !(percent > 0.0 && percent <= 100.0) {
                return Err(ConfigError::invalid(
                    "match.percent",
                    format!("{percent} is not above 0 and at most 100; 0 would match no client"),
                ));
            }
        }
        Ok(())
    }

    /// Whether `client` gets the candidate of `item`.
    pub fn matches(&self, item: &ItemPath, client: &ClientInfo) -> bool {
        if let Some(addresses) = &self.addresses {
            let Some(ip) = client.address else {
                return false;
            };
            if !addresses
                .iter()
                .any(|a| a == "*" || parse_block(a).is_some_and(|block| block.contains(ip)))
            {
                return false;
            }
        }
        if let Some(labels) = &self.labels {
            if !labels.iter().all(|(key, want)| {
                client
                    .labels
                    .get(key)
                    .is_some_and(|have| want == "*" || have == want)
            }) {
                return false;
            }
        }
        if let Some(percent) = self.percent {
            let Some(id) = client.id() else {
                return false;
            };
            if f64::from(bucket(item, &id)) >= percent * 100.0 {
                return false;
            }
        }
        true
    }
}

/// A client's bucket for `item`, 0..10000: stable for the item and the client id,
/// so raising a percentage keeps every client already in.
pub fn bucket(item: &ItemPath, client_id: &str) -> u32 {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(item.to_string().as_bytes());
    hasher.update(b"\0");
    hasher.update(client_id.as_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u32::try_from(u64::from_be_bytes(first) % 10_000).unwrap_or(0)
}

/// An address block: an IP and a prefix length.
#[derive(Debug, Clone, Copy)]
struct Block {
    ip: IpAddr,
    bits: u8,
}

impl Block {
    fn contains(self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.ip, ip) {
            (IpAddr::V4(block), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.bits)).unwrap_or(0);
                u32::from(block) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(block), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.bits))
                    .unwrap_or(0);
                u128::from(block) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

fn parse_block(text: &str) -> Option<Block> {
    let (ip, bits) = match text.split_once('/') {
        Some((ip, bits)) => (ip.parse::<IpAddr>().ok()?, Some(bits.parse::<u8>().ok()?)),
        None => (text.parse::<IpAddr>().ok()?, None),
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let bits = bits.unwrap_or(max);
    (bits <= max).then_some(Block { ip, bits })
}

/// Who is asking: what gray rules are matched against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    /// The client's address (given, or the connection's peer).
    pub address: Option<IpAddr>,
    /// The labels it sent (`?labels=canary=true,zone=a`).
    pub labels: BTreeMap<String, String>,
    /// Its id (`?client_id=`), for percentage rules; the address stands in when absent.
    pub client_id: Option<String>,
}

impl ClientInfo {
    /// The id that percentage rules and the watcher list use.
    pub fn id(&self) -> Option<String> {
        self.client_id
            .clone()
            .or_else(|| self.address.map(|a| a.to_string()))
    }

    /// Parses `k=v,k2=v2` labels.
    pub fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, ConfigError> {
        let mut labels = BTreeMap::new();
        for pair in text.split(',').filter(|p| !p.is_empty()) {
            let Some((key, value)) = pair.split_once('=') else {
                return Err(ConfigError::invalid(
                    "labels",
                    format!("{pair:?} is not KEY=VALUE (labels are k=v,k2=v2)"),
                ));
            };
            validate_name("label key", key)
                .map_err(|e| ConfigError::invalid(format!("labels.{key}"), e))?;
            labels.insert(key.to_owned(), value.to_owned());
        }
        Ok(labels)
    }
}

/// A gray candidate and who gets it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GrayState {
    /// The candidate version.
    pub candidate: VersionMeta,
    /// Which clients get it.
    pub rule: GrayRule,
}

/// Everything the store keeps about an item apart from contents and audit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemRecord {
    /// The version every client not matched by a gray rule gets; `None` once deleted.
    pub released: Option<VersionMeta>,
    /// The gray candidate, if one is being tried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gray: Option<GrayState>,
    /// Whether contents are sealed and reads need the secrets permission.
    #[serde(default)]
    pub secret: bool,
    /// How many versions are kept.
    pub history: usize,
    /// The versions kept, oldest first (released and candidate ones).
    pub kept: Vec<VersionMeta>,
    /// The number the next version gets.
    pub next_version: u64,
    /// The sequence number of the next audit record.
    pub next_audit: u64,
}

impl ItemRecord {
    /// A record for an item never published (or deleted with `previous` counters).
    pub fn empty(previous: Option<&ItemRecord>) -> Self {
        ItemRecord {
            released: None,
            gray: None,
            secret: false,
            history: DEFAULT_HISTORY,
            kept: Vec::new(),
            next_version: previous.map_or(1, |p| p.next_version),
            next_audit: previous.map_or(1, |p| p.next_audit),
        }
    }

    /// The version `client` is served, and whether it is the gray candidate.
    pub fn served(&self, item: &ItemPath, client: &ClientInfo) -> Option<(&VersionMeta, bool)> {
        let released = self.released.as_ref()?;
        match &self.gray {
            Some(gray) if gray.rule.matches(item, client) => Some((&gray.candidate, true)),
            _ => Some((released, false)),
        }
    }

    /// A kept version.
    pub fn kept_version(&self, version: u64) -> Option<&VersionMeta> {
        self.kept.iter().find(|v| v.version == version)
    }

    /// Drops the oldest kept versions beyond `history` (never the released one or the
    /// candidate) and answers the numbers dropped, whose contents are to be deleted.
    pub fn trim(&mut self) -> Vec<u64> {
        let pinned = [
            self.released.as_ref().map(|v| v.version),
            self.gray.as_ref().map(|g| g.candidate.version),
        ];
        let mut dropped = Vec::new();
        while self.kept.len() > self.history {
            let Some(at) = self
                .kept
                .iter()
                .position(|v| !pinned.contains(&Some(v.version)))
            else {
                break;
            };
            dropped.push(self.kept.remove(at).version);
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item() -> ItemPath {
        ItemPath::new("default", "app", "db.yaml").unwrap()
    }

    fn client(address: &str, labels: &[(&str, &str)], id: Option<&str>) -> ClientInfo {
        ClientInfo {
            address: address.parse().ok(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            client_id: id.map(str::to_owned),
        }
    }

    #[test]
    fn paths_are_validated_and_parsed() {
        assert_eq!(item().to_string(), "default/app/db.yaml");
        assert_eq!(ItemPath::parse("default/app/db.yaml").unwrap(), item());
        assert!(ItemPath::parse("default/app").is_err());
        assert!(ItemPath::parse("default/app/db.yaml/x").is_err());
        assert!(ItemPath::new("default", "app", "../etc").is_err());
        assert!(ItemPath::new("default", "a b", "k").is_err());
        assert_eq!(item().record_key(), "cfg/item/default/app/db.yaml");
    }

    #[test]
    fn rules_match_every_condition_given() {
        let rule = GrayRule {
            addresses: Some(vec!["10.0.0.0/8".into(), "192.168.1.7".into()]),
            labels: Some([("canary".to_owned(), "true".to_owned())].into()),
            percent: None,
        };
        rule.validate().unwrap();
        assert!(rule.matches(&item(), &client("10.1.2.3", &[("canary", "true")], None)));
        assert!(rule.matches(&item(), &client("192.168.1.7", &[("canary", "true")], None)));
        assert!(!rule.matches(&item(), &client("192.168.1.8", &[("canary", "true")], None)));
        assert!(!rule.matches(&item(), &client("10.1.2.3", &[("canary", "no")], None)));
        assert!(!rule.matches(&item(), &client("10.1.2.3", &[], None)));
        let any = GrayRule {
            labels: Some([("zone".to_owned(), "*".to_owned())].into()),
            ..GrayRule::default()
        };
        assert!(any.matches(&item(), &client("", &[("zone", "a")], None)));
        assert!(!any.matches(&item(), &client("", &[], None)));
        // An IPv4 client seen over IPv6 still matches its v4 block.
        let mapped = ClientInfo {
            address: Some("::ffff:10.0.0.1".parse().unwrap()),
            ..ClientInfo::default()
        };
        let v4 = GrayRule {
            addresses: Some(vec!["10.0.0.0/24".into()]),
            ..GrayRule::default()
        };
        assert!(v4.matches(&item(), &mapped));
    }

    #[test]
    fn rules_that_match_nothing_are_refused() {
        for (rule, field) in [
            (GrayRule::default(), "match"),
            (
                GrayRule {
                    addresses: Some(vec![]),
                    ..GrayRule::default()
                },
                "match.addresses",
            ),
            (
                GrayRule {
                    addresses: Some(vec!["10.0.0.0/33".into()]),
                    ..GrayRule::default()
                },
                "match.addresses[0]",
            ),
            (
                GrayRule {
                    labels: Some(BTreeMap::new()),
                    ..GrayRule::default()
                },
                "match.labels",
            ),
            (
                GrayRule {
                    percent: Some(0.0),
                    ..GrayRule::default()
                },
                "match.percent",
            ),
            (
                GrayRule {
                    percent: Some(f64::NAN),
                    ..GrayRule::default()
                },
                "match.percent",
            ),
        ] {
            let error = rule.validate().unwrap_err();
            assert!(error.to_string().starts_with(field), "{field}: {error}");
        }
    }

    #[test]
    fn percentages_are_stable_and_grow_by_adding_clients() {
        let ids: Vec<String> = (0..10_000).map(|i| format!("client-{i}")).collect();
        let chosen = |percent: f64| -> Vec<&String> {
            let rule = GrayRule {
                percent: Some(percent),
                ..GrayRule::default()
            };
            ids.iter()
                .filter(|id| rule.matches(&item(), &client("", &[], Some(id))))
                .collect()
        };
        let ten = chosen(10.0);
        let twenty = chosen(20.0);
        assert!((900..1100).contains(&ten.len()), "{}", ten.len());
        assert!((1800..2200).contains(&twenty.len()), "{}", twenty.len());
        assert!(ten.iter().all(|id| twenty.contains(id)));
        assert_eq!(bucket(&item(), "client-1"), bucket(&item(), "client-1"));
        // Without an id or an address a client is in no percentage.
        let rule = GrayRule {
            percent: Some(100.0),
            ..GrayRule::default()
        };
        assert!(!rule.matches(&item(), &ClientInfo::default()));
    }

    #[test]
    fn trimming_keeps_the_released_and_candidate_versions() {
        let meta = |version| VersionMeta {
            version,
            format: Format::Text,
            md5: String::new(),
            size: 0,
            author: "a".into(),
            published_ms: 0,
            comment: String::new(),
            rollback_of: None,
            gray: false,
            sealed: false,
        };
        let mut record = ItemRecord::empty(None);
        record.history = 2;
        record.kept = (1..=5).map(meta).collect();
        record.released = Some(meta(1));
        record.gray = Some(GrayState {
            candidate: meta(2),
            rule: GrayRule::default(),
        });
        assert_eq!(record.trim(), vec![3, 4, 5]);
        assert_eq!(
            record.kept.iter().map(|v| v.version).collect::<Vec<_>>(),
            vec![1, 2]
        );
    }

    #[test]
    fn labels_parse_and_bad_ones_are_named() {
        let labels = ClientInfo::parse_labels("canary=true,zone=a").unwrap();
        assert_eq!(labels.get("canary").map(String::as_str), Some("true"));
        assert!(ClientInfo::parse_labels("canary")
            .unwrap_err()
            .to_string()
            .contains("KEY=VALUE"));
    }
}
