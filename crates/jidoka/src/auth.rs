//! Who may call what: API tokens, roles, and the permission table every HTTP route checks.
//!
//! Tokens are long random secrets (`jdk_` + 64 hex digits). The configuration keeps only their
//! SHA-256 (or the name of an environment variable holding the token), never the token itself;
//! tokens are never logged. Users with passwords (argon2) arrive with the governance layer.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Operator,
    Supervisor,
    QualityEngineer,
    Integrator,
    Admin,
    /// Service accounts of connectors and agents pushing events.
    Agent,
}

impl Role {
    pub const ALL: &'static [Role] =
        &[Role::Operator, Role::Supervisor, Role::QualityEngineer, Role::Integrator, Role::Admin, Role::Agent];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Supervisor => "supervisor",
            Role::QualityEngineer => "quality_engineer",
            Role::Integrator => "integrator",
            Role::Admin => "admin",
            Role::Agent => "agent",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.iter().copied().find(|r| r.as_str() == s)
    }
}

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    IngestEvents,
    ReadEvents,
    ReadFindings,
    ReadActions,
    ReadStatus,
    ReadMetrics,
    /// Approve or reject a proposed action (which kinds, per role: `governance::may_decide`).
    DecideActions,
    ReadAudit,
}

impl Permission {
    pub const ALL: &'static [Permission] = &[
        Permission::IngestEvents,
        Permission::ReadEvents,
        Permission::ReadFindings,
        Permission::ReadActions,
        Permission::ReadStatus,
        Permission::ReadMetrics,
        Permission::DecideActions,
        Permission::ReadAudit,
    ];
}

/// The permission table: least privilege, one place.
pub fn allows(role: Role, permission: Permission) -> bool {
    use Permission::*;
    use Role::*;
    match permission {
        IngestEvents => matches!(role, Integrator | Admin | Agent),
        ReadEvents => matches!(role, QualityEngineer | Integrator | Admin),
        ReadFindings => matches!(role, Operator | Supervisor | QualityEngineer | Integrator | Admin),
        ReadActions => matches!(role, Supervisor | QualityEngineer | Integrator | Admin),
        ReadStatus => true,
        ReadMetrics => matches!(role, Integrator | Admin),
        DecideActions => matches!(role, Supervisor | QualityEngineer | Admin),
        ReadAudit => matches!(role, QualityEngineer | Admin),
    }
}

/// An API token in the configuration: its SHA-256, or the environment variable holding it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub name: String,
    pub role: Role,
    /// Hex SHA-256 of the token (`jidoka token new` prints it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Environment variable that holds the token itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
}

impl TokenConfig {
    pub fn validate(&self, path: &str, errors: &mut Vec<(String, String)>) {
        if self.name.trim().is_empty() {
            errors.push((format!("{path}.name"), "must not be empty".into()));
        }
        match (&self.sha256, &self.env) {
            (Some(_), Some(_)) | (None, None) => {
                errors.push((path.to_string(), "give exactly one of `sha256` and `env`".into()))
            }
            (Some(h), None) => {
                if h.len() != 64 || !h.chars().all(|c| c.is_ascii_hexdigit()) {
                    errors.push((format!("{path}.sha256"), "must be 64 hex digits".into()));
                }
            }
            (None, Some(var)) => match std::env::var(var) {
                Ok(token) if token.len() >= 24 => {}
                Ok(_) => errors.push((format!("{path}.env"), format!("token in ${var} is shorter than 24 characters"))),
                Err(_) => errors.push((format!("{path}.env"), format!("environment variable ${var} is not set"))),
            },
        }
    }
}

/// The caller of a request, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
}

/// Token lookup by SHA-256; the raw token is never kept.
#[derive(Debug, Default)]
pub struct Auth {
    by_hash: HashMap<[u8; 32], Principal>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Auth {
    /// Build from validated token configs.
    pub fn from_config(tokens: &[TokenConfig]) -> Auth {
        let mut auth = Auth::default();
        for t in tokens {
            let principal = Principal { name: t.name.clone(), role: t.role };
            if let Some(h) = &t.sha256
                && let Ok(bytes) = hex::decode(h)
                && let Ok(arr) = <[u8; 32]>::try_from(bytes.as_slice())
            {
                auth.by_hash.insert(arr, principal);
            } else if let Some(var) = &t.env
                && let Ok(token) = std::env::var(var)
            {
                auth.by_hash.insert(digest(&token), principal);
            }
        }
        auth
    }

    pub fn add_token(&mut self, token: &str, name: &str, role: Role) {
        self.by_hash.insert(digest(token), Principal { name: name.into(), role });
    }

    pub fn authenticate(&self, token: &str) -> Option<&Principal> {
        self.by_hash.get(&digest(token))
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

/// A new random token and its SHA-256.
pub fn new_token() -> anyhow::Result<(String, String)> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no system randomness: {e}"))?;
    let token = format!("jdk_{}", hex::encode(bytes));
    let hash = hex::encode(digest(&token));
    Ok((token, hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_authenticate_by_hash_only() {
        let (token, hash) = new_token().expect("token");
        assert!(token.starts_with("jdk_") && token.len() == 68);
        let auth = Auth::from_config(&[TokenConfig {
            name: "qe".into(),
            role: Role::QualityEngineer,
            sha256: Some(hash),
            env: None,
        }]);
        assert_eq!(auth.authenticate(&token).map(|p| p.role), Some(Role::QualityEngineer));
        assert!(auth.authenticate("jdk_wrong").is_none());
        assert!(auth.authenticate("").is_none());
    }

    #[test]
    fn permission_table_is_least_privilege() {
        // Operators read findings and status only; agents ingest and read status only.
        for p in Permission::ALL {
            let op = allows(Role::Operator, *p);
            assert_eq!(op, matches!(p, Permission::ReadFindings | Permission::ReadStatus), "operator {p:?}");
            let agent = allows(Role::Agent, *p);
            assert_eq!(agent, matches!(p, Permission::IngestEvents | Permission::ReadStatus), "agent {p:?}");
            assert!(allows(Role::Admin, *p), "admin {p:?}");
        }
    }
}
