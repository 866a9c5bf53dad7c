//! HTTPS through rustls: a client that trusts the test certificate gets
//! the protocol's answers; one that does not is refused in the handshake.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use common::TestServer;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

fn client_config(trusted: bool) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    if trusted {
        let pem = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tls/cert.pem");
        for cert in CertificateDer::pem_file_iter(pem).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// One `GET path` over TLS; the raw response, or the I/O error.
fn get(s: &TestServer, trusted: bool, path: &str) -> std::io::Result<String> {
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(client_config(trusted), name).unwrap();
    let mut sock = TcpStream::connect(s.addr)?;
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    match tls.read_to_string(&mut out) {
        Ok(_) => Ok(out),
        // The server may close without close_notify after the response.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !out.is_empty() => Ok(out),
        Err(e) => Err(e),
    }
}

#[test]
fn https_serves_the_protocol_and_refuses_untrusting_clients() {
    let s = TestServer::tls();
    let answer = get(&s, true, "/v1/health").unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"healthy\""), "{answer}");
    assert!(
        get(&s, false, "/v1/health").is_err(),
        "an unknown certificate is refused"
    );
    // Plain HTTP on the TLS port gets no answer.
    let plain = ureq::get(&format!("{}/v1/health", s.base)).call();
    assert!(plain.is_err());
}
