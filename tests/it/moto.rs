//! A moto server (PyPI `moto[server]`, installed into .venv by scripts/test.sh) on a free port,
//! for one test: started on demand, killed when dropped. Real AWS protocol, real SDK. It runs
//! through `tests/moto_server.py`, which makes each request atomic as on real S3.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;

pub struct Moto {
    child: Child,
    pub endpoint: String,
    home: tempfile::TempDir,
}

fn venv_bin(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".venv/bin")
        .join(name)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Moto {
    pub fn start() -> Moto {
        Moto::start_with_env(&[])
    }

    /// As [`Moto::start`], the server's environment extended by `env` (e.g. moto's
    /// `INITIAL_NO_AUTH_ACTION_COUNT`, after which it checks every request's credentials).
    pub fn start_with_env(env: &[(&str, &str)]) -> Moto {
        let python = std::env::var_os("MOTO_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| venv_bin("python"));
        assert!(
            python.exists(),
            "{} not found: run scripts/test.sh (it installs moto into .venv)",
            python.display()
        );
        let launcher = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/moto_server.py");
        // A port taken by someone else between our probe and moto's bind makes moto exit:
        // retry with another port.
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new(&python)
                .arg(&launcher)
                .args(["127.0.0.1", &port.to_string()])
                .envs(env.iter().copied())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start moto_server");
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Moto {
                        child,
                        endpoint: format!("http://127.0.0.1:{port}"),
                        home: tempfile::tempdir().unwrap(),
                    };
                }
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("moto_server did not start");
    }

    /// Environment for processes that talk to this server through the default AWS chain, and
    /// nothing from the developer's own AWS configuration.
    pub fn env(&self) -> Vec<(String, String)> {
        let none = self.home.path().join("none");
        vec![
            ("AWS_ENDPOINT_URL".into(), self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID".into(), "test".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "test".into()),
            ("AWS_REGION".into(), "us-east-1".into()),
            ("AWS_DEFAULT_REGION".into(), "us-east-1".into()),
            ("AWS_CONFIG_FILE".into(), none.display().to_string()),
            (
                "AWS_SHARED_CREDENTIALS_FILE".into(),
                none.display().to_string(),
            ),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        ]
    }

    pub fn s3(&self) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// Runs a Python snippet with boto3 (from moto's venv) against this server.
    pub fn python(&self, code: &str) -> String {
        let out = Command::new(venv_bin("python"))
            .arg("-c")
            .arg(code)
            .envs(self.env())
            .output()
            .expect("run python");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A runtime for driving the SDK from synchronous tests.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

pub async fn create_bucket(s3: &aws_sdk_s3::Client, bucket: &str) {
    s3.create_bucket().bucket(bucket).send().await.unwrap();
}

pub async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, body: Vec<u8>) {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body))
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
}

/// Uploads every file below `dir` to `bucket` under `prefix`.
pub async fn upload_tree(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str, dir: &Path) {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                put(
                    s3,
                    bucket,
                    &format!("{prefix}{rel}"),
                    std::fs::read(&p).unwrap(),
                )
                .await;
            }
        }
    }
}
