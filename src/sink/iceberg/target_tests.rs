use super::*;

#[test]
fn an_sqlite_spec_names_the_file_warehouse_table_and_default_catalog() {
    let t = Target::parse(
        "sqlite:///abs/cat.db?warehouse=/abs/wh#analytics.events",
        Path::new("/cwd"),
    )
    .unwrap();
    assert_eq!(
        t.kind,
        CatalogKind::Sql(CatalogDb::Sqlite("/abs/cat.db".into()))
    );
    assert_eq!(t.warehouse, Some(Warehouse::Local("/abs/wh".into())));
    assert_eq!(t.catalog, DEFAULT_CATALOG);
    assert_eq!(
        (t.namespace.clone(), t.table.as_str()),
        (vec!["analytics".to_string()], "events")
    );
    assert_eq!(t.db_url().unwrap(), "sqlite:///abs/cat.db?mode=rwc");
}

#[test]
fn relative_paths_bare_tables_and_nested_namespaces() {
    let t = Target::parse(
        "sqlite://c.db?warehouse=file://wh&catalog=prod#t",
        Path::new("/w"),
    )
    .unwrap();
    assert_eq!(
        t.kind,
        CatalogKind::Sql(CatalogDb::Sqlite("/w/c.db".into()))
    );
    assert_eq!(t.warehouse, Some(Warehouse::Local("/w/wh".into())));
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
        t.kind,
        CatalogKind::Sql(CatalogDb::Postgres(
            "postgres://u@h:5/db?sslmode=disable".into()
        ))
    );
    assert_eq!(t.to_string(), "iceberg:postgres#ns.t (catalog default)");
}

#[test]
fn an_s3_warehouse_is_a_bucket_and_a_prefix() {
    let t = Target::parse("sqlite:///c.db?warehouse=s3://b/wh/x/#ns.t", Path::new("/")).unwrap();
    let w = t.warehouse.unwrap();
    assert_eq!(
        w,
        Warehouse::S3 {
            bucket: "b".into(),
            prefix: "wh/x".into()
        }
    );
    assert_eq!(w.location(), "s3://b/wh/x");
    let t = Target::parse("sqlite:///c.db?warehouse=s3://b#ns.t", Path::new("/")).unwrap();
    assert_eq!(t.warehouse.unwrap().location(), "s3://b");
}

#[test]
fn glue_s3tables_and_rest_specs() {
    let t = Target::parse("glue://?warehouse=s3://b/wh#db.t", Path::new("/")).unwrap();
    assert_eq!(t.kind, CatalogKind::Glue { catalog_id: None });
    assert_eq!(t.to_string(), "iceberg:glue#db.t");
    let t = Target::parse(
        "glue://123456789012?warehouse=s3://b/wh#db.t",
        Path::new("/"),
    )
    .unwrap();
    assert_eq!(
        t.kind,
        CatalogKind::Glue {
            catalog_id: Some("123456789012".into())
        }
    );

    let arn = "arn:aws:s3tables:eu-west-1:123456789012:bucket/lake";
    let t = Target::parse(&format!("s3tables:{arn}#ns.t"), Path::new("/")).unwrap();
    assert_eq!(t.kind, CatalogKind::S3Tables { arn: arn.into() });
    assert_eq!(t.warehouse, None);
    assert_eq!(t.to_string(), format!("iceberg:s3tables:{arn}#ns.t"));

    let t = Target::parse(
        "rest+https://u:secret@cat.example/api/?warehouse=lake#ns.t",
        Path::new("/"),
    )
    .unwrap();
    assert_eq!(
        t.kind,
        CatalogKind::Rest {
            uri: "https://u:secret@cat.example/api".into()
        }
    );
    assert_eq!(t.warehouse, Some(Warehouse::Named("lake".into())));
    assert_eq!(t.to_string(), "iceberg:rest+https://cat.example/api#ns.t");
    assert!(!t.to_string().contains("secret"));
    let t = Target::parse("rest+http://127.0.0.1:1#ns.t", Path::new("/")).unwrap();
    assert_eq!(t.warehouse, None);
    let t = Target::parse("rest+http://h?warehouse=s3://b/p#ns.t", Path::new("/")).unwrap();
    assert_eq!(t.warehouse.unwrap().location(), "s3://b/p");
}

#[test]
fn incomplete_or_unknown_specs_are_refused_with_the_expected_form() {
    for (spec, says) in [
        ("sqlite:///c.db?warehouse=/wh", "names no table"),
        ("sqlite:///c.db#ns.t", "needs `warehouse=DIR`"),
        ("sqlite:///c.db?warehouse=gs://b/wh#t", "s3://BUCKET/PREFIX"),
        ("sqlite:///c.db?warehouse=s3:///wh#t", "no bucket name"),
        ("mysql://h/db?warehouse=/wh#t", "unknown Iceberg catalog"),
        ("sqlite:///c.db?warehouse=/wh#ns..t", "empty name part"),
        ("sqlite:///c.db?warehouse=/wh&x=1#t", "unknown parameter"),
        ("glue://#db.t", "needs `warehouse=DIR`"),
        ("glue://?warehouse=/local#db.t", "warehouse is on S3"),
        ("glue://12?warehouse=s3://b#db.t", "12-digit account ID"),
        (
            "glue://?warehouse=s3://b&region=x#db.t",
            "unknown parameter",
        ),
        (
            "s3tables:arn:aws:s3:us-east-1:123456789012:bucket/x#n.t",
            "not a table bucket ARN",
        ),
        (
            "s3tables:arn:aws:s3tables:us-east-1:1234:bucket/x#n.t",
            "not a table bucket ARN",
        ),
        (
            "s3tables:arn:aws:s3tables:us-east-1:123456789012:bucket/x?warehouse=s3://b#n.t",
            "drop `warehouse=`",
        ),
        ("rest+ftp://h#n.t", "http(s)://HOST"),
        (
            "rest+https://glue.us-east-1.amazonaws.com/iceberg?sigv4=glue#n.t",
            "cannot be reached yet",
        ),
        (
            "sqlite:///c.db?warehouse=/wh&sigv4=glue#t",
            "REST catalogs only",
        ),
    ] {
        let e = Target::parse(spec, Path::new("/")).unwrap_err();
        assert!(e.contains(says), "{spec}: {e}");
    }
}
