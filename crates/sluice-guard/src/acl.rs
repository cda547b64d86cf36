//! Access lists and bans: CIDR blocks (IPv4 and IPv6), allow / deny decisions, and
//! the automatic-ban tracker that bans a key rejected too often in a window.

use std::net::IpAddr;
use std::num::NonZeroUsize;

use lru::LruCache;
use parking_lot::Mutex;

use crate::limit::InvalidLimit;

/// A CIDR block such as `10.0.0.0/8` or `2001:db8::/32`; a bare address is a block
/// of one. IPv4-mapped IPv6 clients (`::ffff:a.b.c.d`) match IPv4 blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: u128,
    prefix: u8,
    v4: bool,
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// All ones in an address of `bits` bits.
fn width(bits: u8) -> u128 {
    if bits == 32 {
        u128::from(u32::MAX)
    } else {
        u128::MAX
    }
}

/// The network mask of a `/prefix` in an address of `bits` bits.
fn mask(prefix: u8, bits: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        (u128::MAX << (bits - prefix)) & width(bits)
    }
}

impl Cidr {
    /// Parses `ADDR/PREFIX` or `ADDR`. Host bits set below the prefix are refused
    /// (`10.0.0.1/8` is probably a mistake for `10.0.0.0/8`).
    pub fn parse(text: &str) -> Result<Cidr, InvalidLimit> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let ip: IpAddr = address
            .trim()
            .parse()
            .map_err(|_| InvalidLimit(format!("{text:?} is not an IP address or CIDR block")))?;
        let ip = canonical(ip);
        let (bits, value) = match ip {
            IpAddr::V4(v4) => (32u8, u128::from(u32::from(v4))),
            IpAddr::V6(v6) => (128u8, u128::from(v6)),
        };
        let prefix = match prefix {
            None => bits,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= bits)
                .ok_or_else(|| {
                    InvalidLimit(format!("{text:?}: the prefix length must be 0..={bits}"))
                })?,
        };
        if value & !mask(prefix, bits) & width(bits) != 0 {
            return Err(InvalidLimit(format!(
                "{text:?} has host bits set below /{prefix}"
            )));
        }
        Ok(Cidr {
            network: value,
            prefix,
            v4: bits == 32,
        })
    }

    /// Whether `ip` is in the block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match canonical(ip) {
            IpAddr::V4(v4) if self.v4 => {
                u128::from(u32::from(v4)) & mask(self.prefix, 32) == self.network
            }
            IpAddr::V6(v6) if !self.v4 => u128::from(v6) & mask(self.prefix, 128) == self.network,
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.v4 {
            let ip = std::net::Ipv4Addr::from(self.network as u32);
            write!(f, "{ip}/{}", self.prefix)
        } else {
            let ip = std::net::Ipv6Addr::from(self.network);
            write!(f, "{ip}/{}", self.prefix)
        }
    }
}

/// An allow / deny list. A client in `deny` is refused; when `allow` is not empty,
/// a client must be in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessList {
    /// Clients admitted (empty: everyone not denied).
    pub allow: Vec<Cidr>,
    /// Clients refused.
    pub deny: Vec<Cidr>,
}

impl AccessList {
    /// Parses both lists; the error names the entry.
    pub fn parse(allow: &[String], deny: &[String]) -> Result<Self, InvalidLimit> {
        let parse = |list: &[String]| -> Result<Vec<Cidr>, InvalidLimit> {
            list.iter().map(|c| Cidr::parse(c)).collect()
        };
        Ok(AccessList {
            allow: parse(allow)?,
            deny: parse(deny)?,
        })
    }

    /// Whether `ip` may pass.
    pub fn permits(&self, ip: IpAddr) -> bool {
        !self.deny.iter().any(|c| c.contains(ip))
            && (self.allow.is_empty() || self.allow.iter().any(|c| c.contains(ip)))
    }
}

/// Counts rejections per key in a fixed window and bans a key that goes over
/// `after` within it, for `ban_ms`. The table is bounded (least recently used keys
/// are forgotten).
#[derive(Debug)]
pub struct AutoBan {
    after: u32,
    window_ms: i64,
    ban_ms: i64,
    /// key → (window start, rejections in it, banned until).
    keys: Mutex<LruCache<Vec<u8>, (i64, u32, i64)>>,
    /// Bans issued (for metrics).
    issued: std::sync::atomic::AtomicU64,
}

impl AutoBan {
    /// Bans a key for `ban_ms` once it is rejected more than `after` times within `window_ms`.
    pub fn new(after: u32, window_ms: i64, ban_ms: i64, max_keys: usize) -> Self {
        AutoBan {
            after,
            window_ms: window_ms.max(1),
            ban_ms,
            keys: Mutex::new(LruCache::new(
                NonZeroUsize::new(max_keys.max(1)).unwrap_or(NonZeroUsize::MIN),
            )),
            issued: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Counts a rejection of `key`; true when it got the key banned.
    pub fn rejected(&self, key: &[u8], now_ms: i64) -> bool {
        let mut keys = self.keys.lock();
        let entry = keys.get_or_insert_mut(key.to_vec(), || (now_ms, 0, i64::MIN));
        if now_ms - entry.0 >= self.window_ms {
            *entry = (now_ms, 0, entry.2);
        }
        entry.1 += 1;
        if entry.1 > self.after && entry.2 <= now_ms {
            entry.2 = now_ms + self.ban_ms;
            self.issued
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return true;
        }
        false
    }

    /// Until when `key` is banned, if it is at `now_ms`.
    pub fn banned_until(&self, key: &[u8], now_ms: i64) -> Option<i64> {
        if self.issued.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            return None;
        }
        let mut keys = self.keys.lock();
        keys.get(key).map(|e| e.2).filter(|until| *until > now_ms)
    }

    /// Bans issued so far.
    pub fn issued(&self) -> u64 {
        self.issued.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn cidrs_parse_and_match_v4_and_v6() {
        let block = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(block.contains(ip("10.255.1.2")));
        assert!(!block.contains(ip("11.0.0.1")));
        assert!(block.contains(ip("::ffff:10.1.2.3")), "IPv4-mapped");
        let one = Cidr::parse("127.0.0.2").unwrap();
        assert!(one.contains(ip("127.0.0.2")) && !one.contains(ip("127.0.0.1")));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:1::5")));
        assert!(!v6.contains(ip("2001:db9::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("1.2.3.4")));
        assert!(Cidr::parse("::/0").unwrap().contains(ip("::1")));
        assert_eq!(Cidr::parse("::1").unwrap().to_string(), "::1/128");
    }

    #[test]
    fn bad_cidrs_are_named() {
        for bad in [
            "10.0.0.0/33",
            "10.0.0.1/8",
            "nope",
            "::1/129",
            "1.2.3/24",
            "10.0.0.0/x",
            "",
        ] {
            let error = Cidr::parse(bad).unwrap_err().0;
            assert!(error.contains(&format!("{bad:?}")), "{bad}: {error}");
        }
    }

    #[test]
    fn deny_wins_and_a_non_empty_allow_list_is_required() {
        let list = AccessList::parse(&["10.0.0.0/8".into()], &["10.0.0.9/32".into()]).unwrap();
        assert!(list.permits(ip("10.0.0.1")));
        assert!(!list.permits(ip("10.0.0.9")));
        assert!(!list.permits(ip("192.168.0.1")));
        let deny_only = AccessList::parse(&[], &["127.0.0.2/32".into()]).unwrap();
        assert!(deny_only.permits(ip("127.0.0.1")));
        assert!(!deny_only.permits(ip("127.0.0.2")));
    }

    #[test]
    fn keys_rejected_too_often_are_banned_for_a_while() {
        let bans = AutoBan::new(3, 1_000, 5_000, 100);
        for t in 0..3 {
            assert!(!bans.rejected(b"k", t));
        }
        assert_eq!(bans.banned_until(b"k", 10), None);
        assert!(bans.rejected(b"k", 10));
        assert_eq!(bans.banned_until(b"k", 11), Some(5_010));
        assert_eq!(bans.banned_until(b"other", 11), None);
        assert_eq!(bans.banned_until(b"k", 5_010), None, "expired");
        // A new window starts the count again.
        let slow = AutoBan::new(3, 1_000, 5_000, 100);
        for t in [0, 600, 1_200, 1_800, 2_400] {
            assert!(!slow.rejected(b"k", t));
        }
    }

    #[test]
    fn the_ban_table_is_bounded() {
        let bans = AutoBan::new(0, 1_000, 5_000, 1_000);
        for i in 0..100_000u32 {
            bans.rejected(&i.to_be_bytes(), 0);
        }
        assert_eq!(bans.keys.lock().len(), 1_000);
    }
}
