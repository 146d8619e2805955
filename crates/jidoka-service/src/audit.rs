//! The audit chain as the command line and the dashboard use it: walk and verify the hash
//! chain, export a range of records. One module below both, so they cannot disagree.

use crate::config::Config;
use crate::server::open_store;
use jidoka_model::audit::ChainBreak;
use jidoka_store::Store;

/// `jidoka audit verify`: walk the whole audit chain; false (and the first broken record on
/// stderr) when any record was changed, removed or reordered. A chain cut short at its end
/// verifies by itself; with `expect_head` (a `seq` and `hash` printed by an earlier run and
/// kept elsewhere) that record must still be there, unchanged.
pub fn audit_verify(config: Config, json: bool, expect_head: Option<(u64, String)>) -> anyhow::Result<bool> {
    let store = open_store(&config.store.data_dir)?;
    let mut verifier = jidoka_model::audit::Verifier::default();
    let outcome = walk_chain(store.as_ref(), &mut verifier, expect_head.as_ref())?;
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
    expect_head: Option<&(u64, String)>,
) -> Result<Result<(), ChainBreak>, jidoka_store::StoreError> {
    let mut after = 0;
    let mut head_seen = false;
    let outcome = loop {
        let rows = store.audit_after(after, 1000)?;
        let Some(last) = rows.last().map(|r| r.seq) else { break Ok(()) };
        if let Some(err) = rows.iter().find_map(|r| verifier.check(r).err()) {
            break Err(err);
        }
        if let Some((seq, hash)) = expect_head
            && let Some(r) = rows.iter().find(|r| r.seq == *seq)
        {
            if r.hash != *hash {
                break Err(ChainBreak { seq: *seq, reason: "its hash is not the expected head".into() });
            }
            head_seen = true;
        }
        after = last;
    };
    Ok(match (outcome, expect_head) {
        (Ok(()), Some((seq, _))) if !head_seen => Err(ChainBreak {
            seq: *seq,
            reason: format!("the expected head is gone: the chain ends at record {}", verifier.records),
        }),
        (o, _) => o,
    })
}

/// Verify the whole chain: the number of records and the head hash, or the first break.
pub fn verify_chain(store: &dyn Store) -> Result<Result<(u64, String), ChainBreak>, jidoka_store::StoreError> {
    let mut verifier = jidoka_model::audit::Verifier::default();
    let outcome = walk_chain(store, &mut verifier, None)?;
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
