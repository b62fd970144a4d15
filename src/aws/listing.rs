//! Every object under a prefix: `ListObjectsV2` followed page by page to the end, the one loop
//! the S3 source, redrive's letter listing and the Iceberg orphans listing share.

use aws_sdk_s3::types::Object;

use super::classify;
use crate::error::{Error, Stage};

/// The objects of `bucket` whose keys start with `prefix`, in key order (S3 lists so), every
/// page. A failed page fails the listing, classified at `stage` and named by `what`.
pub async fn objects(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    stage: Stage,
    what: &str,
) -> Result<Vec<Object>, Error> {
    let mut pages = client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    let mut out = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| classify(stage, what, e))?;
        out.extend(page.contents.unwrap_or_default());
    }
    Ok(out)
}
