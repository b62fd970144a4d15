//! The catalog a [`Target`] names, opened with the official crates: SQL (`iceberg-catalog-sql`,
//! pyiceberg's tables), Glue (`iceberg-catalog-glue`), S3 Tables (`iceberg-catalog-s3tables`)
//! and REST (`iceberg-catalog-rest`). The AWS ones take the SDK's configuration from the
//! environment (credentials chain, region, `AWS_ENDPOINT_URL*`) as the rest of the house does;
//! every catalog whose files may be on S3 gets [`storage::s3_io`]'s FileIO.

use std::collections::HashMap;
use std::sync::Arc;

use iceberg::io::LocalFsStorageFactory;
use iceberg::{Catalog, CatalogBuilder};
use iceberg_catalog_glue::{
    GlueCatalogBuilder, GLUE_CATALOG_PROP_CATALOG_ID, GLUE_CATALOG_PROP_WAREHOUSE,
};
use iceberg_catalog_rest::{
    RestCatalogBuilder, REST_CATALOG_PROP_URI, REST_CATALOG_PROP_WAREHOUSE,
};
use iceberg_catalog_s3tables::{S3TablesCatalogBuilder, S3TABLES_CATALOG_PROP_TABLE_BUCKET_ARN};
use iceberg_catalog_sql::{SqlBindStyle, SqlCatalogBuilder};

use super::storage;
use super::target::{CatalogDb, CatalogKind, Warehouse};
use super::{sink_error, Refusal, Target};
use crate::error::{Cause, Class, Error, Stage};

/// A REST catalog's OAuth2 bearer token, or its `client_id:client_secret` credential, from the
/// environment (never in the spec, which is logged).
pub const REST_TOKEN_ENV: &str = "FIREHOSE_REPLAY_ICEBERG_REST_TOKEN";
pub const REST_CREDENTIAL_ENV: &str = "FIREHOSE_REPLAY_ICEBERG_REST_CREDENTIAL";

/// Opens `target`'s catalog; an S3 warehouse's bucket is checked first (a missing bucket is
/// the user's to fix; denied access is a permanent failure).
pub async fn open_catalog(target: &Target) -> Result<Arc<dyn Catalog>, Refusal> {
    match &target.warehouse {
        Some(Warehouse::Local(dir)) => std::fs::create_dir_all(dir).map_err(|e| {
            Error::new(
                Stage::Sink,
                Class::Permanent,
                Cause::Sink(format!("warehouse {}: {e}", dir.display())),
            )
        })?,
        Some(Warehouse::S3 { bucket, prefix }) => check_bucket(target, bucket, prefix).await?,
        _ => {}
    }
    let name = target.catalog.clone();
    let opened = match &target.kind {
        CatalogKind::Sql(db) => {
            if let CatalogDb::Sqlite(path) = db {
                if let Some(dir) = path.parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
            }
            let bind = match db {
                CatalogDb::Sqlite(_) => SqlBindStyle::QMark,
                CatalogDb::Postgres(_) => SqlBindStyle::DollarNumeric,
            };
            let warehouse = target.warehouse.as_ref().map(Warehouse::location);
            let builder = SqlCatalogBuilder::default()
                .uri(target.db_url().unwrap_or_default())
                .warehouse_location(warehouse.unwrap_or_default())
                .sql_bind_style(bind);
            let c = if matches!(target.warehouse, Some(Warehouse::S3 { .. })) {
                let (factory, props) = storage::s3_io().await;
                builder
                    .with_storage_factory(factory)
                    .load(name, props)
                    .await
            } else {
                builder
                    .with_storage_factory(Arc::new(LocalFsStorageFactory))
                    .load(name, HashMap::new())
                    .await
            };
            c.map(|c| Arc::new(c) as Arc<dyn Catalog>)
        }
        CatalogKind::Glue { catalog_id } => {
            let (factory, mut props) = storage::s3_io().await;
            if let Some(w) = &target.warehouse {
                props.insert(GLUE_CATALOG_PROP_WAREHOUSE.into(), w.location());
            }
            if let Some(id) = catalog_id {
                props.insert(GLUE_CATALOG_PROP_CATALOG_ID.into(), id.clone());
            }
            GlueCatalogBuilder::default()
                .with_storage_factory(factory)
                .load(name, props)
                .await
                .map(|c| Arc::new(c) as Arc<dyn Catalog>)
        }
        CatalogKind::S3Tables { arn } => {
            let (factory, mut props) = storage::s3_io().await;
            props.insert(S3TABLES_CATALOG_PROP_TABLE_BUCKET_ARN.into(), arn.clone());
            S3TablesCatalogBuilder::default()
                .with_storage_factory(factory)
                .load(name, props)
                .await
                .map(|c| Arc::new(c) as Arc<dyn Catalog>)
        }
        CatalogKind::Rest { uri } => {
            let (factory, mut props) = storage::s3_io().await;
            props.insert(REST_CATALOG_PROP_URI.into(), uri.clone());
            if let Some(w) = &target.warehouse {
                props.insert(REST_CATALOG_PROP_WAREHOUSE.into(), w.location());
            }
            for (env, prop) in [
                (REST_TOKEN_ENV, "token"),
                (REST_CREDENTIAL_ENV, "credential"),
            ] {
                if let Some(v) = std::env::var(env).ok().filter(|v| !v.is_empty()) {
                    props.insert(prop.into(), v);
                }
            }
            RestCatalogBuilder::default()
                .with_storage_factory(factory)
                .load(name, props)
                .await
                .map(|c| Arc::new(c) as Arc<dyn Catalog>)
        }
    };
    opened.map_err(|e| sink_error("opening the catalog", e).into())
}

/// One `ListObjectsV2` under the warehouse prefix, with the SDK client every S3 user here
/// shares: a missing bucket is the user's to fix before anything is read; denied access is a
/// permanent failure. (Not `HeadBucket`: it needs `s3:ListBucket` without a prefix condition,
/// more than a least-privilege role grants.)
async fn check_bucket(target: &Target, bucket: &str, prefix: &str) -> Result<(), Refusal> {
    let s3 = crate::aws::client(false).await;
    let prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    let listed = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .max_keys(1)
        .send()
        .await;
    match listed {
        Ok(_) => Ok(()),
        Err(e) => {
            let missing = e
                .as_service_error()
                .is_some_and(|se| se.is_no_such_bucket())
                || e.raw_response().map(|r| r.status().as_u16()) == Some(404);
            if missing {
                return Err(Refusal::Usage(format!(
                    "{target}: the warehouse bucket `{bucket}` does not exist (create it first)"
                )));
            }
            Err(
                crate::aws::classify(Stage::Sink, &format!("the warehouse bucket `{bucket}`"), e)
                    .into(),
            )
        }
    }
}
