//! Access tokens: who may read or write which spaces.
//!
//! ```text
//!   strata_<id>_<secret>          what a client sends (HTTP Bearer, pg-wire password, WebSocket)
//!          │     └─ sha256 ─▶ strata_tokens.secret_hash   the secret itself is never stored
//!          └─ strata_tokens.id    looked up, then the hashes compared in constant time
//! ```
//!
//! A token grants `read` or `write` (which includes read) on named spaces, or
//! on every space with `*`. A request outside its grants is refused before it
//! does anything.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::connectors::KeyValue;
use crate::error::{CatalogError, Result};
use crate::store::CatalogStore;

/// What a grant allows on its spaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    Read,
    /// Read, and register, drop and insert into tables.
    Write,
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Access::Read => "read",
            Access::Write => "write",
        })
    }
}

/// `access` on `space` (`*`: every space).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub space: String,
    pub access: Access,
}

/// The space every grant on `*` covers.
pub const EVERY_SPACE: &str = "*";

/// A token's identity and grants, as checked on every request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    pub token_id: String,
    pub name: String,
    pub grants: Vec<Grant>,
}

impl Principal {
    /// Whether this token may do `access` on `space`.
    pub fn allows(&self, space: &str, access: Access) -> bool {
        self.grants
            .iter()
            .any(|g| (g.space == EVERY_SPACE || g.space == space) && g.access >= access)
    }

    /// Refuses `access` on `space` unless granted, naming the token, its grants and the fix.
    pub fn require(&self, space: &str, access: Access) -> Result<()> {
        if self.allows(space, access) {
            return Ok(());
        }
        Err(CatalogError::Forbidden {
            message: format!(
                "token '{}' may not {access} space '{space}' (it grants {})",
                self.name,
                self.describe_grants()
            ),
            hint: format!(
                "use a token with that grant: strata token create --name NAME --space {space} --{access}"
            ),
        })
    }

    /// "read shop, write ods", or "nothing".
    pub fn describe_grants(&self) -> String {
        if self.grants.is_empty() {
            return "nothing".to_string();
        }
        self.grants
            .iter()
            .map(|g| format!("{} {}", g.access, g.space))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Every space, read and write: what `strata` itself acts as on the command line.
    pub fn admin() -> Self {
        Self {
            token_id: "local".to_string(),
            name: "local".to_string(),
            grants: vec![Grant {
                space: EVERY_SPACE.to_string(),
                access: Access::Write,
            }],
        }
    }
}

/// A stored token, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub grants: Vec<Grant>,
    pub created_at_ms: i64,
    pub revoked: bool,
}

/// A token just made: the only time its secret is seen.
#[derive(Debug, Clone, Serialize)]
pub struct NewToken {
    pub info: TokenInfo,
    pub secret: String,
}

const PREFIX: &str = "strata_";

fn hash(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Compares two equal-length strings without stopping at the first difference.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn random_hex(bytes: usize) -> String {
    let mut out = String::with_capacity(bytes * 2);
    while out.len() < bytes * 2 {
        out.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    out.truncate(bytes * 2);
    out
}

fn invalid_token() -> CatalogError {
    CatalogError::Unauthorized {
        message: "the token is not valid (unknown, revoked or mistyped)".to_string(),
    }
}

impl CatalogStore {
    /// Makes a token named `name` with `grants`.
    pub async fn create_token(&self, name: &str, grants: Vec<Grant>) -> Result<NewToken> {
        if grants.is_empty() {
            return Err(CatalogError::Discovery {
                message: format!("token '{name}' would grant nothing"),
                hint: Some("pass --space SPACE with --read or --write".to_string()),
            });
        }
        let id = random_hex(6);
        let secret = random_hex(24);
        let created_at_ms = crate::store::now_ms();
        let grants_json = serde_json::to_string(&grants).expect("grants serialise");
        self.execute_values(
            "INSERT INTO strata_tokens (id, name, secret_hash, grants, created_at, revoked) VALUES (?, ?, ?, ?, ?, 0)",
            &[
                KeyValue::Text(id.clone()),
                KeyValue::Text(name.to_string()),
                KeyValue::Text(hash(&secret)),
                KeyValue::Text(grants_json),
                KeyValue::Int(created_at_ms),
            ],
        )
        .await?;
        Ok(NewToken {
            secret: format!("{PREFIX}{id}_{secret}"),
            info: TokenInfo {
                id,
                name: name.to_string(),
                grants,
                created_at_ms,
                revoked: false,
            },
        })
    }

    /// The principal a presented token stands for, or `Unauthorized`.
    pub async fn authenticate(&self, presented: &str) -> Result<Principal> {
        let (id, secret) = presented
            .trim()
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once('_'))
            .ok_or_else(invalid_token)?;
        let token = self
            .tokens()
            .await?
            .into_iter()
            .find(|t| t.0.id == id)
            .ok_or_else(invalid_token)?;
        let (info, stored_hash) = token;
        if info.revoked || !same(&hash(secret), &stored_hash) {
            return Err(invalid_token());
        }
        Ok(Principal {
            token_id: info.id,
            name: info.name,
            grants: info.grants,
        })
    }

    /// Every token, newest last.
    pub async fn list_tokens(&self) -> Result<Vec<TokenInfo>> {
        Ok(self.tokens().await?.into_iter().map(|t| t.0).collect())
    }

    /// Revokes the token with `id`; false when there is none.
    pub async fn revoke_token(&self, id: &str) -> Result<bool> {
        let known = self.tokens().await?.iter().any(|t| t.0.id == id);
        if known {
            self.execute_values(
                "UPDATE strata_tokens SET revoked = 1 WHERE id = ?",
                &[KeyValue::Text(id.to_string())],
            )
            .await?;
        }
        Ok(known)
    }

    async fn tokens(&self) -> Result<Vec<(TokenInfo, String)>> {
        let sql = "SELECT id, name, secret_hash, grants, created_at, revoked FROM strata_tokens ORDER BY created_at, id";
        let rows = self.fetch_all(sql).await?;
        rows.iter()
            .map(|row| {
                let read = |row: &sqlx::any::AnyRow| -> std::result::Result<_, sqlx::Error> {
                    let grants: String = row.try_get(3)?;
                    Ok((
                        TokenInfo {
                            id: row.try_get(0)?,
                            name: row.try_get(1)?,
                            grants: serde_json::from_str(&grants)
                                .map_err(|err| sqlx::Error::Decode(Box::new(err)))?,
                            created_at_ms: row.try_get(4)?,
                            revoked: row.try_get::<i64, _>(5)? != 0,
                        },
                        row.try_get::<String, _>(2)?,
                    ))
                };
                read(row).map_err(|source| self.store_error(sql, source))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(grants: &[(&str, Access)]) -> Principal {
        Principal {
            token_id: "t".into(),
            name: "t".into(),
            grants: grants
                .iter()
                .map(|(space, access)| Grant {
                    space: space.to_string(),
                    access: *access,
                })
                .collect(),
        }
    }

    #[test]
    fn write_includes_read_and_star_covers_every_space() {
        let p = principal(&[
            ("shop", Access::Read),
            ("*", Access::Read),
            ("ods", Access::Write),
        ]);
        assert!(p.allows("shop", Access::Read));
        assert!(p.allows("other", Access::Read));
        assert!(!p.allows("shop", Access::Write));
        assert!(p.allows("ods", Access::Write));
        let err = p.require("shop", Access::Write).unwrap_err().to_string();
        assert!(err.contains("may not write space 'shop'"), "{err}");
        assert!(err.contains("--space shop --write"), "{err}");
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
        assert_eq!(random_hex(24).len(), 48);
    }
}
