//! TLS for listeners: rustls with ALPN (h2, http/1.1), one certificate per SNI host name
//! (exact or `*.` wildcard) and a default one; plus the self-signed certificate of `isola dev`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

/// A certificate or key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("cannot load {path}: {source}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A certificate file holds no certificate.
    #[error("cannot load {0}: no certificate in the file")]
    NoCertificate(PathBuf),
    /// rustls refused the configuration.
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[source] rustls::Error),
    /// The self-signed development certificate could not be made.
    #[error("cannot create a self-signed certificate: {0}")]
    SelfSigned(#[source] rcgen::Error),
    /// The self-signed development certificate could not be written.
    #[error("cannot create a self-signed certificate: {path}: {source}")]
    SelfSignedWrite {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug)]
struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: Vec<(String, Arc<CertifiedKey>)>,
    default: Arc<CertifiedKey>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = hello.server_name().map(str::to_ascii_lowercase) else {
            return Some(self.default.clone());
        };
        if let Some(key) = self.exact.get(&name) {
            return Some(key.clone());
        }
        self.wildcard
            .iter()
            .find(|(suffix, _)| name.ends_with(suffix.as_str()) && name.len() > suffix.len())
            .map(|(_, key)| key.clone())
            .or_else(|| Some(self.default.clone()))
    }
}

/// A listener's certificates, replaceable while it serves: a reload swaps them in for new
/// handshakes; connections already made keep theirs.
#[derive(Debug)]
pub struct Certificates(ArcSwap<SniResolver>);

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.load().resolve(hello)
    }
}

/// Certificates read and checked, ready to be swapped in with [`Certificates::replace`].
#[derive(Debug)]
pub struct LoadedCertificates(SniResolver);

impl Certificates {
    /// Reads `tls`'s certificates and keys (nothing changes when one is unusable).
    pub fn load(tls: &edge_config::Tls) -> Result<LoadedCertificates, TlsError> {
        Ok(LoadedCertificates(resolver(tls)?))
    }

    /// Serves `loaded` to new handshakes from now on.
    pub fn replace(&self, loaded: LoadedCertificates) {
        self.0.store(Arc::new(loaded.0));
    }
}

/// Builds the acceptor for a listener's TLS settings.
pub fn acceptor(tls: &edge_config::Tls) -> Result<TlsAcceptor, TlsError> {
    reloadable_acceptor(tls).map(|(acceptor, _)| acceptor)
}

/// Builds the acceptor for a listener's TLS settings, with the handle that replaces its
/// certificates.
pub fn reloadable_acceptor(
    tls: &edge_config::Tls,
) -> Result<(TlsAcceptor, Arc<Certificates>), TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let certificates = Arc::new(Certificates(ArcSwap::from_pointee(resolver(tls)?)));
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Rustls)?
        .with_no_client_auth()
        .with_cert_resolver(certificates.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((TlsAcceptor::from(Arc::new(config)), certificates))
}

/// The certificates of `tls`: the default one and those chosen by SNI.
fn resolver(tls: &edge_config::Tls) -> Result<SniResolver, TlsError> {
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let default = load_certified_key(&provider, &tls.cert, &tls.key)?;
    let mut exact = HashMap::new();
    let mut wildcard = Vec::new();
    for sni in &tls.sni {
        let key = load_certified_key(&provider, &sni.cert, &sni.key)?;
        for host in &sni.hostnames {
            let host = host.to_ascii_lowercase();
            match host.strip_prefix('*') {
                Some(suffix) => wildcard.push((suffix.to_owned(), key.clone())),
                None => {
                    exact.insert(host, key.clone());
                }
            }
        }
    }
    Ok(SniResolver {
        exact,
        wildcard,
        default,
    })
}

fn load_certified_key(
    provider: &rustls::crypto::CryptoProvider,
    cert: &Path,
    key: &Path,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let pem_error = |path: &Path| {
        let path = path.to_owned();
        move |error: rustls::pki_types::pem::Error| TlsError::Pem {
            path,
            source: Box::new(error),
        }
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(pem_error(cert))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error(cert))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert.to_owned()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(pem_error(key))?;
    let signing_key = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|error| TlsError::Pem {
            path: key.to_owned(),
            source: Box::new(error),
        })?;
    Ok(Arc::new(CertifiedKey::new(chain, signing_key)))
}

/// Returns (cert, key) paths of a self-signed certificate for localhost and 127.0.0.1 in
/// `dir`, creating it if it does not exist yet (so a browser exception survives restarts).
pub fn self_signed(dir: &Path) -> Result<(PathBuf, PathBuf), TlsError> {
    let cert_path = dir.join("localhost-cert.pem");
    let key_path = dir.join("localhost-key.pem");
    if cert_path.is_file() && key_path.is_file() {
        return Ok((cert_path, key_path));
    }
    let names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let generated = rcgen::generate_simple_self_signed(names).map_err(TlsError::SelfSigned)?;
    std::fs::create_dir_all(dir).map_err(|source| TlsError::SelfSignedWrite {
        path: dir.to_owned(),
        source,
    })?;
    std::fs::write(&cert_path, generated.cert.pem()).map_err(|source| {
        TlsError::SelfSignedWrite {
            path: cert_path.clone(),
            source,
        }
    })?;
    write_private(&key_path, generated.signing_key.serialize_pem().as_bytes()).map_err(
        |source| TlsError::SelfSignedWrite {
            path: key_path.clone(),
            source,
        },
    )?;
    Ok((cert_path, key_path))
}

/// Writes a private key readable by its owner only.
fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)
}
