//! Native HTTPS for the public listener: rustls with the certificate chain and key from PEM
//! files, reloaded without a restart.
//!
//! The files are checked every few seconds and on SIGHUP; when they change and parse, new
//! handshakes get the new certificate. Established connections keep the session they have. A
//! file that does not parse, or a key that does not belong to the certificate (a renewal that
//! has written one file but not yet the other, say), is logged and counted
//! (`stsvend_tls_reloads_total{outcome="refused"}`) and the previous pair stays in use; at
//! start-up either stops the process. TLS 1.2 and 1.3; ALPN offers HTTP/2 and HTTP/1.1.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::config::TlsFiles;

/// How often the certificate files are checked for changes.
pub const RELOAD_CHECK_EVERY: Duration = Duration::from_secs(5);

/// Why certificate files could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{}` holds no PEM certificate", path.display())]
    NoCertificate { path: PathBuf },
    #[error("`{}` holds no usable PEM private key (PKCS#8, PKCS#1 or SEC1)", path.display())]
    NoKey { path: PathBuf },
    #[error("the key in `{}` is of a type rustls cannot sign with", path.display())]
    UnsupportedKey { path: PathBuf },
    #[error(
        "the private key in `{}` does not belong to the certificate in `{}`; install the key issued with that certificate",
        key.display(),
        cert.display()
    )]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("the first certificate in `{}` cannot be parsed", path.display())]
    BadCertificate {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("the TLS configuration was refused")]
    Config(#[source] rustls::Error),
}

/// Hands the current certificate to each new handshake.
struct Resolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver").finish_non_exhaustive()
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        )
    }
}

/// The public listener's TLS: an acceptor whose certificate can be swapped.
#[derive(Clone)]
pub struct Tls {
    acceptor: TlsAcceptor,
    resolver: Arc<Resolver>,
    files: TlsFiles,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Loads the files now: a certificate that cannot be used stops start-up.
    pub fn load(files: &TlsFiles) -> Result<Self, TlsError> {
        crate::outbound::install_crypto_provider();
        let resolver = Arc::new(Resolver {
            current: RwLock::new(Arc::new(certified_key(files)?)),
        });
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            resolver,
            files: files.clone(),
        })
    }

    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// Re-reads the files and swaps the certificate if they parse and the key belongs to the
    /// certificate; otherwise keeps the old pair. Counted in `stsvend_tls_reloads_total`.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = certified_key(&self.files);
        crate::metrics::record_tls_reload(fresh.is_ok());
        let fresh = fresh?;
        *self
            .resolver
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(fresh);
        Ok(())
    }

    /// Watches the files (and SIGHUP) until `cancel` fires, reloading on change.
    pub async fn watch(self, cancel: CancellationToken) {
        super::watch::watch(self, cancel).await;
    }
}

impl super::watch::Watched for Tls {
    fn files(&self) -> Vec<PathBuf> {
        vec![self.files.cert.clone(), self.files.key.clone()]
    }

    fn every(&self) -> Option<Duration> {
        Some(RELOAD_CHECK_EVERY)
    }

    async fn reload(&mut self, sighup: bool) {
        match Self::reload(self) {
            Ok(()) => {
                tracing::info!(cert = %self.files.cert.display(), sighup, "reloaded the TLS certificate")
            }
            Err(error) => {
                tracing::error!(error = %describe(&error), sighup, "cannot reload the TLS certificate; keeping the previous one")
            }
        }
    }
}

fn certified_key(files: &TlsFiles) -> Result<CertifiedKey, TlsError> {
    let certs = read(&files.cert)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&certs)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: files.cert.clone(),
        });
    }
    let key_pem = read(&files.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::NoKey {
        path: files.key.clone(),
    })?;
    let signing_key = rustls::crypto::ring::sign::any_supported_type(&key).map_err(|_| {
        TlsError::UnsupportedKey {
            path: files.key.clone(),
        }
    })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // As rustls's own `CertifiedKey::from_der`: a key that cannot tell its public half is
        // not a mismatch (every key type the ring provider loads can tell).
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(certified)
        }
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::KeyMismatch {
            cert: files.cert.clone(),
            key: files.key.clone(),
        }),
        Err(source) => Err(TlsError::BadCertificate {
            path: files.cert.clone(),
            source,
        }),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// An error with its causes, on one line.
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed `localhost` certificate and its key, as PEM.
    fn pair() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn files(dir: &Path, cert: &str, key: &str) -> TlsFiles {
        let files = TlsFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        std::fs::write(&files.cert, cert).unwrap();
        std::fs::write(&files.key, key).unwrap();
        files
    }

    fn served(tls: &Tls) -> Vec<u8> {
        let current = tls.resolver.current.read().unwrap().clone();
        current.end_entity_cert().unwrap().to_vec()
    }

    #[test]
    fn a_key_that_does_not_belong_to_the_certificate_is_refused_naming_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_a, _) = pair();
        let (_, key_b) = pair();
        let files = files(dir.path(), &cert_a, &key_b);
        let error = Tls::load(&files).unwrap_err();
        assert!(matches!(error, TlsError::KeyMismatch { .. }), "{error:?}");
        let text = error.to_string();
        assert!(text.contains(&*files.cert.to_string_lossy()), "{text}");
        assert!(text.contains(&*files.key.to_string_lossy()), "{text}");
    }

    #[test]
    fn a_reload_with_a_mismatched_pair_keeps_the_previous_pair() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_a, key_a) = pair();
        let files = files(dir.path(), &cert_a, &key_a);
        let tls = Tls::load(&files).unwrap();
        let before = served(&tls);
        // A renewal has written the new certificate but not yet its key.
        let (cert_b, key_b) = pair();
        std::fs::write(&files.cert, &cert_b).unwrap();
        assert!(matches!(tls.reload(), Err(TlsError::KeyMismatch { .. })));
        assert_eq!(served(&tls), before);
        // Once the key is there too, the new pair is taken.
        std::fs::write(&files.key, &key_b).unwrap();
        tls.reload().unwrap();
        assert_ne!(served(&tls), before);
    }
}
