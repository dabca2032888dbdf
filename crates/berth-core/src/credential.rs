//! Who may call berth: bearer tokens, the credentials stored for them, and their roles.
//!
//! A token is `berth_<id>_<secret>`: a 16-hex-digit id, by which its credential is found,
//! and a 64-hex-digit secret (256 random bits). The store keeps only the SHA-256 digest of
//! the secret; [`Credential::admits`] compares digests in constant time. A slow password
//! hash would add nothing: the secret is random, not chosen by a person, so there is no
//! dictionary to guess from, and every request pays for the check.
//!
//! What each [`Role`] may do is decided by the HTTP service; this module only says who a
//! token speaks for.

use crate::{TenantName, WorkerId};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::fmt;
use subtle::ConstantTimeEq;

/// What a token starts with, so that a leaked one is recognisable (e.g. by secret scanners).
pub const TOKEN_PREFIX: &str = "berth_";
/// The length of a token id, in hex digits.
pub const TOKEN_ID_LEN: usize = 16;
/// The length of a token secret, in hex digits.
pub const TOKEN_SECRET_LEN: usize = 64;
/// The longest name a credential may be given, in bytes.
pub const MAX_CREDENTIAL_NAME_LEN: usize = 128;

/// Why a token or a stored credential is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// The text is not `berth_<16 hex>_<64 hex>`.
    #[error(
        "the token is malformed: expected berth_ followed by 16 and 64 lowercase hex digits \
         joined by _ (as `berth token create` prints it)"
    )]
    MalformedToken,
    /// A token id is not 16 lowercase hex digits.
    #[error("token id {0:?} is not 16 lowercase hex digits")]
    BadId(String),
    /// A stored digest is not 64 lowercase hex digits.
    #[error("the stored digest is not 64 lowercase hex digits")]
    BadDigest,
    /// A credential's name is too long or holds control characters.
    #[error("the name must be at most {MAX_CREDENTIAL_NAME_LEN} bytes without control characters")]
    BadName,
}

/// The id of a token: 16 lowercase hex digits, shown by `berth token list` and used to
/// revoke it. Not secret.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TokenId(String);

impl TokenId {
    /// Parses a token id.
    pub fn new(text: impl Into<String>) -> Result<TokenId, CredentialError> {
        let text = text.into();
        if text.len() == TOKEN_ID_LEN && is_lower_hex(&text) {
            Ok(TokenId(text))
        } else {
            Err(CredentialError::BadId(text))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TokenId {
    type Error = CredentialError;
    fn try_from(text: String) -> Result<TokenId, CredentialError> {
        TokenId::new(text)
    }
}

impl From<TokenId> for String {
    fn from(id: TokenId) -> String {
        id.0
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who a token speaks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Role {
    /// Everything: the fleet, every tenant's containers, tokens.
    Admin,
    /// Reading `/metrics` only.
    Metrics,
    /// One tenant's containers: submit, list, read, follow and cancel them.
    Client {
        /// The tenant.
        tenant: TenantName,
    },
    /// Registering a new worker, which answers with that worker's own credential.
    Join,
    /// One worker's side of the worker protocol, for itself only.
    Worker {
        /// The worker.
        worker: WorkerId,
    },
}

impl Role {
    /// The role's kind as one word (`admin`, `metrics`, `client`, `join`, `worker`).
    pub fn kind(&self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Metrics => "metrics",
            Role::Client { .. } => "client",
            Role::Join => "join",
            Role::Worker { .. } => "worker",
        }
    }
}

/// A bearer token: what a caller presents. Its `Debug` shows only the id.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    id: TokenId,
    secret: String,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl Token {
    /// A token from random bytes (8 for the id, 32 for the secret).
    pub fn from_random(id: [u8; 8], secret: [u8; 32]) -> Token {
        Token {
            id: TokenId(hex(&id)),
            secret: hex(&secret),
        }
    }

    /// Parses a token as presented (`berth_<id>_<secret>`; surrounding whitespace, e.g.
    /// a token file's newline, is ignored).
    pub fn parse(text: &str) -> Result<Token, CredentialError> {
        let rest = text
            .trim()
            .strip_prefix(TOKEN_PREFIX)
            .ok_or(CredentialError::MalformedToken)?;
        let (id, secret) = rest
            .split_once('_')
            .ok_or(CredentialError::MalformedToken)?;
        let id = TokenId::new(id).map_err(|_| CredentialError::MalformedToken)?;
        if secret.len() != TOKEN_SECRET_LEN || !is_lower_hex(secret) {
            return Err(CredentialError::MalformedToken);
        }
        Ok(Token {
            id,
            secret: secret.to_owned(),
        })
    }

    /// The token's id.
    pub fn id(&self) -> &TokenId {
        &self.id
    }

    /// The digest the store keeps for this token.
    pub fn digest(&self) -> SecretDigest {
        SecretDigest(Sha256::digest(self.secret.as_bytes()).into())
    }

    /// The token as it is presented (`berth_<id>_<secret>`): the secret itself, to be shown
    /// once and written only to files the caller alone can read.
    pub fn expose(&self) -> String {
        format!("{TOKEN_PREFIX}{}_{}", self.id, self.secret)
    }
}

/// The SHA-256 digest of a token's secret: what the store keeps instead of the secret.
/// Stored as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SecretDigest([u8; 32]);

impl fmt::Debug for SecretDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretDigest(..)")
    }
}

impl TryFrom<String> for SecretDigest {
    type Error = CredentialError;
    fn try_from(text: String) -> Result<SecretDigest, CredentialError> {
        if text.len() != 64 || !is_lower_hex(&text) {
            return Err(CredentialError::BadDigest);
        }
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
                .map_err(|_| CredentialError::BadDigest)?;
        }
        Ok(SecretDigest(bytes))
    }
}

impl From<SecretDigest> for String {
    fn from(digest: SecretDigest) -> String {
        hex(&digest.0)
    }
}

/// What the store keeps for one token: its id, role, the digest of its secret, a name for
/// people and when it was created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    /// The token's id.
    pub id: TokenId,
    /// Who the token speaks for.
    pub role: Role,
    /// The digest of the token's secret.
    pub digest: SecretDigest,
    /// A name for people (e.g. `ci`, `worker gpu-3`); may be empty.
    #[serde(default)]
    pub name: String,
    /// When it was created, in ms since the Unix epoch.
    pub created_ms: u64,
    /// Whether it is a bootstrap admin token: one a server is started with
    /// (`BERTH_ADMIN_TOKEN` or a token file) and stores again at every start, so revoking it
    /// through the API would not last; it is replaced where it is configured.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bootstrap: bool,
}

impl Credential {
    /// The credential for `token`, speaking for `role`. Fails if `name` is too long or
    /// holds control characters.
    pub fn issue(
        token: &Token,
        role: Role,
        name: impl Into<String>,
        created_ms: u64,
    ) -> Result<Credential, CredentialError> {
        let name = name.into();
        check_name(&name)?;
        Ok(Credential {
            id: token.id.clone(),
            role,
            digest: token.digest(),
            name,
            created_ms,
            bootstrap: false,
        })
    }

    /// Whether `token` is this credential's: same id and, compared in constant time, the
    /// same secret digest.
    pub fn admits(&self, token: &Token) -> bool {
        self.id == token.id && bool::from(self.digest.0.ct_eq(&token.digest().0))
    }
}

/// Checks a credential's name: at most [`MAX_CREDENTIAL_NAME_LEN`] bytes, no control
/// characters.
pub fn check_name(name: &str) -> Result<(), CredentialError> {
    if name.len() > MAX_CREDENTIAL_NAME_LEN || name.chars().any(char::is_control) {
        return Err(CredentialError::BadName);
    }
    Ok(())
}

fn is_lower_hex(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    fn token(seed: u8) -> Token {
        Token::from_random([seed; 8], [seed.wrapping_add(1); 32])
    }

    #[test]
    fn a_token_round_trips_through_its_text() {
        let t = token(7);
        let text = t.expose();
        assert!(text.starts_with("berth_0707070707070707_0808"));
        assert_eq!(text.len(), TOKEN_PREFIX.len() + 16 + 1 + 64);
        assert_eq!(Token::parse(&format!("{text}\n")).unwrap(), t);
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let good = token(1).expose();
        for bad in [
            "",
            "berth_",
            &good[1..],
            &good[..good.len() - 1],
            &good.replace('_', "-"),
            &good.to_uppercase(),
            &format!("{good}0"),
            "berth_0101010101010101_zz",
        ] {
            assert_eq!(
                Token::parse(bad),
                Err(CredentialError::MalformedToken),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_credential_admits_its_own_token_only() {
        let t = token(3);
        let credential = Credential::issue(&t, Role::Admin, "ops", 1).unwrap();
        assert!(credential.admits(&t));
        assert!(!credential.admits(&token(4)));
        let same_id_other_secret = Token::from_random([3; 8], [9; 32]);
        assert!(!credential.admits(&same_id_other_secret));
    }

    #[test]
    fn a_credential_stores_no_secret_and_round_trips() {
        let t = token(5);
        let role = Role::Client {
            tenant: TenantName::new("acme").unwrap(),
        };
        let credential = Credential::issue(&t, role, "ci", 42).unwrap();
        let json = serde_json::to_string(&credential).unwrap();
        assert!(!json.contains(&t.expose()[TOKEN_PREFIX.len() + 17..]));
        assert!(json.contains(r#""kind":"client""#), "{json}");
        let back: Credential = serde_json::from_str(&json).unwrap();
        assert_eq!(back, credential);
        assert!(back.admits(&t));
        assert!(!format!("{t:?}{credential:?}").contains(&t.expose()));
    }

    #[test]
    fn ids_kinds_and_debug_output_say_what_they_are() {
        assert_eq!(
            TokenId::new("0123456789abcdef").unwrap().as_str(),
            "0123456789abcdef"
        );
        let tenant = TenantName::new("t").unwrap();
        let worker = crate::WorkerId::new("w").unwrap();
        let kinds: Vec<&str> = [
            Role::Admin,
            Role::Metrics,
            Role::Client { tenant },
            Role::Join,
            Role::Worker { worker },
        ]
        .iter()
        .map(Role::kind)
        .collect();
        assert_eq!(kinds, ["admin", "metrics", "client", "join", "worker"]);
        let t = token(8);
        assert_eq!(
            format!("{t:?}"),
            format!(
                "Token {{ id: TokenId({:?}), secret: \"<redacted>\" }}",
                t.id().as_str()
            )
        );
        assert_eq!(format!("{:?}", t.digest()), "SecretDigest(..)");
    }

    #[test]
    fn names_are_checked() {
        let t = token(6);
        assert!(Credential::issue(&t, Role::Join, "a\nb", 0).is_err());
        assert!(Credential::issue(&t, Role::Join, "x".repeat(129), 0).is_err());
        assert!(Credential::issue(&t, Role::Join, "x".repeat(128), 0).is_ok());
    }

    #[test]
    fn corrupt_stored_digests_and_ids_are_refused() {
        assert!(SecretDigest::try_from("ab".to_owned()).is_err());
        assert!(SecretDigest::try_from("g".repeat(64)).is_err());
        assert!(TokenId::new("0123456789abcdeF").is_err());
        assert!(TokenId::new("0123456789abcdef").is_ok());
    }
}
