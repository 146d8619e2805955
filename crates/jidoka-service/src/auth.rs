//! Who may call what: API tokens, roles, and the permission table every HTTP route checks.
//!
//! Tokens are long random secrets (`jdk_` + 64 hex digits). The configuration keeps only their
//! SHA-256 (or the name of an environment variable holding the token), never the token itself;
//! tokens are never logged. Users with passwords (argon2) arrive with the governance layer.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    /// Release master data changes (an ECO, a lot hold) through the API.
    ChangeMasterData,
    /// See the build queue, the re-sequencing proposals and the material forecast.
    ReadBuildQueue,
    /// Declare a build disruption (a part or equipment unavailable, units on hold, a rush).
    DeclareDisruption,
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
        Permission::ChangeMasterData,
        Permission::ReadBuildQueue,
        Permission::DeclareDisruption,
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
        ChangeMasterData => matches!(role, Integrator | Admin),
        ReadBuildQueue => matches!(role, Supervisor | QualityEngineer | Integrator | Admin),
        // The line's supervisor, and the MES or logistics system through its integration account.
        DeclareDisruption => matches!(role, Supervisor | Integrator | Admin),
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
    /// The event sources this token may write (`source` of each event); empty: any. Bind a
    /// controller's or gateway's token to its own sources so no other token can forge them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
}

impl TokenConfig {
    pub fn validate(&self, path: &str, errors: &mut Vec<(String, String)>) {
        if self.name.trim().is_empty() {
            errors.push((format!("{path}.name"), "must not be empty".into()));
        }
        for (i, source) in self.sources.iter().enumerate() {
            if source.trim().is_empty() {
                errors.push((format!("{path}.sources[{i}]"), "must not be empty".into()));
            }
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

/// A person who logs in with a password; only its argon2 hash is configured
/// (`jidoka user hash` makes one). Service accounts use tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    pub role: Role,
    /// PHC string of an argon2 hash (`$argon2id$v=19$...`).
    pub password_hash: String,
}

impl UserConfig {
    pub fn validate(&self, path: &str, errors: &mut Vec<(String, String)>) {
        if self.name.trim().is_empty() {
            errors.push((format!("{path}.name"), "must not be empty".into()));
        }
        if self.role == Role::Agent {
            errors.push((format!("{path}.role"), "service accounts use tokens, not passwords".into()));
        }
        match PasswordHash::new(&self.password_hash) {
            Ok(h) if h.algorithm.as_str().starts_with("argon2") => {}
            _ => errors
                .push((format!("{path}.password_hash"), "must be an argon2 PHC string (`jidoka user hash`)".into())),
        }
    }
}

/// The argon2id hash (PHC string) of `password`, with a random salt.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("no system randomness: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let hash =
        Argon2::default().hash_password(password.as_bytes(), &salt).map_err(|e| anyhow::anyhow!("hashing: {e}"))?;
    Ok(hash.to_string())
}

/// The caller of a request, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    /// Logged in with a password (a person), rather than holding an API token.
    pub session: bool,
    /// The event sources it may write; `None`: any.
    pub sources: Option<Arc<[String]>>,
}

impl Principal {
    /// How the audit trail names it: `user:<name>` for a person's session, `token:<name>` for
    /// an API token, so a token can never pass for a person.
    pub fn actor(&self) -> String {
        if self.session { format!("user:{}", self.name) } else { format!("token:{}", self.name) }
    }

    /// Whether it may append events under `source`.
    pub fn may_write(&self, source: &str) -> bool {
        self.sources.as_ref().is_none_or(|allowed| allowed.iter().any(|s| s == source))
    }
}

/// Token lookup by SHA-256 (the raw token is never kept), users' argon2 hashes, and the
/// sessions their logins opened (also kept by SHA-256, expiring).
#[derive(Debug, Default)]
pub struct Auth {
    by_hash: HashMap<[u8; 32], Principal>,
    users: HashMap<String, (String, Role)>,
    sessions: Mutex<HashMap<[u8; 32], (Principal, Instant)>>,
    /// Failed sign-ins in a row per user name and per address, and until when the next
    /// attempt waits.
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

/// Failed sign-ins in a row allowed before attempts wait.
pub const FREE_FAILURES: u32 = 5;
/// The longest wait for a user name (kept short: anyone can make a name wait) and for an address.
const MAX_USER_WAIT: Duration = Duration::from_secs(60);
const MAX_PEER_WAIT: Duration = Duration::from_secs(300);
/// Names and addresses remembered at most.
const MAX_TRACKED: usize = 10_000;

/// How long a login session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// Verified when the user is unknown, so a wrong name costs as long as a wrong password.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3rBiS7xXvXaLpRVPMrYxiWNOW+T3mp4rRc4Vp3UuB8A";

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Auth {
    /// Build from validated token configs.
    pub fn from_config(tokens: &[TokenConfig], users: &[UserConfig]) -> Auth {
        let mut auth = Auth::default();
        for u in users {
            auth.users.insert(u.name.clone(), (u.password_hash.clone(), u.role));
        }
        for t in tokens {
            let sources = (!t.sources.is_empty()).then(|| Arc::from(t.sources.clone()));
            let principal = Principal { name: t.name.clone(), role: t.role, session: false, sources };
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
        self.by_hash.insert(digest(token), Principal { name: name.into(), role, session: false, sources: None });
    }

    /// The principal of an API token or of a live login session.
    pub fn authenticate(&self, token: &str) -> Option<Principal> {
        let key = digest(token);
        if let Some(p) = self.by_hash.get(&key) {
            return Some(p.clone());
        }
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.get(&key).filter(|(_, until)| Instant::now() < *until).map(|(p, _)| p.clone())
    }

    /// Check a user's password (slow by design: argon2); on success open a session and return
    /// its token. Unknown users and wrong passwords are indistinguishable.
    pub fn login(&self, user: &str, password: &str) -> Option<(String, Principal)> {
        let (phc, role) = match self.users.get(user) {
            Some((phc, role)) => (phc.as_str(), Some(*role)),
            None => (DUMMY_HASH, None),
        };
        let ok =
            PasswordHash::new(phc).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok());
        let role = role.filter(|_| ok)?;
        let (token, _) = new_token().ok()?;
        let principal = Principal { name: user.to_string(), role, session: true, sources: None };
        let now = Instant::now();
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|_, (_, until)| *until > now);
        sessions.insert(digest(&token), (principal.clone(), now + SESSION_TTL));
        Some((token, principal))
    }

    /// End a login session (sign-out); API tokens are not affected.
    pub fn end_session(&self, token: &str) {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner()).remove(&digest(token));
    }

    /// How long a sign-in for `user` from `peer` must still wait, if it must: after
    /// [`FREE_FAILURES`] failures in a row each further failure doubles the wait, from 1 s.
    pub fn login_wait(&self, user: &str, peer: std::net::IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        [format!("user:{user}"), format!("peer:{peer}")]
            .iter()
            .filter_map(|k| failures.get(k))
            .filter_map(|(_, until)| until.checked_duration_since(now))
            .max()
    }

    /// A failed sign-in: counted for the name and for the address.
    pub fn login_failed(&self, user: &str, peer: std::net::IpAddr) {
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() >= MAX_TRACKED {
            // Forget those no longer waiting first; a flood of new names cannot grow the map.
            failures.retain(|_, (_, until)| *until > now);
            if failures.len() >= MAX_TRACKED {
                failures.clear();
            }
        }
        for (key, cap) in [(format!("user:{user}"), MAX_USER_WAIT), (format!("peer:{peer}"), MAX_PEER_WAIT)] {
            let entry = failures.entry(key).or_insert((0, now));
            entry.0 = entry.0.saturating_add(1);
            if entry.0 >= FREE_FAILURES {
                let doublings = (entry.0 - FREE_FAILURES).min(16);
                entry.1 = now + Duration::from_secs(1u64 << doublings).min(cap);
            }
        }
    }

    /// A good sign-in clears the name's and the address's count.
    pub fn login_succeeded(&self, user: &str, peer: std::net::IpAddr) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.remove(&format!("user:{user}"));
        failures.remove(&format!("peer:{peer}"));
    }

    /// A session for the holder of an API token (a dashboard sign-in with a token), so the
    /// cookie carries a session that sign-out ends, never the long-lived token itself.
    pub fn session_for_token(&self, token: &str) -> Option<String> {
        let principal = self.by_hash.get(&digest(token))?.clone();
        let (session, _) = new_token().ok()?;
        let now = Instant::now();
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|_, (_, until)| *until > now);
        sessions.insert(digest(&session), (principal, now + SESSION_TTL));
        Some(session)
    }

    /// Whether `token` is a live session (not an API token).
    pub fn is_session(&self, token: &str) -> bool {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner()).contains_key(&digest(token))
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty() && self.users.is_empty()
    }
}

/// A new random password for a one-time login: 16 characters from an alphabet without
/// look-alikes (about 80 bits).
pub fn new_password() -> anyhow::Result<String> {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzACDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(bytes.iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect())
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
        let auth = Auth::from_config(
            &[TokenConfig {
                name: "qe".into(),
                role: Role::QualityEngineer,
                sha256: Some(hash),
                env: None,
                sources: Vec::new(),
            }],
            &[],
        );
        assert_eq!(auth.authenticate(&token).map(|p| p.role), Some(Role::QualityEngineer));
        assert!(auth.authenticate("jdk_wrong").is_none());
        assert!(auth.authenticate("").is_none());
    }

    #[test]
    fn users_log_in_with_argon2_passwords_and_get_expiring_sessions() {
        let hash = hash_password("correct horse battery staple").expect("hash");
        assert!(hash.starts_with("$argon2id$"));
        let user = UserConfig { name: "anna".into(), role: Role::Supervisor, password_hash: hash };
        let mut errors = Vec::new();
        user.validate("api.users[0]", &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        let auth = Auth::from_config(&[], &[user]);
        assert!(auth.login("anna", "wrong").is_none());
        assert!(auth.login("bob", "correct horse battery staple").is_none());
        let (token, p) = auth.login("anna", "correct horse battery staple").expect("login");
        assert_eq!((p.name.as_str(), p.role), ("anna", Role::Supervisor));
        assert_eq!(auth.authenticate(&token), Some(p));
        // The stand-in hash for unknown users must parse, or they would answer faster.
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
        let bad = UserConfig { name: "x".into(), role: Role::Agent, password_hash: "plain".into() };
        let mut errors = Vec::new();
        bad.validate("u", &mut errors);
        let paths: Vec<&str> = errors.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(paths, vec!["u.role", "u.password_hash"]);
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
