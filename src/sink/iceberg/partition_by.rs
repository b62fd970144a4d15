//! `--partition-by` for a table `--create-table auto` creates: Iceberg transforms of its
//! columns, e.g. `day(ts)`, `bucket[16](user), truncate[4](code), region` (a bare column is
//! `identity`). Parsed at start, so a bad spec is refused before anything is read; bound to the
//! schema when the first row has shaped it.

use iceberg::spec::{Schema, Transform, UnboundPartitionSpec};

/// One partition field: a transform of a source column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionBy {
    pub column: String,
    pub transform: Transform,
}

impl PartitionBy {
    /// The partition field's name, as Spark and pyiceberg name them: `ts_day`, `k_bucket`,
    /// `s_trunc`; an identity field is named as its column.
    pub fn name(&self) -> String {
        let suffix = match self.transform {
            Transform::Identity => return self.column.clone(),
            Transform::Year => "year",
            Transform::Month => "month",
            Transform::Day => "day",
            Transform::Hour => "hour",
            Transform::Bucket(_) => "bucket",
            Transform::Truncate(_) => "trunc",
            Transform::Void | Transform::Unknown => "void",
        };
        format!("{}_{suffix}", self.column)
    }

    /// Whether the transform takes a time: its column is then created `timestamptz` (the
    /// row's value an RFC 3339 string or epoch seconds), not typed by its JSON value.
    pub fn wants_time(&self) -> bool {
        matches!(
            self.transform,
            Transform::Year | Transform::Month | Transform::Day | Transform::Hour
        )
    }
}

/// `day(ts), bucket[16](k), region`: comma-separated fields.
pub fn parse(spec: &str) -> Result<Vec<PartitionBy>, String> {
    let mut fields = Vec::new();
    for part in spec.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(format!("--partition-by `{spec}`: an empty field"));
        }
        let (transform, column) = match part.split_once('(') {
            Some((t, rest)) => {
                let column = rest.strip_suffix(')').ok_or_else(|| {
                    format!("--partition-by `{part}`: expected TRANSFORM(COLUMN)")
                })?;
                (t.trim(), column.trim())
            }
            None => ("identity", part),
        };
        let transform = match transform.parse::<Transform>() {
            Ok(Transform::Void | Transform::Unknown) | Err(_) => {
                return Err(format!(
                    "--partition-by `{part}`: unknown transform `{transform}` (identity, year, \
                     month, day, hour, bucket[N], truncate[W])"
                ));
            }
            Ok(t) => t,
        };
        if column.is_empty() || column.contains(['(', ')', '[', ']']) {
            return Err(format!(
                "--partition-by `{part}`: expected TRANSFORM(COLUMN)"
            ));
        }
        let field = PartitionBy {
            column: column.to_string(),
            transform,
        };
        if fields
            .iter()
            .any(|f: &PartitionBy| f.name() == field.name())
        {
            return Err(format!("--partition-by `{spec}`: `{part}` is there twice"));
        }
        fields.push(field);
    }
    Ok(fields)
}

/// The partition spec of `fields` over `schema` (the created table's): a column the schema
/// lacks, or a transform its type cannot take (e.g. `day` of a `long`), is an error.
pub fn spec(fields: &[PartitionBy], schema: &Schema) -> Result<UnboundPartitionSpec, String> {
    let mut b = UnboundPartitionSpec::builder();
    for f in fields {
        let Some(col) = schema.field_by_name(&f.column) else {
            return Err(format!(
                "--partition-by names `{}`, which the first row (that shaped the table) lacks",
                f.column
            ));
        };
        if f.transform.result_type(&col.field_type).is_err() {
            return Err(format!(
                "--partition-by: `{}` cannot be applied to `{}` ({})",
                f.transform, f.column, col.field_type
            ));
        }
        b = b
            .add_partition_field(col.id, f.name(), f.transform)
            .map_err(|e| format!("--partition-by: {e}"))?;
    }
    Ok(b.build())
}

#[cfg(test)]
mod tests {
    use iceberg::spec::{NestedField, PrimitiveType, Type};

    use super::*;

    #[test]
    fn transforms_of_columns_comma_separated_a_bare_column_is_identity() {
        let got = parse("day(ts), bucket[16](k),truncate[4](s), region").unwrap();
        let names: Vec<String> = got.iter().map(PartitionBy::name).collect();
        assert_eq!(names, ["ts_day", "k_bucket", "s_trunc", "region"]);
        assert_eq!(got[1].transform, Transform::Bucket(16));
        assert_eq!(got[2].transform, Transform::Truncate(4));
        assert_eq!(got[3].transform, Transform::Identity);
        assert!(got[0].wants_time() && !got[1].wants_time());
        for bad in [
            "",
            "day(ts),",
            "week(ts)",
            "void(ts)",
            "bucket(k)",
            "bucket[x](k)",
            "day(ts",
            "day()",
            "day(ts), day(ts)",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_spec_binds_to_the_created_schema_or_says_what_does_not_fit() {
        let schema = Schema::builder()
            .with_fields(vec![
                NestedField::optional(1, "ts", Type::Primitive(PrimitiveType::Timestamptz)).into(),
                NestedField::optional(2, "k", Type::Primitive(PrimitiveType::Long)).into(),
            ])
            .build()
            .unwrap();
        let s = spec(&parse("day(ts), bucket[4](k)").unwrap(), &schema).unwrap();
        let fields: Vec<(i32, &str)> = s
            .fields()
            .iter()
            .map(|f| (f.source_id, f.name.as_str()))
            .collect();
        assert_eq!(fields, [(1, "ts_day"), (2, "k_bucket")]);
        let e = spec(&parse("day(k)").unwrap(), &schema).unwrap_err();
        assert!(e.contains("cannot be applied"), "{e}");
        let e = spec(&parse("hour(missing)").unwrap(), &schema).unwrap_err();
        assert!(e.contains("lacks"), "{e}");
    }
}
