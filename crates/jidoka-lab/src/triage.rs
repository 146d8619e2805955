//! `jidoka eval triage`, `jidoka eval clusters --sim` and `jidoka bench triage`: the text
//! triage model scored on labelled files, the defect-pattern agent on the simulator's hidden
//! root causes, and the speed of both.

use jidoka_agents::text::{Classifier, Example, TrainConfig, prepare, score};
use jidoka_service::report::Report;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Options of `jidoka eval triage`.
#[derive(Debug, Clone, clap::Args)]
pub struct EvalTriageArgs {
    /// Labelled training file: lines `text,label` (split on the last comma) or CSV with a
    /// header naming a `text` (or `description`) and a `label` (or `code`) column. Without
    /// `--test`, scored by k-fold cross-validation on itself.
    #[arg(long, required_unless_present_any = ["nhtsa", "maintie"])]
    pub train: Option<PathBuf>,
    /// Labelled file to score, same formats.
    #[arg(long, requires = "train")]
    pub test: Option<PathBuf>,
    /// Instead: an NHTSA ODI complaints flat file (FLAT_CMPL: tab-separated, no header), the
    /// complaint text (CDESCR) labelled by its top-level component (COMPDESC before the first
    /// `:`), scored by k-fold cross-validation.
    #[arg(long, conflicts_with_all = ["train", "test"])]
    pub nhtsa: Option<PathBuf>,
    /// Instead: MaintIE's annotated maintenance work orders (`gold_release.json`), each text
    /// labelled by the class of the object its activity or state is about (the patient of the
    /// first `hasParticipant/hasPatient` relation from an Activity or State to a PhysicalObject,
    /// at the second level: `GuidingObject`, `DrivingObject`, ...), scored by k-fold
    /// cross-validation. Texts without such a relation are counted, not scored.
    #[arg(long, conflicts_with_all = ["train", "test", "nhtsa"])]
    pub maintie: Option<PathBuf>,
    /// Folds for `--nhtsa`, `--maintie` and `--train` alone (each text is scored once, by a
    /// model that never saw it).
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(long)]
    pub json: bool,
}

/// The text model's optional pretrained part.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelArgs {
    /// A sentence-encoder directory (`config.json`, `vocab.txt`, `model.safetensors`, e.g. the
    /// all-MiniLM-L6-v2 that `scripts/minilm.sh` installs): its embedding joins the TF-IDF
    /// features.
    #[arg(long, value_name = "DIR")]
    pub embeddings: Option<PathBuf>,
    /// Weight of the embedding against the TF-IDF features.
    #[arg(long, default_value_t = 1.0)]
    pub embedding_weight: f32,
}

impl ModelArgs {
    /// Training settings, with the encoder loaded when one is named.
    pub fn train_config(&self) -> anyhow::Result<TrainConfig> {
        anyhow::ensure!(
            self.embedding_weight.is_finite() && self.embedding_weight > 0.0,
            "--embedding-weight must be a positive number"
        );
        let encoder = match &self.embeddings {
            Some(dir) => Some(std::sync::Arc::new(
                jidoka_agents::encoder::Encoder::load(dir).map_err(|e| anyhow::anyhow!("--embeddings: {e}"))?,
            )),
            None => None,
        };
        Ok(TrainConfig { encoder, embedding_weight: self.embedding_weight, ..TrainConfig::default() })
    }

    /// How the model is made, for report titles.
    fn describe(&self) -> String {
        match &self.embeddings {
            Some(dir) => format!("TF-IDF + {} embedding (weight {})", dir.display(), self.embedding_weight),
            None => "TF-IDF".into(),
        }
    }
}

/// Fields of an ODI complaints flat-file row (NHTSA's published order, 1-based 12 and 20).
const ODI_FIELDS: usize = 48;
const ODI_COMPDESC: usize = 11;
const ODI_CDESCR: usize = 19;

/// Parse an NHTSA ODI complaints flat file: each row's complaint text and top-level component.
/// The files are Latin-1; rows with the wrong number of fields or an empty text or component
/// are named and left out.
pub fn parse_odi_complaints(bytes: &[u8]) -> (Vec<Example>, Vec<LineError>) {
    let mut examples = Vec::new();
    let mut errors = Vec::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line_no = i + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        // Latin-1: every byte is the code point of the same number.
        let line: String = raw.iter().map(|&b| char::from(b)).collect();
        let fields: Vec<&str> = line.split('\t').collect();
        if fields.len() != ODI_FIELDS {
            errors.push(LineError {
                line: line_no,
                reason: format!("expected {ODI_FIELDS} tab-separated fields, found {}", fields.len()),
            });
            continue;
        }
        let component = fields[ODI_COMPDESC].split(':').next().unwrap_or_default().trim();
        if component.is_empty() {
            errors.push(LineError { line: line_no, reason: "COMPDESC: empty".into() });
            continue;
        }
        match prepare(fields[ODI_CDESCR]) {
            Ok((text, _)) => examples.push(Example { text, context: Vec::new(), label: component.to_string() }),
            Err(e) => errors.push(LineError { line: line_no, reason: format!("CDESCR: {e}") }),
        }
    }
    (examples, errors)
}

/// A line of a labelled file that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line: usize,
    pub reason: String,
}

/// Parse a labelled file. Unusable lines are reported by number and reason; the rest are kept.
pub fn parse_labelled(bytes: &[u8]) -> (Vec<Example>, Vec<LineError>) {
    let mut examples = Vec::new();
    let mut errors = Vec::new();
    let mut lines = bytes.split(|&b| b == b'\n').enumerate().peekable();
    // A header names the columns; without one every line is `text,label`.
    let mut columns: Option<(usize, usize)> = None;
    if let Some((_, first)) = lines.peek()
        && let Ok(first) = std::str::from_utf8(first)
    {
        // A spreadsheet export may start with a byte-order mark.
        let first = first.strip_prefix('\u{feff}').unwrap_or(first).trim_end_matches('\r');
        let names: Vec<String> = csv_fields(first).iter().map(|f| f.to_lowercase()).collect();
        let find = |options: &[&str]| names.iter().position(|n| options.contains(&n.trim()));
        if let (Some(t), Some(l)) =
            (find(&["text", "description", "observation"]), find(&["label", "code", "defect_code"]))
        {
            columns = Some((t, l));
            lines.next();
        }
    }
    for (i, raw) in lines {
        let line_no = i + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let Ok(line) = std::str::from_utf8(raw) else {
            errors.push(LineError { line: line_no, reason: "not UTF-8".into() });
            continue;
        };
        let (text, label) = match columns {
            Some((t, l)) => {
                let fields = csv_fields(line);
                match (fields.get(t), fields.get(l)) {
                    (Some(t), Some(l)) => (t.clone(), l.clone()),
                    _ => {
                        errors.push(LineError { line: line_no, reason: format!("expected {} columns", t.max(l) + 1) });
                        continue;
                    }
                }
            }
            None => match line.rsplit_once(',') {
                Some((t, l)) => (t.to_string(), l.to_string()),
                None => {
                    errors.push(LineError { line: line_no, reason: "no comma: expected `text,label`".into() });
                    continue;
                }
            },
        };
        let label = label.trim();
        if label.is_empty() {
            errors.push(LineError { line: line_no, reason: "label: empty".into() });
            continue;
        }
        match prepare(&text) {
            Ok((text, _)) => examples.push(Example { text, context: Vec::new(), label: label.to_string() }),
            Err(e) => errors.push(LineError { line: line_no, reason: e.to_string() }),
        }
    }
    (examples, errors)
}

/// The fields of one CSV line (RFC 4180 quoting; a quoted field may hold commas and `""`).
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => fields.push(std::mem::take(&mut field)),
            (_, c) => field.push(c),
        }
    }
    fields.push(field);
    fields
}

/// Name the first ten unusable lines (or records) of `source` on stderr, and count the rest.
fn print_unusable(errors: &[LineError], source: &str, item: &str) {
    for e in errors.iter().take(10) {
        eprintln!("{source}: {item} {}: {}", e.line, e.reason);
    }
    if errors.len() > 10 {
        eprintln!("{source}: {} more unusable {item}s", errors.len() - 10);
    }
}

/// The rows every triage report has: the model's scores beside the baseline's.
fn add_scores(report: &mut Report, scores: &jidoka_agents::text::Scores, baseline: &jidoka_agents::text::Scores) {
    report
        .add("accuracy", "accuracy (top-1)", scores.accuracy, "")
        .add("top3_accuracy", "top-3 accuracy", scores.top3_accuracy, "")
        .add("macro_f1", "macro-F1", scores.macro_f1, "")
        .add("weighted_f1", "weighted F1", scores.weighted_f1, "")
        .add("baseline_accuracy", "majority-class baseline: accuracy", baseline.accuracy, "")
        .add("baseline_top3_accuracy", "baseline: 3 most frequent labels, top-3 accuracy", baseline.top3_accuracy, "")
        .add("baseline_macro_f1", "majority-class baseline: macro-F1", baseline.macro_f1, "");
}

fn read_labelled(path: &Path, what: &str) -> anyhow::Result<(Vec<Example>, Vec<LineError>)> {
    let bytes = std::fs::read(path).map_err(|e| anyhow::anyhow!("{what} {}: {e}", path.display()))?;
    let (examples, errors) = parse_labelled(&bytes);
    print_unusable(&errors, &format!("{what} {}", path.display()), "line");
    if examples.is_empty() {
        anyhow::bail!("{what} {}: no usable labelled line", path.display());
    }
    Ok((examples, errors))
}

/// The three most frequent labels of `examples`, most frequent first (ties by name).
fn majority(examples: &[Example]) -> Vec<String> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for e in examples {
        *counts.entry(e.label.as_str()).or_default() += 1;
    }
    let mut ranked: Vec<(&str, usize)> = counts.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    ranked.iter().take(3).map(|(l, _)| l.to_string()).collect()
}

/// Parse MaintIE's `gold_release.json`: each work order's text (its `<id>` placeholders left
/// out) labelled by the class of the object it is about; `(examples, unusable records,
/// records without an object relation)`.
pub fn parse_maintie(bytes: &[u8]) -> Result<(Vec<Example>, Vec<LineError>, usize), String> {
    let records: Vec<serde_json::Value> =
        serde_json::from_slice(bytes).map_err(|e| format!("not a JSON array: {e}"))?;
    let (mut examples, mut errors, mut unlabelled) = (Vec::new(), Vec::new(), 0);
    for (i, r) in records.iter().enumerate() {
        let bad = |reason: &str| LineError { line: i + 1, reason: reason.to_string() };
        let (Some(text), Some(entities), Some(relations)) = (
            r.get("text").and_then(|t| t.as_str()),
            r.get("entities").and_then(|e| e.as_array()),
            r.get("relations").and_then(|e| e.as_array()),
        ) else {
            errors.push(bad("expected `text`, `entities` and `relations`"));
            continue;
        };
        let type_of = |ix: Option<u64>| {
            ix.and_then(|ix| entities.get(usize::try_from(ix).ok()?))
                .and_then(|e| e.get("type"))
                .and_then(|t| t.as_str())
        };
        let mut label = None;
        for rel in relations {
            if rel.get("type").and_then(|t| t.as_str()) != Some("hasParticipant/hasPatient") {
                continue;
            }
            let (Some(head), Some(tail)) =
                (type_of(rel.get("head").and_then(|h| h.as_u64())), type_of(rel.get("tail").and_then(|h| h.as_u64())))
            else {
                errors.push(bad("a relation names an entity that is not there"));
                label = None;
                break;
            };
            if (head.starts_with("Activity") || head.starts_with("State"))
                && let Some(class) = tail.strip_prefix("PhysicalObject/")
            {
                label = class.split('/').next().map(str::to_string);
                break;
            }
        }
        let Some(label) = label else {
            if errors.last().is_none_or(|e| e.line != i + 1) {
                unlabelled += 1;
            }
            continue;
        };
        let text = text.split_whitespace().filter(|w| *w != "<id>").collect::<Vec<_>>().join(" ");
        match prepare(&text) {
            Ok((text, _)) => examples.push(Example { text, context: Vec::new(), label }),
            Err(e) => errors.push(bad(&format!("text: {e}"))),
        }
    }
    Ok((examples, errors, unlabelled))
}

/// `--nhtsa` / `--maintie`: k-fold cross-validation over one file (item `i` in fold `i mod k`),
/// each fold scored by a model trained on the others, beside each fold's majority class.
fn cross_validate(title: String, examples: &[Example], unusable: usize, args: &EvalTriageArgs) -> anyhow::Result<()> {
    let (folds, json) = (args.folds, args.json);
    anyhow::ensure!((2..=100).contains(&folds), "--folds must be between 2 and 100");
    anyhow::ensure!(examples.len() >= folds * 2, "{} usable texts, too few for {folds} folds", examples.len());
    let config = args.model.train_config()?;
    let (mut results, mut baseline) = (Vec::new(), Vec::new());
    for k in 0..folds {
        let (test, train): (Vec<_>, Vec<_>) = examples.iter().cloned().enumerate().partition(|(i, _)| i % folds == k);
        let train: Vec<Example> = train.into_iter().map(|(_, e)| e).collect();
        let model = Classifier::train(&train, &config).map_err(|e| anyhow::anyhow!("fold {k}: {e}"))?;
        let top = majority(&train);
        for (_, e) in test {
            results.push((e.label.clone(), model.predict(&e.text, &e.context).into_iter().map(|s| s.label).collect()));
            baseline.push((e.label, top.clone()));
        }
    }
    let (scores, base) = (score(&results), score(&baseline));
    let labels: std::collections::BTreeSet<&str> = examples.iter().map(|e| e.label.as_str()).collect();
    let mut report = Report::new(format!(
        "{title}: {} texts, {} labels, {folds}-fold cross-validation, {}",
        examples.len(),
        labels.len(),
        args.model.describe()
    ));
    add_scores(&mut report, &scores, &base);
    report.add("unusable_lines", "unusable rows", unusable, "");
    report.print(json);
    Ok(())
}

fn eval_nhtsa(path: &Path, args: &EvalTriageArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let (examples, errors) = parse_odi_complaints(&bytes);
    print_unusable(&errors, &path.display().to_string(), "row");
    let title = format!("eval triage --nhtsa: {} (complaint → top-level component)", path.display());
    cross_validate(title, &examples, errors.len(), args)
}

fn eval_maintie(path: &Path, args: &EvalTriageArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let (examples, errors, unlabelled) =
        parse_maintie(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    print_unusable(&errors, &path.display().to_string(), "record");
    let title = format!(
        "eval triage --maintie: {} (work order → class of the object it is about; {unlabelled} without one left out)",
        path.display()
    );
    cross_validate(title, &examples, errors.len(), args)
}

/// Train on one labelled file, score the other, beside the majority-class baseline.
pub fn eval_triage(args: EvalTriageArgs) -> anyhow::Result<()> {
    if let Some(path) = &args.nhtsa {
        return eval_nhtsa(path, &args);
    }
    if let Some(path) = &args.maintie {
        return eval_maintie(path, &args);
    }
    let Some(train_path) = &args.train else {
        anyhow::bail!("give --train (and --test), --nhtsa or --maintie");
    };
    let (train, train_errors) = read_labelled(train_path, "train")?;
    let Some(test_path) = &args.test else {
        let title = format!("eval triage: {}", train_path.display());
        return cross_validate(title, &train, train_errors.len(), &args);
    };
    let (test, test_errors) = read_labelled(test_path, "test")?;
    let config = args.model.train_config()?;
    let started = std::time::Instant::now();
    let model = Classifier::train(&train, &config).map_err(|e| anyhow::anyhow!("train: {e}"))?;
    let train_ms = started.elapsed().as_secs_f64() * 1000.0;
    let started = std::time::Instant::now();
    let results: Vec<(String, Vec<String>)> = test
        .iter()
        .map(|e| (e.label.clone(), model.predict(&e.text, &e.context).into_iter().map(|s| s.label).collect()))
        .collect();
    let predict_us = started.elapsed().as_secs_f64() * 1e6 / test.len().max(1) as f64;
    let mut scores = score(&results);
    let known: std::collections::HashSet<&str> = model.labels.iter().map(String::as_str).collect();
    let mut unseen: Vec<String> =
        test.iter().filter(|e| !known.contains(e.label.as_str())).map(|e| e.label.clone()).collect();
    unseen.sort();
    unseen.dedup();
    scores.unseen_labels = unseen;
    // The majority class of the training file, predicted for everything.
    let majority = majority(&train);
    let baseline = score(&test.iter().map(|e| (e.label.clone(), majority.clone())).collect::<Vec<_>>());
    let mut report = Report::new(format!(
        "eval triage: train {} ({} examples, {} labels), test {} ({} examples), {}",
        train_path.display(),
        train.len(),
        model.labels.len(),
        test_path.display(),
        test.len(),
        args.model.describe()
    ));
    add_scores(&mut report, &scores, &baseline);
    report
        .add("baseline_label", "majority-class baseline: label", majority.first().cloned().unwrap_or_default(), "")
        .add("unseen_labels", "test labels never seen in training", scores.unseen_labels.len(), "")
        .add("unusable_lines", "unusable lines (train + test)", train_errors.len() + test_errors.len(), "")
        .add("train_ms", "training time", train_ms, "ms")
        .add("predict_us", "prediction time per text", predict_us, "µs");
    report.print(args.json);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labelled_lines_split_on_the_last_comma_and_bad_lines_are_named() {
        let input = b"oil leak, at pump,Leaking\nno comma here\n\xff\xfe,Noise\n ;; ,Noise\nsqueal,\nnoisy,Noise\r\n";
        let (ex, errors) = parse_labelled(input);
        assert_eq!(ex.len(), 2);
        assert_eq!((ex[0].text.as_str(), ex[0].label.as_str()), ("oil leak, at pump", "Leaking"));
        assert_eq!(ex[1].label, "Noise");
        let got: Vec<(usize, &str)> = errors.iter().map(|e| (e.line, e.reason.as_str())).collect();
        assert_eq!(
            got,
            vec![
                (2, "no comma: expected `text,label`"),
                (3, "not UTF-8"),
                (4, "text: empty: no letter or digit"),
                (5, "label: empty")
            ]
        );
    }

    #[test]
    fn odi_complaint_rows_give_text_and_top_level_component_and_bad_rows_are_named() {
        let row = |component: &str, text: &str| {
            let mut f = vec![""; ODI_FIELDS];
            f[ODI_COMPDESC] = component;
            f[ODI_CDESCR] = text;
            f.join("\t")
        };
        let mut file = [
            row("SERVICE BRAKES, HYDRAULIC:ANTILOCK", "ABS SYSTEM FAILURE, AT 20MPH."),
            row("AIR BAGS:FRONTAL", ""),
            row("", "NO COMPONENT"),
            "1\t2\t3".to_string(),
        ]
        .join("\r\n")
        .into_bytes();
        // Latin-1 text (0xE9, é) is read, not refused.
        file.extend_from_slice(b"\r\n");
        file.extend(row("STEERING", "VOLANT DUR X @").bytes().map(|b| if b == b'@' { 0xE9 } else { b }));
        let (examples, errors) = parse_odi_complaints(&file);
        let got: Vec<(&str, &str)> = examples.iter().map(|e| (e.text.as_str(), e.label.as_str())).collect();
        assert_eq!(
            got,
            vec![("abs system failure, at 20mph.", "SERVICE BRAKES, HYDRAULIC"), ("volant dur x é", "STEERING")]
        );
        let named: Vec<(usize, &str)> = errors.iter().map(|e| (e.line, e.reason.as_str())).collect();
        assert_eq!(named.len(), 3, "{named:?}");
        assert!(named[0].0 == 2 && named[0].1.starts_with("CDESCR"), "{named:?}");
        assert_eq!(named[1], (3, "COMPDESC: empty"));
        assert_eq!(named[2], (4, "expected 48 tab-separated fields, found 3"));
    }

    #[test]
    fn maintie_work_orders_are_labelled_by_the_object_they_are_about() {
        let file = serde_json::json!([
            {"text": "<id> air conditioner thermostat not working", "entities": [
                {"start": 1, "end": 3, "type": "PhysicalObject/EmittingObject/ElectricCoolingObject"},
                {"start": 3, "end": 4, "type": "PhysicalObject/SensingObject/TemperatureSensingObject"},
                {"start": 4, "end": 6, "type": "State/UndesirableState/FailedState"}],
             "relations": [{"head": 0, "tail": 1, "type": "hasPart"}, {"head": 2, "tail": 1, "type": "hasParticipant/hasPatient"}]},
            {"text": "replace", "entities": [{"start": 0, "end": 1, "type": "Activity/MaintenanceActivity/Replace"}], "relations": []},
            {"text": "broken", "entities": [], "relations": [{"head": 0, "tail": 7, "type": "hasParticipant/hasPatient"}]},
            {"tokens": []}
        ]);
        let (examples, errors, unlabelled) = parse_maintie(file.to_string().as_bytes()).expect("array");
        let got: Vec<(&str, &str)> = examples.iter().map(|e| (e.text.as_str(), e.label.as_str())).collect();
        assert_eq!(got, vec![("air conditioner thermostat not working", "SensingObject")]);
        assert_eq!(unlabelled, 1);
        let named: Vec<(usize, &str)> = errors.iter().map(|e| (e.line, e.reason.as_str())).collect();
        assert_eq!(
            named,
            vec![
                (3, "a relation names an entity that is not there"),
                (4, "expected `text`, `entities` and `relations`")
            ]
        );
        assert!(parse_maintie(b"{").is_err());
    }

    #[test]
    fn csv_with_a_header_picks_its_columns() {
        let input =
            b"\xef\xbb\xbfid,Description,code\n1,\"seat gap, LH side\",D-SEAT-GAP\n2,\"says \"\"loose\"\"\",D-CAP\n3,short\n";
        let (ex, errors) = parse_labelled(input);
        assert_eq!(ex.len(), 2);
        assert_eq!((ex[0].text.as_str(), ex[0].label.as_str()), ("seat gap, lh side", "D-SEAT-GAP"));
        assert_eq!(ex[1].text, "says \"loose\"");
        assert_eq!(errors, vec![LineError { line: 4, reason: "expected 3 columns".into() }]);
    }
}

/// A hidden cause planted in the simulator: its defect code, the context that defines it (the
/// defining value first: the fixture, the supplier lot) and when it starts. A claim is correct
/// when it names the defining value and nothing outside the cause.
#[derive(Debug, Clone)]
struct Cause {
    fault: String,
    code: String,
    station: String,
    values: Vec<(String, String)>,
    onset: chrono::DateTime<chrono::Utc>,
}

/// What one simulated run produced for the quality agents.
#[derive(Debug, Default)]
struct QualityRun {
    causes: Vec<Cause>,
    findings: Vec<jidoka_model::Finding>,
    /// Occurrence time of every NCR, in log order.
    ncr_times: Vec<chrono::DateTime<chrono::Utc>>,
    /// NCR id → its true code (from the ground truth).
    true_codes: HashMap<String, String>,
    /// NCR event id → NCR id.
    ncr_of_event: HashMap<String, String>,
    /// Andon id → the team the simulator's cause belongs to.
    true_teams: HashMap<String, String>,
    events: u64,
}

fn run_quality(plant: jidoka_sim::Plant, seed: u64, units: u64) -> anyhow::Result<QualityRun> {
    use jidoka_agents::{AgentsConfig, Router, build_agents};
    use jidoka_model::{EventPayload, StoredEvent};
    let config = AgentsConfig {
        torque_audit: jidoka_agents::torque::TorqueAuditConfig { enabled: false, ..Default::default() },
        ..AgentsConfig::default()
    };
    let mut router = Router::new(build_agents(&config, &None));
    let mut sim = jidoka_sim::Simulation::new(plant, seed, Some(units), jidoka_sim::CurveMode::None);
    let mut run = QualityRun::default();
    let mut seq = 0;
    let parse_time = |s: &str| s.parse::<chrono::DateTime<chrono::Utc>>().ok();
    while sim.has_more() {
        let slot = sim.next_slot();
        for t in slot.truth {
            let d = &t.detail;
            let s = |k: &str| d[k].as_str().unwrap_or_default().to_string();
            match t.fault.as_str() {
                "worn_fixture" | "bad_lot" => {
                    let values = if t.fault == "worn_fixture" {
                        vec![("fixture".to_string(), s("fixture")), ("shift".to_string(), s("shift"))]
                    } else {
                        vec![("supplier_lot".to_string(), s("supplier_lot")), ("part_number".to_string(), s("part"))]
                    };
                    if let Some(onset) = parse_time(&t.onset_at) {
                        run.causes.push(Cause {
                            fault: t.fault.clone(),
                            code: s("defect"),
                            station: t.station,
                            values,
                            onset,
                        });
                    }
                }
                "defect" => {
                    run.true_codes.insert(s("ncr_id"), s("code"));
                }
                "andon" => {
                    run.true_teams.insert(s("andon_id"), s("team"));
                }
                _ => {}
            }
        }
        for event in slot.events {
            if let EventPayload::NcrCreated(n) = &event.payload {
                run.ncr_times.push(event.occurred_at);
                run.ncr_of_event.insert(event.event_id.clone(), n.ncr_id.clone());
            }
            seq += 1;
            router.process(&StoredEvent { seq, event }, &mut run.findings);
        }
    }
    run.events = seq;
    Ok(run)
}

/// Whether a defect-pattern finding names (part of) a planted cause, and which.
fn matching_cause<'a>(run: &'a QualityRun, f: &jidoka_model::Finding) -> Option<&'a Cause> {
    let code = f.details["code"].as_str()?;
    // A claim on a text cluster of uncoded NCRs stands for the true code most of the NCRs it
    // cites have.
    let dominant;
    let code = if code.starts_with("text:") {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for e in &f.evidence {
            if let Some(c) = run.ncr_of_event.get(e).and_then(|n| run.true_codes.get(n)) {
                *counts.entry(c.as_str()).or_default() += 1;
            }
        }
        dominant = counts.into_iter().max_by_key(|(_, n)| *n).map(|(c, _)| c.to_string())?;
        dominant.as_str()
    } else {
        code
    };
    let values: Vec<(String, String)> = f.details["values"]
        .as_array()?
        .iter()
        .map(|v| (v["field"].as_str().unwrap_or("").to_string(), v["value"].as_str().unwrap_or("").to_string()))
        .collect();
    run.causes.iter().find(|c| {
        c.code == code
            && f.subject.station.as_deref() == Some(c.station.as_str())
            && f.occurred_at >= c.onset
            && values.iter().all(|v| c.values.contains(v))
            && values.iter().any(|v| v == &c.values[0])
    })
}

/// The defect-pattern agent against the simulator's planted causes; NCR triage of uncoded
/// NCRs against their true codes; a clean plant for false claims.
pub fn eval_clusters(args: crate::eval::SimEvalArgs) -> anyhow::Result<()> {
    let (plant, _) = jidoka_service::demo::load_plant(args.plant.as_deref())?;
    let bar = jidoka_service::report::progress(2, "eval clusters");
    let run = run_quality(plant.clone(), args.seed, args.units)?;
    bar.inc(1);
    let mut clean_plant = plant;
    clean_plant.faults = jidoka_sim::plant::Faults::default();
    let clean = run_quality(clean_plant, args.seed, args.units)?;
    bar.finish_and_clear();
    let patterns: Vec<&jidoka_model::Finding> = run.findings.iter().filter(|f| f.kind == "defect.pattern").collect();
    let mut report = Report::new(format!(
        "eval clusters --sim: {} units, seed {}, {} NCRs, {} planted causes",
        args.units,
        args.seed,
        run.ncr_times.len(),
        run.causes.len()
    ));
    let mut worst_ncrs: Option<usize> = (!run.causes.is_empty()).then_some(0);
    for cause in &run.causes {
        let first = patterns.iter().find(|f| matching_cause(&run, f).is_some_and(|c| std::ptr::eq(c, cause)));
        let top = patterns.iter().find(|f| {
            matching_cause(&run, f).is_some_and(|c| std::ptr::eq(c, cause)) && f.details["rank"].as_u64() == Some(0)
        });
        let ncrs_until = |f: &jidoka_model::Finding| {
            run.ncr_times.iter().filter(|t| **t >= cause.onset && **t <= f.occurred_at).count()
        };
        let key = cause.fault.as_str();
        let label = format!("{} ({} → {})", cause.fault, describe(&cause.values), cause.code);
        match top {
            Some(f) => {
                let n = ncrs_until(f);
                worst_ncrs = worst_ncrs.map(|w| w.max(n));
                report
                    .add(
                        &format!("{key}_ncrs_to_first_rank"),
                        &format!("{label}: NCRs (all codes) from onset until reported first"),
                        n,
                        "",
                    )
                    .add(
                        &format!("{key}_p_value"),
                        &format!("{label}: p when ranked first"),
                        f.details["p_value"].clone(),
                        "",
                    )
                    .add(&format!("{key}_claim"), &format!("{label}: claim"), claim_text(f), "");
            }
            None => {
                worst_ncrs = None;
                report.add(
                    &format!("{key}_ncrs_to_first_rank"),
                    &format!("{label}: never reported first"),
                    "never",
                    "",
                );
            }
        }
        if let Some(f) = first {
            report.add(
                &format!("{key}_ncrs_to_first_claim"),
                &format!("{label}: NCRs (all codes) from onset until first claimed"),
                ncrs_until(f),
                "",
            );
        }
    }
    let correct = patterns.iter().filter(|f| matching_cause(&run, f).is_some()).count();
    let clean_claims = clean.findings.iter().filter(|f| f.kind == "defect.pattern").count();
    report
        .add("claims", "over-represented claims made", patterns.len(), "")
        .add("claims_correct", "claims naming (part of) a planted cause", correct, "")
        .add("precision", "precision of claims", correct as f64 / patterns.len().max(1) as f64, "")
        .add(
            "worst_ncrs_to_first_rank",
            "slowest cause: NCRs (all codes) from onset until reported first",
            worst_ncrs.map(|n| n as i64).unwrap_or(-1),
            "",
        )
        .add("clean_run_claims", "claims on a clean plant (same seed, no planted causes)", clean_claims, "");
    for f in patterns.iter().filter(|f| matching_cause(&run, f).is_none()).take(5) {
        eprintln!("claim not matching a planted cause: {}", f.reason);
    }
    for f in clean.findings.iter().filter(|f| f.kind == "defect.pattern").take(5) {
        eprintln!("claim on the clean plant: {}", f.reason);
    }
    // Triage of the NCRs raised without a code, against their true code.
    let mut results = Vec::new();
    let mut no_history = 0;
    for f in run.findings.iter().filter(|f| f.kind == "ncr.triage") {
        let ncr = f.details["ncr_id"].as_str().unwrap_or_default();
        let Some(truth) = run.true_codes.get(ncr) else { continue };
        let ranked: Vec<String> = f.details["suggestions"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s["label"].as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        if ranked.is_empty() {
            no_history += 1;
            continue;
        }
        results.push((truth.clone(), ranked));
    }
    let s = score(&results);
    report
        .add("triage_n", "uncoded NCRs triaged", s.n, "")
        .add("triage_insufficient_history", "uncoded NCRs before enough coded history", no_history, "")
        .add("triage_accuracy", "NCR triage: top-1 accuracy", s.accuracy, "")
        .add("triage_top3_accuracy", "NCR triage: top-3 accuracy", s.top3_accuracy, "")
        .add("triage_macro_f1", "NCR triage: macro-F1", s.macro_f1, "");
    // Andon routing against the team of the simulator's cause, by what decided.
    let mut routing: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for f in run.findings.iter().filter(|f| f.kind == "andon.triage") {
        let Some(truth) = run.true_teams.get(f.details["andon_id"].as_str().unwrap_or_default()) else { continue };
        let method = f.details["method"].as_str().unwrap_or("none").to_string();
        let hit = f.details["team"].as_str() == Some(truth.as_str());
        for key in [method, "all".to_string()] {
            let e = routing.entry(key).or_default();
            e.0 += 1;
            e.1 += usize::from(hit);
        }
    }
    for (method, (n, hits)) in &routing {
        report.add(&format!("andon_{method}_n"), &format!("Andon stops routed ({method})"), *n, "").add(
            &format!("andon_{method}_accuracy"),
            &format!("Andon routing accuracy ({method})"),
            *hits as f64 / (*n).max(1) as f64,
            "",
        );
    }
    report.print(args.json);
    Ok(())
}

fn claim_text(f: &jidoka_model::Finding) -> String {
    f.details["values"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| format!("{} {}", v["field"].as_str().unwrap_or(""), v["value"].as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(" on ")
        })
        .unwrap_or_default()
}

/// A planted cause's values in the words of the claims.
fn describe(values: &[(String, String)]) -> String {
    values.iter().map(|(f, v)| format!("{f} {v}")).collect::<Vec<_>>().join(" on ")
}

/// Options of `jidoka bench triage`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchTriageArgs {
    /// Labelled file to train and predict on (formats as `eval triage`); by default the coded
    /// NCRs of the simulated run.
    #[arg(long)]
    pub train: Option<PathBuf>,
    /// Units of the simulated run that feeds the quality and Andon agents.
    #[arg(long, default_value_t = 6000)]
    pub units: u64,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(long)]
    pub json: bool,
}

/// Training time, prediction throughput and latency of the text model; events/s and NCRs/s
/// through the quality and Andon agents over a simulated run.
pub fn bench_triage(args: BenchTriageArgs) -> anyhow::Result<()> {
    use jidoka_model::EventPayload;
    use jidoka_service::report::percentile;
    let (plant, _) = jidoka_service::demo::load_plant(None)?;
    // The simulated stream, kept in memory so only the agents are timed.
    let mut sim = jidoka_sim::Simulation::new(plant, args.seed, Some(args.units), jidoka_sim::CurveMode::None);
    let mut events = Vec::new();
    while sim.has_more() {
        events.extend(sim.next_slot().events);
    }
    let (examples, source) = match &args.train {
        Some(path) => (read_labelled(path, "train")?.0, path.display().to_string()),
        None => {
            let coded: Vec<Example> = events
                .iter()
                .filter_map(|e| match &e.payload {
                    EventPayload::NcrCreated(n) => Some(Example {
                        text: prepare(&n.description).ok()?.0,
                        context: n.station.iter().map(|s| format!("station={s}")).collect(),
                        label: n.defect_code.clone()?,
                    }),
                    _ => None,
                })
                .collect();
            (coded, format!("coded NCRs of a {}-unit simulated run", args.units))
        }
    };
    let config = args.model.train_config()?;
    let mut train_ms = Vec::new();
    let mut model = None;
    for _ in 0..5 {
        let started = std::time::Instant::now();
        model = Some(Classifier::train(&examples, &config).map_err(|e| anyhow::anyhow!("train: {e}"))?);
        train_ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let model = model.ok_or_else(|| anyhow::anyhow!("no model"))?;
    // The first training embedded every text; the others found the embeddings cached.
    let train_cold_ms = train_ms[0];
    train_ms.sort_by(f64::total_cmp);
    let mut embed_ms = Vec::new();
    if let Some(encoder) = &config.encoder {
        for e in examples.iter().take(200) {
            let t = std::time::Instant::now();
            std::hint::black_box(encoder.embed_uncached(&e.text));
            embed_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        embed_ms.sort_by(f64::total_cmp);
    }
    let mut latency_us = Vec::with_capacity(examples.len() * 10);
    let started = std::time::Instant::now();
    for _ in 0..10 {
        for e in &examples {
            let t = std::time::Instant::now();
            std::hint::black_box(model.predict(&e.text, &e.context));
            latency_us.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    let predict_rate = latency_us.len() as f64 / started.elapsed().as_secs_f64();
    latency_us.sort_by(f64::total_cmp);
    // The agents over the whole stream.
    let agents_config = jidoka_agents::AgentsConfig {
        torque_audit: jidoka_agents::torque::TorqueAuditConfig { enabled: false, ..Default::default() },
        encoder: jidoka_agents::SharedEncoder(config.encoder.clone()),
        ..jidoka_agents::AgentsConfig::default()
    };
    let mut router = jidoka_agents::Router::new(jidoka_agents::build_agents(&agents_config, &None));
    let ncrs = events.iter().filter(|e| matches!(e.payload, EventPayload::NcrCreated(_))).count();
    let n_events = events.len();
    let mut findings = Vec::new();
    let started = std::time::Instant::now();
    for (i, event) in events.into_iter().enumerate() {
        router.process(&jidoka_model::StoredEvent { seq: i as u64 + 1, event }, &mut findings);
    }
    let agent_s = started.elapsed().as_secs_f64();
    let mut report = Report::new(format!(
        "bench triage: {} examples, {} labels ({source}), {}; agents over {n_events} events, {ncrs} NCRs",
        examples.len(),
        model.labels.len(),
        args.model.describe()
    ));
    report
        .add("train_ms_cold", "training time, first (every text embedded)", train_cold_ms, "ms")
        .add("train_ms_p50", "training time (median of 5)", percentile(&train_ms, 50.0), "ms")
        .add(
            "train_examples_per_s",
            "training: examples/s",
            examples.len() as f64 / (percentile(&train_ms, 50.0) / 1000.0),
            "/s",
        )
        .add("predict_per_s", "prediction: NCRs/s (one thread, embeddings cached)", predict_rate, "/s")
        .add("predict_us_p50", "prediction latency p50", percentile(&latency_us, 50.0), "µs")
        .add("predict_us_p99", "prediction latency p99", percentile(&latency_us, 99.0), "µs")
        .add("embed_ms_p50", "embedding a new text: p50 (0 without an encoder)", percentile(&embed_ms, 50.0), "ms")
        .add("embed_ms_p99", "embedding a new text: p99", percentile(&embed_ms, 99.0), "ms")
        .add(
            "new_text_per_s",
            "prediction of a new text: NCRs/s (one thread, embedding included)",
            1000.0 / (percentile(&embed_ms, 50.0) + percentile(&latency_us, 50.0) / 1000.0),
            "/s",
        )
        .add("agents_events_per_s", "quality + Andon agents: events/s", n_events as f64 / agent_s, "/s")
        .add("agents_s", "quality + Andon agents: the whole run (patterns, triage, retraining)", agent_s, "s")
        .add("agents_findings", "findings from the run", findings.len(), "");
    report.print(args.json);
    Ok(())
}
