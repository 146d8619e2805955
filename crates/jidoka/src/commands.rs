//! `jidoka import`, `jidoka replay`, `jidoka config check` and `jidoka token new`.

use crate::auth::{Role, new_token};
use crate::config::Config;
use crate::report::{Report, progress};
use crate::runtime::{AGENTS_CURSOR, Runtime, RuntimeParts, process_page};
use crate::server::open_store;
use jidoka_agents::{Router, build_agents};
use jidoka_connectors::jsonl::{Position, read_chunk};
use jidoka_model::Finding;
use jidoka_model::audit::ChainBreak;
use jidoka_store::{AppendOutcome, Store};
use std::collections::HashMap;
use std::io::BufReader;
use std::path::PathBuf;
use std::time::Duration;

/// Import JSON Lines files; returns the number of rejected lines.
pub fn import(config: Config, files: &[PathBuf], json: bool) -> anyhow::Result<u64> {
    let store = open_store(&config.store.data_dir)?;
    let before = store.stats()?;
    let master = config.load_master()?;
    let runtime = Runtime::start(store.clone(), RuntimeParts::from_config(&config, master))?;
    let ingest = runtime.ingest();
    let total_bytes: u64 = files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum();
    let bar = progress(total_bytes, "import");
    let (mut lines, mut stored, mut duplicates, mut rejected) = (0u64, 0u64, 0u64, 0u64);
    for path in files {
        let file = std::fs::File::open(path).map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
        let mut reader = BufReader::new(file);
        let mut pos = Position::default();
        let mut shown = 0;
        loop {
            let chunk = read_chunk(&mut reader, pos, 5000, true, chrono::Utc::now())?;
            bar.inc(chunk.end.offset - pos.offset);
            lines = lines.saturating_add(chunk.end.line - pos.line);
            for e in &chunk.errors {
                rejected += 1;
                if shown < 20 {
                    bar.suspend(|| eprintln!("{}:{}: {}: {}", path.display(), e.line, e.field, e.reason));
                    shown += 1;
                }
            }
            let line_numbers: Vec<u64> = chunk.events.iter().map(|(l, _)| *l).collect();
            let events = chunk.events.into_iter().map(|(_, ev)| ev).collect::<Vec<_>>();
            if !events.is_empty() {
                let outcomes = ingest.blocking_append(events, None)?;
                for (line, outcome) in line_numbers.iter().zip(outcomes) {
                    match outcome {
                        AppendOutcome::Stored { .. } => stored += 1,
                        AppendOutcome::Duplicate { .. } => duplicates += 1,
                        AppendOutcome::Rejected { error } => {
                            rejected += 1;
                            if shown < 20 {
                                bar.suspend(|| {
                                    eprintln!("{}:{line}: {}: {}", path.display(), error.field, error.reason)
                                });
                                shown += 1;
                            }
                        }
                    }
                }
            }
            if chunk.at_end || chunk.end == pos {
                break;
            }
            pos = chunk.end;
        }
        if shown == 20 {
            eprintln!("{}: further errors not shown", path.display());
        }
    }
    bar.finish_and_clear();
    drop(ingest);
    let caught_up = runtime.wait_for_agents(Duration::from_secs(600));
    runtime.shutdown();
    let after = store.stats()?;
    let mut report = Report::new("import");
    report
        .add("files", "files", files.len(), "")
        .add("lines", "lines read", lines, "")
        .add("stored", "events stored", stored, "")
        .add("duplicates", "already stored (skipped)", duplicates, "")
        .add("rejected", "lines rejected", rejected, "")
        .add("findings", "new findings", after.findings - before.findings, "")
        .add("actions", "new actions", after.actions - before.actions, "")
        .add("agents_caught_up", "agents caught up", caught_up, "");
    report.print(json);
    Ok(rejected)
}

/// Re-run the agents over the log up to their committed cursor and compare with what is
/// stored. Returns true when every finding is reproduced exactly.
pub fn replay(config: Config, json: bool) -> anyhow::Result<bool> {
    let store = open_store(&config.store.data_dir)?;
    let cursor = store.cursor(AGENTS_CURSOR)?;
    let mut router = Router::new(build_agents(&config.agents, &config.load_master()?));
    let mut replayed: HashMap<String, String> = HashMap::new();
    let bar = progress(cursor, "replay");
    let mut seq = 0;
    let mut findings: Vec<Finding> = Vec::new();
    let mut last_time = jidoka_model::Timestamp::default();
    while seq < cursor {
        let mut page = store.events_after(seq, 2000)?;
        page.events.retain(|e| e.seq <= cursor);
        page.corrupt.retain(|c| c.0 <= cursor);
        let Some(last) = page.last_seq() else { break };
        findings.clear();
        process_page(&mut router, &page.events, &page.corrupt, &mut last_time, &mut findings);
        for f in &findings {
            replayed.insert(f.finding_id.clone(), f.content_digest());
        }
        seq = last;
        bar.set_position(seq);
    }
    bar.finish_and_clear();
    let (mut stored_n, mut identical, mut differing, mut missing) = (0u64, 0u64, 0u64, 0u64);
    let mut examples = Vec::new();
    let mut after = 0;
    loop {
        let page = store.findings_in_order(after, 5000)?;
        for f in &page.items {
            stored_n += 1;
            match replayed.remove(&f.finding_id) {
                Some(d) if d == f.content_digest() => identical += 1,
                Some(_) => {
                    differing += 1;
                    if examples.len() < 10 {
                        examples.push(format!("differs: {} ({} {})", f.finding_id, f.agent, f.kind));
                    }
                }
                None => {
                    missing += 1;
                    if examples.len() < 10 {
                        examples.push(format!("not reproduced: {} ({} {})", f.finding_id, f.agent, f.kind));
                    }
                }
            }
        }
        match page.next_cursor {
            Some(c) => after = c,
            None => break,
        }
    }
    let extra = replayed.len() as u64;
    for id in replayed.keys().take(10usize.saturating_sub(examples.len())) {
        examples.push(format!("new on replay: {id}"));
    }
    let ok = differing == 0 && missing == 0 && extra == 0;
    let mut report = Report::new("replay: agents re-run over the stored event log");
    report
        .add("events", "events replayed", seq, "")
        .add("stored_findings", "stored findings", stored_n, "")
        .add("identical", "reproduced identically", identical, "")
        .add("differing", "reproduced with differences", differing, "")
        .add("missing", "stored but not reproduced", missing, "")
        .add("extra", "reproduced but not stored", extra, "")
        .add("reproduced", "all reproduced", ok, "");
    report.print(json);
    if !json {
        for e in examples {
            println!("  {e}");
        }
    }
    Ok(ok)
}

/// Print a new token and the configuration lines that admit it.
pub fn token_new(name: &str, role: Role) -> anyhow::Result<()> {
    let (token, hash) = new_token()?;
    println!("token (shown once; give it to the client, keep it secret):\n  {token}\n");
    println!(
        "add to the plant configuration:\n[[api.tokens]]\nname = \"{name}\"\nrole = \"{}\"\nsha256 = \"{hash}\"",
        role.as_str()
    );
    Ok(())
}

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
