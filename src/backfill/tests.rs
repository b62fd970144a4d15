//! Unit tests of the parent module.

use super::*;
use std::sync::atomic::AtomicUsize;

/// A store whose LISTs take a while and are counted; `fail` names a prefix that fails.
struct SlowStore {
    keys: Vec<String>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    lists: AtomicUsize,
    fail: Option<String>,
}

impl SlowStore {
    fn new(keys: &[&str]) -> Arc<SlowStore> {
        Arc::new(SlowStore {
            keys: keys.iter().map(|k| k.to_string()).collect(),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            lists: AtomicUsize::new(0),
            fail: None,
        })
    }
}

impl ObjectStore for SlowStore {
    fn open(&self, _: &mut ObjectRef) -> Result<crate::source::Opened, Error> {
        unreachable!("listing only")
    }

    fn list<'a>(
        &'a self,
        prefix: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<Vec<ObjectRef>, Error>> {
        Box::pin(async move {
            let n = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(n, Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            self.lists.fetch_add(1, Ordering::SeqCst);
            if self.fail.as_deref() == Some(prefix) {
                return Err(Error::new(
                    crate::error::Stage::Fetch,
                    crate::error::Class::Transient,
                    Cause::Remote("slow down".into()),
                ));
            }
            let mut keys: Vec<&String> =
                self.keys.iter().filter(|k| k.starts_with(prefix)).collect();
            keys.sort();
            Ok(keys.into_iter().map(|k| ObjectRef::new("b", k)).collect())
        })
    }

    fn bucket(&self) -> &str {
        "b"
    }
}

fn layout() -> Layout {
    layout::DEFAULT.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_runs_hours_in_parallel_and_yields_them_in_order() {
    let store = SlowStore::new(&[
        "2026/03/01/07/b",
        "2026/01/02/00/z",
        "2026/01/02/00/a",
        "processing-failed/2026/01/02/00/e",
        "2026/03/31/23/last",
        "2026/04/01/00/outside",
    ]);
    let range = HourRange::parse("2026-01-01", "2026-03-31").unwrap();
    let hours = range.hours().count();
    let listing = list(
        store.clone(),
        "",
        &layout(),
        &range,
        true,
        ListOptions::default(),
    );
    let progress = listing.progress.clone();
    let keys: Vec<String> = listing
        .collect()
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(
        keys,
        [
            "2026/01/02/00/a",
            "2026/01/02/00/z",
            "processing-failed/2026/01/02/00/e",
            "2026/03/01/07/b",
            "2026/03/31/23/last"
        ]
    );
    let lists = store.lists.load(Ordering::SeqCst);
    assert_eq!(lists, hours * (1 + ERROR_OUTPUT_PREFIXES.len()));
    let max = store.max_in_flight.load(Ordering::SeqCst);
    assert!((2..=8).contains(&max), "{max} LISTs in flight");
    assert_eq!(progress.hours_listed(), hours as u64);
    assert_eq!(progress.objects_listed(), 5);
    assert!(progress.is_done());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_waits_while_the_queue_is_full() {
    let keys: Vec<String> = (0..24 * 10)
        .flat_map(|h| (0..5).map(move |i| format!("2026/01/{:02}/{:02}/{i}", h / 24 + 1, h % 24)))
        .collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let store = SlowStore::new(&refs);
    let range = HourRange::parse("2026-01-01", "2026-01-10").unwrap();
    let options = ListOptions {
        in_flight: 2,
        queue: 3,
    };
    let mut listing = list(store.clone(), "", &layout(), &range, false, options);
    listing.first_answer().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let lists = store.lists.load(Ordering::SeqCst);
    assert!(
        lists <= 1 + 2 + 1,
        "{lists} hours listed with nobody taking objects"
    );
    let mut n = 0;
    while let Some(o) = listing.next().await {
        o.unwrap();
        n += 1;
    }
    assert_eq!(n, keys.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_list_ends_the_listing_with_its_error_after_the_hours_before_it() {
    let mut store = SlowStore::new(&["2026/01/01/00/a", "2026/01/01/05/b"]);
    Arc::get_mut(&mut store).unwrap().fail = Some("2026/01/01/03/".into());
    let range = HourRange::parse("2026-01-01", "2026-01-01").unwrap();
    let mut listing = list(store, "", &layout(), &range, false, ListOptions::default());
    listing.first_answer().await.unwrap();
    assert_eq!(
        listing.next().await.unwrap().unwrap().key,
        "2026/01/01/00/a"
    );
    let e = listing.next().await.unwrap().unwrap_err();
    assert!(e.to_string().contains("slow down"), "{e}");
    assert!(listing.next().await.is_none());
}

#[test]
fn a_date_alone_covers_the_whole_day_and_to_is_inclusive() {
    let r = HourRange::parse("2026-11-25", "2026-11-26").unwrap();
    assert_eq!(r.hours().count(), 48);
    let p = r.prefixes("x/");
    assert_eq!(p.first().unwrap(), "x/2026/11/25/00/");
    assert_eq!(p.last().unwrap(), "x/2026/11/26/23/");
}

#[test]
fn hour_bounds_cross_midnight_month_and_year() {
    let r = HourRange::parse("2026-12-31T22", "2027-01-01T01").unwrap();
    assert_eq!(
        r.prefixes(""),
        vec![
            "2026/12/31/22/",
            "2026/12/31/23/",
            "2027/01/01/00/",
            "2027/01/01/01/"
        ]
    );
    let r = HourRange::parse("2026-11-25T13:00", "2026-11-25T13").unwrap();
    assert_eq!(r.prefixes(""), vec!["2026/11/25/13/"]);
}

#[test]
fn rfc3339_times_on_the_hour_are_hours_in_utc() {
    for (s, hour) in [
        ("2026-11-25T22:00:00Z", "2026-11-25T22"),
        ("2026-11-25T22:00:00.000Z", "2026-11-25T22"),
        ("2026-11-25T22:00:00", "2026-11-25T22"),
        ("2026-11-25T22:00Z", "2026-11-25T22"),
        ("2026-11-25T23:00:00+01:00", "2026-11-25T22"),
        ("2026-11-25t22:00:00z", "2026-11-25T22"),
        ("2026-11-25T22Z", "2026-11-25T22"),
    ] {
        let b = parse_bound(s, false).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(b.format("%Y-%m-%dT%H").to_string(), hour, "{s}");
    }
}

#[test]
fn times_off_the_hour_are_refused_not_truncated() {
    for s in [
        "2026-11-25T22:30:00Z",
        "2026-11-25T22:00:01Z",
        "2026-11-25T22:00:00.5Z",
        "2026-11-25T13:45",
        "2026-11-25T22:00:00+05:30",
    ] {
        let e = parse_bound(s, false).unwrap_err();
        assert!(e.contains("not on the hour"), "{s}: {e}");
    }
    let e = HourRange::parse("2026-11-25T22:15:00Z", "2026-11-25T23").unwrap_err();
    assert!(e.contains("use 2026-11-25T22"), "{e}");
}

#[test]
fn rejects_reversed_and_malformed_ranges() {
    assert!(HourRange::parse("2026-11-26", "2026-11-25T23").is_err());
    assert!(HourRange::parse("yesterday", "2026-11-25")
        .unwrap_err()
        .contains("yesterday"));
    assert!(HourRange::parse("2026-02-30", "2026-03-01").is_err());
}
