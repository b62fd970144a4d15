//! Step Functions Distributed Map events: the items an `ItemReader` hands a child execution,
//! alone or batched by an `ItemBatcher` (`{"Items":[…],"BatchInput":{…}}`).
//!
//! An item names one object in one of the shapes the developer guide documents:
//! - `arn:aws:states:::s3:listObjectsV2` (a prefix): `{"Etag":"\"…\"","Key":"…",
//!   "LastModified":1668699881,"Size":34910,"StorageClass":"STANDARD"}` — no bucket, the ETag
//!   quoted, `LastModified` epoch seconds (or a date string);
//! - an S3 Inventory manifest: `{"LastModifiedDate":"…","Bucket":"…","Size":"3399671",
//!   "Key":"…"}` — `Size` a string, and whichever optional fields the report has (an item is
//!   taken for an inventory row by any field only inventories have, see `INVENTORY_ONLY_FIELDS`);
//! - a CSV or JSON/JSONL manifest (`plan-map`'s, or a user's): objects of strings keyed by the
//!   header (`Bucket`, `Key`, `Size`, `VersionId`, in any capitalisation).
//!
//! An `ItemSelector` wrapper (`{"index":…,"value":{item}}`) is unwrapped (see `unwrap_selected`).
//!
//! **Bucket**: the item's own (or its wrapper's), else `BatchInput.bucket` (any capitalisation), else the function's configured default
//! (`FIREHOSE_REPLAY_MAP_BUCKET`); none of them is an error naming all three.
//!
//! **Key encoding**, decided per shape: ListObjectsV2 items carry the raw key (Step Functions
//! copies S3's answer, which is not URL-encoded unless asked), and so do JSON/CSV manifests —
//! unless `BatchInput.keyEncoding` is `"url"` (a manifest made for S3 Batch Operations, like
//! `backfill --manifest`'s). Inventory items are URL-encoded (S3 Inventory's CSV reports encode
//! keys, the only format Step Functions reads), so they are decoded like notifications.
//!
//! **Folder items** — console-made "folders", keys ending `/` with size 0 — are skipped: they
//! hold nothing and a listing over a prefix returns them. So are inventory rows of delete
//! markers (`IsDeleteMarker` `true`, in reports that list versions).

use serde_json::{Map, Value};

use super::TriggerError;
use crate::aws::keys::url_decode_key;
use crate::aws::unquote;
use crate::object::ObjectRef;

/// One item of a Distributed Map batch, as read from the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapItem {
    /// The item's own bucket, if it names one.
    pub bucket: Option<String>,
    /// The object key, decoded as the item's shape requires.
    pub key: String,
    pub etag: Option<String>,
    pub version_id: Option<String>,
    pub size: Option<u64>,
    /// An inventory row of a delete marker (`IsDeleteMarker` `true`): no data to read.
    pub delete_marker: bool,
}

impl MapItem {
    /// A console "folder": nothing to replay.
    pub fn is_folder(&self) -> bool {
        self.key.ends_with('/') && self.size.unwrap_or(0) == 0
    }

    /// Why the item names nothing to replay (a folder, a delete marker), if it does not.
    pub fn skip_reason(&self) -> Option<&'static str> {
        if self.delete_marker {
            Some("delete_marker")
        } else if self.is_folder() {
            Some("folder")
        } else {
            None
        }
    }

    /// The object, with its bucket resolved (item, then `BatchInput.bucket`, then `default`).
    pub fn object(
        &self,
        batch_bucket: Option<&str>,
        default: Option<&str>,
    ) -> Result<ObjectRef, TriggerError> {
        let bucket = self
            .bucket
            .as_deref()
            .or(batch_bucket)
            .or(default)
            .filter(|b| !b.is_empty())
            .ok_or_else(|| TriggerError::Malformed {
                what: "Step Functions Distributed Map",
                detail: format!(
                    "item `{}` names no bucket: give the items a `Bucket`, the ItemBatcher a \
                     `BatchInput` with `bucket`, or the function FIREHOSE_REPLAY_MAP_BUCKET",
                    self.key
                ),
            })?;
        // The bucket becomes a path segment of output and dead-letter trees: refuse what is not
        // a bucket name (issue 25), wherever it came from.
        crate::object::check_bucket_name(bucket).map_err(malformed)?;
        let mut o = ObjectRef::new(bucket, self.key.clone());
        o.etag = self.etag.clone();
        o.version_id = self.version_id.clone();
        o.size = self.size;
        Ok(o)
    }
}

/// A Distributed Map invocation: one item, or an ItemBatcher's batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapBatch {
    pub items: Vec<MapItem>,
    /// `BatchInput.bucket`.
    pub bucket: Option<String>,
    /// Whether the payload was an ItemBatcher batch (`Items`) or a single item.
    pub batched: bool,
}

fn malformed(detail: impl Into<String>) -> TriggerError {
    TriggerError::Malformed {
        what: "Step Functions Distributed Map",
        detail: detail.into(),
    }
}

/// Whether a payload looks like a Distributed Map event: an ItemBatcher batch, or one item
/// (an object with a string `Key`/`key` and none of the other triggers' markers).
pub fn is_map_event(payload: &Value) -> bool {
    let Some(o) = payload.as_object() else {
        return false;
    };
    if o.get("Items").is_some_and(Value::is_array) {
        return true;
    }
    let o = unwrap_selected(o).0;
    field(o, &["Key"]).is_some_and(Value::is_string) && !o.contains_key("Records")
}

/// An item an `ItemSelector` wrapped as the developer guide shows (`{"index.$":
/// "$$.Map.Item.Index", "value.$": "$$.Map.Item.Value"}`, often with the bucket beside it):
/// the reader's item under `value`, and the wrapper (for its `bucket`). Items without a `Key`
/// of their own and with an object `value` are taken for such wrappers.
fn unwrap_selected(o: &Map<String, Value>) -> (&Map<String, Value>, Option<&Map<String, Value>>) {
    if field(o, &["Key"]).is_none() {
        if let Some(Value::Object(inner)) = field(o, &["Value"]) {
            return (inner, Some(o));
        }
    }
    (o, None)
}

/// Reads a Distributed Map event (see [`is_map_event`]).
pub fn parse(payload: &Value) -> Result<MapBatch, TriggerError> {
    let o = payload
        .as_object()
        .ok_or_else(|| malformed("the event is not a JSON object"))?;
    let (items, input, batched): (Vec<&Value>, Option<&Map<String, Value>>, bool) =
        match o.get("Items") {
            Some(Value::Array(items)) => {
                let input = match o.get("BatchInput") {
                    None | Some(Value::Null) => None,
                    Some(Value::Object(m)) => Some(m),
                    Some(_) => return Err(malformed("`BatchInput` is not an object")),
                };
                (items.iter().collect(), input, true)
            }
            Some(_) => return Err(malformed("`Items` is not an array")),
            None => (vec![payload], None, false),
        };
    let text = |k: &str| -> Result<Option<String>, TriggerError> {
        match input.and_then(|m| field(m, &[k])) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(malformed(format!("`BatchInput.{k}` is not a string"))),
        }
    };
    let bucket = text("bucket")?;
    let url_keys = match text("keyEncoding")?
        .map(|e| e.to_ascii_lowercase())
        .as_deref()
    {
        None | Some("raw") => false,
        Some("url") => true,
        Some(other) => {
            return Err(malformed(format!(
                "`BatchInput.keyEncoding` is `{other}`: use `raw` (the default) or `url`"
            )))
        }
    };
    let items = items
        .into_iter()
        .enumerate()
        .map(|(i, v)| item(v, url_keys).map_err(|e| malformed(format!("item {i}: {e}"))))
        .collect::<Result<_, _>>()?;
    Ok(MapBatch {
        items,
        bucket,
        batched,
    })
}

/// The first of `names` present in `o`, in any capitalisation: manifests are written by hand
/// or by other tools (`bucket`, `BUCKET`, `ETag`, `Etag`), and a `BatchInput` is whatever its
/// author typed, so `Bucket` there must not silently fall back to the default bucket. An exact
/// match wins over a case-insensitive one.
fn field<'a>(o: &'a Map<String, Value>, names: &[&str]) -> Option<&'a Value> {
    names
        .iter()
        .find_map(|n| {
            o.get(*n).or_else(|| {
                o.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(n))
                    .map(|(_, v)| v)
            })
        })
        .filter(|v| !v.is_null())
}

fn string_field(o: &Map<String, Value>, names: &[&str]) -> Result<Option<String>, String> {
    match field(o, names) {
        None => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(format!("`{}` is not a string: {v}", names[0])),
    }
}

/// `Size`: a number (ListObjectsV2) or a decimal string (inventory, CSV manifests).
fn size_field(o: &Map<String, Value>) -> Result<Option<u64>, String> {
    match field(o, &["Size"]) {
        None => Ok(None),
        // A whole number written as a float (`34910.0`, `3.4e4`: what JSON writers that keep
        // every number a double produce) is still a byte count.
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < u64::MAX as f64)
                    .map(|f| f as u64)
            })
            .map(Some)
            .ok_or_else(|| format!("`Size` is not a byte count: {n}")),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => {
            let t = s.trim();
            t.parse()
                .ok()
                .or_else(|| t.strip_suffix(".0").and_then(|w| w.parse().ok()))
                .map(Some)
                .ok_or_else(|| format!("`Size` is not a byte count: {s:?}"))
        }
        Some(v) => Err(format!("`Size` is not a byte count: {v}")),
    }
}

fn item(v: &Value, url_keys: bool) -> Result<MapItem, String> {
    let (o, wrapper) = unwrap_selected(
        v.as_object()
            .ok_or_else(|| format!("not an object: {}", snippet(v)))?,
    );
    let key = string_field(o, &["Key"])?.ok_or_else(|| format!("no `Key`: {}", snippet(v)))?;
    // `LastModified` (epoch seconds or a date string) is not read: the ledger keys objects by
    // their ETag, which a rewrite changes, not by time.
    let inventory = INVENTORY_ONLY_FIELDS
        .iter()
        .any(|f| field(o, &[f]).is_some());
    let key = if inventory || url_keys {
        url_decode_key(&key)
    } else {
        key
    };
    Ok(MapItem {
        bucket: match string_field(o, &["Bucket"])? {
            Some(b) => Some(b),
            None => wrapper
                .map(|w| string_field(w, &["Bucket"]))
                .transpose()?
                .flatten(),
        },
        key,
        etag: string_field(o, &["ETag"])?.map(|e| unquote(&e)),
        version_id: string_field(o, &["VersionId"])?.filter(|v| v != "null"),
        size: size_field(o)?,
        delete_marker: string_field(o, &["IsDeleteMarker"])?
            .is_some_and(|d| d.eq_ignore_ascii_case("true")),
    })
}

/// Fields an S3 Inventory report may have and no ListObjectsV2 item or hand-made manifest does
/// (S3 Inventory's optional fields; `Bucket`, `Key` and `Size` are shared). Any of them marks an
/// item as an inventory row, whose key is URL-encoded: `LastModifiedDate` alone would miss an
/// inventory configured without that optional field.
const INVENTORY_ONLY_FIELDS: &[&str] = &[
    "LastModifiedDate",
    "IsLatest",
    "IsDeleteMarker",
    "IsMultipartUploaded",
    "ReplicationStatus",
    "EncryptionStatus",
    "ObjectLockRetainUntilDate",
    "ObjectLockMode",
    "ObjectLockLegalHoldStatus",
    "IntelligentTieringAccessTier",
    "BucketKeyStatus",
    "ChecksumAlgorithm",
    "ObjectAccessControlList",
    "ObjectOwner",
];

fn snippet(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(120) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn list_objects_v2_item_keeps_the_raw_key_and_unquotes_the_etag() {
        let v = json!({"Etag":"\"05704fbdccb224cb01c59005bebbad28\"","Key":"a b+c%20d.gz",
            "LastModified":1668699881,"Size":34910,"StorageClass":"STANDARD"});
        assert!(is_map_event(&v));
        let b = parse(&v).unwrap();
        assert!(!b.batched);
        let i = &b.items[0];
        assert_eq!(i.key, "a b+c%20d.gz");
        assert_eq!(i.etag.as_deref(), Some("05704fbdccb224cb01c59005bebbad28"));
        assert_eq!(i.size, Some(34910));
        assert_eq!(i.bucket, None);
    }

    #[test]
    fn a_bucket_that_is_not_a_bucket_name_is_refused_wherever_it_comes_from() {
        let item = MapItem {
            bucket: Some("srcb/../../x".into()),
            key: "k.gz".into(),
            etag: None,
            version_id: None,
            size: None,
            delete_marker: false,
        };
        assert!(item.object(None, None).is_err());
        let bare = MapItem {
            bucket: None,
            ..item.clone()
        };
        assert!(bare.object(Some(".."), None).is_err());
        assert!(bare.object(None, Some("a/b")).is_err());
        assert_eq!(
            bare.object(Some("good-bucket"), None).unwrap().bucket,
            "good-bucket"
        );
    }

    #[test]
    fn inventory_items_are_url_decoded_and_take_a_string_size() {
        let v = json!({"LastModifiedDate":"2022-11-16T00:29:32.000Z","Bucket":"inv",
            "Size":"3399671","Key":"dir/a+b%2Bc%25.gz"});
        let i = &parse(&v).unwrap().items[0];
        assert_eq!(i.key, "dir/a b+c%.gz");
        assert_eq!(i.size, Some(3399671));
        assert_eq!(i.bucket.as_deref(), Some("inv"));
    }

    #[test]
    fn batch_input_sets_the_bucket_and_the_key_encoding() {
        let v = json!({"Items":[{"Key":"x%20y"},{"key":"z","bucket":"own"}],
            "BatchInput":{"bucket":"shared","keyEncoding":"url"}});
        let b = parse(&v).unwrap();
        assert!(b.batched);
        assert_eq!(b.items[0].key, "x y");
        let o = b.items[0]
            .object(b.bucket.as_deref(), Some("conf"))
            .unwrap();
        assert_eq!(o.bucket, "shared");
        let o = b.items[1]
            .object(b.bucket.as_deref(), Some("conf"))
            .unwrap();
        assert_eq!(o.bucket, "own");
        let lone = parse(&json!({"Key":"k"})).unwrap();
        assert_eq!(
            lone.items[0].object(None, Some("conf")).unwrap().bucket,
            "conf"
        );
        let e = lone.items[0].object(None, None).unwrap_err().to_string();
        assert!(e.contains("FIREHOSE_REPLAY_MAP_BUCKET"), "{e}");
    }

    #[test]
    fn field_names_are_read_in_any_capitalisation() {
        let v = json!({"Items":[{"KEY":"a%20b","BUCKET":"own","SIZE":"7","ETAG":"\"e\"",
            "versionid":"v1"},{"key":"c"}],
            "BatchInput":{"Bucket":"shared","KeyEncoding":"URL"}});
        assert!(is_map_event(&v));
        let b = parse(&v).unwrap();
        assert_eq!(b.bucket.as_deref(), Some("shared"));
        let i = &b.items[0];
        assert_eq!(i.key, "a b");
        assert_eq!(i.bucket.as_deref(), Some("own"));
        assert_eq!(i.size, Some(7));
        assert_eq!(i.etag.as_deref(), Some("e"));
        assert_eq!(i.version_id.as_deref(), Some("v1"));
        assert!(is_map_event(&json!({"KEY":"k"})));
        // An exact match wins over another capitalisation.
        let b = parse(&json!({"Key":"exact","key":"other"})).unwrap();
        assert_eq!(b.items[0].key, "exact");
    }

    #[test]
    fn inventory_rows_are_known_by_any_inventory_only_field_and_delete_markers_skipped() {
        // A report without the optional LastModifiedDate: still an inventory row.
        let v = json!({"Bucket":"inv","Key":"a+b%2Bc.gz","Size":"5","ETag":"e",
            "IsMultipartUploaded":"false"});
        let i = &parse(&v).unwrap().items[0];
        assert_eq!(i.key, "a b+c.gz");
        assert_eq!(i.skip_reason(), None);
        let v = json!({"Bucket":"inv","Key":"k.gz","VersionId":"v","IsLatest":"true",
            "IsDeleteMarker":"true","Size":""});
        let i = &parse(&v).unwrap().items[0];
        assert_eq!(i.skip_reason(), Some("delete_marker"));
        // A hand-made manifest's row: raw.
        let i = &parse(&json!({"Bucket":"b","Key":"a+b%2Bc.gz","Size":"5"}))
            .unwrap()
            .items[0];
        assert_eq!(i.key, "a+b%2Bc.gz");
    }

    #[test]
    fn a_whole_size_written_as_a_float_is_a_byte_count() {
        for (size, want) in [
            (json!(34910.0), 34910),
            (json!(3.4e4), 34000),
            (json!("34910.0"), 34910),
            (json!(0.0), 0),
        ] {
            let b = parse(&json!({"Key":"k","Size":size})).unwrap();
            assert_eq!(b.items[0].size, Some(want), "{size}");
        }
        for bad in [json!(1.5), json!(-1.0), json!("1.5"), json!(1e300)] {
            assert!(parse(&json!({"Key":"k","Size":bad})).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_item_selector_wrapper_is_unwrapped() {
        let lone = json!({"index":0,"bucket":"sel","value":{"Etag":"\"e\"","Key":"a b.gz",
            "LastModified":1668699881,"Size":34910,"StorageClass":"STANDARD"}});
        assert!(is_map_event(&lone));
        let i = &parse(&lone).unwrap().items[0];
        assert_eq!(i.key, "a b.gz");
        assert_eq!(i.bucket.as_deref(), Some("sel"));
        assert_eq!(i.etag.as_deref(), Some("e"));
        let b = parse(&json!({"Items":[{"index":3,"value":{"Bucket":"own","Key":"k"}}]})).unwrap();
        assert_eq!(b.items[0].key, "k");
        assert_eq!(b.items[0].bucket.as_deref(), Some("own"));
        assert!(!is_map_event(&json!({"value":{"Size":1}})));
    }

    #[test]
    fn folders_and_bad_items() {
        let b =
            parse(&json!({"Items":[{"Key":"dir/","Size":0},{"Key":"dir/x","Size":"0"}]})).unwrap();
        assert!(b.items[0].is_folder());
        assert!(!b.items[1].is_folder());
        assert_eq!(b.items[0].skip_reason(), Some("folder"));
        assert_eq!(b.items[1].skip_reason(), None);
        for bad in [
            json!({"Items":[{"Size":1}]}),
            json!({"Items":[{"Key":"k","Size":-1}]}),
            json!({"Items":[{"Key":"k","Size":"lots"}]}),
            json!({"Items":[7]}),
            json!({"Items":[],"BatchInput":{"keyEncoding":"base64"}}),
            json!({"Items":{}}),
        ] {
            assert!(parse(&bad).is_err(), "{bad}");
        }
        assert!(!is_map_event(&json!({"Records":[], "Key":"x"})));
    }
}
