//! API credentials on Redis: one hash, `P:{a}:credentials`, token id -> credential JSON.
//! Each operation is one command, so each is atomic on its own.

use super::reply;
use super::store::RedisStore;
use crate::Result;
use berth_core::{Credential, TokenId};
use redis::{Value, cmd};

impl RedisStore {
    /// HSET of one credential.
    pub(super) async fn store_credential(&self, credential: &Credential) -> Result<()> {
        let key = self.keys.credentials();
        let json = serde_json::to_string(credential)?;
        let mut hset = cmd("HSET");
        hset.arg(&key).arg(credential.id.as_str()).arg(json);
        self.command(&key, hset).await?;
        Ok(())
    }

    /// HGET of one credential; a corrupt entry is logged and read as absent.
    pub(super) async fn read_credential(&self, id: &TokenId) -> Result<Option<Credential>> {
        let key = self.keys.credentials();
        let mut hget = cmd("HGET");
        hget.arg(&key).arg(id.as_str());
        let value = self.command(&key, hget).await?;
        if value == Value::Nil {
            return Ok(None);
        }
        let text = reply::expect_text("a credential", &value)?;
        Ok(decode(&key, id.as_str(), &text))
    }

    /// HGETALL of every credential; corrupt entries are logged and left out.
    pub(super) async fn read_credentials(&self) -> Result<Vec<Credential>> {
        let key = self.keys.credentials();
        let mut hgetall = cmd("HGETALL");
        hgetall.arg(&key);
        let fields = reply::fields(self.command(&key, hgetall).await?)?;
        let mut credentials: Vec<Credential> = fields
            .iter()
            .filter_map(|(id, text)| decode(&key, id, text))
            .collect();
        credentials.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(credentials)
    }

    /// HDEL of the given ids, in one command.
    pub(super) async fn delete_credentials(&self, ids: &[TokenId]) -> Result<usize> {
        if ids.is_empty() {
            return Ok(0);
        }
        let key = self.keys.credentials();
        let mut hdel = cmd("HDEL");
        hdel.arg(&key);
        for id in ids {
            hdel.arg(id.as_str());
        }
        let removed = reply::expect_text("HDEL's count", &self.command(&key, hdel).await?)?;
        removed
            .parse()
            .map_err(|_| reply::unexpected("HDEL's count", &Value::SimpleString(removed)))
    }
}

/// A stored credential, or `None` (logged) if it does not read back or is filed under
/// another id than its own.
fn decode(key: &str, field: &str, text: &str) -> Option<Credential> {
    match serde_json::from_str::<Credential>(text) {
        Ok(credential) if credential.id.as_str() == field => Some(credential),
        Ok(_) => {
            tracing::warn!(
                key,
                field,
                "a credential is filed under another id; its token is refused"
            );
            None
        }
        Err(error) => {
            tracing::warn!(key, field, %error, "a credential does not read back; its token is refused");
            None
        }
    }
}
