//! Unit tests of the parent module.

use super::*;

#[test]
fn parses_bigquery_table_notation() {
    let t: TableRef = "test-proj.bi.events".parse().unwrap();
    assert_eq!(
        (t.project.as_str(), t.dataset.as_str(), t.table.as_str()),
        ("test-proj", "bi", "events")
    );
    let t: TableRef = "example.com:proj.bi.events".parse().unwrap();
    assert_eq!(t.project, "example.com:proj");
    let t: TableRef = "proj:bi.events".parse().unwrap();
    assert_eq!((t.project.as_str(), t.dataset.as_str()), ("proj", "bi"));
    assert!("bi.events".parse::<TableRef>().is_err());
    assert!("a..b".parse::<TableRef>().is_err());
}
