//! Consistent hashing: a ketama ring and Maglev. Keys (a header, a cookie, the
//! client IP) map to endpoints so that adding or removing one endpoint moves only
//! about its share of the keys.

/// Maglev's lookup-table size (a prime).
pub const MAGLEV_TABLE_SIZE: usize = 65_537;
/// Smallest number of points on a ring.
const MIN_RING_POINTS: u64 = 1024;

/// A stable 64-bit hash (FNV-1a, then a splitmix64 finaliser for avalanche). Stable
/// across builds and platforms, so every gateway maps a key the same way.
pub fn hash_key(bytes: &[u8]) -> u64 {
    hash_seeded(bytes, 0)
}

fn hash_seeded(bytes: &[u8], seed: u64) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut z = hash.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A ketama ring: each endpoint gets points in proportion to its weight, hashed from
/// `"<address>_<i>"`, at least 1024 points in all; a key goes to the first point at
/// or after its hash, wrapping around.
pub struct Ring {
    points: Vec<(u64, usize)>,
}

impl Ring {
    /// A ring over `(address, weight)` endpoints; weight 0 gets no points.
    pub fn new(endpoints: &[(&str, u32)]) -> Self {
        // 160 points per 100 of weight (ketama's 160 per server at the default weight),
        // doubled until the ring has 1024 points. The count of an endpoint does not
        // depend on the others' (unless the doubling changes), so a joining endpoint
        // takes only its share of keys.
        let base = |weight: u32| (u64::from(weight) * 160).div_ceil(100);
        let total: u64 = endpoints.iter().map(|(_, w)| base(*w)).sum();
        let mut scale = 1;
        while total > 0 && total * scale < MIN_RING_POINTS {
            scale *= 2;
        }
        let mut points = Vec::new();
        for (index, (address, weight)) in endpoints.iter().enumerate() {
            for i in 0..scale * base(*weight) {
                points.push((hash_key(format!("{address}_{i}").as_bytes()), index));
            }
        }
        points.sort_unstable();
        Ring { points }
    }

    /// The endpoint for a key hash, or `None` when the ring is empty.
    pub fn pick(&self, key_hash: u64) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let at = self.points.partition_point(|(point, _)| *point < key_hash);
        Some(self.points[at % self.points.len()].1)
    }

    /// Points on the ring.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Whether the ring has no points.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }
}

/// Maglev hashing: a 65,537-entry table filled from each endpoint's permutation
/// (`offset = h1(address) % M`, `skip = h2(address) % (M − 1) + 1`); endpoints take
/// turns in proportion to their weights. Lookups are one array index.
pub struct Maglev {
    table: Vec<u32>,
}

impl Maglev {
    /// A table over `(address, weight)` endpoints; weight 0 gets no entries.
    pub fn new(endpoints: &[(&str, u32)]) -> Self {
        let m = MAGLEV_TABLE_SIZE as u64;
        let live: Vec<(usize, u64, u64, u64)> = endpoints
            .iter()
            .enumerate()
            .filter(|(_, (_, weight))| *weight > 0)
            .map(|(index, (address, weight))| {
                let offset = hash_seeded(address.as_bytes(), 1) % m;
                let skip = hash_seeded(address.as_bytes(), 2) % (m - 1) + 1;
                (index, offset, skip, u64::from(*weight))
            })
            .collect();
        if live.is_empty() {
            return Maglev { table: Vec::new() };
        }
        let max_weight = live.iter().map(|l| l.3).max().unwrap_or(1);
        let mut table = vec![u32::MAX; MAGLEV_TABLE_SIZE];
        let mut next = vec![0u64; live.len()];
        let mut filled_by = vec![0u64; live.len()];
        let mut filled = 0;
        let mut round = 0u64;
        while filled < MAGLEV_TABLE_SIZE {
            round += 1;
            for (slot, (index, offset, skip, weight)) in live.iter().enumerate() {
                // Weighted turns: an endpoint of weight w takes a slot in a round only
                // while it is behind w/max_weight of the rounds so far.
                if filled_by[slot] * max_weight >= round * weight {
                    continue;
                }
                loop {
                    let candidate = ((offset + next[slot] * skip) % m) as usize;
                    next[slot] += 1;
                    if table[candidate] == u32::MAX {
                        table[candidate] = u32::try_from(*index).unwrap_or(u32::MAX);
                        filled_by[slot] += 1;
                        filled += 1;
                        break;
                    }
                }
                if filled == MAGLEV_TABLE_SIZE {
                    break;
                }
            }
        }
        Maglev { table }
    }

    /// The endpoint for a key hash, or `None` when there are no endpoints.
    pub fn pick(&self, key_hash: u64) -> Option<usize> {
        if self.table.is_empty() {
            return None;
        }
        Some(self.table[(key_hash % MAGLEV_TABLE_SIZE as u64) as usize] as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{i}:8080")).collect()
    }

    fn endpoints(hosts: &[String]) -> Vec<(&str, u32)> {
        hosts.iter().map(|h| (h.as_str(), 1)).collect()
    }

    /// Share of keys whose endpoint (by address) changes from `before` to `after`.
    fn moved(
        pick_before: impl Fn(u64) -> usize,
        pick_after: impl Fn(u64) -> usize,
        hosts: &[String],
    ) -> f64 {
        let keys = 100_000u64;
        let moved = (0..keys)
            .filter(|k| {
                let hash = hash_key(format!("user-{k}").as_bytes());
                hosts[pick_before(hash)] != hosts[pick_after(hash)]
            })
            .count();
        moved as f64 / keys as f64
    }

    #[test]
    fn adding_a_host_to_a_ten_host_ring_moves_about_a_tenth_of_keys() {
        let eleven = hosts(11);
        let before = Ring::new(&endpoints(&eleven[..10]));
        let after = Ring::new(&endpoints(&eleven));
        assert!(before.len() >= 1024);
        let share = moved(
            |h| before.pick(h).unwrap(),
            |h| after.pick(h).unwrap(),
            &eleven,
        );
        assert!(share <= 0.12, "{share} of keys moved (ideal 1/11 ≈ 0.091)");
        assert!(share > 0.05, "{share}: the new host must take some keys");
    }

    #[test]
    fn ring_spreads_keys_by_weight() {
        let names = hosts(3);
        let ring = Ring::new(&[
            (names[0].as_str(), 1),
            (names[1].as_str(), 2),
            (names[2].as_str(), 0),
        ]);
        let mut counts = [0usize; 3];
        for k in 0..60_000u64 {
            counts[ring.pick(hash_key(&k.to_le_bytes())).unwrap()] += 1;
        }
        assert_eq!(counts[2], 0, "weight 0 gets nothing");
        let share = counts[1] as f64 / 60_000.0;
        assert!((share - 2.0 / 3.0).abs() < 0.06, "{counts:?}");
        assert_eq!(Ring::new(&[]).pick(1), None);
    }

    #[test]
    fn maglev_balances_and_moves_little_when_a_host_joins() {
        let eleven = hosts(11);
        let before = Maglev::new(&endpoints(&eleven[..10]));
        let after = Maglev::new(&endpoints(&eleven));
        let mut counts = [0usize; 10];
        for slot in &before.table {
            counts[*slot as usize] += 1;
        }
        let ideal = MAGLEV_TABLE_SIZE / 10;
        assert!(
            counts.iter().all(|c| c.abs_diff(ideal) <= ideal / 50),
            "{counts:?}"
        );
        let share = moved(
            |h| before.pick(h).unwrap(),
            |h| after.pick(h).unwrap(),
            &eleven,
        );
        assert!(share <= 0.15, "{share} of keys moved (ideal 1/11 ≈ 0.091)");
    }

    #[test]
    fn maglev_honours_weights() {
        let names = hosts(2);
        let table = Maglev::new(&[(names[0].as_str(), 1), (names[1].as_str(), 3)]);
        let heavy =
            table.table.iter().filter(|slot| **slot == 1).count() as f64 / MAGLEV_TABLE_SIZE as f64;
        assert!((heavy - 0.75).abs() < 0.01, "{heavy}");
        assert_eq!(Maglev::new(&[(names[0].as_str(), 0)]).pick(5), None);
    }

    #[test]
    fn hashes_are_stable() {
        assert_eq!(hash_key(b"user-1"), hash_key(b"user-1"));
        assert_ne!(hash_key(b"user-1"), hash_key(b"user-2"));
    }
}
