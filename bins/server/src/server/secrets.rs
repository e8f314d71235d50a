//! The secrets a server reads or (in `dev`) creates: the key-encryption
//! key, the signing keys of access tokens and audit checkpoints, the
//! dev-token secret, and the mailer's settings.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use carapace_infra::dev_token::DevTokens;
use carapace_infra::local_tokens::LocalTokens;
use carapace_infra::mail::LettreMailer;
use carapace_phi_crypto::{LocalSealer, SecretSealer};
use secrecy::{ExposeSecret as _, SecretString};

use crate::settings::{AsConfig, Config, Profile};

/// The Ed25519 key signing audit checkpoints (PKCS#8 PEM). In `dev`, with
/// no configured key, one is generated into `<data_dir>/audit-signing-key.pem`.
pub fn audit_signing_key(settings: &impl AsConfig) -> anyhow::Result<ed25519_dalek::SigningKey> {
    let settings = settings.as_config();
    let settings: &Config = &settings;
    use ed25519_dalek::pkcs8::DecodePrivateKey as _;
    let pem = match &settings.audit.signing_key_file {
        Some(path) => read_secret(path)?,
        None => read_or_create(&settings.data_dir.join("audit-signing-key.pem"), || {
            LocalTokens::generate_pem().map_err(anyhow::Error::from)
        })?,
    };
    ed25519_dalek::SigningKey::from_pkcs8_pem(pem.expose_secret().trim()).map_err(|_| {
        anyhow::anyhow!("CARAPACE_AUDIT_SIGNING_KEY_FILE: not an Ed25519 PKCS#8 PEM key")
    })
}

/// The dev-token signer/verifier when dev tokens are on. In `dev`, with no
/// configured secret, a random one is kept in `<data_dir>/dev-token-secret`
/// so `carapace dev-token` and the server agree.
pub fn dev_tokens(settings: &Config) -> anyhow::Result<Option<DevTokens>> {
    if !settings.dev_tokens_enabled() {
        return Ok(None);
    }
    let secret = match (&settings.auth.dev_token_secret, settings.profile) {
        (Some(s), _) => s.clone(),
        (None, Profile::Dev) => local_dev_secret(&settings.data_dir)?,
        (None, Profile::Production) => {
            bail!("CARAPACE_DEV_TOKEN_SECRET: dev tokens are refused in production")
        }
    };
    Ok(Some(
        DevTokens::new(&secret).context("CARAPACE_DEV_TOKEN_SECRET")?,
    ))
}

fn local_dev_secret(dir: &Path) -> anyhow::Result<SecretString> {
    read_or_create(&dir.join("dev-token-secret"), || {
        let bytes: [u8; 32] = rand::random();
        Ok(SecretString::from(
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        ))
    })
}

/// The key provider sealing secrets at rest: KMS when `kms_key_id` is set,
/// else the local key file (in `dev` generated under the data directory
/// when unset).
pub fn sealer(settings: &Config) -> anyhow::Result<Arc<dyn SecretSealer>> {
    if let Some(key_id) = &settings.keys.kms_key_id {
        return kms_sealer(settings, key_id);
    }
    let hex = match &settings.keys.master_key_file {
        Some(path) => read_secret(path)?,
        None => read_or_create(&settings.data_dir.join("master.key"), || {
            let key: [u8; 32] = rand::random();
            Ok(SecretString::from(
                key.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            ))
        })?,
    };
    sealer_from_hex(&hex)
}

/// A KMS key provider for `key_id`, with the endpoint, region and
/// credentials of `settings` (validated by [`Config::problems`]).
#[cfg(feature = "kms")]
pub fn kms_sealer(settings: &Config, key_id: &str) -> anyhow::Result<Arc<dyn SecretSealer>> {
    use anyhow::Context as _;
    let kms = carapace_infra::kms::KmsSettings {
        endpoint: settings
            .keys
            .kms_endpoint_url()
            .context("CARAPACE_KMS_REGION or CARAPACE_KMS_ENDPOINT is required for KMS")?,
        region: settings
            .keys
            .kms_region
            .clone()
            .context("CARAPACE_KMS_REGION is required for KMS")?,
        key_id: key_id.to_owned(),
        access_key_id: settings
            .keys
            .kms_access_key_id
            .clone()
            .context("KMS credentials are required")?,
        secret_access_key: settings
            .keys
            .kms_secret_access_key
            .clone()
            .context("KMS credentials are required")?,
        session_token: settings.keys.kms_session_token.clone(),
        timeout: std::time::Duration::from_secs(5),
    };
    Ok(Arc::new(carapace_infra::kms::KmsSealer::new(&kms)?))
}

/// Without the `kms` feature there is no KMS provider.
#[cfg(not(feature = "kms"))]
pub fn kms_sealer(_: &Config, _: &str) -> anyhow::Result<Arc<dyn SecretSealer>> {
    bail!("this build has no KMS support (build with the `kms` feature)")
}

/// The sealer of a key file written by `carapace keys init`.
pub fn sealer_from_file(path: &Path) -> anyhow::Result<Arc<dyn SecretSealer>> {
    sealer_from_hex(&read_secret(path)?)
}

fn sealer_from_hex(hex: &SecretString) -> anyhow::Result<Arc<dyn SecretSealer>> {
    let hex = hex.expose_secret().trim();
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .filter_map(|i| {
            hex.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect();
    let key: [u8; 32] = match bytes.try_into() {
        Ok(k) if hex.len() == 64 => k,
        _ => bail!("a key-encryption key file must hold exactly 64 hex characters (32 bytes)"),
    };
    Ok(Arc::new(LocalSealer::new(&key)))
}

/// The mailer: SMTP when configured; else, in `dev`, the outbox directory,
/// and in production none (mail fails: reminder e-mails, which carry PHI,
/// are never written to a server's disk).
pub(super) fn mailer(settings: &Config) -> anyhow::Result<LettreMailer> {
    let from = &settings.mail.from;
    let mailer = match (&settings.mail.smtp_url, settings.profile) {
        (Some(url), _) => LettreMailer::smtp(url, from)?,
        (None, Profile::Production) => LettreMailer::disabled(from)?,
        (None, _) => LettreMailer::outbox(settings.data_dir.join("outbox"), from)?,
    };
    Ok(mailer)
}

/// The signer of Carapace's own access tokens, when local accounts are on.
/// In `dev`, with no configured key, one is generated into
/// `<data_dir>/signing-key.pem`.
pub fn local_tokens(settings: &Config) -> anyhow::Result<Option<LocalTokens>> {
    if !settings.local_accounts_enabled() {
        return Ok(None);
    }
    let current = match &settings.auth.signing_key_file {
        Some(path) => read_secret(path)?,
        None => read_or_create(&settings.data_dir.join("signing-key.pem"), || {
            LocalTokens::generate_pem().map_err(anyhow::Error::from)
        })?,
    };
    let previous = settings
        .auth
        .signing_key_previous_files
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| read_secret(Path::new(p)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Some(
        LocalTokens::new(&current, &previous).context("CARAPACE_SIGNING_KEY_FILE")?,
    ))
}

fn read_secret(path: &Path) -> anyhow::Result<SecretString> {
    std::fs::read_to_string(path)
        .map(SecretString::from)
        .with_context(|| format!("reading {}", path.display()))
}

/// Reads a secret file, or creates it (mode 0600) with `make`'s value.
///
/// Processes started together on a fresh data directory (`serve` and a
/// CLI command) all end with the same secret: the new one is written whole
/// under a name of its own, synced, then linked into place, which fails
/// if another process got there first (then its secret is read). No one
/// ever reads a half-written file. An empty file is refused, not replaced.
fn read_or_create(
    path: &Path,
    make: impl FnOnce() -> anyhow::Result<SecretString>,
) -> anyhow::Result<SecretString> {
    if let Some(existing) = read_existing(path)? {
        return Ok(existing);
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let value = make()?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let draft = dir.join(format!(".{name}.{}.new", uuid::Uuid::new_v4().simple()));
    let linked = match write_new(&draft, value.expose_secret()) {
        Ok(()) => std::fs::hard_link(&draft, path),
        Err(e) => {
            let _ = std::fs::remove_file(&draft);
            return Err(e);
        }
    };
    let _ = std::fs::remove_file(&draft);
    match linked {
        Ok(()) => Ok(value),
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_existing(path)?
            .with_context(|| format!("{} vanished while it was being read", path.display())),
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}

/// The secret in `path`, or `None` if there is no such file.
fn read_existing(path: &Path) -> anyhow::Result<Option<SecretString>> {
    match std::fs::read_to_string(path) {
        Ok(text) if text.trim().is_empty() => bail!(
            "{} is empty: put the secret in it, or remove it to have one made",
            path.display()
        ),
        Ok(text) => Ok(Some(SecretString::from(text.trim().to_owned()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes `value` to the new file `path` (mode 0600) and syncs it.
fn write_new(path: &Path, value: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(value.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_racing_on_a_fresh_directory_all_get_the_one_whole_secret() {
        for round in 0..20 {
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            let path = dir.path().join("keys").join("master.key");
            let barrier = std::sync::Barrier::new(8);
            let got: Vec<String> = std::thread::scope(|s| {
                let racers: Vec<_> = (0..8)
                    .map(|i| {
                        let (path, barrier) = (&path, &barrier);
                        s.spawn(move || {
                            barrier.wait();
                            read_or_create(path, || {
                                // Long enough that a reader could catch a
                                // write half done.
                                Ok(SecretString::from(format!("{i}").repeat(64 * 1024)))
                            })
                            .map(|v| v.expose_secret().to_owned())
                            .unwrap_or_else(|e| panic!("round {round}, racer {i}: {e:#}"))
                        })
                    })
                    .collect();
                racers
                    .into_iter()
                    .map(|r| r.join().unwrap_or_else(|_| panic!("racer panicked")))
                    .collect()
            });
            let stored = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(stored.len(), 64 * 1024, "whole");
            assert!(
                got.iter().all(|v| *v == stored),
                "round {round}: one secret for all"
            );
            // No drafts left behind.
            let entries = std::fs::read_dir(path.parent().unwrap_or(dir.path()))
                .unwrap_or_else(|e| panic!("{e}"))
                .count();
            assert_eq!(entries, 1);
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                let mode = std::fs::metadata(&path)
                    .map(|m| m.permissions().mode() & 0o777)
                    .unwrap_or_default();
                assert_eq!(mode, 0o600);
            }
        }
    }

    #[test]
    fn an_empty_secret_file_is_refused_not_replaced() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("dev-token-secret");
        std::fs::write(&path, "\n").unwrap_or_else(|e| panic!("{e}"));
        let err = read_or_create(&path, || Ok(SecretString::from("fresh".to_owned())))
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(err.contains("is empty"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap_or_default(), "\n");
    }

    #[test]
    fn an_existing_secret_is_read_and_make_is_not_called() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("dev-token-secret");
        std::fs::write(&path, "kept-secret\n").unwrap_or_else(|e| panic!("{e}"));
        let got =
            read_or_create(&path, || panic!("make must not run")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got.expose_secret(), "kept-secret");
    }
}
