//! Planning a load run: objects (in key order) cut into batches, one load job each.
//!
//! Batches are bounded by object count and listed bytes, and widened until the whole run fits
//! the jobs-per-day budget (a run over several days' quota would otherwise stall on
//! `quotaExceeded` half-way). Planning is pure: `--dry-run` prints it without a network call.

use crate::object::ObjectRef;

/// BigQuery's per-table daily quota of load jobs.
pub const DAILY_LOAD_JOB_QUOTA: usize = 1_500;

/// `--load-batch-objects`, `--load-batch-mib`, `--load-jobs-per-day`.
#[derive(Debug, Clone)]
pub struct Bounds {
    pub max_objects: usize,
    /// Listed (compressed) bytes per batch.
    pub max_bytes: u64,
    /// Jobs this run may spend of the table's daily quota.
    pub jobs_per_day: usize,
}

/// Batches of indices into the planned objects, and what bounds were used.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub batches: Vec<Vec<usize>>,
    pub max_objects: usize,
    pub max_bytes: u64,
    /// Set when the bounds were widened to fit the quota.
    pub widened: bool,
}

impl Plan {
    /// One line for `--dry-run` and the log.
    pub fn describe(&self, objects: usize, bounds: &Bounds) -> String {
        let mut s = format!(
            "load plan: {objects} objects → {} load jobs (≤ {} objects, ≤ {:.0} MiB listed each); \
             {} of the {} jobs/day budget (table quota {DAILY_LOAD_JOB_QUOTA}/day)",
            self.batches.len(),
            self.max_objects,
            self.max_bytes as f64 / 1048576.0,
            self.batches.len(),
            bounds.jobs_per_day
        );
        if self.widened {
            s.push_str(&format!(
                "; batches widened from ≤ {} objects / {:.0} MiB to fit the budget",
                bounds.max_objects,
                bounds.max_bytes as f64 / 1048576.0
            ));
        }
        s
    }
}

fn cut(sizes: &[u64], max_objects: usize, max_bytes: u64) -> Vec<Vec<usize>> {
    let mut batches: Vec<Vec<usize>> = Vec::new();
    let mut bytes = 0u64;
    for (i, &size) in sizes.iter().enumerate() {
        let full = batches
            .last()
            .is_none_or(|b| b.len() >= max_objects || (bytes + size > max_bytes && !b.is_empty()));
        if full {
            batches.push(Vec::new());
            bytes = 0;
        }
        batches.last_mut().expect("pushed").push(i);
        bytes += size;
    }
    batches
}

/// Cuts `objects` (in order) into batches within `bounds`; when that makes more jobs than the
/// daily budget, the bounds grow until it does not (a run over several days' quota would
/// otherwise stall on `quotaExceeded` half-way).
pub fn plan(objects: &[ObjectRef], bounds: &Bounds) -> Plan {
    let sizes: Vec<u64> = objects.iter().map(|o| o.size.unwrap_or(0)).collect();
    let (mut max_objects, mut max_bytes) = (bounds.max_objects.max(1), bounds.max_bytes.max(1));
    let budget = bounds.jobs_per_day.max(1);
    let mut batches = cut(&sizes, max_objects, max_bytes);
    let mut widened = false;
    while batches.len() > budget {
        widened = true;
        let factor = batches.len().div_ceil(budget).max(2);
        max_objects = max_objects.saturating_mul(factor);
        max_bytes = max_bytes.saturating_mul(factor as u64);
        batches = cut(&sizes, max_objects, max_bytes);
    }
    Plan {
        batches,
        max_objects,
        max_bytes,
        widened,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn objects(sizes: &[u64]) -> Vec<ObjectRef> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &s)| {
                let mut o = ObjectRef::new("b", format!("k{i:04}"));
                o.size = Some(s);
                o
            })
            .collect()
    }

    #[test]
    fn batches_are_cut_by_object_count_and_bytes_in_key_order() {
        let bounds = Bounds {
            max_objects: 3,
            max_bytes: 100,
            jobs_per_day: 1000,
        };
        let p = plan(&objects(&[10, 10, 10, 10, 60, 50, 200, 1]), &bounds);
        assert_eq!(
            p.batches,
            vec![vec![0, 1, 2], vec![3, 4], vec![5], vec![6], vec![7]],
            "an object larger than the byte bound gets a batch of its own"
        );
        assert!(!p.widened);
    }

    #[test]
    fn a_run_that_would_exceed_the_daily_job_budget_gets_wider_batches() {
        let bounds = Bounds {
            max_objects: 10,
            max_bytes: u64::MAX,
            jobs_per_day: 7,
        };
        let p = plan(&objects(&[1; 1000]), &bounds);
        assert!(p.batches.len() <= 7, "{} jobs", p.batches.len());
        assert!(p.widened);
        assert_eq!(p.batches.iter().map(Vec::len).sum::<usize>(), 1000);
        let all: Vec<usize> = p.batches.concat();
        assert_eq!(
            all,
            (0..1000).collect::<Vec<_>>(),
            "every object once, in order"
        );
        assert!(p.describe(1000, &bounds).contains("widened"));
    }
}
