//! The server's own HTTPS (`[tls]`): the certificate and key files, read at start-up and
//! again on SIGHUP. A reload swaps the key that new handshakes get; connections already
//! established keep the session they negotiated, so nothing is dropped. A reload that fails
//! (a half-written file, a key that does not match) keeps the previous certificate.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};

use anyhow::{Context, bail};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::config::TlsSettings;

/// The certificate new handshakes are given, replaceable while the server runs.
pub struct ReloadableCert {
    files: TlsSettings,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadableCert {
    /// Reads `files`; an unreadable or invalid file is an error naming it and the problem.
    pub fn load(files: &TlsSettings) -> anyhow::Result<Arc<Self>> {
        // The same provider as every other TLS user in the workspace (reqwest, object_store):
        // ring, no C build.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = load_certified_key(files, &provider)?;
        Ok(Arc::new(Self {
            files: files.clone(),
            provider,
            current: RwLock::new(Arc::new(key)),
        }))
    }

    /// Rereads both files. On failure the previous certificate stays in use.
    pub fn reload(&self) -> anyhow::Result<()> {
        let key = load_certified_key(&self.files, &self.provider)?;
        // A panic while holding the lock cannot leave the `Arc` half-written.
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(key);
        Ok(())
    }

    fn current(&self) -> Arc<CertifiedKey> {
        self.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The TLS side of the listener: TLS 1.2 and 1.3, this certificate, ALPN `http/1.1`.
    pub fn acceptor(self: &Arc<Self>) -> anyhow::Result<TlsAcceptor> {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        // The server speaks HTTP/1.1 only (see `listener`): offering `h2` would make clients
        // that negotiate it fail, and a client offering nothing still gets HTTP/1.1.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl fmt::Debug for ReloadableCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadableCert")
            .field("cert_file", &self.files.cert_file)
            .field("key_file", &self.files.key_file)
            .finish_non_exhaustive()
    }
}

/// Starts reloading `cert` on every SIGHUP until `shutdown` turns true. A failed reload is
/// logged at error level and the previous certificate goes on being served.
pub fn spawn_sighup_reloader(
    cert: Arc<ReloadableCert>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    // Registered here, not in the task: a server that could not reload must not start.
    let mut hangups = signal(SignalKind::hangup()).context("listening for SIGHUP")?;
    Ok(tokio::spawn(async move {
        loop {
            tokio::select! {
                received = hangups.recv() => {
                    if received.is_none() {
                        return;
                    }
                }
                _ = shutdown.changed() => return,
            }
            // Two small files: reading them inline is cheaper than a blocking-pool hop.
            match cert.reload() {
                Ok(()) => tracing::info!(
                    cert_file = %cert.files.cert_file.display(),
                    "SIGHUP: reloaded the TLS certificate; new connections get it"
                ),
                Err(e) => tracing::error!(
                    error = %format!("{e:#}"),
                    "SIGHUP: reloading the TLS certificate failed; still serving the previous one"
                ),
            }
        }
    }))
}

fn load_certified_key(files: &TlsSettings, provider: &CryptoProvider) -> anyhow::Result<CertifiedKey> {
    let chain = read_chain(&files.cert_file)?;
    let key = read_key(&files.key_file)?;
    CertifiedKey::from_der(chain, key, provider).with_context(|| {
        format!(
            "tls.key_file {}: not usable with the certificate in tls.cert_file {}",
            files.key_file.display(),
            files.cert_file.display()
        )
    })
}

fn read_chain(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("tls.cert_file {}: cannot read it", path.display()))?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, pem::Error>>()
        .with_context(|| format!("tls.cert_file {}: not a PEM certificate chain", path.display()))?;
    if chain.is_empty() {
        bail!(
            "tls.cert_file {}: no `BEGIN CERTIFICATE` block; expected a PEM chain, the server's \
             certificate first",
            path.display()
        );
    }
    Ok(chain)
}

fn read_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let pem = std::fs::read(path).with_context(|| format!("tls.key_file {}: cannot read it", path.display()))?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        pem::Error::NoItemsFound => anyhow::anyhow!(
            "tls.key_file {}: no PEM private key (`BEGIN PRIVATE KEY`, `BEGIN RSA PRIVATE KEY` \
             or `BEGIN EC PRIVATE KEY`)",
            path.display()
        ),
        other => anyhow::Error::new(other).context(format!("tls.key_file {}: not a PEM private key", path.display())),
    })
}

#[cfg(test)]
mod tests {
    use intact_testkit::TestCa;

    use super::*;

    fn served_der(cert: &ReloadableCert) -> Vec<u8> {
        cert.current().cert[0].as_ref().to_vec()
    }

    #[test]
    fn reload_swaps_the_certificate_and_a_failed_one_keeps_it() {
        let ca = TestCa::new();
        let dir = tempfile::tempdir().expect("tempdir");
        let first = ca.issue("first");
        let (cert_file, key_file) = first.write_to(dir.path());
        let cert = ReloadableCert::load(&TlsSettings {
            cert_file,
            key_file: key_file.clone(),
        })
        .expect("load");
        assert_eq!(served_der(&cert), first.der);

        let second = ca.issue("second");
        second.write_to(dir.path());
        cert.reload().expect("reload");
        assert_eq!(served_der(&cert), second.der);

        // A key from another certificate: refused, the second one stays.
        std::fs::write(&key_file, ca.issue("third").key_pem).expect("write");
        let err = cert.reload().expect_err("mismatched key");
        assert!(
            format!("{err:#}").contains("not usable with the certificate"),
            "{err:#}"
        );
        assert_eq!(served_der(&cert), second.der);
    }
}
