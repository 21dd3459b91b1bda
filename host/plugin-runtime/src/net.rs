//! The network gate: which outgoing HTTP requests a plugin may make, and to which address.
//!
//! A request leaves only when its host is in the plugin's network grant ([`HostPattern`]),
//! it carries no userinfo (`user:pass@host`), and the address it goes to is one the grant
//! means. A name is resolved here, every address it resolves to is checked, and the
//! connection is made to a checked address, not to a second resolution of the name (a DNS
//! answer that changes between the check and the connect, "DNS rebinding", cannot move
//! the request elsewhere). An address on this machine or a private network (loopback,
//! 10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7, link-local such as the cloud metadata
//! service 169.254.169.254, unspecified, multicast, broadcast) is refused unless the grant
//! names that address literally, or the request is to `localhost` granted as `localhost`
//! and stays on loopback. The TLS server name and the `Host` header stay the name the
//! plugin asked for.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::uri::Scheme;
use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use super::manifest::HostPattern;

/// How long a connection (TCP and TLS) may take when the plugin does not say; the call's
/// own time limit still ends it sooner.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Lets outgoing HTTP requests through only to the hosts of the plugin's network grant,
/// and remembers the ones it refused (and why) so the error can name them.
pub struct NetworkGate {
    allowed: Vec<HostPattern>,
    refused: Arc<Mutex<Vec<Refusal>>>,
}

impl NetworkGate {
    pub fn new(allowed: Vec<HostPattern>) -> NetworkGate {
        NetworkGate {
            allowed,
            refused: Arc::default(),
        }
    }

    /// The requests refused so far, with why.
    pub fn take_refused(&mut self) -> Vec<Refusal> {
        std::mem::take(&mut *self.refused.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{host}:{port}: not in its manifest's network grant")]
    NotGranted { host: String, port: u16 },
    #[error("{0}: a URL with a user name or password (user:pass@host) is not allowed")]
    Userinfo(String),
    #[error(
        "{target}: it resolves to {address}, a loopback, private, link-local or otherwise internal address, which the grant does not name literally"
    )]
    InternalAddress { target: String, address: IpAddr },
    #[error("{0}: the name does not resolve ({1})")]
    Unresolved(String, String),
}

/// Whether an address is on this machine or a non-public network: the addresses a grant
/// by name must never reach by surprise.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal_v4(v4);
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6.is_unique_local() // fc00::/7
                || v6.is_unicast_link_local() // fe80::/10
                || (first & 0xffc0) == 0xfec0 // fec0::/10, the old site-local
                // ::a.b.c.d (IPv4-compatible) and 64:ff9b::/96 (NAT64) carry an IPv4 address.
                || embedded_v4(v6).is_some_and(is_internal_v4)
        }
    }
}

fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    let compatible = s[..6].iter().all(|&x| x == 0);
    let nat64 = s[0] == 0x64 && s[1] == 0xff9b && s[2..6].iter().all(|&x| x == 0);
    (compatible || nat64).then_some(tail)
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local() // 169.254/16, the cloud metadata service included
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_broadcast()
        || a == 0 // "this network"
        || (a == 100 && (b & 0xc0) == 64) // 100.64/10, carrier-grade NAT
        || a >= 240 // reserved
}

/// What the gate decided for one request's target, before any name is resolved.
#[derive(Debug, PartialEq, Eq)]
enum Plan {
    /// Connect to this literal address, which the grant names.
    Literal(SocketAddr),
    /// Resolve the name and check each address.
    Resolve { loopback_ok: bool },
}

impl NetworkGate {
    /// Checks a request's URI against the grant, without touching the network.
    fn plan(&self, uri: &http::Uri) -> Result<(String, u16, Plan), Refusal> {
        let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
        let host = uri.host().unwrap_or_default();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let https = uri.scheme() == Some(&Scheme::HTTPS);
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let not_granted = || Refusal::NotGranted {
            host: host.to_string(),
            port,
        };
        if authority.contains('@') {
            return Err(Refusal::Userinfo(format!("{host}:{port}")));
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            // An address is granted only by a pattern that names it, never by a wildcard
            // (`*.0.0.1` would otherwise match 127.0.0.1).
            if names_literally(&self.allowed, ip, port) {
                return Ok((
                    host.to_string(),
                    port,
                    Plan::Literal(SocketAddr::new(ip, port)),
                ));
            }
            return Err(not_granted());
        }
        if !self.allowed.iter().any(|p| p.matches(host, port)) {
            return Err(not_granted());
        }
        let loopback_ok = host.eq_ignore_ascii_case("localhost");
        Ok((host.to_string(), port, Plan::Resolve { loopback_ok }))
    }
}

/// Whether a pattern of the grant names `ip` itself (a wildcard never does).
fn names_literally(allowed: &[HostPattern], ip: IpAddr, port: u16) -> bool {
    allowed
        .iter()
        .any(|p| !p.is_wildcard() && p.matches(&ip.to_string(), port))
}

/// Checks the addresses a granted name resolved to: every one must pass, so a name cannot
/// mix a public address with an internal one.
fn check_resolved(
    allowed: &[HostPattern],
    target: &str,
    port: u16,
    addresses: &[SocketAddr],
    loopback_ok: bool,
) -> Result<(), Refusal> {
    for address in addresses {
        let ip = address.ip();
        let ok = !is_internal(ip)
            || names_literally(allowed, ip, port)
            || (loopback_ok && ip.is_loopback());
        if !ok {
            return Err(Refusal::InternalAddress {
                target: target.to_string(),
                address: ip,
            });
        }
    }
    Ok(())
}

type SendResult = wasmtime_wasi_http::Result<(
    http::Response<WasiBody>,
    Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
)>;

impl WasiHttpHooks for NetworkGate {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        drop(fut);
        let refused = self.refused.clone();
        let refuse = move |refusal: Refusal| {
            refused
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(refusal);
            Error::HttpRequestDenied
        };
        let (host, port, plan) = match self.plan(request.uri()) {
            Ok(planned) => planned,
            Err(refusal) => {
                let error = refuse(refusal);
                return Box::new(async move { Err(error) });
            }
        };
        // The addresses are checked after the lookup, inside the future.
        let allowed = self.allowed.clone();
        Box::new(async move {
            let target = format!("{host}:{port}");
            let addresses = match plan {
                Plan::Literal(address) => vec![address],
                Plan::Resolve { loopback_ok } => {
                    let addresses: Vec<SocketAddr> =
                        match tokio::net::lookup_host((host.as_str(), port)).await {
                            Ok(found) => found.collect(),
                            Err(e) => {
                                refuse(Refusal::Unresolved(target.clone(), e.to_string()));
                                return Err(Error::DnsError {
                                    rcode: None,
                                    info_code: None,
                                });
                            }
                        };
                    if let Err(refusal) =
                        check_resolved(&allowed, &target, port, &addresses, loopback_ok)
                    {
                        return Err(refuse(refusal));
                    }
                    addresses
                }
            };
            send(request, options, &host, &addresses).await
        })
    }
}

/// Sends `request` over a connection to the first of `addresses` that answers: TLS (with
/// `host` as the server name) for https, plain TCP otherwise; then HTTP/1.1. Modelled on
/// wasmtime-wasi-http's `default_send_request`, which connects by name.
async fn send(
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
    host: &str,
    addresses: &[SocketAddr],
) -> SendResult {
    use hyper_util::rt::TokioIo;

    let connect_timeout = options
        .and_then(|o| o.connect_timeout)
        .unwrap_or(CONNECT_TIMEOUT);
    let first_byte_timeout = options
        .and_then(|o| o.first_byte_timeout)
        .unwrap_or(Duration::from_secs(600));
    let use_tls = request.uri().scheme() == Some(&Scheme::HTTPS);
    let stream = match tokio::time::timeout(
        connect_timeout,
        tokio::net::TcpStream::connect(addresses),
    )
    .await
    {
        Ok(stream) => stream.map_err(Error::Connect)?,
        Err(_) => return Err(Error::ConnectionTimeout),
    };
    let io: Box<dyn Stream> = if use_tls {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::InternalError(Some(e.to_string())))?
            .with_root_certificates(rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.into(),
            })
            .with_no_client_auth();
        let name = match host.parse::<IpAddr>() {
            Ok(ip) => rustls::pki_types::ServerName::from(ip),
            Err(_) => rustls::pki_types::ServerName::try_from(host.to_string())?,
        };
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tls = tokio::time::timeout(connect_timeout, connector.connect(name, stream))
            .await
            .map_err(|_| Error::ConnectionTimeout)?
            .map_err(Error::Tls)?;
        Box::new(tls)
    } else {
        Box::new(stream)
    };
    let (mut sender, conn) = tokio::time::timeout(
        connect_timeout,
        hyper::client::conn::http1::handshake(TokioIo::new(io)),
    )
    .await
    .map_err(|_| Error::ConnectionTimeout)??;
    // The request line carries only the path; the Host header (set by wasi-http from the
    // authority the plugin gave) names the host.
    *request.uri_mut() = http::Uri::builder()
        .path_and_query(
            request
                .uri()
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/"),
        )
        .build()
        .map_err(|_| Error::HttpRequestUriInvalid)?;
    let mut conn = Box::pin(conn);
    let response = tokio::time::timeout(first_byte_timeout, async {
        tokio::select! {
            response = sender.send_request(request) => response.map_err(Error::from),
            // The connection ended before the answer came: say why.
            ended = &mut conn => match ended {
                Ok(()) => Err(Error::HttpResponseIncomplete),
                Err(e) => Err(Error::from(e)),
            },
        }
    })
    .await
    .map_err(|_| Error::ConnectionReadTimeout)??;
    let response = response.map(|body| body.map_err(Error::from).boxed_unsync());
    let io = async move { conn.await.map_err(Error::from) };
    Ok((response, Box::new(io)))
}

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Stream for T {}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(patterns: &[&str]) -> NetworkGate {
        let text = format!(
            "network = [{}]",
            patterns
                .iter()
                .map(|p| format!("{p:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        NetworkGate::new(
            super::super::manifest::Grants::parse(&text)
                .unwrap()
                .network,
        )
    }

    fn empty_request(uri: &str) -> http::Request<WasiBody> {
        let body = http_body_util::Empty::new()
            .map_err(|never: std::convert::Infallible| match never {})
            .boxed_unsync();
        http::Request::get(uri).body(body).unwrap()
    }

    #[tokio::test]
    async fn https_goes_to_the_checked_address_with_the_name_for_tls() {
        // A server that accepts and hangs up: the TLS handshake fails cleanly (the TLS
        // setup itself, provider and roots, works), at the address given, not the name.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                drop(socket);
            }
        });
        let request = empty_request("https://does-not-resolve.invalid/");
        let error = send(request, None, "does-not-resolve.invalid", &[address])
            .await
            .err()
            .expect("the handshake fails");
        assert!(matches!(error, Error::Tls(_)), "{error:?}");
    }

    #[test]
    fn internal_addresses_are_recognised() {
        for ip in [
            "127.0.0.1",
            "127.1.2.3",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "169.254.169.254",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
        ] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn a_granted_name_that_resolves_inside_is_refused_unless_the_address_is_named() {
        let by_name = gate(&["intranet.example"]).allowed;
        let inside = ["10.1.2.3:80".parse().unwrap()];
        let outside = ["93.184.216.34:80".parse().unwrap()];
        let mixed = [outside[0], inside[0]];
        assert!(check_resolved(&by_name, "t", 80, &outside, false).is_ok());
        assert!(matches!(
            check_resolved(&by_name, "t", 80, &inside, false),
            Err(Refusal::InternalAddress { .. })
        ));
        assert!(check_resolved(&by_name, "t", 80, &mixed, false).is_err());
        let named = gate(&["intranet.example", "10.1.2.3"]).allowed;
        assert!(check_resolved(&named, "t", 80, &inside, false).is_ok());
        let loopback = ["127.0.0.1:80".parse().unwrap()];
        assert!(check_resolved(&by_name, "t", 80, &loopback, true).is_ok());
        assert!(check_resolved(&by_name, "t", 80, &inside, true).is_err());
    }

    #[test]
    fn userinfo_wildcards_over_addresses_and_ungranted_hosts_are_refused() {
        let g = gate(&["*.0.0.1", "127.0.0.1:8080", "localhost", "api.example"]);
        let plan = |uri: &str| g.plan(&uri.parse().unwrap());
        assert!(matches!(
            plan("http://user:pw@api.example/"),
            Err(Refusal::Userinfo(_))
        ));
        assert!(matches!(
            plan("http://127.0.0.2/"),
            Err(Refusal::NotGranted { .. })
        ));
        assert!(matches!(
            plan("http://127.0.0.1:8080/x"),
            Ok((_, 8080, Plan::Literal(_)))
        ));
        assert!(matches!(
            plan("http://localhost:9/"),
            Ok((_, 9, Plan::Resolve { loopback_ok: true }))
        ));
        assert!(matches!(
            plan("https://api.example/"),
            Ok((_, 443, Plan::Resolve { loopback_ok: false }))
        ));
        assert!(matches!(
            plan("https://other.example/"),
            Err(Refusal::NotGranted { .. })
        ));
    }
}
