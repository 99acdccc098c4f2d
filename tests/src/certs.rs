//! Certificates for TLS tests, made in the test: a CA ([`Ca`]) that issues broker and client
//! certificates as PEM files ([`Issued`]), with the names and key usages the broker expects.

use std::path::Path;
use std::path::PathBuf;

use rcgen::BasicConstraints;
use rcgen::CertificateParams;
use rcgen::CertifiedIssuer;
use rcgen::DistinguishedName;
use rcgen::DnType;
use rcgen::ExtendedKeyUsagePurpose;
use rcgen::IsCa;
use rcgen::KeyPair;
use rcgen::KeyUsagePurpose;

/// A certificate authority whose certificate is written to `<dir>/<name>.pem`.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// The CA certificate's PEM file.
    pub pem: PathBuf,
}

/// An issued certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate.
    pub cert: PathBuf,
    /// Its private key (PKCS#8).
    pub key: PathBuf,
    /// The certificate, DER.
    pub der: Vec<u8>,
}

impl Ca {
    /// A new CA named `name` (its subject's CN), its certificate written to `dir`.
    pub fn new(dir: &Path, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.distinguished_name = dn(name);
        let key = KeyPair::generate().expect("a CA key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("a CA certificate");
        let pem = dir.join(format!("{name}.pem"));
        std::fs::write(&pem, issuer.pem()).expect("writing the CA certificate");
        Ca { issuer, pem }
    }

    /// A certificate for subject `CN=<cn>` valid for `hosts` (DNS names or IP addresses),
    /// for both server and client use (as a broker's certificate must be), written to
    /// `<dir>/<stem>.pem` and `<dir>/<stem>.key` (replacing files there).
    pub fn issue(&self, dir: &Path, stem: &str, cn: &str, hosts: &[&str]) -> Issued {
        let mut params =
            CertificateParams::new(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())
                .expect("certificate params");
        params.distinguished_name = dn(cn);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages =
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().expect("a key");
        let cert = params.signed_by(&key, &self.issuer).expect("signing a certificate");
        let issued = Issued {
            cert: dir.join(format!("{stem}.pem")),
            key: dir.join(format!("{stem}.key")),
            der: cert.der().to_vec(),
        };
        // Written next to the target and renamed over it, as operators rotate files.
        for (path, text) in [(&issued.key, key.serialize_pem()), (&issued.cert, cert.pem())] {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, text).expect("writing a PEM file");
            std::fs::rename(&tmp, path).expect("renaming a PEM file");
        }
        issued
    }
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "rafka tests");
    dn.push(DnType::CommonName, cn);
    dn
}
