//! `--sink iceberg:…`: which catalog, warehouse and table. Plain parsing, built with or without
//! the `iceberg` feature (a build without it refuses the spec with this same parse).
//!
//! ```text
//! iceberg:sqlite:///abs/catalog.db?warehouse=/abs/warehouse#analytics.events
//! iceberg:sqlite://relative/catalog.db?warehouse=s3://bucket/wh#events   (namespace `default`)
//! iceberg:postgres://user@host:5432/db?warehouse=/abs/wh&catalog=prod#analytics.events
//! iceberg:glue://?warehouse=s3://bucket/wh#analytics.events              (the account's Glue)
//! iceberg:glue://123456789012?warehouse=s3://bucket/wh#analytics.events  (another catalog ID)
//! iceberg:s3tables:arn:aws:s3tables:us-east-1:123456789012:bucket/lake#analytics.events
//! iceberg:rest+https://catalog.example.com/api?warehouse=lake#analytics.events
//! ```
//!
//! SQL catalogs: the part before `?` is the catalog's database (the same `iceberg_tables` and
//! `iceberg_namespace_properties` tables pyiceberg's `SqlCatalog` uses) and `catalog=` the
//! catalog's name inside it ([`DEFAULT_CATALOG`] unless given: a reader must open the catalog
//! under the same name to see the tables). `warehouse=` is where new tables' files go: a local
//! directory or `s3://bucket/prefix` (required for SQL and Glue; S3 Tables decides it itself; a
//! REST catalog passes it to the server, which may take a name rather than a location). After
//! `#`: `namespace.table` (`a.b.table` for a nested namespace; a bare `table` is in namespace
//! `default`).
//!
//! `sigv4=` on a REST catalog is refused, naming the native form instead: iceberg-catalog-rest
//! 0.10 sends requests through a plain `reqwest::Client` with bearer tokens only, so it cannot
//! sign Glue's or S3 Tables' Iceberg REST endpoints (see docs/src/sinks/iceberg.md).

use std::path::{Path, PathBuf};

/// The catalog name a spec without `catalog=` uses (pyiceberg: `SqlCatalog("default", …)`).
pub const DEFAULT_CATALOG: &str = "default";

/// The namespace of a table named without one.
pub const DEFAULT_NAMESPACE: &str = "default";

const USAGE: &str =
    "expected iceberg:sqlite:///PATH/catalog.db?warehouse=DIR|s3://BUCKET/PREFIX#NAMESPACE.TABLE, \
     iceberg:postgres://HOST/DB?warehouse=…#NAMESPACE.TABLE, \
     iceberg:glue://[CATALOG_ID]?warehouse=s3://BUCKET/PREFIX#DATABASE.TABLE, \
     iceberg:s3tables:arn:aws:s3tables:REGION:ACCOUNT:bucket/NAME#NAMESPACE.TABLE or \
     iceberg:rest+https://HOST/PATH[?warehouse=…]#NAMESPACE.TABLE";

/// Where a SQL catalog's tables live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogDb {
    /// An SQLite file (created if missing), as an absolute path.
    Sqlite(PathBuf),
    /// A PostgreSQL database: its URL as given, less this sink's parameters.
    Postgres(String),
}

/// Which catalog the table is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogKind {
    /// A SQL catalog (pyiceberg's tables) in this database.
    Sql(CatalogDb),
    /// The AWS Glue Data Catalog (the account's own, or `catalog_id`'s).
    Glue { catalog_id: Option<String> },
    /// An S3 table bucket, by its ARN.
    S3Tables { arn: String },
    /// An Iceberg REST catalog at this base URL (`http://` or `https://`).
    Rest { uri: String },
}

/// Where new tables' files go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warehouse {
    /// A local directory, absolute.
    Local(PathBuf),
    /// `s3://bucket/prefix` (no trailing slash).
    S3 { bucket: String, prefix: String },
    /// What a REST catalog's server takes as its warehouse: a location or a name.
    Named(String),
}

impl Warehouse {
    /// As a URL for the catalog (`file:///…`, `s3://…`, or the name as given).
    pub fn location(&self) -> String {
        match self {
            Warehouse::Local(p) => format!("file://{}", p.display()),
            Warehouse::S3 { bucket, prefix } if prefix.is_empty() => format!("s3://{bucket}"),
            Warehouse::S3 { bucket, prefix } => format!("s3://{bucket}/{prefix}"),
            Warehouse::Named(n) => n.clone(),
        }
    }
}

/// A parsed `iceberg:` spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub kind: CatalogKind,
    /// Required for SQL and Glue catalogs; none for S3 Tables; optional for REST.
    pub warehouse: Option<Warehouse>,
    /// The catalog's name (SQL: its rows' `catalog_name`; others: a label).
    pub catalog: String,
    pub namespace: Vec<String>,
    pub table: String,
}

/// The query parameters of a spec, decoded, in order.
fn params(query: &str) -> Result<Vec<(String, String)>, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_encoding::percent_decode_str(v)
                .decode_utf8()
                .map_err(|e| format!("`{k}=`: {e}"))?;
            Ok((k.to_string(), v.into_owned()))
        })
        .collect()
}

/// A `warehouse=` value: `s3://bucket[/prefix]`, `file:///dir` or a directory.
fn warehouse(value: &str, cwd: &Path) -> Result<Warehouse, String> {
    if value.is_empty() {
        return Err(format!(
            "`warehouse=` needs a directory or s3://BUCKET/PREFIX: {USAGE}"
        ));
    }
    if let Some(rest) = value.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() || bucket.contains(['?', '#', ' ']) {
            return Err(format!("warehouse `{value}`: no bucket name"));
        }
        return Ok(Warehouse::S3 {
            bucket: bucket.to_string(),
            prefix: prefix.trim_end_matches('/').to_string(),
        });
    }
    match value.strip_prefix("file://") {
        Some(p) => Ok(Warehouse::Local(cwd.join(p))),
        None if value.contains("://") => Err(format!(
            "warehouse `{value}`: a local directory, file:///DIR or s3://BUCKET/PREFIX"
        )),
        None => Ok(Warehouse::Local(cwd.join(value))),
    }
}

/// An S3 table bucket ARN: `arn:PARTITION:s3tables:REGION:ACCOUNT:bucket/NAME`.
fn table_bucket_arn(arn: &str) -> Result<String, String> {
    let parts: Vec<&str> = arn.split(':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && !parts[1].is_empty()
        && parts[2] == "s3tables"
        && !parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5]
            .strip_prefix("bucket/")
            .is_some_and(|n| !n.is_empty() && !n.contains('/'));
    if ok {
        Ok(arn.to_string())
    } else {
        Err(format!(
            "`{arn}` is not a table bucket ARN (arn:aws:s3tables:REGION:ACCOUNT:bucket/NAME)"
        ))
    }
}

impl Target {
    /// Parses the spec after `iceberg:`; relative paths are taken from `cwd`.
    pub fn parse(spec: &str, cwd: &Path) -> Result<Target, String> {
        let (uri, table) = spec.rsplit_once('#').ok_or_else(|| {
            format!("`iceberg:{spec}` names no table (`#NAMESPACE.TABLE`): {USAGE}")
        })?;
        let mut parts: Vec<String> = table.split('.').map(str::to_string).collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(format!("`#{table}`: an empty name part: {USAGE}"));
        }
        let table = parts.pop().unwrap_or_default();
        if parts.is_empty() {
            parts.push(DEFAULT_NAMESPACE.to_string());
        }
        let (base, query) = uri.split_once('?').unwrap_or((uri, ""));
        let mut wh = None;
        let mut catalog = DEFAULT_CATALOG.to_string();
        let mut sigv4 = None;
        let mut kept = Vec::new();
        for (k, v) in params(query)? {
            match k.as_str() {
                "warehouse" => wh = Some(v),
                "catalog" if !v.is_empty() => catalog = v,
                "catalog" => return Err("`catalog=` needs a name".into()),
                "sigv4" => sigv4 = Some(v),
                _ => kept.push(format!("{k}={v}")),
            }
        }
        let only_sql_keeps = |what: &str| -> Result<(), String> {
            if kept.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "unknown parameter(s) `{}` for {what} (warehouse=, catalog=)",
                    kept.join("&")
                ))
            }
        };
        let kind = if let Some(path) = base.strip_prefix("sqlite://") {
            only_sql_keeps("an SQLite catalog")?;
            if path.is_empty() {
                return Err(format!("`sqlite://` needs a file path: {USAGE}"));
            }
            CatalogKind::Sql(CatalogDb::Sqlite(cwd.join(path)))
        } else if base.starts_with("postgres://") || base.starts_with("postgresql://") {
            let mut url = base.to_string();
            if !kept.is_empty() {
                url.push('?');
                url.push_str(&kept.join("&"));
            }
            CatalogKind::Sql(CatalogDb::Postgres(url))
        } else if let Some(id) = base.strip_prefix("glue://") {
            only_sql_keeps("a Glue catalog")?;
            if !(id.is_empty() || id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit())) {
                return Err(format!(
                    "`glue://{id}`: a Glue catalog ID is a 12-digit account ID (or leave it out)"
                ));
            }
            CatalogKind::Glue {
                catalog_id: (!id.is_empty()).then(|| id.to_string()),
            }
        } else if let Some(arn) = base.strip_prefix("s3tables:") {
            only_sql_keeps("S3 Tables")?;
            if wh.is_some() {
                return Err(
                    "S3 Tables keeps each table's files in its table bucket: drop \
                            `warehouse=`"
                        .into(),
                );
            }
            CatalogKind::S3Tables {
                arn: table_bucket_arn(arn)?,
            }
        } else if let Some(url) = base.strip_prefix("rest+") {
            let host = url
                .strip_prefix("http://")
                .or_else(|| url.strip_prefix("https://"))
                .unwrap_or_default();
            if host.is_empty() {
                return Err(format!(
                    "`rest+{url}`: a REST catalog's URL is http(s)://HOST[/PATH]"
                ));
            }
            only_sql_keeps("a REST catalog")?;
            CatalogKind::Rest {
                uri: url.trim_end_matches('/').to_string(),
            }
        } else {
            return Err(format!("unknown Iceberg catalog `{base}`: {USAGE}"));
        };
        if let Some(service) = sigv4 {
            return Err(match kind {
                CatalogKind::Rest { .. } => format!(
                    "`sigv4={service}`: SigV4-signed REST catalogs (Glue's and S3 Tables' Iceberg \
                     REST endpoints) cannot be reached yet: iceberg-catalog-rest 0.10 sends bearer \
                     tokens only. Use iceberg:glue://?warehouse=s3://BUCKET/PREFIX#DB.TABLE or \
                     iceberg:s3tables:TABLE_BUCKET_ARN#NAMESPACE.TABLE (the same tables, through \
                     the AWS APIs)"
                ),
                _ => "`sigv4=` is for REST catalogs only".to_string(),
            });
        }
        let warehouse = match (&kind, wh) {
            // A REST server may take a name (or an ARN) rather than a location.
            (CatalogKind::Rest { .. }, Some(w))
                if !["s3://", "file://", "/"].iter().any(|p| w.starts_with(p)) =>
            {
                Some(Warehouse::Named(w))
            }
            (_, Some(w)) => Some(warehouse(&w, cwd)?),
            (CatalogKind::Sql(_), None) | (CatalogKind::Glue { .. }, None) => {
                return Err(format!(
                    "`iceberg:{spec}` needs `warehouse=DIR` or `warehouse=s3://BUCKET/PREFIX`: \
                     {USAGE}"
                ))
            }
            (_, None) => None,
        };
        if matches!(kind, CatalogKind::Glue { .. })
            && !matches!(warehouse, Some(Warehouse::S3 { .. }))
        {
            return Err(
                "a Glue catalog's warehouse is on S3: `warehouse=s3://BUCKET/PREFIX`".into(),
            );
        }
        Ok(Target {
            kind,
            warehouse,
            catalog,
            namespace: parts,
            table,
        })
    }

    /// The SQL catalog database's URL for sqlx (`mode=rwc`: SQLite creates the file if missing).
    pub fn db_url(&self) -> Option<String> {
        match &self.kind {
            CatalogKind::Sql(CatalogDb::Sqlite(p)) => {
                Some(format!("sqlite://{}?mode=rwc", p.display()))
            }
            CatalogKind::Sql(CatalogDb::Postgres(u)) => Some(u.clone()),
            _ => None,
        }
    }

    /// The catalog part of the default ledger's file name: the SQL catalog's name (as before),
    /// else the catalog's kind and identity, so two catalogs' tables of one name do not share a
    /// ledger.
    pub fn ledger_label(&self) -> String {
        let clean = |s: &str| -> String {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect()
        };
        match &self.kind {
            CatalogKind::Sql(_) => self.catalog.clone(),
            CatalogKind::Glue { catalog_id } => {
                format!(
                    "glue{}",
                    catalog_id
                        .as_deref()
                        .map(|i| format!("-{i}"))
                        .unwrap_or_default()
                )
            }
            CatalogKind::S3Tables { arn } => {
                format!("s3tables-{}", clean(arn.rsplit('/').next().unwrap_or(arn)))
            }
            CatalogKind::Rest { uri } => {
                let host = uri.split_once("://").map_or(uri.as_str(), |(_, h)| h);
                let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
                format!("rest-{}", clean(host))
            }
        }
    }

    /// `namespace.table`, for messages and the default ledger's file name.
    pub fn table_name(&self) -> String {
        format!("{}.{}", self.namespace.join("."), self.table)
    }
}

impl std::fmt::Display for Target {
    /// The spec without credentials: the catalog kind, the table and the catalog name.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            CatalogKind::Sql(CatalogDb::Sqlite(p)) => {
                write!(f, "iceberg:sqlite://{}", p.display())?
            }
            CatalogKind::Sql(CatalogDb::Postgres(_)) => write!(f, "iceberg:postgres")?,
            CatalogKind::Glue { catalog_id: None } => write!(f, "iceberg:glue")?,
            CatalogKind::Glue {
                catalog_id: Some(id),
            } => write!(f, "iceberg:glue://{id}")?,
            CatalogKind::S3Tables { arn } => write!(f, "iceberg:s3tables:{arn}")?,
            CatalogKind::Rest { uri } => {
                // user:password@ in the URL is never shown
                let (scheme, rest) = uri.split_once("://").unwrap_or(("", uri));
                let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
                write!(f, "iceberg:rest+{scheme}://{host}")?
            }
        }
        write!(f, "#{}", self.table_name())?;
        if matches!(self.kind, CatalogKind::Sql(_)) {
            write!(f, " (catalog {})", self.catalog)?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "target_tests.rs"]
mod tests;
