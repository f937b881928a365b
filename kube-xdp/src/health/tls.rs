//! The TLS client configuration of `https` checks.
//!
//! Three ways to trust a backend, as in HAProxy's `check-ssl`:
//! - `verify = false` (HAProxy's `verify none`, what the kubeadm example
//!   uses): any certificate is accepted, but the handshake signature is still
//!   checked, so the server must at least hold the key of the certificate it
//!   presents;
//! - `ca_file`: only the CAs in that PEM file (for a control plane,
//!   `/etc/kubernetes/pki/ca.crt`);
//! - neither: the system's trust store.
//!
//! The configuration names its crypto provider (ring) explicitly rather than
//! relying on a process-wide default, which another library might install
//! differently or not at all.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::TlsSettings;

/// Why a TLS client configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("CA file {}: invalid PEM: {source}", path.display())]
    CaFilePem {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("CA file {}: no certificate (\"-----BEGIN CERTIFICATE-----\") in it", path.display())]
    NoCertificate { path: PathBuf },
    #[error("CA file {}: certificate #{index} is not a usable CA: {source}", path.display())]
    BadCertificate {
        path: PathBuf,
        /// 1-based position of the certificate in the file.
        index: usize,
        source: rustls::Error,
    },
    #[error(
        "no usable certificate in the system trust store ({0}); set ca_file or tls_verify = false"
    )]
    NativeRoots(String),
    #[error("invalid TLS server_name {0:?}: neither a DNS name nor an IP address")]
    ServerName(String),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Builds the client configuration for `https` checks with these settings.
/// With `verify = false`, `ca_file` is ignored (as HAProxy ignores `ca-file`
/// under `verify none`).
pub fn tls_config(tls: &TlsSettings) -> Result<Arc<ClientConfig>, HealthError> {
    if let Some(name) = &tls.server_name {
        // Checked here so that a bad name is a configuration error rather
        // than a failure of every probe.
        ServerName::try_from(name.as_str()).map_err(|_| HealthError::ServerName(name.clone()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let algorithms = provider.signature_verification_algorithms;
    let builder =
        ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions()?;
    let config = if !tls.verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate { algorithms }))
            .with_no_client_auth()
    } else {
        let roots = match &tls.ca_file {
            Some(ca) => ca.roots()?,
            None => native_roots()?,
        };
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// The CAs of a `ca_file`, read and parsed when the plan is built (the
/// checkers never open the file). They are part of the check: a reload
/// that finds other contents at the same path asks for other checkers,
/// which then trust the new CAs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaFile {
    pub path: PathBuf,
    certs: Arc<[CertificateDer<'static>]>,
}

impl CaFile {
    /// Every certificate of the PEM text `pem` read from `path`, each one
    /// checked as rustls will use it (a trust anchor). Any unusable
    /// certificate is an error: silently skipping one would leave the
    /// operator wondering why checks fail.
    ///
    /// # Errors
    ///
    /// Invalid PEM, no certificate, or a certificate that is not a usable
    /// CA — each naming `path`.
    pub fn parse(path: &Path, pem: &[u8]) -> Result<Self, HealthError> {
        let mut certs = Vec::new();
        for cert in CertificateDer::pem_slice_iter(pem) {
            certs.push(cert.map_err(|source| HealthError::CaFilePem {
                path: path.to_owned(),
                source,
            })?);
        }
        let ca = CaFile {
            path: path.to_owned(),
            certs: certs.into(),
        };
        ca.roots()?;
        Ok(ca)
    }

    /// The certificates as rustls' trust anchors.
    fn roots(&self) -> Result<RootCertStore, HealthError> {
        let mut roots = RootCertStore::empty();
        for (i, cert) in self.certs.iter().enumerate() {
            roots
                .add(cert.clone())
                .map_err(|source| HealthError::BadCertificate {
                    path: self.path.clone(),
                    index: i + 1,
                    source,
                })?;
        }
        if roots.is_empty() {
            return Err(HealthError::NoCertificate {
                path: self.path.clone(),
            });
        }
        Ok(roots)
    }
}

/// The system trust store. Unparsable entries are skipped (system stores
/// carry odd certificates); only an empty result is an error.
fn native_roots() -> Result<RootCertStore, HealthError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        let why = if found.errors.is_empty() {
            "none found".to_owned()
        } else {
            found
                .errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        };
        return Err(HealthError::NativeRoots(why));
    }
    Ok(roots)
}

/// `verify = false`: trusts any certificate chain and name, but verifies the
/// handshake signatures with the provider's algorithms, so that the TLS
/// session is still bound to the certificate's key.
#[derive(Debug)]
struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{OK, Server, TempFile, https_spec, self_signed};
    use super::super::{Failure, probe};
    use super::*;

    fn settings(verify: bool, ca_file: Option<&TempFile>, name: Option<&str>) -> TlsSettings {
        TlsSettings {
            verify,
            ca_file: ca_file
                .map(|f| CaFile::parse(&f.path, &std::fs::read(&f.path).unwrap()).unwrap()),
            server_name: name.map(str::to_owned),
        }
    }

    #[tokio::test]
    async fn https_without_verification_passes() {
        let server = Server::https(&self_signed(), OK).await;
        let tls = settings(false, None, None);
        let config = tls_config(&tls).unwrap();
        let spec = https_spec(tls);
        assert!(probe(&spec, Some(&config), server.addr).await.is_ok());
    }

    #[tokio::test]
    async fn https_with_ca_file_and_server_name_passes() {
        let cert = self_signed();
        let server = Server::https(&cert, OK).await;
        let ca = TempFile::new("ca.crt", &cert.cert.pem());
        let tls = settings(true, Some(&ca), Some("kubernetes"));
        let config = tls_config(&tls).unwrap();
        let spec = https_spec(tls);
        assert!(probe(&spec, Some(&config), server.addr).await.is_ok());
        // The Host header carries the server name, not the address.
        assert!(server.last_request().contains("\r\nHost: kubernetes\r\n"));
    }

    #[tokio::test]
    async fn https_with_ca_file_checks_the_ip_when_no_server_name() {
        let cert = self_signed();
        let server = Server::https(&cert, OK).await;
        let ca = TempFile::new("ca.crt", &cert.cert.pem());
        let tls = settings(true, Some(&ca), None);
        let config = tls_config(&tls).unwrap();
        assert!(
            probe(&https_spec(tls), Some(&config), server.addr)
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn https_with_wrong_ca_fails_the_handshake() {
        let server = Server::https(&self_signed(), OK).await;
        let other = TempFile::new("other-ca.crt", &self_signed().cert.pem());
        let tls = settings(true, Some(&other), Some("kubernetes"));
        let config = tls_config(&tls).unwrap();
        let failure = probe(&https_spec(tls), Some(&config), server.addr)
            .await
            .unwrap_err();
        assert!(
            matches!(&failure, Failure::Tls(e) if e.contains("certificate")),
            "{failure:?}"
        );
        assert_eq!(failure.layer(), "Layer6 invalid response");
    }

    #[tokio::test]
    async fn https_with_wrong_server_name_fails_the_handshake() {
        let cert = self_signed();
        let server = Server::https(&cert, OK).await;
        let ca = TempFile::new("ca.crt", &cert.cert.pem());
        let tls = settings(true, Some(&ca), Some("etcd"));
        let config = tls_config(&tls).unwrap();
        let failure = probe(&https_spec(tls), Some(&config), server.addr)
            .await
            .unwrap_err();
        assert!(matches!(failure, Failure::Tls(_)), "{failure:?}");
    }

    #[tokio::test]
    async fn https_without_verification_still_checks_the_key() {
        // The server presents a certificate whose key it does not hold.
        let server = Server::https_mismatched_key(&self_signed(), &self_signed(), OK).await;
        let tls = settings(false, None, None);
        let config = tls_config(&tls).unwrap();
        let failure = probe(&https_spec(tls), Some(&config), server.addr)
            .await
            .unwrap_err();
        assert!(matches!(failure, Failure::Tls(_)), "{failure:?}");
    }

    #[tokio::test]
    async fn https_readyz_500_is_a_wrong_status() {
        let server = Server::https(
            &self_signed(),
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n",
        )
        .await;
        let tls = settings(false, None, None);
        let config = tls_config(&tls).unwrap();
        let failure = probe(&https_spec(tls), Some(&config), server.addr)
            .await
            .unwrap_err();
        assert_eq!(
            failure,
            Failure::Status {
                got: 500,
                want: 200
            }
        );
    }

    #[tokio::test]
    async fn https_without_a_client_config_fails() {
        let server = Server::https(&self_signed(), OK).await;
        let failure = probe(&https_spec(settings(false, None, None)), None, server.addr)
            .await
            .unwrap_err();
        assert!(matches!(failure, Failure::Tls(_)), "{failure:?}");
    }

    #[test]
    fn ca_file_without_certificates_is_a_clear_error() {
        let path = Path::new("/etc/kube-xdp/ca.crt");
        let err = CaFile::parse(path, b"not a certificate\n").unwrap_err();
        assert!(matches!(err, HealthError::NoCertificate { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "CA file /etc/kube-xdp/ca.crt: no certificate (\"-----BEGIN CERTIFICATE-----\") in it"
        );
    }

    #[test]
    fn invalid_server_name_is_rejected() {
        let err = tls_config(&settings(false, None, Some("not a name!"))).unwrap_err();
        assert!(matches!(err, HealthError::ServerName(_)), "{err:?}");
    }

    #[test]
    fn verify_false_ignores_ca_file() {
        let unusable = TlsSettings {
            verify: false,
            ca_file: Some(CaFile {
                path: PathBuf::from("/etc/kube-xdp/ca.crt"),
                certs: Vec::new().into(),
            }),
            server_name: None,
        };
        assert!(tls_config(&unusable).is_ok());
    }
}
