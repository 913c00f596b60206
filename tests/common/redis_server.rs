//! A throwaway `redis-server` on a free loopback port, with its own temporary directory.
//!
//! Stopped by the PID it was started with (never by name). A missing binary panics with a
//! message saying how to install it: the Redis tests must run, never be skipped silently.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) const INSTALL_HINT: &str = "redis-server was not found on PATH. The queue tests need a real \
Redis server: install it (Debian/Ubuntu: `apt-get install -y redis-server`) and run the tests \
again. `.ci/run` installs it automatically.";

/// A running `redis-server`; dropped means stopped.
pub(crate) struct RedisServer {
    child: Child,
    pub(crate) port: u16,
    pub(crate) dir: tempfile::TempDir,
    args: Vec<String>,
}

impl RedisServer {
    /// Starts a server with `extra_args` and waits until it answers PING.
    ///
    /// # Panics
    /// When `redis-server` is missing (with [`INSTALL_HINT`]) or does not come up in 10 s.
    pub(crate) fn start(extra_args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory for redis-server");
        let child = spawn(free_port(), &dir, extra_args);
        let mut server = Self {
            port: child.1,
            child: child.0,
            dir,
            args: extra_args.iter().map(|&a| a.to_owned()).collect(),
        };
        server.wait_ready();
        server
    }

    /// Stops the server and starts it again on the same port with the same directory (it
    /// loads `dump.rdb` from there, if any) and arguments.
    pub(crate) fn restart(&mut self) {
        self.stop();
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        self.child = spawn(self.port, &self.dir, &args).0;
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("waitpid") {
                panic!("redis-server exited at start with {status}");
            }
            if self.ping() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "redis-server did not answer PING on port {} within 10 s",
            self.port
        );
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The PID this server was started with.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True when the server answers `PING` with `+PONG`.
    pub(crate) fn ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        let mut reply = [0_u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }

    /// Stops the server by its PID and waits for it to exit.
    pub(crate) fn stop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn(port: u16, dir: &tempfile::TempDir, extra_args: &[&str]) -> (Child, u16) {
    let binary = find_on_path("redis-server").unwrap_or_else(|| panic!("{INSTALL_HINT}"));
    let child = Command::new(binary)
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .arg("--dir")
        .arg(dir.path())
        .args(extra_args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server starts");
    (child, port)
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free loopback port")
}

fn find_on_path(binary: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(binary))
            .find(|candidate| candidate.is_file())
    })
}
