//! `--sink bigquery:PROJECT.DATASET.TABLE` where TABLE names the table per record.
//!
//! The table part may hold placeholders: `{dotted.field}` (from each record), `{stream}` (the
//! Firehose stream name in the object's key) and `{yyyy}` `{mm}` `{dd}` `{hh}` (the hour
//! Firehose wrote the object, from the same name). Object-level placeholders are resolved once
//! per object ([`Template::for_object`]), field placeholders per record
//! ([`ObjectTemplate::table_for`]).
//!
//! Values become valid table names the same way every time (the mapping is the contract a
//! replay relies on to reach the same tables): case kept, every character outside
//! `[A-Za-z0-9_]` turned into `_` (`yubl-posted` → `yubl_posted`); numbers and booleans as
//! their JSON text. A name longer than BigQuery's 1,024 characters is cut and given a hash of
//! the whole name, so two long names that share a prefix still reach different tables.

use crate::object::ObjectRef;
use crate::row::id::lookup;
use crate::sink::bigquery::TableRef;

/// BigQuery's limit on a table ID (characters; every routed name is ASCII).
pub const MAX_TABLE_NAME: usize = 1024;

/// Why a record (or an object) has no table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The field is missing, null or an empty string: `--route-default` takes the record, if
    /// given.
    #[error("routing field `{field}` is missing, null or empty")]
    Missing { field: String },
    /// The field holds an object or array: no table name can be made of it.
    #[error("routing field `{field}` holds {kind}, not a string, number or bool")]
    NotScalar { field: String, kind: &'static str },
    /// The record is not JSON the lookup could read.
    #[error("routing field `{field}`: {why}")]
    Unreadable { field: String, why: String },
    /// The object's key does not give what an object-level placeholder needs (a permanent
    /// object error: every record of the object would fail alike).
    #[error("{0}")]
    Object(String),
}

/// One piece of the table part.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Field(Vec<String>),
    Stream,
    Year,
    Month,
    Day,
    Hour,
}

/// A parsed `PROJECT.DATASET.TABLE` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    project: String,
    dataset: String,
    parts: Vec<Part>,
}

/// The byte index of the last `.` outside `{…}` in `s`, if any.
pub(crate) fn last_dot_outside_braces(s: &str) -> Option<usize> {
    let mut depth = 0i32;
    let mut last = None;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            '.' if depth == 0 => last = Some(i),
            _ => {}
        }
    }
    last
}

impl Template {
    /// The template a sink's table names. Placeholders are allowed in the table part only.
    pub fn new(table: &TableRef) -> Result<Template, String> {
        for (what, s) in [("project", &table.project), ("dataset", &table.dataset)] {
            if s.contains(['{', '}']) {
                return Err(format!(
                    "`{table}`: placeholders may only be in the table name, not the {what}"
                ));
            }
        }
        Ok(Template {
            project: table.project.clone(),
            dataset: table.dataset.clone(),
            parts: parse_parts(&table.table).map_err(|why| format!("`{table}`: {why}"))?,
        })
    }

    /// A template in the same project and dataset: `--route-default TABLE` (a table name, or
    /// a whole `PROJECT.DATASET.TABLE`). Field placeholders are refused: it is what records
    /// without the field get.
    pub fn sibling(&self, name: &str) -> Result<Template, String> {
        let table = if last_dot_outside_braces(name).is_some() {
            name.parse::<TableRef>()?
        } else {
            TableRef {
                project: self.project.clone(),
                dataset: self.dataset.clone(),
                table: name.to_string(),
            }
        };
        let t = Template::new(&table)?;
        if t.parts.iter().any(|p| matches!(p, Part::Field(_))) {
            return Err(format!(
                "`{name}`: the default table cannot use record fields (it is for records that \
                 lack them); {{stream}} and {{yyyy}}/{{mm}}/{{dd}}/{{hh}} are fine"
            ));
        }
        Ok(t)
    }

    /// Whether any placeholder is used (a template without one is one fixed table).
    pub fn is_routed(&self) -> bool {
        self.parts.iter().any(|p| !matches!(p, Part::Literal(_)))
    }

    /// The table of a template without placeholders.
    pub fn fixed_table(&self) -> Option<TableRef> {
        let mut name = String::new();
        for p in &self.parts {
            match p {
                Part::Literal(s) => name.push_str(s),
                _ => return None,
            }
        }
        Some(TableRef {
            project: self.project.clone(),
            dataset: self.dataset.clone(),
            table: name,
        })
    }

    /// Whether the table depends on each record (a field placeholder).
    pub fn has_fields(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Field(_)))
    }

    /// The template with `object`'s placeholders filled in.
    pub fn for_object(&self, object: &ObjectRef) -> Result<ObjectTemplate, RouteError> {
        let name = object.firehose_name();
        let need = |what: &str| {
            RouteError::Object(format!(
                "the table name uses {{{what}}}, but the key `{}` is not a Firehose object name \
                 (<stream>-<version>-YYYY-MM-DD-HH-MM-SS-<uuid>), so it has none: route on a \
                 record field instead, or replay these objects with a fixed table",
                object.key
            ))
        };
        let mut parts = Vec::with_capacity(self.parts.len());
        let push = |parts: &mut Vec<Part>, s: String| match parts.last_mut() {
            Some(Part::Literal(prev)) => prev.push_str(&s),
            _ => parts.push(Part::Literal(s)),
        };
        for p in &self.parts {
            let text = match p {
                Part::Literal(s) => s.clone(),
                Part::Field(_) => {
                    parts.push(p.clone());
                    continue;
                }
                Part::Stream => sanitize(name.as_ref().ok_or_else(|| need("stream"))?.stream),
                Part::Year | Part::Month | Part::Day | Part::Hour => {
                    let what = match p {
                        Part::Year => "yyyy",
                        Part::Month => "mm",
                        Part::Day => "dd",
                        _ => "hh",
                    };
                    let at = name.as_ref().ok_or_else(|| need(what))?.written_at;
                    at.format(match p {
                        Part::Year => "%Y",
                        Part::Month => "%m",
                        Part::Day => "%d",
                        _ => "%H",
                    })
                    .to_string()
                }
            };
            push(&mut parts, text);
        }
        Ok(ObjectTemplate {
            project: self.project.clone(),
            dataset: self.dataset.clone(),
            parts,
        })
    }

    /// The table for one record of `object` (`record`: its row's JSON).
    pub fn table_for(&self, object: &ObjectRef, record: &[u8]) -> Result<TableRef, RouteError> {
        self.for_object(object)?.table_for(record)
    }
}

/// A template with the object's placeholders filled in: what each of its records needs.
#[derive(Debug, Clone)]
pub struct ObjectTemplate {
    project: String,
    dataset: String,
    /// Literals (merged) and field lookups only.
    parts: Vec<Part>,
}

impl ObjectTemplate {
    /// The table name for `record`, in `out` (cleared first): no allocation per record once
    /// `out` has grown.
    pub fn name_into(&self, record: &[u8], out: &mut String) -> Result<(), RouteError> {
        self.name_with(record, &[], out)
    }

    /// [`ObjectTemplate::name_into`] with every field looked up below `prefix` (the payload
    /// column: `{detail.type}` is `raw.detail.type` in the row).
    pub fn name_with(
        &self,
        record: &[u8],
        prefix: &[String],
        out: &mut String,
    ) -> Result<(), RouteError> {
        out.clear();
        let mut path: Vec<String> = Vec::new();
        for p in &self.parts {
            match p {
                Part::Literal(s) => out.push_str(s),
                Part::Field(field) => {
                    path.clear();
                    path.extend(prefix.iter().cloned());
                    path.extend(field.iter().cloned());
                    let dotted = || field.join(".");
                    let value = lookup(record, &path)
                        .map_err(|why| RouteError::Unreadable {
                            field: dotted(),
                            why,
                        })?
                        .ok_or_else(|| RouteError::Missing { field: dotted() })?;
                    push_value(value.get(), &dotted, out)?;
                }
                _ => unreachable!("object placeholders are filled in"),
            }
        }
        cap(out);
        Ok(())
    }

    /// Whether the name depends on the record (else every record of the object shares it).
    pub fn has_fields(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Field(_)))
    }

    /// The table for `record`.
    pub fn table_for(&self, record: &[u8]) -> Result<TableRef, RouteError> {
        let mut name = String::new();
        self.name_into(record, &mut name)?;
        Ok(self.table(name))
    }

    /// The table named `name` (as [`ObjectTemplate::name_into`] made it) in this template's
    /// dataset.
    pub fn table(&self, name: String) -> TableRef {
        TableRef {
            project: self.project.clone(),
            dataset: self.dataset.clone(),
            table: name,
        }
    }
}

/// A field's JSON value, made part of a table name.
fn push_value(json: &str, field: &dyn Fn() -> String, out: &mut String) -> Result<(), RouteError> {
    let start = out.len();
    match json.as_bytes().first() {
        Some(b'"') => {
            let s: String = serde_json::from_str(json).map_err(|e| RouteError::Unreadable {
                field: field(),
                why: e.to_string(),
            })?;
            push_sanitized(&s, out);
        }
        Some(b'{') => {
            return Err(RouteError::NotScalar {
                field: field(),
                kind: "an object",
            })
        }
        Some(b'[') => {
            return Err(RouteError::NotScalar {
                field: field(),
                kind: "an array",
            })
        }
        Some(b'n') => return Err(RouteError::Missing { field: field() }),
        // Numbers and booleans: their JSON text (`1.5` → `1_5`).
        _ => push_sanitized(json, out),
    }
    if out.len() == start {
        return Err(RouteError::Missing { field: field() });
    }
    Ok(())
}

fn push_sanitized(s: &str, out: &mut String) {
    out.extend(s.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        }
    }));
}

/// `s` made a valid part of a table name.
pub fn sanitize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    push_sanitized(s, &mut out);
    out
}

/// Cuts a name over [`MAX_TABLE_NAME`] to fit, ending it in `_` and 16 hex digits of a hash of
/// the whole name.
fn cap(name: &mut String) {
    if name.len() <= MAX_TABLE_NAME {
        return;
    }
    let hash = blake3::hash(name.as_bytes());
    let suffix = format!("_{}", hex::encode(&hash.as_bytes()[..8]));
    let mut keep = MAX_TABLE_NAME - suffix.len();
    while !name.is_char_boundary(keep) {
        keep -= 1;
    }
    name.truncate(keep);
    name.push_str(&suffix);
}

fn parse_parts(table: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut rest = table;
    while !rest.is_empty() {
        match rest.find(['{', '}']) {
            None => {
                parts.push(Part::Literal(rest.to_string()));
                break;
            }
            Some(i) if rest.as_bytes()[i] == b'}' => {
                return Err("a `}` without its `{`".into());
            }
            Some(i) => {
                if i > 0 {
                    parts.push(Part::Literal(rest[..i].to_string()));
                }
                let after = &rest[i + 1..];
                let end = after
                    .find(['{', '}'])
                    .filter(|&j| after.as_bytes()[j] == b'}')
                    .ok_or("a `{` without its `}`")?;
                let name = after[..end].trim();
                parts.push(match name {
                    "stream" => Part::Stream,
                    "yyyy" => Part::Year,
                    "mm" => Part::Month,
                    "dd" => Part::Day,
                    "hh" => Part::Hour,
                    "" => return Err("an empty placeholder `{}`".into()),
                    field => {
                        let path: Vec<String> = field.split('.').map(str::to_string).collect();
                        if path.iter().any(|s| s.is_empty()) {
                            return Err(format!("`{{{field}}}` is not a dotted field path"));
                        }
                        Part::Field(path)
                    }
                });
                rest = &after[end + 1..];
            }
        }
    }
    if parts.is_empty() {
        return Err("the table name is empty".into());
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(s: &str) -> Template {
        Template::new(&s.parse::<TableRef>().unwrap()).unwrap()
    }

    const KEY: &str =
        "2026/11/25/22/yubl-events.v2-1-2026-11-25-22-05-13-0b4c2c6e-5a1f-4f3e-9b7e-0d9f1c2a3b4c.gz";

    fn name(t: &Template, object: &ObjectRef, record: &str) -> Result<String, RouteError> {
        t.table_for(object, record.as_bytes())
            .map(|t| t.to_string())
    }

    #[test]
    fn dots_inside_braces_are_not_separators() {
        let t: TableRef = "p.d.events_{detail.type}".parse().unwrap();
        assert_eq!(
            (t.project.as_str(), t.dataset.as_str(), t.table.as_str()),
            ("p", "d", "events_{detail.type}")
        );
        let t: TableRef = "example.com:proj.bi.e_{a.b.c}_{stream}".parse().unwrap();
        assert_eq!(t.project, "example.com:proj");
        assert_eq!(t.table, "e_{a.b.c}_{stream}");
        let t = template("p.d.events_{detail.type}");
        assert!(t.is_routed() && t.has_fields());
        assert!(!template("p.d.events").is_routed());
        assert!(template("p.d.e_{stream}").is_routed());
        assert!(!template("p.d.e_{stream}").has_fields());
    }

    #[test]
    fn field_values_become_table_names() {
        let t = template("p.d.events_{type}");
        let o = ObjectRef::new("b", "k.json");
        assert_eq!(
            name(&t, &o, r#"{"type":"yubl-posted"}"#).unwrap(),
            "p.d.events_yubl_posted"
        );
        // Case kept; anything outside [A-Za-z0-9_] is `_`, non-ASCII too.
        assert_eq!(
            name(&t, &o, r#"{"type":"User.Followed/ü x"}"#).unwrap(),
            "p.d.events_User_Followed___x"
        );
        assert_eq!(name(&t, &o, r#"{"type":42}"#).unwrap(), "p.d.events_42");
        assert_eq!(name(&t, &o, r#"{"type":1.5}"#).unwrap(), "p.d.events_1_5");
        assert_eq!(name(&t, &o, r#"{"type":true}"#).unwrap(), "p.d.events_true");
        // Escapes are decoded before the name is made.
        assert_eq!(
            name(&t, &o, r#"{"type":"a\u0062c"}"#).unwrap(),
            "p.d.events_abc"
        );
        let nested = template("p.d.{detail.kind}_{detail.v}");
        assert_eq!(
            name(&nested, &o, r#"{"detail":{"kind":"ord","v":2}}"#).unwrap(),
            "p.d.ord_2"
        );
    }

    #[test]
    fn missing_null_and_empty_values_go_to_the_default_others_are_record_errors() {
        let t = template("p.d.events_{detail.type}");
        let o = ObjectRef::new("b", "k");
        for record in [
            r#"{"x":1}"#,
            r#"{"detail":{"type":null}}"#,
            r#"{"detail":{"type":""}}"#,
            r#"{"detail":"flat"}"#,
            "[1,2]",
        ] {
            assert_eq!(
                name(&t, &o, record).unwrap_err(),
                RouteError::Missing {
                    field: "detail.type".into()
                },
                "{record}"
            );
        }
        assert_eq!(
            name(&t, &o, r#"{"detail":{"type":{"a":1}}}"#).unwrap_err(),
            RouteError::NotScalar {
                field: "detail.type".into(),
                kind: "an object"
            }
        );
        let e = name(&t, &o, r#"{"detail":{"type":["a"]}}"#).unwrap_err();
        assert!(e.to_string().contains("an array"), "{e}");
        assert!(matches!(
            name(&t, &o, "{not json").unwrap_err(),
            RouteError::Unreadable { .. }
        ));
    }

    #[test]
    fn stream_and_hour_come_from_the_firehose_key() {
        let t = template("p.d.{stream}_{yyyy}{mm}{dd}_{hh}");
        let o = ObjectRef::new("b", KEY);
        assert_eq!(
            name(&t, &o, "{}").unwrap(),
            "p.d.yubl_events_v2_20261125_22"
        );
        let ot = t.for_object(&o).unwrap();
        // Resolved once per object: no field left, any record goes to the same table.
        assert_eq!(
            ot.table_for(b"[]").unwrap().table,
            "yubl_events_v2_20261125_22"
        );
        let plain = ObjectRef::new("b", "exports/data.json.gz");
        let e = t.for_object(&plain).unwrap_err();
        assert!(matches!(e, RouteError::Object(_)));
        assert!(
            e.to_string().contains("exports/data.json.gz") && e.to_string().contains("{stream}"),
            "{e}"
        );
        // Without object placeholders any key will do.
        assert!(template("p.d.e_{t}").for_object(&plain).is_ok());
    }

    #[test]
    fn names_over_the_limit_are_cut_and_hashed() {
        let t = template("p.d.e_{v}");
        let o = ObjectRef::new("b", "k");
        let long = |c: &str| format!(r#"{{"v":"{}{c}"}}"#, "x".repeat(2000));
        let a = name(&t, &o, &long("a")).unwrap();
        let b = name(&t, &o, &long("b")).unwrap();
        let table = a.strip_prefix("p.d.").unwrap();
        assert_eq!(table.len(), MAX_TABLE_NAME);
        assert_ne!(a, b);
        // Stable: the same value always reaches the same table.
        assert_eq!(a, name(&t, &o, &long("a")).unwrap());
        let exact = format!(r#"{{"v":"{}"}}"#, "y".repeat(MAX_TABLE_NAME - 2));
        assert_eq!(name(&t, &o, &exact).unwrap().len(), "p.d.".len() + 1024);
        assert!(!name(&t, &o, &exact).unwrap().contains("_y_"));
    }

    #[test]
    fn bad_templates_are_refused() {
        for bad in [
            "p.d.e_{",
            "p.d.e_}",
            "p.d.e_{}",
            "p.d.e_{a..b}",
            "p.d.e_{a{b}}",
        ] {
            let t: Result<TableRef, _> = bad.parse();
            let r = t.and_then(|t| Template::new(&t));
            assert!(r.is_err(), "{bad}");
        }
        let t = TableRef {
            project: "p".into(),
            dataset: "d_{x}".into(),
            table: "t".into(),
        };
        assert!(Template::new(&t).unwrap_err().contains("dataset"));
    }

    #[test]
    fn the_default_table_is_a_sibling_without_fields() {
        let t = template("p.d.events_{type}");
        let o = ObjectRef::new("b", KEY);
        let d = t.sibling("events_other").unwrap();
        assert!(!d.is_routed());
        assert_eq!(
            d.table_for(&o, b"{}").unwrap().to_string(),
            "p.d.events_other"
        );
        let d = t.sibling("q.e.other_{yyyy}").unwrap();
        assert_eq!(
            d.table_for(&o, b"{}").unwrap().to_string(),
            "q.e.other_2026"
        );
        assert!(t.sibling("other_{type}").is_err());
    }
}
