//! The audit chain as the command line and the dashboard use it: walk and verify the hash
//! chain, export a range of records. One module below both, so they cannot disagree.

use crate::config::Config;
use crate::server::open_store;
use jidoka_model::audit::{AuditRecord, ChainBreak, GENESIS, StoredAudit, chain_hash};
use jidoka_model::{Action, ActionStatus};
use jidoka_store::{ActionQuery, Store, StoreError};
use std::collections::BTreeSet;

/// Whether the audit chain proves that `action` may go to a sink: every record about it is
/// intact and linked into the chain (its hash is its body's, the record before it has the
/// hash it names), and it was approved as its proposal demanded: proposed as approved by its
/// policy, or moved to approved after enough different people recorded their approval (two
/// for four-eyes). `Ok(Err(why))` when it is not proven: a status set in the database by hand
/// is not an approval.
pub fn approval_proof(store: &dyn Store, action: &Action) -> Result<Result<Approval, String>, StoreError> {
    let records = store.audit_of(&action.action_id, 1000)?;
    let (mut auto_approved, mut waited, mut moved) = (false, false, false);
    let mut approvers = BTreeSet::new();
    let mut notes = Vec::new();
    for r in &records {
        if let Err(why) = linked(store, r)? {
            return Ok(Err(why));
        }
        let Ok(rec) = serde_json::from_str::<AuditRecord>(&r.body) else {
            return Ok(Err(format!("audit record {} cannot be read", r.seq)));
        };
        if rec.entry.details.get("action_id").and_then(|v| v.as_str()) != Some(action.action_id.as_str()) {
            return Ok(Err(format!("audit record {} is filed under this action but is about another", r.seq)));
        }
        match rec.entry.what.as_str() {
            "action_proposed" => {
                let status = rec.entry.details.get("status").and_then(|v| v.as_str());
                auto_approved = status == Some(ActionStatus::Approved.as_str());
                waited = status == Some(ActionStatus::PendingApproval.as_str());
            }
            "action_approval_recorded" => {
                approvers.insert(rec.entry.actor.clone());
                notes.extend(rec.entry.details.get("note").and_then(|v| v.as_str()).map(str::to_string));
            }
            // A single approval moves the action itself: the mover is the approver. With
            // four-eyes every approval is recorded first, the last one's mover among them.
            "action_approved" => {
                moved = true;
                if rec.entry.actor.starts_with("user:") || rec.entry.actor.starts_with("token:") {
                    approvers.insert(rec.entry.actor.clone());
                    notes.extend(rec.entry.details.get("note").and_then(|v| v.as_str()).map(str::to_string));
                }
            }
            _ => {}
        }
    }
    if auto_approved {
        return Ok(Ok(Approval { by: vec!["policy".into()], notes: Vec::new() }));
    }
    if !waited {
        return Ok(Err("the audit trail has no proposal of this action".into()));
    }
    let needed = if crate::governance::needs_four_eyes(action) { 2 } else { 1 };
    if !moved || approvers.len() < needed {
        return Ok(Err(format!(
            "the audit trail records {} approval(s) of the {needed} needed and {} move to approved",
            approvers.len(),
            if moved { "a" } else { "no" }
        )));
    }
    notes.dedup();
    Ok(Ok(Approval { by: approvers.into_iter().collect(), notes }))
}

/// Who approved an action and what they noted (`approved by user:anna: seen the curve`), as
/// the audit chain proves it: the MES record carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// `policy` when the policy approved it when proposed.
    pub by: Vec<String>,
    pub notes: Vec<String>,
}

impl Approval {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"by": self.by, "notes": self.notes})
    }
}

/// A record matches its hash and follows the record before it.
fn linked(store: &dyn Store, r: &StoredAudit) -> Result<Result<(), String>, StoreError> {
    if chain_hash(&r.prev_hash, &r.body) != r.hash {
        return Ok(Err(format!("audit record {} does not match its hash", r.seq)));
    }
    let before = match r.seq {
        0 | 1 => Some(GENESIS.to_string()),
        n => store.audit_after(n - 2, 1)?.into_iter().next().filter(|p| p.seq == n - 1).map(|p| p.hash),
    };
    if before.as_deref() != Some(r.prev_hash.as_str()) {
        return Ok(Err(format!("audit record {} is not linked into the chain", r.seq)));
    }
    Ok(Ok(()))
}

/// Actions whose status says approved or delivered but whose approval the chain does not
/// prove, and findings with no intact audit record: `(subject id, why)`, at most `limit`.
pub fn governance_gaps(store: &dyn Store, limit: usize) -> Result<Vec<(String, String)>, StoreError> {
    let mut gaps = Vec::new();
    for status in [ActionStatus::Approved, ActionStatus::Delivered] {
        let mut before = None;
        loop {
            let page =
                store.actions(&ActionQuery { status: Some(status), before, limit: 500, ..Default::default() })?;
            for a in &page.items {
                if let Err(why) = approval_proof(store, &a.action)? {
                    gaps.push((a.action.action_id.clone(), format!("{}: {why}", status.as_str())));
                }
            }
            match page.next_cursor {
                Some(c) if gaps.len() < limit => before = Some(c),
                _ => break,
            }
        }
    }
    let mut after = 0;
    while gaps.len() < limit {
        let page = store.findings_in_order(after, 1000)?;
        for f in &page.items {
            let records = store.audit_of(&f.finding_id, 10)?;
            // Intact, and about this finding: the `ref` a record is found by is checked
            // against its hashed body.
            let intact = records.iter().any(|r| {
                chain_hash(&r.prev_hash, &r.body) == r.hash
                    && serde_json::from_str::<AuditRecord>(&r.body).is_ok_and(|rec| {
                        rec.entry.what == "finding"
                            && rec.entry.details.get("finding_id").and_then(|v| v.as_str())
                                == Some(f.finding_id.as_str())
                    })
            });
            if !intact {
                gaps.push((f.finding_id.clone(), "finding: no intact audit record".into()));
            }
        }
        match page.next_cursor {
            Some(c) => after = c,
            None => break,
        }
    }
    gaps.truncate(limit);
    Ok(gaps)
}

/// `jidoka audit verify`: walk the whole audit chain; false (and the first broken record on
/// stderr) when any record was changed, removed or reordered. A chain cut short at its end
/// verifies by itself; with `expect_head` (a `seq` and `hash` printed by an earlier run and
/// kept elsewhere) that record must still be there, unchanged.
pub fn audit_verify(config: Config, json: bool, expect_head: Option<(u64, String)>) -> anyhow::Result<bool> {
    let store = open_store(&config.store.data_dir)?;
    let mut verifier = jidoka_model::audit::Verifier::default();
    // The heads kept elsewhere: the one given, and every one the anchor file holds.
    let mut expected: Vec<(u64, String)> = expect_head.into_iter().collect();
    if let Some(path) = &config.store.audit_anchor {
        expected.extend(read_anchors(path)?);
    }
    let outcome = walk_chain(store.as_ref(), &mut verifier, &expected)?;
    // An intact chain must also account for every approved or delivered action and every
    // finding: a status changed in the database by hand is not in it.
    let gaps = match &outcome {
        Ok(()) => governance_gaps(store.as_ref(), 20)?,
        Err(_) => Vec::new(),
    };
    if !gaps.is_empty() {
        if json {
            let list: Vec<serde_json::Value> =
                gaps.iter().map(|(id, why)| serde_json::json!({"id": id, "reason": why})).collect();
            println!("{}", serde_json::json!({"intact": false, "records": verifier.records, "unproven": list}));
        } else {
            eprintln!("audit chain intact ({} records) but it does not prove what the store says:", verifier.records);
            for (id, why) in &gaps {
                eprintln!("  {id}: {why}");
            }
        }
        return Ok(false);
    }
    match outcome {
        Ok(()) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"intact": true, "records": verifier.records, "last_hash": verifier.last_hash()})
                );
            } else {
                println!(
                    "audit chain intact: {} records; head {}:{} (keep it elsewhere and check with --expect-head)",
                    verifier.records,
                    verifier.records,
                    verifier.last_hash()
                );
            }
            Ok(true)
        }
        Err(b) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"intact": false, "broken_at": b.seq, "reason": b.reason, "verified_before": verifier.records})
                );
            } else {
                eprintln!(
                    "audit chain broken at record {}: {} ({} records before it verified)",
                    b.seq, b.reason, verifier.records
                );
            }
            Ok(false)
        }
    }
}

/// Walk the whole audit chain through `verifier`; with `expect_head`, that record must be
/// there with that hash.
fn walk_chain(
    store: &dyn Store,
    verifier: &mut jidoka_model::audit::Verifier,
    expected: &[(u64, String)],
) -> Result<Result<(), ChainBreak>, jidoka_store::StoreError> {
    let mut after = 0;
    let mut seen = vec![false; expected.len()];
    let outcome = loop {
        let rows = store.audit_after(after, 1000)?;
        let Some(last) = rows.last().map(|r| r.seq) else { break Ok(()) };
        if let Some(err) = rows.iter().find_map(|r| verifier.check(r).err()) {
            break Err(err);
        }
        let mismatch = expected.iter().enumerate().find_map(|(i, (seq, hash))| {
            let r = rows.iter().find(|r| r.seq == *seq)?;
            seen[i] = true;
            (r.hash != *hash).then(|| ChainBreak {
                seq: *seq,
                reason: "its hash is not the head kept elsewhere: the chain was rewritten from here on".into(),
            })
        });
        if let Some(b) = mismatch {
            break Err(b);
        }
        after = last;
    };
    Ok(match outcome {
        Ok(()) => match expected.iter().zip(&seen).find(|(_, seen)| !**seen) {
            Some(((seq, _), _)) => Err(ChainBreak {
                seq: *seq,
                reason: format!("the head kept elsewhere is gone: the chain ends at record {}", verifier.records),
            }),
            None => Ok(()),
        },
        o => o,
    })
}

/// Append the chain's head to the anchor file (one JSON line, synced) unless the last line
/// already names it; the head anchored, if any.
pub fn anchor_head(store: &dyn Store, path: &std::path::Path) -> anyhow::Result<Option<(u64, String)>> {
    use std::io::Write;
    let head = store.audit_head()?;
    if head == 0 {
        return Ok(None);
    }
    let Some(record) = store.audit_after(head - 1, 1)?.into_iter().next() else { return Ok(None) };
    if read_anchors(path).ok().and_then(|a| a.last().cloned()).is_some_and(|(seq, _)| seq == record.seq) {
        return Ok(None);
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| anyhow::anyhow!("store.audit_anchor: cannot open {}: {e}", path.display()))?;
    let line = serde_json::json!({"at": jidoka_model::event::rfc3339::format(&chrono::Utc::now()), "seq": record.seq, "hash": record.hash});
    writeln!(file, "{line}")?;
    file.sync_all()?;
    Ok(Some((record.seq, record.hash)))
}

/// The heads in an anchor file, each line `{"seq": N, "hash": "..."}`; a bad line is named.
pub fn read_anchors(path: &std::path::Path) -> anyhow::Result<Vec<(u64, String)>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => anyhow::bail!("store.audit_anchor: cannot read {}: {e}", path.display()),
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let v: serde_json::Value =
                serde_json::from_str(l).map_err(|e| anyhow::anyhow!("{}:{}: not JSON: {e}", path.display(), i + 1))?;
            match (v["seq"].as_u64(), v["hash"].as_str()) {
                (Some(seq), Some(hash)) => Ok((seq, hash.to_string())),
                _ => anyhow::bail!("{}:{}: needs `seq` and `hash`", path.display(), i + 1),
            }
        })
        .collect()
}

/// Verify the whole chain: the number of records and the head hash, or the first break.
pub fn verify_chain(store: &dyn Store) -> Result<Result<(u64, String), ChainBreak>, jidoka_store::StoreError> {
    let mut verifier = jidoka_model::audit::Verifier::default();
    let outcome = walk_chain(store, &mut verifier, &[])?;
    Ok(outcome.map(|()| (verifier.records, verifier.last_hash().to_string())))
}

/// `jidoka audit export`: records `from..=to` as JSON Lines (the record, its previous hash and
/// its hash), for auditors.
pub fn audit_export(config: Config, from: u64, to: Option<u64>, out: &mut dyn std::io::Write) -> anyhow::Result<u64> {
    let store = open_store(&config.store.data_dir)?;
    write_audit(store.as_ref(), from, to, out)
}

/// Write audit records `from..=to` as JSON Lines.
pub fn write_audit(store: &dyn Store, from: u64, to: Option<u64>, out: &mut dyn std::io::Write) -> anyhow::Result<u64> {
    let mut after = from.saturating_sub(1);
    let mut written = 0;
    loop {
        let rows = store.audit_after(after, 1000)?;
        let Some(last) = rows.last().map(|r| r.seq) else { break };
        for r in rows.iter().filter(|r| to.is_none_or(|t| r.seq <= t)) {
            let record: serde_json::Value =
                serde_json::from_str(&r.body).unwrap_or(serde_json::Value::String(r.body.clone()));
            writeln!(
                out,
                "{}",
                serde_json::json!({"seq": r.seq, "record": record, "prev_hash": r.prev_hash, "hash": r.hash})
            )?;
            written += 1;
        }
        if to.is_some_and(|t| last >= t) {
            break;
        }
        after = last;
    }
    Ok(written)
}
