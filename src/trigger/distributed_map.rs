//! Step Functions Distributed Map events: the items an `ItemReader` hands a child execution,
//! alone or batched by an `ItemBatcher` (`{"Items":[…],"BatchInput":{…}}`).
//!
//! An item names one object in one of the shapes the developer guide documents:
//! - `arn:aws:states:::s3:listObjectsV2` (a prefix): `{"Etag":"\"…\"","Key":"…",
//!   "LastModified":1668699881,"Size":34910,"StorageClass":"STANDARD"}` — no bucket, the ETag
//!   quoted, `LastModified` epoch seconds (or a date string);
//! - an S3 Inventory manifest: `{"LastModifiedDate":"…","Bucket":"…","Size":"3399671",
//!   "Key":"…"}` — `Size` a string;
//! - a CSV or JSON/JSONL manifest (`plan-map`'s, or a user's): objects of strings keyed by the
//!   header (`Bucket`, `Key`, `Size`, `VersionId`; lower case accepted too).
//!
//! **Bucket**: the item's own, else `BatchInput.bucket`, else the function's configured default
//! (`FIREHOSE_REPLAY_MAP_BUCKET`); none of them is an error naming all three.
//!
//! **Key encoding**, decided per shape: ListObjectsV2 items carry the raw key (Step Functions
//! copies S3's answer, which is not URL-encoded unless asked), and so do JSON/CSV manifests —
//! unless `BatchInput.keyEncoding` is `"url"` (a manifest made for S3 Batch Operations, like
//! `backfill --manifest`'s). Inventory items are URL-encoded (S3 Inventory's CSV reports encode
//! keys, the only format Step Functions reads), so they are decoded like notifications.
//!
//! **Folder items** — console-made "folders", keys ending `/` with size 0 — are skipped: they
//! hold nothing and a listing over a prefix returns them.

use serde_json::{Map, Value};

use super::keys::url_decode_key;
use super::TriggerError;
use crate::object::ObjectRef;
use crate::source::s3::unquote;

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
}

impl MapItem {
    /// A console "folder": nothing to replay.
    pub fn is_folder(&self) -> bool {
        self.key.ends_with('/') && self.size.unwrap_or(0) == 0
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
    field(o, &["Key", "key"]).is_some_and(Value::is_string) && !o.contains_key("Records")
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
        match input.and_then(|m| m.get(k)) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(malformed(format!("`BatchInput.{k}` is not a string"))),
        }
    };
    let bucket = text("bucket")?;
    let url_keys = match text("keyEncoding")?.as_deref() {
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

/// The first of `names` present in `o`.
fn field<'a>(o: &'a Map<String, Value>, names: &[&str]) -> Option<&'a Value> {
    names
        .iter()
        .find_map(|n| o.get(*n))
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
    match field(o, &["Size", "size"]) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("`Size` is not a byte count: {n}")),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| format!("`Size` is not a byte count: {s:?}")),
        Some(v) => Err(format!("`Size` is not a byte count: {v}")),
    }
}

fn item(v: &Value, url_keys: bool) -> Result<MapItem, String> {
    let o = v
        .as_object()
        .ok_or_else(|| format!("not an object: {}", snippet(v)))?;
    let key =
        string_field(o, &["Key", "key"])?.ok_or_else(|| format!("no `Key`: {}", snippet(v)))?;
    // `LastModified` (epoch seconds or a date string) is not read: the ledger keys objects by
    // their ETag, which a rewrite changes, not by time.
    let inventory = o.contains_key("LastModifiedDate");
    let key = if inventory || url_keys {
        url_decode_key(&key)
    } else {
        key
    };
    Ok(MapItem {
        bucket: string_field(o, &["Bucket", "bucket"])?,
        key,
        etag: string_field(o, &["Etag", "ETag", "eTag", "etag"])?.map(|e| unquote(&e)),
        version_id: string_field(o, &["VersionId", "versionId"])?.filter(|v| v != "null"),
        size: size_field(o)?,
    })
}

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
    fn folders_and_bad_items() {
        let b =
            parse(&json!({"Items":[{"Key":"dir/","Size":0},{"Key":"dir/x","Size":"0"}]})).unwrap();
        assert!(b.items[0].is_folder());
        assert!(!b.items[1].is_folder());
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
