//! `--sink postgres://…`: where the rows go, and how to connect.
//!
//! Both libpq forms are taken: a URL (`postgres://user@host:5432/db?table=schema.table`) or a
//! key/value string after `postgres:` (`postgres:host=db dbname=app table=schema.table`).
//! `table` is ours; the rest is libpq's, with its `PG*` environment variables filling what the
//! spec leaves out (as `psql` would) and `sslmode` honoured. TLS is rustls, and it always
//! verifies the server's certificate and name: `require` here means what libpq calls
//! `verify-full`, since a connection that trusts any certificate protects nothing.

use std::fmt;
use std::path::PathBuf;

use super::columns::{quote_ident, MAX_IDENTIFIER_BYTES};

/// A parsed `--sink postgres…`.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    /// The connection string without our own parameters.
    pub conninfo: String,
    pub schema: String,
    pub table: String,
    pub sslmode: Option<SslMode>,
    /// `sslrootcert`: a PEM file of CA certificates to trust instead of the system's (RDS's
    /// bundle, say).
    pub root_cert: Option<PathBuf>,
    /// The user when the spec names none (the username of an RDS secret), before `PGUSER`.
    pub default_user: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
}

impl fmt::Debug for Target {
    // The connection string may carry a password: never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "postgres({}.{})", self.schema, self.table)
    }
}

impl Target {
    /// `"schema"."table"`.
    pub fn qualified(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.table))
    }

    /// `"schema"."name"`: a table of the target's schema (one routing reached).
    pub fn qualified_table(&self, name: &str) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(name))
    }

    /// `table=events_{detail.type}`: the table named per record, by the placeholders
    /// BigQuery's routing takes (`{field.path}`, `{stream}`, `{yyyy}` `{mm}` `{dd}` `{hh}`),
    /// with values made names the same way. `None` for one fixed table.
    pub fn template(&self) -> Result<Option<crate::sink::bigquery::route::Template>, String> {
        if !self.table.contains(['{', '}']) {
            return Ok(None);
        }
        let t = crate::sink::bigquery::TableRef {
            project: "postgres".into(),
            dataset: self.schema.clone(),
            table: self.table.clone(),
        };
        crate::sink::bigquery::route::Template::new(&t).map(Some)
    }

    /// The ledger table beside the target: `"schema"."firehose_replay_ledger"`.
    pub fn ledger_table(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), "firehose_replay_ledger")
    }

    pub fn parse(spec: &str) -> Result<Target, String> {
        let (pairs, rebuild): (Vec<(String, String)>, Rebuild) =
            if spec.starts_with("postgres://") || spec.starts_with("postgresql://") {
                let (base, query) = spec.split_once('?').unwrap_or((spec, ""));
                let pairs = query
                    .split('&')
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        let (k, v) = p.split_once('=').unwrap_or((p, ""));
                        (k.to_string(), decode(v))
                    })
                    .collect();
                let base = base.to_string();
                (
                    pairs,
                    Box::new(move |rest: &[(String, String)]| {
                        let q: Vec<String> = rest
                            .iter()
                            .map(|(k, v)| format!("{k}={}", encode(v)))
                            .collect();
                        if q.is_empty() {
                            base.clone()
                        } else {
                            format!("{base}?{}", q.join("&"))
                        }
                    }),
                )
            } else if let Some(kv) = spec.strip_prefix("postgres:") {
                let pairs = kv
                    .split_whitespace()
                    .map(|p| {
                        let (k, v) = p.split_once('=').unwrap_or((p, ""));
                        (k.to_string(), v.trim_matches('\'').to_string())
                    })
                    .collect();
                (
                    pairs,
                    Box::new(|rest: &[(String, String)]| {
                        rest.iter()
                            .map(|(k, v)| {
                                format!("{k}='{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
                            })
                            .collect::<Vec<_>>()
                            .join(" ")
                    }),
                )
            } else {
                return Err(format!("`{spec}` is not a postgres:// URL"));
            };
        let mut table = None;
        let mut sslmode = None;
        let mut root_cert = None;
        let mut rest = Vec::new();
        for (k, v) in pairs {
            match k.as_str() {
                "table" => table = Some(v),
                "sslmode" => sslmode = Some(ssl_mode(&v)?),
                "sslrootcert" => root_cert = Some(PathBuf::from(v)),
                _ => rest.push((k, v)),
            }
        }
        let table = table.ok_or(
            "the postgres sink needs the table: postgres://user@host:5432/db?table=schema.table",
        )?;
        let (schema, table) = match table.split_once('.') {
            Some((s, t)) => (s.to_string(), t.to_string()),
            None => ("public".to_string(), table),
        };
        for name in [&schema, &table] {
            if name.is_empty() {
                return Err("an empty schema or table name in `table=`".into());
            }
            // (A routing template's length is checked per table it names.)
            if name.len() > MAX_IDENTIFIER_BYTES && !name.contains('{') {
                return Err(format!(
                    "`{name}` is longer than PostgreSQL's {MAX_IDENTIFIER_BYTES}-byte identifier limit"
                ));
            }
        }
        let conninfo = rebuild(&rest);
        let target = Target {
            conninfo: String::new(),
            schema: schema.clone(),
            table: table.clone(),
            sslmode,
            root_cert: root_cert.clone(),
            default_user: None,
        };
        target.template()?;
        // Checked now, so a typo fails before anything runs.
        conninfo
            .parse::<tokio_postgres::Config>()
            .map_err(|e| format!("postgres connection string: {e}"))?;
        Ok(Target {
            conninfo,
            schema,
            table,
            sslmode,
            root_cert,
            default_user: None,
        })
    }

    /// The client configuration: the spec, then libpq's environment variables for what it
    /// leaves out, then `password` (from Secrets Manager) if the spec has none.
    pub fn config(&self, password: Option<&str>) -> Result<tokio_postgres::Config, String> {
        let mut c: tokio_postgres::Config = self
            .conninfo
            .parse()
            .map_err(|e| format!("postgres connection string: {e}"))?;
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if c.get_hosts().is_empty() {
            c.host(env("PGHOST").as_deref().unwrap_or("localhost"));
        }
        if c.get_ports().is_empty() {
            if let Some(p) = env("PGPORT") {
                c.port(
                    p.parse()
                        .map_err(|_| format!("PGPORT `{p}` is not a port"))?,
                );
            }
        }
        if c.get_user().is_none() {
            let user = self
                .default_user
                .clone()
                .or_else(|| env("PGUSER"))
                .or_else(|| env("USER"))
                .unwrap_or("postgres".into());
            c.user(&user);
        }
        if c.get_dbname().is_none() {
            if let Some(d) = env("PGDATABASE") {
                c.dbname(&d);
            }
        }
        if c.get_password().is_none() {
            if let Some(p) = password.map(str::to_string).or_else(|| env("PGPASSWORD")) {
                c.password(p);
            }
        }
        if c.get_application_name().is_none() {
            c.application_name("firehose-replay");
        }
        let mode = match self.sslmode {
            Some(m) => m,
            None => match env("PGSSLMODE") {
                Some(m) => ssl_mode(&m)?,
                None => SslMode::Prefer,
            },
        };
        c.ssl_mode(match mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require => tokio_postgres::config::SslMode::Require,
        });
        if c.get_connect_timeout().is_none() {
            c.connect_timeout(std::time::Duration::from_secs(30));
        }
        c.keepalives_idle(std::time::Duration::from_secs(30));
        Ok(c)
    }

    /// `sslrootcert`, or `PGSSLROOTCERT`.
    pub fn root_cert(&self) -> Option<PathBuf> {
        self.root_cert.clone().or_else(|| {
            std::env::var_os("PGSSLROOTCERT")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
    }
}

/// Puts the connection string back together without our own parameters.
type Rebuild = Box<dyn Fn(&[(String, String)]) -> String>;

fn ssl_mode(v: &str) -> Result<SslMode, String> {
    match v {
        "disable" => Ok(SslMode::Disable),
        "allow" | "prefer" => Ok(SslMode::Prefer),
        "require" | "verify-ca" | "verify-full" => Ok(SslMode::Require),
        other => Err(format!(
            "unknown sslmode `{other}` (disable, prefer, require, verify-ca, verify-full)"
        )),
    }
}

fn decode(v: &str) -> String {
    percent_encoding::percent_decode_str(&v.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

fn encode(v: &str) -> String {
    percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_and_key_value_forms() {
        let t = Target::parse(
            "postgres://u:p@db.example:5433/app?table=analytics.events&sslmode=verify-full&application_name=x",
        )
        .unwrap();
        assert_eq!(
            (t.schema.as_str(), t.table.as_str()),
            ("analytics", "events")
        );
        assert_eq!(t.sslmode, Some(SslMode::Require));
        assert_eq!(
            t.conninfo,
            "postgres://u:p@db.example:5433/app?application_name=x"
        );
        assert!(!format!("{t:?}").contains(":p@"));
        let t = Target::parse("postgres:host=db dbname=app table=events").unwrap();
        assert_eq!((t.schema.as_str(), t.table.as_str()), ("public", "events"));
        let c = t.config(None).unwrap();
        assert_eq!(c.get_dbname(), Some("app"));
        assert!(Target::parse("postgres://h/db").is_err());
        assert!(Target::parse(&format!("postgres://h/db?table={}", "x".repeat(64))).is_err());
        assert!(Target::parse("postgres://h/db?table=t&sslmode=bogus").is_err());
    }
}
