//! A real PostgreSQL server for the tests: Debian's `initdb` and `pg_ctl` into a temporary
//! directory, on a free port, stopped (and the directory removed) on drop.
//!
//! The server refuses to run as root, so as root it runs as the `postgres` system user (the
//! directory is handed to that user). No fixed sleeps: `pg_ctl -w` waits until the server
//! accepts connections. Rows are read back with `psql`, never through the sink's own code, so a
//! test checks what is in the table, not what the sink believes it wrote.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub struct PgServer {
    dir: tempfile::TempDir,
    /// With [`Options::tls`]: the CA that signed the server's certificate (PEM).
    pub ca: Option<PathBuf>,
    pub port: u16,
    bin: PathBuf,
    as_postgres: bool,
}

/// The newest installed server's binaries (`/usr/lib/postgresql/<major>/bin`).
fn bin_dir() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed (scripts/test.sh installs it with apt-get)")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("pg_ctl").exists().then_some((major, bin))
        })
        .collect();
    found.sort();
    found.pop().expect("no /usr/lib/postgresql/*/bin/pg_ctl").1
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// What a test server needs beyond the defaults.
#[derive(Default)]
pub struct Options {
    /// TLS with a certificate for `localhost` and 127.0.0.1, signed by a fresh CA ([`PgServer::ca`]).
    pub tls: bool,
    /// A role that must give its password (SCRAM) over TCP: (name, password).
    pub password_user: Option<(&'static str, &'static str)>,
    /// That role gives its password in clear (`password`, not SCRAM): a proxy can read what
    /// the client sent.
    pub cleartext: bool,
}

impl PgServer {
    pub fn start() -> PgServer {
        PgServer::start_with(Options::default())
    }

    pub fn start_with(options: Options) -> PgServer {
        let bin = bin_dir();
        let as_postgres = is_root();
        let dir = tempfile::Builder::new()
            .prefix("pg-it-")
            .tempdir()
            .expect("tempdir");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let mut server = PgServer {
            ca: None,
            dir,
            port: 0,
            bin,
            as_postgres,
        };
        if options.tls {
            server.ca = Some(make_certificates(server.dir.path()));
        }
        if as_postgres {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(server.dir.path())
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown the server directory to postgres");
        }
        let out = server.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        assert!(out.status.success(), "initdb: {}", lossy(&out));
        if let Some((user, _)) = options.password_user {
            // Before initdb's `trust` lines, so this role alone must prove its password.
            let hba = data.join("pg_hba.conf");
            let old = std::fs::read_to_string(&hba).unwrap();
            std::fs::write(
                &hba,
                format!(
                    "host all {user} 127.0.0.1/32 {}\n{old}",
                    if options.cleartext {
                        "password"
                    } else {
                        "scram-sha-256"
                    }
                ),
            )
            .unwrap();
        }
        let mut extra = String::new();
        if options.tls {
            let d = server.dir.path().display();
            extra = format!(
                " -c ssl=on -c ssl_cert_file={d}/server.crt -c ssl_key_file={d}/server.key"
            );
        }
        // A free port can be taken between our probe and the server's bind: try a few.
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let opts = format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=60{extra}",
                server.dir.path().display()
            );
            let log = server.dir.path().join("server.log");
            let out = server.run(
                "pg_ctl",
                &[
                    "-D",
                    data.to_str().unwrap(),
                    "-l",
                    log.to_str().unwrap(),
                    "-o",
                    &opts,
                    "-w",
                    "-t",
                    "120",
                    "start",
                ],
            );
            if out.status.success() {
                server.port = port;
                if let Some((user, password)) = options.password_user {
                    server.psql(&format!(
                        "CREATE ROLE {user} LOGIN PASSWORD '{password}'; \
                         GRANT ALL ON SCHEMA public TO {user}"
                    ));
                }
                return server;
            }
            let _ = server.run(
                "pg_ctl",
                &["-D", data.to_str().unwrap(), "-m", "immediate", "stop"],
            );
        }
        panic!(
            "the PostgreSQL server did not start: {}",
            std::fs::read_to_string(server.dir.path().join("server.log")).unwrap_or_default()
        );
    }

    fn run(&self, tool: &str, args: &[&str]) -> Output {
        let exe = self.bin.join(tool);
        let mut c = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        c.args(args).current_dir(self.dir.path()).output().unwrap()
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres?table=TABLE` for `--sink`.
    pub fn sink(&self, table: &str) -> String {
        format!("{}?table={table}", self.url())
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The unix socket directory (for a client that does not go over TCP).
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs SQL with `psql` (stops at the first error) and returns its unaligned output.
    pub fn psql(&self, sql: &str) -> String {
        let out = Command::new("psql")
            .args([
                "-X",
                "-q",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
            ])
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .args(["-c", sql])
            .env_remove("PGPASSWORD")
            .output()
            .expect("psql");
        assert!(out.status.success(), "psql {sql}: {}", lossy(&out));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Every row of `table` as (row id, the other columns as a JSON object), ordered by row ID,
    /// read with `psql` (`to_jsonb`), independently of the sink.
    pub fn rows(&self, table: &str, id_column: &str) -> Vec<(String, Value)> {
        let id = quote_ident(id_column);
        let sql = format!(
            "SELECT json_build_array(t.{id}, to_jsonb(t) - '{}')::text FROM {table} t ORDER BY t.{id}",
            id_column.replace('\'', "''")
        );
        self.psql(&sql)
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                (v[0].as_str().unwrap().to_string(), v[1].clone())
            })
            .collect()
    }

    pub fn count(&self, table: &str) -> u64 {
        self.psql(&format!("SELECT count(*) FROM {table}"))
            .trim()
            .parse()
            .unwrap()
    }
}

/// A CA and a server certificate it signed (for `localhost` and 127.0.0.1), made with the
/// `openssl` command line tool into `dir`; returns the CA's PEM file.
fn make_certificates(dir: &Path) -> PathBuf {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", lossy(&out));
    };
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=firehose-replay test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        dir.join("server.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    dir.join("ca.pem")
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn lossy(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }
}

#[test]
fn a_server_starts_answers_and_reads_rows_back() {
    let pg = PgServer::start();
    pg.psql("CREATE TABLE t (_row_id text PRIMARY KEY, n bigint); INSERT INTO t VALUES ('b', 2), ('a', 1)");
    let rows = pg.rows("t", "_row_id");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].0, "a");
    assert_eq!(rows[0].1, serde_json::json!({"n": 1}));
    assert_eq!(pg.count("t"), 2);
}
