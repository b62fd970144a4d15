//! `--sink iceberg:…`: which catalog, warehouse and table. Plain parsing, built with or without
//! the `iceberg` feature (a build without it refuses the spec with this same parse).
//!
//! ```text
//! iceberg:sqlite:///abs/catalog.db?warehouse=/abs/warehouse#analytics.events
//! iceberg:sqlite://relative/catalog.db?warehouse=wh#events          (namespace `default`)
//! iceberg:postgres://user@host:5432/db?warehouse=/abs/wh&catalog=prod#analytics.events
//! ```
//!
//! The part before `#` is the SQL catalog's database (the same `iceberg_tables` and
//! `iceberg_namespace_properties` tables pyiceberg's `SqlCatalog` uses); `warehouse=` is where
//! new tables' files go (a local directory); `catalog=` is the catalog's name inside that
//! database ([`DEFAULT_CATALOG`] unless given: a reader must open the catalog under the same
//! name to see the tables). After `#`: `namespace.table` (`a.b.table` for a nested namespace;
//! a bare `table` is in namespace `default`).

use std::path::{Path, PathBuf};

/// The catalog name a spec without `catalog=` uses (pyiceberg: `SqlCatalog("default", …)`).
pub const DEFAULT_CATALOG: &str = "default";

/// The namespace of a table named without one.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Where the catalog's tables live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogDb {
    /// An SQLite file (created if missing), as an absolute path.
    Sqlite(PathBuf),
    /// A PostgreSQL database: its URL as given, less this sink's parameters.
    Postgres(String),
}

/// A parsed `iceberg:` spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub db: CatalogDb,
    /// The warehouse directory, absolute.
    pub warehouse: PathBuf,
    pub catalog: String,
    pub namespace: Vec<String>,
    pub table: String,
}

impl Target {
    /// Parses the spec after `iceberg:`; relative paths are taken from `cwd`.
    pub fn parse(spec: &str, cwd: &Path) -> Result<Target, String> {
        let usage = "expected iceberg:sqlite:///PATH/catalog.db?warehouse=DIR#NAMESPACE.TABLE \
                     or iceberg:postgres://HOST/DB?warehouse=DIR#NAMESPACE.TABLE";
        let (uri, table) = spec.rsplit_once('#').ok_or_else(|| {
            format!("`iceberg:{spec}` names no table (`#NAMESPACE.TABLE`): {usage}")
        })?;
        let mut parts: Vec<String> = table.split('.').map(str::to_string).collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(format!("`#{table}`: an empty name part: {usage}"));
        }
        let table = parts.pop().unwrap_or_default();
        if parts.is_empty() {
            parts.push(DEFAULT_NAMESPACE.to_string());
        }
        let (base, query) = match uri.split_once('?') {
            Some((b, q)) => (b, q),
            None => (uri, ""),
        };
        let mut warehouse = None;
        let mut catalog = DEFAULT_CATALOG.to_string();
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_encoding::percent_decode_str(v)
                .decode_utf8()
                .map_err(|e| format!("`{pair}`: {e}"))?
                .into_owned();
            match k {
                "warehouse" => warehouse = Some(v),
                "catalog" if !v.is_empty() => catalog = v,
                "catalog" => return Err("`catalog=` needs a name".into()),
                _ => kept.push(pair.to_string()),
            }
        }
        let warehouse = warehouse
            .filter(|w| !w.is_empty())
            .ok_or_else(|| format!("`iceberg:{spec}` needs `warehouse=DIR`: {usage}"))?;
        let warehouse = match warehouse.strip_prefix("file://") {
            Some(p) => PathBuf::from(p),
            None if warehouse.contains("://") => {
                return Err(format!(
                    "warehouse `{warehouse}`: only a local directory (or file://) is supported yet"
                ))
            }
            None => PathBuf::from(warehouse),
        };
        let db = if let Some(path) = base.strip_prefix("sqlite://") {
            if !kept.is_empty() {
                return Err(format!(
                    "unknown parameter(s) `{}` for an SQLite catalog (warehouse=, catalog=)",
                    kept.join("&")
                ));
            }
            if path.is_empty() {
                return Err(format!("`sqlite://` needs a file path: {usage}"));
            }
            CatalogDb::Sqlite(cwd.join(path))
        } else if base.starts_with("postgres://") || base.starts_with("postgresql://") {
            let mut url = base.to_string();
            if !kept.is_empty() {
                url.push('?');
                url.push_str(&kept.join("&"));
            }
            CatalogDb::Postgres(url)
        } else {
            return Err(format!("unknown Iceberg catalog `{base}`: {usage}"));
        };
        Ok(Target {
            db,
            warehouse: cwd.join(warehouse),
            catalog,
            namespace: parts,
            table,
        })
    }

    /// The catalog database's URL for sqlx (`mode=rwc`: SQLite creates the file if missing).
    pub fn db_url(&self) -> String {
        match &self.db {
            CatalogDb::Sqlite(p) => format!("sqlite://{}?mode=rwc", p.display()),
            CatalogDb::Postgres(u) => u.clone(),
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
        match &self.db {
            CatalogDb::Sqlite(p) => write!(f, "iceberg:sqlite://{}", p.display())?,
            CatalogDb::Postgres(_) => write!(f, "iceberg:postgres")?,
        }
        write!(f, "#{} (catalog {})", self.table_name(), self.catalog)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_sqlite_spec_names_the_file_warehouse_table_and_default_catalog() {
        let t = Target::parse(
            "sqlite:///abs/cat.db?warehouse=/abs/wh#analytics.events",
            Path::new("/cwd"),
        )
        .unwrap();
        assert_eq!(t.db, CatalogDb::Sqlite("/abs/cat.db".into()));
        assert_eq!(t.warehouse, PathBuf::from("/abs/wh"));
        assert_eq!(t.catalog, DEFAULT_CATALOG);
        assert_eq!(
            (t.namespace.clone(), t.table.as_str()),
            (vec!["analytics".to_string()], "events")
        );
        assert_eq!(t.db_url(), "sqlite:///abs/cat.db?mode=rwc");
    }

    #[test]
    fn relative_paths_bare_tables_and_nested_namespaces() {
        let t = Target::parse(
            "sqlite://c.db?warehouse=file://wh&catalog=prod#t",
            Path::new("/w"),
        )
        .unwrap();
        assert_eq!(t.db, CatalogDb::Sqlite("/w/c.db".into()));
        assert_eq!(t.warehouse, PathBuf::from("/w/wh"));
        assert_eq!(t.catalog, "prod");
        assert_eq!(t.table_name(), "default.t");
        let t = Target::parse("sqlite:///c.db?warehouse=/wh#a.b.t", Path::new("/")).unwrap();
        assert_eq!(t.namespace, ["a", "b"]);
    }

    #[test]
    fn a_postgres_spec_keeps_its_own_parameters() {
        let t = Target::parse(
            "postgres://u@h:5/db?sslmode=disable&warehouse=/wh#ns.t",
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(
            t.db,
            CatalogDb::Postgres("postgres://u@h:5/db?sslmode=disable".into())
        );
        assert_eq!(t.to_string(), "iceberg:postgres#ns.t (catalog default)");
    }

    #[test]
    fn incomplete_or_unknown_specs_are_refused_with_the_expected_form() {
        for (spec, says) in [
            ("sqlite:///c.db?warehouse=/wh", "names no table"),
            ("sqlite:///c.db#ns.t", "needs `warehouse=DIR`"),
            (
                "sqlite:///c.db?warehouse=s3://b/wh#t",
                "only a local directory",
            ),
            ("mysql://h/db?warehouse=/wh#t", "unknown Iceberg catalog"),
            ("sqlite:///c.db?warehouse=/wh#ns..t", "empty name part"),
            ("sqlite:///c.db?warehouse=/wh&x=1#t", "unknown parameter"),
        ] {
            let e = Target::parse(spec, Path::new("/")).unwrap_err();
            assert!(e.contains(says), "{spec}: {e}");
        }
    }
}
