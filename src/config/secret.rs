//! Secrets that never show, and values encrypted with a master key.
//!
//! [`Secret`] holds a resolved value: Debug, Display and Serialize all print
//! `***`, and [`Secret::expose`] is the one (grep-able) way to read it.
//! [`SecretRef`] is how a secret is written in config: a literal (which is how
//! `${ENV}` secrets arrive after interpolation), `file:/path`, or `enc:v1:...`
//! produced by [`encrypt`]. Error messages name files and key fingerprints,
//! never values, and never echo any part of a key or a malformed value.
//!
//! Limitation: a literal secret that itself starts with `file:` or `enc:` cannot
//! be written literally; put it in a file and use `file:` instead.

use std::ffi::OsStr;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand::rngs::OsRng;
use rand::RngCore;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// Where [`MasterKey::from_env`] looks.
pub const MASTER_KEY_ENV: &str = "INVESTIGATOR_MASTER_KEY";

const REDACTED: &str = "***";
const FILE_PREFIX: &str = "file:";
const ENC_PREFIX: &str = "enc:";
const ENC_V1_PREFIX: &str = "enc:v1:";
/// Binds ciphertexts to this format, so they cannot be replayed into another use of the key.
const AAD: &[u8] = b"investigator-secret-v1";
const KEY_LEN: usize = 32;
const FINGERPRINT_LEN: usize = 4;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Secret files are small; the cap keeps `file:/dev/zero` from eating memory.
const MAX_SECRET_FILE_BYTES: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid master key: {0}")]
    InvalidMasterKey(String),
    #[error("{env} is set but invalid: {0}", env = MASTER_KEY_ENV)]
    InvalidMasterKeyEnv(String),
    #[error("invalid secret reference: {0}")]
    InvalidReference(String),
    #[error("cannot read secret file {}: {error}", path.display())]
    ReadFile {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("secret file {} is larger than {max} bytes", path.display(), max = MAX_SECRET_FILE_BYTES)]
    FileTooLarge { path: PathBuf },
    #[error("secret file {} is not valid UTF-8", path.display())]
    FileNotUtf8 { path: PathBuf },
    #[error("malformed encrypted secret: {0}")]
    Malformed(&'static str),
    #[error("an encrypted secret needs a master key, but {env} is not set", env = MASTER_KEY_ENV)]
    MissingMasterKey,
    #[error(
        "secret was encrypted with key {encrypted_with}, but {env} is key {current}",
        env = MASTER_KEY_ENV
    )]
    WrongKey {
        encrypted_with: String,
        current: String,
    },
    #[error("encrypted secret failed authentication with key {0}: it was altered or corrupted")]
    Tampered(String),
    #[error("decrypted secret is not valid UTF-8")]
    NotUtf8,
    #[error("encryption failed: {0}")]
    Encrypt(&'static str),
}

pub type Result<T> = std::result::Result<T, Error>;

/// A secret value. Debug, Display and Serialize print `***` (never the value,
/// never its length). Deserialize takes a string verbatim: it does not resolve
/// `file:`/`enc:` references; use [`SecretRef`] for fields that may hold them.
/// Equality runs in constant time. The memory is overwritten on drop (best
/// effort: copies made by earlier reallocations or by callers are not).
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The one way to read the value; grep for `expose(` to audit its uses.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Lets validation reject empty secrets without exposing them.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        wipe(std::mem::take(&mut self.0).into_bytes());
    }
}

/// Overwrites the whole allocation (spare capacity too) before freeing it.
fn wipe(mut bytes: Vec<u8>) {
    bytes.clear();
    bytes.resize(bytes.capacity(), 0);
    // Keeps the optimizer from removing the writes as dead stores.
    std::hint::black_box(&mut bytes);
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl PartialEq for Secret {
    /// Constant time in the contents: for comparing API keys without a timing oracle.
    fn eq(&self, other: &Self) -> bool {
        let ours = Sha256::digest(self.0.as_bytes());
        let theirs = Sha256::digest(other.0.as_bytes());
        constant_time_eq(&ours, &theirs)
    }
}

impl Eq for Secret {}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        // Not `deserialize_string`: serde_json then reports a number itself,
        // quoting it. `deserialize_any` routes every scalar through the visitor.
        // (Config formats are self-describing, so `any` is available.)
        deserializer.deserialize_any(SecretVisitor)
    }
}

/// Serde's default "invalid type" errors quote the value (`invalid type:
/// integer `123456``), so every non-string scalar gets a message without it.
/// A secret that YAML reads as a number or boolean must be quoted; accepting
/// it re-formatted (`0123` -> `123`) would silently change it.
struct SecretVisitor;

fn not_a_string<E: de::Error>(kind: &str) -> E {
    E::custom(format_args!(
        "invalid type: {kind}, expected a string (secret values are not shown; quote it in the config file)"
    ))
}

impl<'de> Visitor<'de> for SecretVisitor {
    type Value = Secret;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Secret, E> {
        Ok(Secret::new(v))
    }

    fn visit_string<E: de::Error>(self, v: String) -> std::result::Result<Secret, E> {
        Ok(Secret(v))
    }

    fn visit_char<E: de::Error>(self, v: char) -> std::result::Result<Secret, E> {
        Ok(Secret(v.to_string()))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> std::result::Result<Secret, E> {
        Err(not_a_string("a boolean"))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> std::result::Result<Secret, E> {
        Err(not_a_string("a number"))
    }

    fn visit_i128<E: de::Error>(self, _: i128) -> std::result::Result<Secret, E> {
        Err(not_a_string("a number"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> std::result::Result<Secret, E> {
        Err(not_a_string("a number"))
    }

    fn visit_u128<E: de::Error>(self, _: u128) -> std::result::Result<Secret, E> {
        Err(not_a_string("a number"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> std::result::Result<Secret, E> {
        Err(not_a_string("a number"))
    }

    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> std::result::Result<Secret, E> {
        Err(not_a_string("bytes"))
    }
}

/// How a secret is written in config:
/// - `file:/path/to/secret`: read at resolve time, one trailing newline trimmed;
/// - `enc:v1:<base64>`: AES-256-GCM, decrypted with the master key at resolve time;
/// - anything else: a literal.
///
/// Deserializing only classifies (it never fails on syntax, so config
/// validation can report every problem via [`SecretRef::validate`]). Debug
/// shows the kind only; a file path is not secret.
#[derive(Clone, Deserialize)]
#[serde(from = "Secret")]
pub enum SecretRef {
    Literal(Secret),
    File(PathBuf),
    /// The whole `enc:...` text.
    Encrypted(String),
}

impl From<Secret> for SecretRef {
    fn from(raw: Secret) -> Self {
        if let Some(path) = raw.expose().strip_prefix(FILE_PREFIX) {
            SecretRef::File(PathBuf::from(path))
        } else if raw.expose().starts_with(ENC_PREFIX) {
            SecretRef::Encrypted(raw.expose().to_owned())
        } else {
            SecretRef::Literal(raw)
        }
    }
}

impl From<String> for SecretRef {
    fn from(raw: String) -> Self {
        SecretRef::from(Secret(raw))
    }
}

impl From<&str> for SecretRef {
    fn from(raw: &str) -> Self {
        SecretRef::from(Secret::new(raw))
    }
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Literal(_) => f.write_str("SecretRef::Literal(***)"),
            SecretRef::File(path) => write!(f, "SecretRef::File({path:?})"),
            SecretRef::Encrypted(_) => f.write_str("SecretRef::Encrypted(***)"),
        }
    }
}

/// For showing effective config: the same information as Debug.
impl Serialize for SecretRef {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            SecretRef::Literal(_) => serializer.serialize_str(REDACTED),
            SecretRef::File(path) => {
                serializer.collect_str(&format_args!("{FILE_PREFIX}{}", path.display()))
            }
            SecretRef::Encrypted(_) => {
                serializer.collect_str(&format_args!("{ENC_PREFIX}{REDACTED}"))
            }
        }
    }
}

impl SecretRef {
    /// Syntax only, no IO; used by config validation. The message never
    /// contains the value.
    pub fn validate(&self) -> std::result::Result<(), String> {
        match self {
            SecretRef::Literal(_) => Ok(()),
            SecretRef::File(path) => check_file_path(path).map_err(|e| e.to_string()),
            SecretRef::Encrypted(value) => Envelope::parse(value)
                .map(|_| ())
                .map_err(|e| e.to_string()),
        }
    }

    pub fn is_literal(&self) -> bool {
        match self {
            SecretRef::Literal(_) => true,
            SecretRef::File(_) | SecretRef::Encrypted(_) => false,
        }
    }

    /// Reads the file or decrypts. `key` is only needed for encrypted values;
    /// pass what [`MasterKey::from_env`] returned.
    pub fn resolve(&self, key: Option<&MasterKey>) -> Result<Secret> {
        match self {
            SecretRef::Literal(secret) => Ok(secret.clone()),
            SecretRef::File(path) => read_secret_file(path),
            SecretRef::Encrypted(value) => {
                // Syntax first: a malformed value is wrong whatever the key.
                let envelope = Envelope::parse(value)?;
                let key = key.ok_or(Error::MissingMasterKey)?;
                envelope.open(key)
            }
        }
    }
}

fn check_file_path(path: &Path) -> Result<()> {
    if path.as_os_str().is_empty() {
        return Err(Error::InvalidReference(
            "`file:` reference has an empty path".to_owned(),
        ));
    }
    Ok(())
}

fn read_secret_file(path: &Path) -> Result<Secret> {
    check_file_path(path)?;
    let read_error = |error| Error::ReadFile {
        path: path.to_path_buf(),
        error,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    // Sizing the buffer up front avoids reallocations that would leave unwiped copies.
    let size_hint = file
        .metadata()
        .map(|m| m.len().min(MAX_SECRET_FILE_BYTES))
        .unwrap_or(0);
    let mut bytes = Vec::with_capacity(usize::try_from(size_hint).unwrap_or(0) + 1);
    if let Err(error) = file.take(MAX_SECRET_FILE_BYTES + 1).read_to_end(&mut bytes) {
        wipe(bytes);
        return Err(read_error(error));
    }
    if u64::try_from(bytes.len()).map_or(true, |len| len > MAX_SECRET_FILE_BYTES) {
        wipe(bytes);
        return Err(Error::FileTooLarge {
            path: path.to_path_buf(),
        });
    }
    let mut text = String::from_utf8(bytes).map_err(|e| {
        wipe(e.into_bytes());
        Error::FileNotUtf8 {
            path: path.to_path_buf(),
        }
    })?;
    // Files written by `echo` or editors end with one newline that is not part of the secret.
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(Secret(text))
}

/// The 32-byte key that encrypts `enc:` values. Debug prints `MasterKey(***)`;
/// the bytes are overwritten on drop.
pub struct MasterKey([u8; KEY_LEN]);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(***)")
    }
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        self.0.fill(0);
        std::hint::black_box(&mut self.0);
    }
}

impl MasterKey {
    /// A fresh random key from the OS.
    pub fn generate() -> Self {
        let mut key = [0u8; KEY_LEN];
        OsRng.fill_bytes(&mut key);
        MasterKey(key)
    }

    /// Reads [`MASTER_KEY_ENV`]. None when unset or blank; an error when set
    /// but malformed.
    pub fn from_env() -> Result<Option<Self>> {
        Self::from_env_value(std::env::var_os(MASTER_KEY_ENV).as_deref())
    }

    /// Split from `from_env` so tests need not mutate the process environment.
    fn from_env_value(value: Option<&OsStr>) -> Result<Option<Self>> {
        let Some(value) = value else {
            return Ok(None);
        };
        let Some(text) = value.to_str() else {
            return Err(Error::InvalidMasterKeyEnv("not valid UTF-8".to_owned()));
        };
        // An empty value is how optional secrets commonly arrive in containers.
        if text.trim().is_empty() {
            return Ok(None);
        }
        parse_key(text)
            .map(|key| Some(MasterKey(key)))
            .map_err(Error::InvalidMasterKeyEnv)
    }

    /// Base64 (standard alphabet, 44 chars) or hex (64 chars) of 32 bytes;
    /// surrounding whitespace is ignored.
    pub fn parse(text: &str) -> Result<Self> {
        parse_key(text)
            .map(MasterKey)
            .map_err(Error::InvalidMasterKey)
    }

    /// For `investigator secrets keygen`.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// First 8 hex digits of the key's SHA-256. Stored in encrypted values so a
    /// wrong key is named as such rather than reported as a bare auth failure.
    pub fn fingerprint(&self) -> String {
        hex::encode(self.fingerprint_bytes())
    }

    fn fingerprint_bytes(&self) -> [u8; FINGERPRINT_LEN] {
        let digest = Sha256::digest(self.0);
        let mut fingerprint = [0u8; FINGERPRINT_LEN];
        fingerprint.copy_from_slice(&digest[..FINGERPRINT_LEN]);
        fingerprint
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&Key::<Aes256Gcm>::from(self.0))
    }
}

/// The reason never quotes the text: it may be (most of) a real key.
fn parse_key(text: &str) -> std::result::Result<[u8; KEY_LEN], String> {
    let text = text.trim();
    let is_hex = text.len() == 2 * KEY_LEN && text.bytes().all(|b| b.is_ascii_hexdigit());
    let decoded = if is_hex {
        hex::decode(text).ok()
    } else {
        STANDARD.decode(text).ok()
    };
    let expected = "expected 32 bytes as base64 (44 characters) or hex (64 characters)";
    let Some(bytes) = decoded else {
        return Err(format!(
            "{expected}, got {} characters that are neither",
            text.chars().count()
        ));
    };
    let mut key = [0u8; KEY_LEN];
    let result = if bytes.len() == KEY_LEN {
        key.copy_from_slice(&bytes);
        Ok(key)
    } else {
        Err(format!("{expected}, got {} bytes", bytes.len()))
    };
    wipe(bytes);
    result
}

/// Encrypts `plaintext` as `enc:v1:<base64(fingerprint(4) || nonce(12) ||
/// ciphertext+tag)>`. Fails only if the OS random source does (or for
/// plaintexts beyond AES-GCM's 64 GiB limit).
pub fn encrypt(key: &MasterKey, plaintext: &str) -> Result<String> {
    let mut nonce = [0u8; NONCE_LEN];
    OsRng
        .try_fill_bytes(&mut nonce)
        .map_err(|_| Error::Encrypt("the OS random number generator failed"))?;
    let sealed = key
        .cipher()
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: plaintext.as_bytes(),
                aad: AAD,
            },
        )
        .map_err(|_| Error::Encrypt("the plaintext is too long"))?;
    let mut blob = Vec::with_capacity(FINGERPRINT_LEN + NONCE_LEN + sealed.len());
    blob.extend_from_slice(&key.fingerprint_bytes());
    blob.extend_from_slice(&nonce);
    blob.extend_from_slice(&sealed);
    Ok(format!("{ENC_V1_PREFIX}{}", STANDARD.encode(blob)))
}

/// Decrypts a value made by [`encrypt`].
pub fn decrypt(key: &MasterKey, value: &str) -> Result<Secret> {
    Envelope::parse(value)?.open(key)
}

/// A syntactically valid `enc:v1:` value, not yet authenticated.
struct Envelope {
    fingerprint: [u8; FINGERPRINT_LEN],
    nonce: [u8; NONCE_LEN],
    sealed: Vec<u8>,
}

impl Envelope {
    fn parse(value: &str) -> Result<Self> {
        let Some(rest) = value.strip_prefix(ENC_PREFIX) else {
            return Err(Error::Malformed(
                "not an encrypted value (expected `enc:v1:<base64>`)",
            ));
        };
        // The unknown version is not echoed: a mistyped value could be a plaintext secret.
        let Some(payload) = rest.strip_prefix("v1:") else {
            return Err(Error::Malformed(
                "unsupported format version (this build reads `enc:v1:<base64>`)",
            ));
        };
        let Ok(blob) = STANDARD.decode(payload) else {
            return Err(Error::Malformed(
                "the part after `enc:v1:` is not valid base64",
            ));
        };
        let header = FINGERPRINT_LEN + NONCE_LEN;
        if blob.len() < header + TAG_LEN {
            return Err(Error::Malformed(
                "too short to be an encrypted value (truncated?)",
            ));
        }
        let mut fingerprint = [0u8; FINGERPRINT_LEN];
        fingerprint.copy_from_slice(&blob[..FINGERPRINT_LEN]);
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&blob[FINGERPRINT_LEN..header]);
        Ok(Envelope {
            fingerprint,
            nonce,
            sealed: blob[header..].to_vec(),
        })
    }

    fn open(&self, key: &MasterKey) -> Result<Secret> {
        // The fingerprint is not authenticated, it only makes the common
        // mistake (wrong key) readable; GCM's tag still decides.
        if self.fingerprint != key.fingerprint_bytes() {
            return Err(Error::WrongKey {
                encrypted_with: hex::encode(self.fingerprint),
                current: key.fingerprint(),
            });
        }
        let plaintext = key
            .cipher()
            .decrypt(
                &Nonce::from(self.nonce),
                Payload {
                    msg: &self.sealed,
                    aad: AAD,
                },
            )
            .map_err(|_| Error::Tampered(key.fingerprint()))?;
        String::from_utf8(plaintext).map(Secret).map_err(|e| {
            wipe(e.into_bytes());
            Error::NotUtf8
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;

    const VALUE: &str = "hunter2-SUPERSECRET-9f8e7d";
    const HEX_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn key() -> MasterKey {
        match MasterKey::parse(HEX_KEY) {
            Ok(key) => key,
            Err(e) => panic!("test key: {e}"),
        }
    }

    fn assert_hidden(shown: &str) {
        assert!(!shown.contains(VALUE), "leaked: {shown}");
        assert!(!shown.contains("hunter2"), "leaked a part: {shown}");
        // As a whole word only: hex fingerprints may contain the digits.
        let length = VALUE.len().to_string();
        assert!(
            !shown
                .split(|c: char| !c.is_ascii_alphanumeric())
                .any(|word| word == length),
            "leaked the length: {shown}"
        );
    }

    #[derive(Debug, Serialize, Deserialize)]
    struct Config {
        password: Secret,
        token: SecretRef,
    }

    #[test]
    fn secret_never_shows() {
        let secret = Secret::new(VALUE);
        assert_eq!(format!("{secret:?}"), "***");
        assert_eq!(format!("{secret}"), "***");
        assert_eq!(format!("{secret:#?} {secret:>40}"), "*** ***");
        assert_eq!(
            serde_json::to_string(&secret).ok().as_deref(),
            Some("\"***\"")
        );
        assert_eq!(secret.expose(), VALUE);
        assert!(!secret.is_empty());
        assert!(Secret::new("").is_empty());
    }

    #[test]
    fn secret_deserializes_verbatim() {
        let parsed: std::result::Result<Secret, _> = serde_json::from_str("\"file:/x\"");
        assert_eq!(parsed.ok().as_ref().map(Secret::expose), Some("file:/x"));
    }

    #[test]
    fn secret_ref_never_shows() {
        let literal = SecretRef::from(VALUE);
        let encrypted = SecretRef::Encrypted(format!("enc:v1:{VALUE}"));
        let file = SecretRef::from("file:/run/secrets/pg");
        assert_eq!(format!("{literal:?}"), "SecretRef::Literal(***)");
        assert_eq!(format!("{encrypted:?}"), "SecretRef::Encrypted(***)");
        assert_eq!(format!("{file:?}"), "SecretRef::File(\"/run/secrets/pg\")");
        for shown in [
            serde_json::to_string(&literal),
            serde_json::to_string(&encrypted),
        ] {
            assert_hidden(&shown.unwrap_or_default());
        }
        assert_eq!(
            serde_json::to_string(&file).ok().as_deref(),
            Some("\"file:/run/secrets/pg\"")
        );
        assert_eq!(
            serde_json::to_string(&encrypted).ok().as_deref(),
            Some("\"enc:***\"")
        );
    }

    #[test]
    fn config_round_trip_hides_values() {
        let json = format!(r#"{{"password": "{VALUE}", "token": "{VALUE}"}}"#);
        let config: Config = match serde_json::from_str(&json) {
            Ok(config) => config,
            Err(e) => panic!("parse: {e}"),
        };
        assert_eq!(config.password.expose(), VALUE);
        assert!(config.token.is_literal());
        assert_hidden(&format!("{config:?} {config:#?}"));
        assert_hidden(&serde_json::to_string(&config).unwrap_or_default());
    }

    #[test]
    fn non_string_values_are_not_echoed_in_errors() {
        for raw in [
            "987654321",
            "9876.54321",
            "true",
            "-987654321",
            "98765432109876543210",
        ] {
            for field in ["password", "token"] {
                let other = if field == "password" {
                    "token"
                } else {
                    "password"
                };
                let json = format!(r#"{{"{field}": {raw}, "{other}": "x"}}"#);
                // From text, and from a parsed tree as config loading does (YAML -> Value -> struct).
                let from_text = serde_json::from_str::<Config>(&json).map(|_| ());
                let tree: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
                let from_tree = Config::deserialize(&tree).map(|_| ());
                for result in [from_text, from_tree] {
                    match result {
                        Ok(()) => panic!("{raw} accepted as a secret"),
                        Err(e) => {
                            let message = e.to_string();
                            let digits = raw.trim_start_matches('-');
                            assert!(!message.contains(digits), "{message}");
                            assert!(message.contains("expected a string"), "{message}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn secret_ref_classifies() {
        assert!(matches!(SecretRef::from("plain"), SecretRef::Literal(s) if s.expose() == "plain"));
        assert!(matches!(SecretRef::from(""), SecretRef::Literal(_)));
        assert!(matches!(SecretRef::from("File:/x"), SecretRef::Literal(_)));
        assert!(
            matches!(SecretRef::from("file:/a b"), SecretRef::File(p) if p == Path::new("/a b"))
        );
        assert!(
            matches!(SecretRef::from("enc:v1:AAAA"), SecretRef::Encrypted(v) if v == "enc:v1:AAAA")
        );
        assert!(matches!(SecretRef::from("enc:"), SecretRef::Encrypted(_)));
        let parsed: std::result::Result<SecretRef, _> = serde_json::from_str("\"file:/etc/x\"");
        assert!(matches!(parsed, Ok(SecretRef::File(p)) if p == Path::new("/etc/x")));
    }

    #[test]
    fn validate_checks_syntax_only() {
        let good = encrypt(&key(), VALUE).unwrap_or_default();
        assert_eq!(SecretRef::from(good.as_str()).validate(), Ok(()));
        assert_eq!(SecretRef::from("literal").validate(), Ok(()));
        assert_eq!(SecretRef::from("file:/does/not/exist").validate(), Ok(()));
        let cases = [
            ("file:", "empty path"),
            ("enc:", "unsupported format version"),
            (&format!("enc:{VALUE}"), "unsupported format version"),
            ("enc:v2:AAAA", "unsupported format version"),
            (&format!("enc:v1:{VALUE}!"), "not valid base64"),
            ("enc:v1:AAAA", "too short"),
            ("enc:v1:", "too short"),
        ];
        for (raw, expected) in cases {
            match SecretRef::from(raw).validate() {
                Ok(()) => panic!("{raw} validated"),
                Err(message) => {
                    assert!(message.contains(expected), "{raw}: {message}");
                    assert_hidden(&message);
                }
            }
        }
    }

    #[test]
    fn round_trip() {
        let key = key();
        let sealed = encrypt(&key, VALUE).unwrap_or_default();
        assert!(sealed.starts_with("enc:v1:"), "{sealed}");
        assert_hidden(&sealed);
        // Random nonces: encrypting twice gives different values.
        assert_ne!(Some(&sealed), encrypt(&key, VALUE).ok().as_ref());
        let opened = decrypt(&key, &sealed).map(|s| s.expose().to_owned());
        assert_eq!(opened.ok().as_deref(), Some(VALUE));
        let resolved = SecretRef::from(sealed.as_str()).resolve(Some(&key));
        assert_eq!(resolved.ok().as_ref().map(Secret::expose), Some(VALUE));
    }

    #[test]
    fn layout_is_fingerprint_nonce_ciphertext() {
        let key = key();
        let sealed = encrypt(&key, VALUE).unwrap_or_default();
        let blob = STANDARD
            .decode(sealed.trim_start_matches("enc:v1:"))
            .unwrap_or_default();
        assert_eq!(blob.len(), 4 + 12 + VALUE.len() + 16);
        assert_eq!(hex::encode(&blob[..4]), key.fingerprint());
    }

    #[test]
    fn wrong_key_names_both_fingerprints() {
        let right = key();
        let wrong = MasterKey::generate();
        let sealed = encrypt(&right, VALUE).unwrap_or_default();
        let message = match decrypt(&wrong, &sealed) {
            Ok(_) => panic!("decrypted with the wrong key"),
            Err(e) => e.to_string(),
        };
        assert_eq!(
            message,
            format!(
                "secret was encrypted with key {}, but INVESTIGATOR_MASTER_KEY is key {}",
                right.fingerprint(),
                wrong.fingerprint()
            )
        );
        assert_hidden(&message);
    }

    #[test]
    fn tampering_is_detected() {
        let key = key();
        let sealed = encrypt(&key, VALUE).unwrap_or_default();
        let blob = STANDARD
            .decode(sealed.trim_start_matches("enc:v1:"))
            .unwrap_or_default();
        // Every byte after the fingerprint is covered by the tag.
        for i in 4..blob.len() {
            let mut bad = blob.clone();
            bad[i] ^= 0x01;
            let value = format!("enc:v1:{}", STANDARD.encode(&bad));
            match decrypt(&key, &value) {
                Ok(_) => panic!("byte {i} flipped unnoticed"),
                Err(e) => {
                    assert!(matches!(e, Error::Tampered(_)), "byte {i}: {e}");
                    assert_hidden(&e.to_string());
                }
            }
        }
        // Dropping the tag's last byte fails too, as does a lost header.
        let cut = format!("enc:v1:{}", STANDARD.encode(&blob[..blob.len() - 1]));
        assert!(matches!(decrypt(&key, &cut), Err(Error::Tampered(_))));
        let headless = format!("enc:v1:{}", STANDARD.encode(&blob[..20]));
        assert!(decrypt(&key, &headless).is_err());
    }

    #[test]
    fn malformed_values_are_errors() {
        let key = key();
        for raw in [
            "",
            "plain",
            "enc:",
            "enc:v1",
            "enc:v1:",
            "enc:v1:====",
            "enc:v1:AAAA",
            "enc:v1:not base64!",
            "enc:v9:AAAA",
            "ENC:v1:AAAA",
        ] {
            match decrypt(&key, raw) {
                Ok(_) => panic!("{raw:?} decrypted"),
                Err(e) => assert!(matches!(e, Error::Malformed(_)), "{raw:?}: {e}"),
            }
        }
    }

    #[test]
    fn encrypted_needs_a_key() {
        let sealed = encrypt(&key(), VALUE).unwrap_or_default();
        let error = SecretRef::from(sealed.as_str()).resolve(None).err();
        assert!(matches!(error, Some(Error::MissingMasterKey)));
        // A malformed value is reported as such even without a key.
        let error = SecretRef::from("enc:v1:AAAA").resolve(None).err();
        assert!(matches!(error, Some(Error::Malformed(_))));
    }

    #[test]
    fn literal_resolves_without_a_key() {
        let resolved = SecretRef::from(VALUE).resolve(None);
        assert_eq!(resolved.ok().as_ref().map(Secret::expose), Some(VALUE));
    }

    fn secret_file(contents: &[u8]) -> tempfile::NamedTempFile {
        let mut file = match tempfile::NamedTempFile::new() {
            Ok(file) => file,
            Err(e) => panic!("tempfile: {e}"),
        };
        if let Err(e) = file.write_all(contents) {
            panic!("write: {e}");
        }
        file
    }

    fn resolve_file(contents: &[u8]) -> Result<Secret> {
        let file = secret_file(contents);
        SecretRef::from(format!("file:{}", file.path().display())).resolve(None)
    }

    #[test]
    fn file_secrets_trim_one_newline() {
        let cases: &[(&[u8], &str)] = &[
            (b"s3cret\n", "s3cret"),
            (b"s3cret", "s3cret"),
            (b"s3cret\r\n", "s3cret"),
            (b"s3cret\n\n", "s3cret\n"),
            (b" s3cret \n", " s3cret "),
            (b"line1\nline2\n", "line1\nline2"),
            (b"\n", ""),
            (b"", ""),
        ];
        for (contents, expected) in cases {
            let resolved = resolve_file(contents).map(|s| s.expose().to_owned());
            assert_eq!(resolved.ok().as_deref(), Some(*expected), "{contents:?}");
        }
    }

    #[test]
    fn file_errors_name_the_path_not_the_value() {
        let missing = SecretRef::from("file:/nonexistent/dir/pg-password").resolve(None);
        match missing {
            Ok(_) => panic!("missing file resolved"),
            Err(e) => {
                assert!(matches!(e, Error::ReadFile { .. }));
                assert!(
                    e.to_string().contains("/nonexistent/dir/pg-password"),
                    "{e}"
                );
            }
        }
        let mut not_utf8 = VALUE.as_bytes().to_vec();
        not_utf8.push(0xff);
        match resolve_file(&not_utf8) {
            Ok(_) => panic!("invalid UTF-8 resolved"),
            Err(e) => {
                assert!(matches!(e, Error::FileNotUtf8 { .. }), "{e}");
                assert_hidden(&e.to_string());
            }
        }
        let big = vec![b'a'; usize::try_from(MAX_SECRET_FILE_BYTES).unwrap_or(0) + 1];
        assert!(matches!(
            resolve_file(&big),
            Err(Error::FileTooLarge { .. })
        ));
        let dir = match tempfile::tempdir() {
            Ok(dir) => dir,
            Err(e) => panic!("tempdir: {e}"),
        };
        let is_dir = SecretRef::File(dir.path().to_path_buf()).resolve(None);
        assert!(matches!(is_dir, Err(Error::ReadFile { .. })));
        let empty = SecretRef::from("file:").resolve(None);
        assert!(matches!(empty, Err(Error::InvalidReference(_))));
    }

    #[test]
    fn master_key_parses_base64_and_hex() {
        let generated = MasterKey::generate();
        let encoded = generated.to_base64();
        assert_eq!(encoded.len(), 44);
        let from_b64 = MasterKey::parse(&encoded).map(|k| k.fingerprint());
        assert_eq!(from_b64.ok(), Some(generated.fingerprint()));
        let padded = MasterKey::parse(&format!("  {encoded}\n")).map(|k| k.fingerprint());
        assert_eq!(padded.ok(), Some(generated.fingerprint()));

        let from_hex = key();
        let upper = MasterKey::parse(&HEX_KEY.to_uppercase()).map(|k| k.fingerprint());
        assert_eq!(upper.ok(), Some(from_hex.fingerprint()));
        let hex_bytes = hex::decode(HEX_KEY).unwrap_or_default();
        let same = MasterKey::parse(&STANDARD.encode(hex_bytes)).map(|k| k.fingerprint());
        assert_eq!(same.ok(), Some(from_hex.fingerprint()));
        // The fingerprint is the first 4 bytes of SHA-256 of the key.
        let digest = Sha256::digest(hex::decode(HEX_KEY).unwrap_or_default());
        assert_eq!(from_hex.fingerprint(), hex::encode(&digest[..4]));
        assert_eq!(from_hex.fingerprint().len(), 8);
        assert_ne!(from_hex.fingerprint(), generated.fingerprint());
    }

    #[test]
    fn master_key_rejects_wrong_lengths_without_echoing() {
        let short_b64 = STANDARD.encode([7u8; 31]);
        let long_hex = format!("{HEX_KEY}20");
        for bad in [
            "",
            "not a key",
            short_b64.as_str(),
            &HEX_KEY[..62],
            long_hex.as_str(),
            "zz0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
        ] {
            match MasterKey::parse(bad) {
                Ok(_) => panic!("{bad:?} accepted"),
                Err(e) => {
                    let message = e.to_string();
                    assert!(
                        message.starts_with("invalid master key: expected 32 bytes"),
                        "{message}"
                    );
                    if bad.len() > 4 {
                        assert!(!message.contains(&bad[2..bad.len() - 2]), "{message}");
                    }
                }
            }
        }
        assert!(MasterKey::parse(&short_b64)
            .err()
            .is_some_and(|e| e.to_string().ends_with("got 31 bytes")));
    }

    #[test]
    fn master_key_from_env_value() {
        assert!(matches!(MasterKey::from_env_value(None), Ok(None)));
        assert!(matches!(
            MasterKey::from_env_value(Some(OsStr::new(""))),
            Ok(None)
        ));
        assert!(matches!(
            MasterKey::from_env_value(Some(OsStr::new(" \n"))),
            Ok(None)
        ));
        let parsed = MasterKey::from_env_value(Some(OsStr::new(HEX_KEY)));
        assert_eq!(
            parsed.ok().flatten().map(|k| k.fingerprint()),
            Some(key().fingerprint())
        );
        match MasterKey::from_env_value(Some(OsStr::new("short"))) {
            Ok(_) => panic!("short key accepted"),
            Err(e) => {
                assert!(
                    e.to_string()
                        .starts_with("INVESTIGATOR_MASTER_KEY is set but invalid: "),
                    "{e}"
                );
                assert!(!e.to_string().contains("short"), "{e}");
            }
        }
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            let not_utf8 = MasterKey::from_env_value(Some(OsStr::from_bytes(&[0xff, 0xfe])));
            assert!(matches!(not_utf8, Err(Error::InvalidMasterKeyEnv(_))));
        }
        // Reading the real environment works whatever it holds.
        let _ = MasterKey::from_env();
    }

    #[test]
    fn master_key_debug_hides_it() {
        let key = key();
        let shown = format!("{key:?} {key:#?}");
        assert_eq!(shown, "MasterKey(***) MasterKey(***)");
    }

    #[test]
    fn secret_equality() {
        assert_eq!(Secret::new(VALUE), Secret::new(VALUE.to_owned()));
        assert_ne!(Secret::new(VALUE), Secret::new("hunter2"));
        assert_ne!(Secret::new("a"), Secret::new("b"));
        assert_ne!(Secret::new(""), Secret::new("\0"));
        assert_eq!(Secret::new(""), Secret::new(""));
        assert!(!constant_time_eq(b"ab", b"abc"));
        assert!(constant_time_eq(b"abc", b"abc"));
    }

    #[test]
    fn clones_survive_drop_of_the_original() {
        let original = Secret::new(VALUE);
        let copy = original.clone();
        drop(original);
        assert_eq!(copy.expose(), VALUE);
    }

    proptest! {
        #[test]
        fn decrypt_never_panics(value in any::<String>()) {
            let _ = decrypt(&key(), &value);
            let _ = SecretRef::from(value.as_str()).validate();
        }

        #[test]
        fn decrypt_never_panics_on_enc_values(
            bytes in proptest::collection::vec(any::<u8>(), 0..80),
            prefix_fingerprint in any::<bool>(),
        ) {
            let key = key();
            let mut blob = Vec::new();
            if prefix_fingerprint {
                blob.extend_from_slice(&key.fingerprint_bytes());
            }
            blob.extend_from_slice(&bytes);
            let value = format!("enc:v1:{}", STANDARD.encode(&blob));
            prop_assert!(decrypt(&key, &value).is_err());
        }

        #[test]
        fn encrypt_decrypt_round_trips(plaintext in any::<String>()) {
            let key = key();
            let sealed = encrypt(&key, &plaintext);
            prop_assert!(sealed.is_ok());
            let sealed = sealed.unwrap_or_default();
            prop_assert_eq!(SecretRef::from(sealed.as_str()).validate(), Ok(()));
            let opened = decrypt(&key, &sealed).map(|s| s.expose().to_owned());
            prop_assert_eq!(opened.ok(), Some(plaintext));
        }

        #[test]
        fn master_key_parse_never_panics(text in any::<String>()) {
            let _ = MasterKey::parse(&text);
        }
    }
}
