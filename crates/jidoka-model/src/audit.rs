//! The audit trail: one append-only record per finding, proposed action, approval, rejection,
//! expiry, delivery and MES write, chained by hashes so that changing any stored record is
//! detected at that record.
//!
//! A record's `body` is the canonical JSON of its [`AuditRecord`] without the hash; its hash is
//! `sha256(prev_hash + "\n" + body)`. The store keeps the body text exactly as it was hashed, so
//! [`verify`] needs nothing but the stored rows.

use crate::{Finding, Subject, Timestamp, sha256_hex};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The hash before the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What an audit record says happened, before it is numbered and chained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When it happened: the event time for findings and proposals, the wall clock for a
    /// person's decision or a delivery.
    #[serde(with = "crate::event::rfc3339")]
    pub at: Timestamp,
    /// `agent:<name>`, `governance`, `user:<token name>`, `sink:<name>`.
    pub actor: String,
    /// `finding`, `action_proposed`, `action_approved`, `action_rejected`, `action_expired`,
    /// `action_delivered`, `action_dead_letter`.
    pub what: String,
    #[serde(default)]
    pub subject: Subject,
    #[serde(default)]
    pub correlation_id: String,
    /// The source (MES) transaction id behind it.
    #[serde(default)]
    pub source_txn_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    /// Digest of the inputs the record rests on (the finding's evidence and content).
    #[serde(default)]
    pub input_digest: String,
    /// Ids and what else the record needs (finding id, action id and kind, reason...).
    #[serde(default)]
    pub details: Value,
}

/// A numbered, chained audit record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: u64,
    pub prev_hash: String,
    #[serde(flatten)]
    pub entry: AuditEntry,
}

impl AuditRecord {
    /// The canonical body that is hashed and stored.
    pub fn body(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The chain hash of a record with `body` following `prev_hash`.
pub fn chain_hash(prev_hash: &str, body: &str) -> String {
    let mut bytes = Vec::with_capacity(prev_hash.len() + 1 + body.len());
    bytes.extend_from_slice(prev_hash.as_bytes());
    bytes.push(b'\n');
    bytes.extend_from_slice(body.as_bytes());
    sha256_hex(&bytes)
}

/// The audit entry of a finding, by the agent that made it. `input_digest` covers the finding's
/// evidence ids and its whole content.
pub fn finding_entry(f: &Finding) -> AuditEntry {
    AuditEntry {
        at: f.occurred_at,
        actor: format!("agent:{}", f.agent),
        what: "finding".into(),
        subject: f.subject.clone(),
        correlation_id: f.correlation_id.clone(),
        source_txn_id: f.source_txn_id.clone(),
        agent: Some(f.agent.clone()),
        agent_version: Some(f.agent_version.clone()),
        input_digest: f.content_digest(),
        details: serde_json::json!({
            "finding_id": f.finding_id, "kind": f.kind, "verdict": f.verdict, "severity": f.severity,
            "confidence": f.confidence, "evidence": f.evidence, "reason": f.reason,
        }),
    }
}

/// One stored row as [`verify`] reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAudit {
    pub seq: u64,
    pub body: String,
    pub prev_hash: String,
    pub hash: String,
}

/// Where and why a chain is broken.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainBreak {
    pub seq: u64,
    pub reason: String,
}

/// Incremental chain check: feed rows in `seq` order; the first problem is returned.
#[derive(Debug, Clone)]
pub struct Verifier {
    expected_seq: u64,
    prev_hash: String,
    pub records: u64,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier { expected_seq: 1, prev_hash: GENESIS.to_string(), records: 0 }
    }
}

impl Verifier {
    pub fn last_hash(&self) -> &str {
        &self.prev_hash
    }

    pub fn check(&mut self, row: &StoredAudit) -> Result<(), ChainBreak> {
        let fail = |reason: String| Err(ChainBreak { seq: row.seq, reason });
        if row.seq != self.expected_seq {
            return fail(format!("expected record {} here, found {}", self.expected_seq, row.seq));
        }
        if row.prev_hash != self.prev_hash {
            return fail("its previous-hash does not match the record before it".into());
        }
        let record: AuditRecord = match serde_json::from_str(&row.body) {
            Ok(r) => r,
            Err(e) => return fail(format!("its body does not decode: {e}")),
        };
        if record.seq != row.seq || record.prev_hash != row.prev_hash {
            return fail("its body disagrees with its position in the chain".into());
        }
        if chain_hash(&row.prev_hash, &row.body) != row.hash {
            return fail("its hash does not match its content".into());
        }
        self.prev_hash = row.hash.clone();
        self.expected_seq += 1;
        self.records += 1;
        Ok(())
    }
}

/// Check a whole chain, in `seq` order.
pub fn verify<'a>(rows: impl IntoIterator<Item = &'a StoredAudit>) -> Result<u64, ChainBreak> {
    let mut v = Verifier::default();
    for row in rows {
        v.check(row)?;
    }
    Ok(v.records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: u64) -> Vec<StoredAudit> {
        let mut prev = GENESIS.to_string();
        (1..=n)
            .map(|seq| {
                let record = AuditRecord {
                    seq,
                    prev_hash: prev.clone(),
                    entry: AuditEntry {
                        at: chrono::DateTime::UNIX_EPOCH,
                        actor: "governance".into(),
                        what: "action_proposed".into(),
                        subject: Subject::default(),
                        correlation_id: format!("c{seq}"),
                        source_txn_id: String::new(),
                        agent: None,
                        agent_version: None,
                        input_digest: String::new(),
                        details: serde_json::json!({"n": seq}),
                    },
                };
                let body = record.body();
                let hash = chain_hash(&prev, &body);
                prev = hash.clone();
                StoredAudit { seq, body, prev_hash: record.prev_hash, hash }
            })
            .collect()
    }

    #[test]
    fn an_intact_chain_verifies_and_any_change_is_found_where_it_is() {
        let rows = chain(5);
        assert_eq!(verify(&rows), Ok(5));
        let mut body = rows.clone();
        body[2].body = body[2].body.replace("c3", "c9");
        assert_eq!(verify(&body).unwrap_err().seq, 3);
        let mut hash = rows.clone();
        hash[1].hash = GENESIS.into();
        // The altered hash no longer matches its content.
        assert_eq!(verify(&hash).unwrap_err().seq, 2);
        let mut gone = rows.clone();
        gone.remove(3);
        assert_eq!(verify(&gone).unwrap_err().seq, 5);
    }
}
