//! A private PostgreSQL server for the tests: Debian's `postgresql` package (installed
//! by `.ci/run`), `initdb` + `pg_ctl` into a temp directory, on a free loopback port,
//! as the `postgres` user when the tests run as root (PostgreSQL refuses root).
//!
//! One server is shared by the tests of a module ([`PgServer::shared`], started once);
//! each test makes its own database. A test that stops the server starts its own.
//! A small reaper process stops every server when the test binary exits (statics are
//! never dropped), and [`Drop`] stops a test's own server.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// The superuser's password (scram-sha-256 over TCP, as a real server would be).
pub const SUPER_PASSWORD: &str = "pg-super-Secret-7f3";

pub struct PgServer {
    pub port: u16,
    root: PathBuf,
    data: PathBuf,
    bin: PathBuf,
    /// fsync on (the benchmark: like production) or off (tests: faster, and the tests
    /// never crash the server itself).
    durable: bool,
    /// More server options (`-c name=value ...`), e.g. for TLS.
    extra: String,
}

/// The certificates of a server started by [`PgServer::start_tls`] (made with openssl):
/// the CA that signed the server's certificate (issued for `localhost` only), and an
/// unrelated CA.
pub struct TlsFiles {
    pub ca: PathBuf,
    pub other_ca: PathBuf,
}

/// Where the PostgreSQL server programs are: `SENSORLOG_PG_BIN`, else the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian), else `initdb` on the PATH.
fn bin_dir() -> PathBuf {
    if let Ok(p) = std::env::var("SENSORLOG_PG_BIN") {
        return PathBuf::from(p);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    if let Ok(out) = Command::new("sh").args(["-c", "command -v initdb"]).output() {
        let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !p.is_empty() {
            return Path::new(&p).parent().unwrap().to_path_buf();
        }
    }
    // The words of tests/util/needs.rs (this file is shared with benches/, which lack it).
    panic!(
        "missing PostgreSQL server programs (initdb, pg_ctl): install them with `sudo apt-get install postgresql`, or run `scripts/test --install` (installs everything the tests need); or set SENSORLOG_PG_BIN to their directory"
    );
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A command for one of the server programs, as the `postgres` user when we are root.
fn pg_command(bin: &Path, program: &str) -> Command {
    let exe = bin.join(program);
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(exe);
        c
    } else {
        Command::new(exe)
    }
}

fn run(mut c: Command, what: &str) {
    let out = c
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl PgServer {
    /// The server shared by the tests of this binary (started on first use).
    pub fn shared() -> &'static PgServer {
        static SHARED: OnceLock<PgServer> = OnceLock::new();
        SHARED.get_or_init(|| PgServer::start("shared"))
    }

    /// A new server of its own (for a test that stops and starts it).
    pub fn start(name: &str) -> PgServer {
        PgServer::start_with(name, false)
    }

    /// A new server; `durable` keeps PostgreSQL's default fsync settings.
    pub fn start_with(name: &str, durable: bool) -> PgServer {
        let server = PgServer::init(name, durable);
        server.start_again();
        server
    }

    /// A new server with `ssl=on` whose `pg_hba.conf` takes only TLS connections, except
    /// for the superuser (the tests' admin connection is plain).
    pub fn start_tls(name: &str) -> (PgServer, TlsFiles) {
        let mut server = PgServer::init(name, false);
        let dir = server.root.join("tls");
        std::fs::create_dir_all(&dir).unwrap();
        let script = r#"set -e
ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
ca_ext="-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign"
openssl req -x509 $ec -keyout ca.key -out ca.pem -days 2 -subj /CN=sensorlog-test-ca $ca_ext
openssl req -x509 $ec -keyout other.key -out other-ca.pem -days 2 -subj /CN=sensorlog-other-ca $ca_ext
openssl req $ec -keyout server.key -out server.csr -subj /CN=localhost
printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile server.ext
chmod 600 server.key
"#;
        let mut c = Command::new("sh");
        c.args(["-c", script]).current_dir(&dir);
        run(c, "openssl (test certificates)");
        if is_root() {
            let mut c = Command::new("chown");
            c.args(["-R", "postgres:"]).arg(&dir);
            run(c, "chown of the certificates to postgres");
        }
        std::fs::write(
            server.data.join("pg_hba.conf"),
            "local all all trust\nhostnossl all postgres 127.0.0.1/32 scram-sha-256\nhostssl all all 127.0.0.1/32 scram-sha-256\n",
        )
        .unwrap();
        server.extra = format!(
            " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
            dir.join("server.pem").display(),
            dir.join("server.key").display()
        );
        server.start_again();
        let files = TlsFiles {
            ca: dir.join("ca.pem"),
            other_ca: dir.join("other-ca.pem"),
        };
        (server, files)
    }

    /// initdb into a new temp directory; the server is not started.
    fn init(name: &str, durable: bool) -> PgServer {
        static N: AtomicU64 = AtomicU64::new(0);
        let bin = bin_dir();
        let root = std::env::temp_dir().join(format!(
            "sensorlog-pg-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("pw"), SUPER_PASSWORD).unwrap();
        if is_root() {
            let mut c = Command::new("chown");
            c.args(["-R", "postgres:"]).arg(&root);
            run(c, "chown of the server's temp dir to postgres");
        }
        let data = root.join("data");
        let mut c = pg_command(&bin, "initdb");
        c.arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-A", "scram-sha-256", "--auth-local=trust"])
            .args(["-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"])
            .arg(format!("--pwfile={}", root.join("pw").display()));
        run(c, "initdb");
        let server = PgServer {
            port: free_port(),
            root,
            data,
            bin,
            durable,
            extra: String::new(),
        };
        server.reaper();
        server
    }

    /// Stops this server when the test process exits, however it exits.
    #[allow(clippy::zombie_processes)] // the reaper outlives us by design; init reaps it
    fn reaper(&self) {
        let stop = format!(
            "{} {} -D {} stop -m immediate",
            if is_root() { "runuser -u postgres --" } else { "" },
            self.bin.join("pg_ctl").display(),
            self.data.display()
        );
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf {root}",
            pid = std::process::id(),
            root = self.root.display()
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the server reaper");
    }

    /// Starts the server (again), waiting until it accepts connections.
    pub fn start_again(&self) {
        let mut c = pg_command(&self.bin, "pg_ctl");
        c.arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(self.root.join("server.log"))
            .args(["-w", "-t", "60", "-o"])
            .arg(format!(
                "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c max_connections=60{}{}",
                self.port,
                self.root.display(),
                if self.durable {
                    ""
                } else {
                    " -c fsync=off -c full_page_writes=off"
                },
                self.extra
            ))
            .arg("start")
            .stdout(Stdio::null());
        run(c, "pg_ctl start");
    }

    /// Stops the server (fast mode: clients are disconnected, nothing committed is lost).
    pub fn stop(&self) {
        let mut c = pg_command(&self.bin, "pg_ctl");
        c.arg("-D")
            .arg(&self.data)
            .args(["-w", "-t", "60", "-m", "fast", "stop"]);
        run(c, "pg_ctl stop");
    }

    pub fn url(&self, user: &str, db: &str) -> String {
        format!("postgresql://{user}@127.0.0.1:{}/{db}", self.port)
    }

    /// A superuser connection to `db`.
    pub fn admin(&self, db: &str) -> postgres::Client {
        let mut last = None;
        for _ in 0..50 {
            match postgres::Config::new()
                .host("127.0.0.1")
                .port(self.port)
                .user("postgres")
                .password(SUPER_PASSWORD)
                .dbname(db)
                .connect_timeout(Duration::from_secs(5))
                .connect(postgres::NoTls)
            {
                Ok(c) => return c,
                Err(e) => last = Some(e),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("cannot connect to the test server: {last:?}");
    }

    /// Creates a fresh database named `name` (dropping an old one).
    pub fn create_db(&self, name: &str) -> String {
        let mut c = self.admin("postgres");
        c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .unwrap();
        c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        name.to_string()
    }

    #[allow(dead_code)] // for debugging a failing test
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("server.log")).unwrap_or_default()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let mut c = pg_command(&self.bin, "pg_ctl");
        c.arg("-D").arg(&self.data).args(["-m", "immediate", "stop"]);
        let _ = c.stdout(Stdio::null()).stderr(Stdio::null()).status();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
