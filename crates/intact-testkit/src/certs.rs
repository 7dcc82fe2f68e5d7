//! A throw-away certificate authority and the server certificates it issues, for the TLS
//! suites (the server's `[tls]`, the CLI's `--ca-cert`).

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

/// A CA whose certificate a test's clients trust.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A server certificate for `localhost` and `127.0.0.1`, with its key.
pub struct TestCert {
    /// The certificate in DER, to compare with what a client was shown.
    pub der: Vec<u8>,
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestCa {
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "intact test CA");
        let key = KeyPair::generate().expect("CA key");
        Self {
            issuer: CertifiedIssuer::self_signed(params, key).expect("CA certificate"),
        }
    }

    /// The CA certificate in PEM, for a client's trust store.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate whose subject is `common_name` (each call also gets a fresh key
    /// and serial number, so two certificates are always distinguishable).
    pub fn issue(&self, common_name: &str) -> TestCert {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("server params");
        params.distinguished_name.push(DnType::CommonName, common_name);
        let key = KeyPair::generate().expect("server key");
        let cert = params.signed_by(&key, &*self.issuer).expect("server certificate");
        TestCert {
            der: cert.der().to_vec(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl TestCert {
    /// Writes `server.crt` and `server.key` into `dir` (replacing them), returning their paths.
    pub fn write_to(&self, dir: &Path) -> (PathBuf, PathBuf) {
        let cert = dir.join("server.crt");
        let key = dir.join("server.key");
        std::fs::write(&cert, &self.cert_pem).expect("write certificate");
        std::fs::write(&key, &self.key_pem).expect("write key");
        (cert, key)
    }
}
