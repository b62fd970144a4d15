//! The job ID of a load: the table and the exact set of source objects, hashed.
//!
//! A job ID that follows only from *what* is loaded is what makes a load exactly once (see
//! [`super::jobs`]): every worker and every retry that loads the same objects asks for the same
//! job.

use crate::sink::bigquery::TableRef;

/// One source object, as the job ID identifies it. The ETag is part of the identity so that an
/// object rewritten under the same key is a different load, not a duplicate of the old one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub bucket: String,
    pub key: String,
    pub etag: String,
}

/// The job ID for loading exactly `objects` into `table`, try number `attempt`.
///
/// Only the *set* matters: the list is sorted and deduplicated first, so workers that discover
/// the same objects in a different order agree on the ID. Every string is length-prefixed before
/// hashing so that no two different sets encode to the same bytes (`("ab","c")` vs `("a","bc")`).
/// 128 bits of BLAKE3 make accidental collisions — which would silently skip a load — out of the
/// question. The result uses only characters BigQuery allows in job IDs and is far below 1024.
pub fn job_id(table: &TableRef, objects: &[ObjectKey], attempt: u32) -> String {
    fn put(h: &mut blake3::Hasher, s: &str) {
        h.update(&(s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    }
    let mut set: Vec<&ObjectKey> = objects.iter().collect();
    set.sort();
    set.dedup();
    // A derived key separates these hashes from every other use of BLAKE3 in the crate.
    let mut h = blake3::Hasher::new_derive_key("firehose_replay BigQuery load job id v1");
    put(&mut h, &table.project);
    put(&mut h, &table.dataset);
    put(&mut h, &table.table);
    h.update(&(set.len() as u64).to_le_bytes());
    for o in set {
        put(&mut h, &o.bucket);
        put(&mut h, &o.key);
        put(&mut h, &o.etag);
    }
    let digest = h.finalize();
    format!(
        "firehose_replay_{}_{attempt}",
        hex::encode(&digest.as_bytes()[..16])
    )
}
