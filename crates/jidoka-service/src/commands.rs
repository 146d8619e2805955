//! `jidoka import`, `jidoka replay`, `jidoka config check` and `jidoka token new`.

use crate::auth::{Role, new_token};
use crate::config::Config;
use crate::report::{Report, progress};
use crate::runtime::{AGENTS_CURSOR, Runtime, RuntimeParts, process_page};
use crate::server::open_store;
use jidoka_agents::{Router, build_agents};
use jidoka_connectors::jsonl::{Position, read_chunk};
use jidoka_model::Finding;
use jidoka_store::AppendOutcome;
use std::collections::HashMap;
use std::io::BufReader;
use std::path::PathBuf;
use std::time::Duration;

/// Import JSON Lines files; returns the number of rejected lines.
pub fn import(config: Config, files: &[PathBuf], json: bool) -> anyhow::Result<u64> {
    let store = open_store(&config.store.data_dir)?;
    let before = store.stats()?;
    let master = config.load_master()?;
    let runtime = Runtime::start(store.clone(), RuntimeParts::from_config(&config, None))?;
    let ingest = runtime.ingest();
    // As in `serve`: the configured master data goes into the log before the events.
    if let Some(m) = &master {
        crate::master_data::offer_blocking(
            &ingest,
            &runtime.master,
            m,
            config.master_data.origin(),
            store.last_seq()?,
        )?;
    }
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
                        AppendOutcome::Conflict { seq, field, .. } => {
                            rejected += 1;
                            if shown < 20 {
                                bar.suspend(|| {
                                    eprintln!(
                                        "{}:{line}: {field}: this source transaction is already stored at seq {seq} with other content",
                                        path.display()
                                    )
                                });
                                shown += 1;
                            }
                        }
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
    // Master data comes from the log, as it did for the agents that made the findings.
    let mut router = Router::new(build_agents(&config.agents, &None));
    let mut replayed: HashMap<String, Finding> = HashMap::new();
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
        for f in findings.drain(..) {
            replayed.insert(f.finding_id.clone(), f);
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
                Some(r) if r.content_digest() == f.content_digest() => identical += 1,
                Some(r) => {
                    differing += 1;
                    if examples.len() < 10 {
                        let (stored, again) = (serde_json::to_value(f)?, serde_json::to_value(&r)?);
                        let at = jidoka_model::first_difference(&stored, &again).unwrap_or_default();
                        let shown = |v: &serde_json::Value| {
                            // `details.features.profile[5]`: keys and indices.
                            let step = |v: &'_ serde_json::Value, part: &str| -> Option<serde_json::Value> {
                                let (key, index) = match part.split_once('[') {
                                    Some((k, i)) => (k, i.trim_end_matches(']').parse::<usize>().ok()),
                                    None => (part, None),
                                };
                                let v = if key.is_empty() { v } else { v.get(key)? };
                                match index {
                                    Some(i) => v.get(i).cloned(),
                                    None => Some(v.clone()),
                                }
                            };
                            let text = at
                                .split('.')
                                .try_fold(v.clone(), |v, part| step(&v, part))
                                .map(|v| v.to_string())
                                .unwrap_or_default();
                            text.chars().take(120).collect::<String>()
                        };
                        examples.push(format!(
                            "differs: {} ({} {}) at {at}: stored {}, replayed {}",
                            f.finding_id,
                            f.agent,
                            f.kind,
                            shown(&stored),
                            shown(&again)
                        ));
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
