//! Virtual shards: which shard a user belongs to, and the hash tag that
//! puts each shard's keys in a Redis Cluster slot of its own.
//!
//! Both answers must be the same on every node and in every version that
//! shares a store, so they are computed with fixed functions written here
//! (FNV-1a for users, Redis's own CRC16 for slots), never with a seeded
//! hasher.

/// The most shards a store may have: each shard's tag is searched for in a
/// slot window of its own, and a window must stay a few slots wide.
pub(crate) const MAX_SHARDS: u16 = 1024;

/// How many hash slots a Redis Cluster has.
const SLOTS: u32 = 16384;

/// One virtual shard of a store: `0..count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Shard(pub(crate) u16);

/// The shard of a user among `count`: FNV-1a (64 bits) of the id's bytes,
/// modulo `count`.
pub(crate) fn shard_of(user: &str, count: u16) -> Shard {
    if count <= 1 {
        return Shard(0);
    }
    let index = fnv1a(user.as_bytes()) % u64::from(count);
    Shard(u16::try_from(index).unwrap_or(0))
}

/// The hash tag of each of `count` shards under `prefix`, spread evenly
/// over the slots: shard `i` gets the first of `prefix:i`, `prefix:i.1`,
/// `prefix:i.2`, … whose slot lies in the middle half of the `i`-th of
/// `count` equal slot ranges. A cluster whose masters hold equal ranges
/// (what `redis-cli --cluster create` makes) then holds equal numbers of
/// shards, and no two shards share a slot.
pub(crate) fn tags(prefix: &str, count: u16) -> Vec<String> {
    let count = u32::from(count.clamp(1, MAX_SHARDS));
    let width = SLOTS / count;
    (0..count)
        .map(|index| {
            let start = index * width + width / 4;
            let end = start + (width / 2).max(1);
            (0u32..)
                .map(|attempt| match attempt {
                    0 => format!("{prefix}:{index}"),
                    n => format!("{prefix}:{index}.{n}"),
                })
                .find(|tag| (start..end).contains(&u32::from(slot(tag.as_bytes()))))
                .unwrap_or_default()
        })
        .collect()
}

/// The cluster slot of a hash tag's content (or of a key without one).
pub(crate) fn slot(tag: &[u8]) -> u16 {
    crc16(tag) % 16384
}

/// CRC16-CCITT (XModem), the checksum Redis Cluster hashes keys with.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// FNV-1a, 64 bits.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_the_ones_redis_cluster_computes() {
        // The check value of the Redis Cluster specification, and
        // `CLUSTER KEYSLOT` of two keys from its documentation.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"somekey"), 11058);
    }

    #[test]
    fn a_users_shard_is_fixed_across_nodes_and_versions() {
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        // Pinned: changing these moves users between shards, which a
        // store written by another version could not read.
        assert_eq!(shard_of("alice", 16), Shard(7));
        assert_eq!(shard_of("bob", 16), Shard(4));
        assert_eq!(shard_of("anyone", 1), Shard(0));
    }

    #[test]
    fn users_spread_over_every_shard() {
        let mut counts = [0usize; 16];
        for n in 0..16_000 {
            counts[usize::from(shard_of(&format!("user-{n}"), 16).0)] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn each_shards_tag_lies_in_its_own_slot_range() {
        for count in [1u16, 2, 3, 16, 100, MAX_SHARDS] {
            let tags = tags("presence", count);
            assert_eq!(tags.len(), usize::from(count));
            let width = 16384 / u32::from(count);
            for (index, tag) in tags.iter().enumerate() {
                let slot = u32::from(slot(tag.as_bytes()));
                assert_eq!(slot / width, index as u32, "{tag} in slot {slot}");
            }
        }
    }

    #[test]
    fn sixteen_shards_split_evenly_over_three_equal_masters() {
        // `redis-cli --cluster create` with three masters.
        let master = |slot: u16| match slot {
            0..=5460 => 0,
            5461..=10922 => 1,
            _ => 2,
        };
        let mut per_master = [0; 3];
        for tag in tags("any-prefix", 16) {
            per_master[master(slot(tag.as_bytes()))] += 1;
        }
        assert_eq!(per_master, [5, 6, 5]);
    }
}
