//! A Linux network namespace for one worker process, joined to this one by a veth pair, so a
//! test can cut that worker from the Temporal server and give it back (the partition test,
//! tests/tests/suite/chaos/partition.rs). Needs root (`ip netns`, `setns`).
//!
//! - [`NetNs::create`] makes the namespace `rfp{pid}{n}` and the pair `rfp{pid}{n}h` (here,
//!   `10.231.B.1/30`) ↔ `rfp{pid}{n}n` (there, `.2`), with a /30 no local interface holds.
//!   Dropping it deletes both, also when the test fails; namespaces left by a test process
//!   that was killed are deleted by the next [`NetNs::create`].
//! - [`NetNs::cut`] sets the namespace's end of the pair down: from the worker, the host end
//!   is unreachable (new connections fail at once, open ones hear nothing) until
//!   [`NetNs::restore`]. This side keeps its address (the server stays reachable here).
//! - [`NetNs::relay_to_loopback`]: a server on this namespace's loopback, offered on
//!   [`NetNs::host_ip`] (the Temporal dev server: `start-dev --ip` another address makes its
//!   services dial each other on 127.0.0.1 and fail, CLI 1.9.1). Bytes are relayed as they
//!   come, so the HTTP/2 pings and every request cross the cut pair as they would.
//! - [`NetNs::relay_loopback`]: the stand-ins, S3 and the rest listen on this namespace's
//!   loopback, which a namespace does not share; the relay listens on the same ports of the
//!   namespace's own loopback and forwards every connection here, so the worker's settings stay
//!   as they are and only what goes to [`NetNs::host_ip`] (the Temporal server) crosses the
//!   veth pair, and is cut.

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// The name prefix of every namespace and interface this module makes.
const PREFIX: &str = "rfp";

/// A network namespace with a veth pair to this one, deleted when dropped.
pub struct NetNs {
    /// The namespace's name (`ip netns exec <name> …`).
    pub name: String,
    /// This namespace's end of the pair.
    pub host_if: String,
    /// The other namespace's end.
    pub ns_if: String,
    /// This end's address: what a server the worker should reach listens on.
    pub host_ip: Ipv4Addr,
    /// The worker's address.
    pub ns_ip: Ipv4Addr,
    relays: Vec<tokio::task::JoinHandle<()>>,
}

/// Run `ip args…`; its stderr on failure.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn ip_output(args: &[&str]) -> String {
    Command::new("ip")
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Delete the namespaces (and their pairs) of test processes that no longer run.
fn remove_stale() {
    for line in ip_output(&["netns", "list"]).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some((pid, _)) = rest.split_once('x') else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["link", "del", &format!("{name}h")]);
            let _ = ip(&["netns", "del", name]);
        }
    }
}

impl NetNs {
    /// A new namespace and pair (see the module's doc); its loopback is up.
    pub fn create() -> Result<NetNs, String> {
        static N: AtomicU32 = AtomicU32::new(0);
        remove_stale();
        let pid = std::process::id();
        let n = N.fetch_add(1, Ordering::SeqCst);
        // `x` separates the pid from the counter; interface names stay under 15 bytes.
        let name = format!("{PREFIX}{pid}x{n}");
        let (host_if, ns_if) = (format!("{name}h"), format!("{name}n"));
        // A /30 of 10.231.0.0/16 no interface here uses (other runs may hold some).
        let used = ip_output(&["-o", "-4", "addr", "show"]);
        let block = (0..16384u32)
            .map(|i| (pid.wrapping_mul(7919).wrapping_add(n).wrapping_add(i)) % 16384)
            .find(|b| {
                let host = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 231, 0, 1)) + b * 4);
                !used.contains(&format!(" {host}/"))
            })
            .ok_or("no free /30 in 10.231.0.0/16")?;
        let base = u32::from(Ipv4Addr::new(10, 231, 0, 0)) + block * 4;
        let (host_ip, ns_ip) = (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2));
        ip(&["netns", "add", &name])?;
        // From here on, dropping it cleans up whatever was made.
        let ns = NetNs {
            name,
            host_if,
            ns_if,
            host_ip,
            ns_ip,
            relays: Vec::new(),
        };
        ip(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &ns.ns_if,
            "netns",
            &ns.name,
        ])?;
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &ns.host_if])?;
        ip(&["link", "set", &ns.host_if, "up"])?;
        ip(&[
            "-n",
            &ns.name,
            "addr",
            "add",
            &format!("{ns_ip}/30"),
            "dev",
            &ns.ns_if,
        ])?;
        ip(&["-n", &ns.name, "link", "set", &ns.ns_if, "up"])?;
        ip(&["-n", &ns.name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Cut the worker off: the namespace's end of the pair goes down.
    pub fn cut(&self) {
        ip(&["-n", &self.name, "link", "set", &self.ns_if, "down"])
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Join it again: the namespace's end comes up (its route with it).
    pub fn restore(&self) {
        ip(&["-n", &self.name, "link", "set", &self.ns_if, "up"]).unwrap_or_else(|e| panic!("{e}"));
    }

    /// The command prefix that runs a program in the namespace.
    pub fn exec_prefix(&self) -> Vec<String> {
        ["ip", "netns", "exec", &self.name]
            .map(str::to_owned)
            .to_vec()
    }

    /// Listen on [`NetNs::host_ip`]`:port` (here) and relay every connection to
    /// `127.0.0.1:port` (here); the address to give the worker.
    pub async fn relay_to_loopback(&mut self, port: u16) -> Result<String, String> {
        let l = tokio::net::TcpListener::bind((self.host_ip, port))
            .await
            .map_err(|e| format!("bind {}:{port}: {e}", self.host_ip))?;
        self.relays.push(tokio::spawn(relay(l, port)));
        Ok(format!("{}:{port}", self.host_ip))
    }

    /// Relay each of `ports` of the namespace's loopback to the same port of this one's
    /// (call from a tokio runtime; the relays stop when this is dropped).
    pub fn relay_loopback(&mut self, ports: &[u16]) -> Result<(), String> {
        let path = format!("/var/run/netns/{}", self.name);
        let ports = ports.to_vec();
        // `setns` moves only the calling thread: a thread of its own enters the namespace,
        // binds there, and ends; the sockets stay in the namespace they were made in.
        let listeners =
            std::thread::spawn(move || -> Result<Vec<std::net::TcpListener>, String> {
                let file = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
                // SAFETY: setns(2) on a descriptor this thread owns, for this thread only.
                #[allow(unsafe_code)]
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                if rc != 0 {
                    return Err(format!("setns {path}: {}", std::io::Error::last_os_error()));
                }
                ports
                    .iter()
                    .map(|p| {
                        let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, *p))
                            .map_err(|e| format!("bind 127.0.0.1:{p} in the namespace: {e}"))?;
                        l.set_nonblocking(true).map_err(|e| e.to_string())?;
                        Ok(l)
                    })
                    .collect()
            })
            .join()
            .map_err(|_| "the namespace thread panicked".to_owned())??;
        for l in listeners {
            let port = l.local_addr().map_err(|e| e.to_string())?.port();
            let l = tokio::net::TcpListener::from_std(l).map_err(|e| e.to_string())?;
            self.relays.push(tokio::spawn(relay(l, port)));
        }
        Ok(())
    }
}

/// Accept on `l` and relay each connection to `127.0.0.1:port` of this namespace, until
/// aborted (the connections then end with the runtime or their peers).
async fn relay(l: tokio::net::TcpListener, port: u16) {
    while let Ok((mut from, _)) = l.accept().await {
        let _ = from.set_nodelay(true);
        tokio::spawn(async move {
            if let Ok(mut to) = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await {
                let _ = to.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut from, &mut to).await;
            }
        });
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        for r in &self.relays {
            r.abort();
        }
        // Deleting one end deletes the pair; deleting the namespace deletes what is left.
        let _ = ip(&["link", "del", &self.host_if]);
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("netns: {e}");
        }
    }
}

/// The loopback ports named in `values` (`127.0.0.1:PORT` in URLs and addresses).
pub fn loopback_ports<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<u16> {
    let mut ports: Vec<u16> = values
        .into_iter()
        .flat_map(|v| {
            v.match_indices("127.0.0.1:")
                .filter_map(|(at, m)| {
                    let rest = &v[at + m.len()..];
                    let end = rest
                        .find(|c: char| !c.is_ascii_digit())
                        .unwrap_or(rest.len());
                    rest[..end].parse().ok()
                })
                .collect::<Vec<u16>>()
        })
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_ports_are_read_from_urls_and_addresses() {
        let ports = super::loopback_ports([
            "http://127.0.0.1:4100/v1",
            "127.0.0.1:7233",
            "s3://transcripts",
            "http://127.0.0.1:4100",
        ]);
        assert_eq!(ports, vec![4100, 7233]);
    }
}
