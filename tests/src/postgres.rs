//! A PostgreSQL server of the test's own, for the suites that run on both databases.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A PostgreSQL server of the test's own (`initdb` + `postgres` on a free port, data in a
/// temporary directory); killed on drop, and by the kernel if the test process dies. As root,
/// it runs as the `postgres` user (PostgreSQL refuses root).
pub struct PgServer {
    child: Child,
    /// `postgres://postgres@127.0.0.1:port/postgres`.
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A PostgreSQL server program: on `PATH`, else Debian's `/usr/lib/postgresql/*/bin`.
fn pg_program(name: &str) -> String {
    let on_path = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if on_path {
        return name.to_owned();
    }
    std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|d| d.path().join("bin").join(name))
        .find(|p| p.exists())
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| name.to_owned())
}

fn as_postgres_user(program: &str) -> Command {
    let program = &pg_program(program);
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false);
    let mut c = if root {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--clear-groups",
            "--pdeathsig=SIGKILL",
            program,
        ]);
        c
    } else {
        let mut c = Command::new("setpriv");
        c.args(["--pdeathsig=SIGKILL", program]);
        c
    };
    c.stdin(Stdio::null());
    c
}

impl PgServer {
    /// Initialise a cluster and start it.
    pub fn start() -> PgServer {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        // The server's user must own its directories.
        let _ = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status();
        let out = as_postgres_user("initdb")
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data)
            .output()
            .expect("initdb is installed (PostgreSQL server binaries)");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = as_postgres_user("postgres")
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(dir.path())
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start postgres");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "postgres did not listen within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        PgServer {
            child,
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            _dir: dir,
        }
    }
}

/// Connect to `url`, waiting up to 20 s for a server that is still starting.
pub async fn connect(url: &str) -> activities::db::Db {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match activities::db::Db::connect(url).await {
            Ok(db) => return db,
            Err(e) if Instant::now() < deadline => {
                eprintln!("waiting for the database: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
}
