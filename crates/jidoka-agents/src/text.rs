//! Short-text classification for triage: TF-IDF features over words and character n-grams,
//! a multinomial logistic regression on them, and cosine nearest neighbours for "similar past
//! cases".
//!
//! Defect and maintenance texts are short (a few words), misspelt ("falure", "squeeling") and
//! full of plant shorthand, so characters carry as much as words: every word contributes its
//! character 2- to 5-grams (padded with a space at each end, so prefixes and suffixes are
//! distinct), plus the word itself and each pair of neighbouring words. Context such as the
//! station or fault code enters as extra categorical tokens.
//!
//! Training is deterministic (a fixed shuffle seed) and takes milliseconds for thousands of
//! texts, so agents retrain from the log instead of shipping weights. Nothing here panics on
//! input: empty or oversized texts are refused or truncated with the reason said.

use crate::encoder::Encoder;
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Longest text considered, in bytes; the rest of a longer description is ignored (and the
/// caller is told, see [`prepare`]).
pub const MAX_TEXT_BYTES: usize = 4096;

/// Most features a vectorizer keeps (the most frequent), so a model stays below
/// labels × 50,000 weights whatever the history holds.
pub const MAX_FEATURES: usize = 50_000;

/// Most labels a model learns (the most frequent); rarer ones are left out of training.
pub const MAX_LABELS: usize = 200;

/// Why a text or a training set cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextError {
    pub field: &'static str,
    pub reason: String,
}

impl std::fmt::Display for TextError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl std::error::Error for TextError {}

/// A text made ready for features: lower-cased, cut at [`MAX_TEXT_BYTES`] on a character
/// boundary. Refuses a text with no letter or digit in it.
pub fn prepare(text: &str) -> Result<(String, bool), TextError> {
    let mut end = text.len().min(MAX_TEXT_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let truncated = end < text.len();
    let cut = &text[..end];
    if !cut.chars().any(char::is_alphanumeric) {
        return Err(TextError { field: "text", reason: "empty: no letter or digit".into() });
    }
    Ok((cut.to_lowercase(), truncated))
}

/// The tokens of a prepared text: words, word pairs, character n-grams of each word.
fn tokens(text: &str, context: &[String], out: &mut Vec<String>) {
    out.clear();
    let words: Vec<&str> = text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect();
    for (i, w) in words.iter().enumerate() {
        out.push(format!("w:{w}"));
        if let Some(next) = words.get(i + 1) {
            out.push(format!("b:{w} {next}"));
        }
        let padded: Vec<char> = std::iter::once(' ').chain(w.chars()).chain(std::iter::once(' ')).collect();
        for n in 2..=5 {
            if padded.len() < n {
                break;
            }
            for gram in padded.windows(n) {
                let mut s = String::with_capacity(n + 2);
                s.push_str("c:");
                s.extend(gram);
                out.push(s);
            }
        }
    }
    for c in context {
        out.push(format!("x:{c}"));
    }
}

/// A sparse, L2-normalised feature vector (sorted by index).
pub type Sparse = Vec<(u32, f32)>;

/// The vocabulary and inverse document frequencies learned from a training set, and the
/// sentence encoder whose embedding joins the TF-IDF features, when one is given.
#[derive(Debug, Clone, Default)]
pub struct Vectorizer {
    index: HashMap<String, u32>,
    idf: Vec<f32>,
    encoder: Option<Arc<Encoder>>,
    /// Length of the embedding part against the TF-IDF part (each unit length before).
    embedding_weight: f32,
}

impl Vectorizer {
    /// Learn the vocabulary from `docs` (text, context tokens); with an encoder, its embedding
    /// (scaled by `embedding_weight`) follows the TF-IDF features in every vector.
    pub fn fit<'a>(
        docs: impl Iterator<Item = (&'a str, &'a [String])>,
        encoder: Option<Arc<Encoder>>,
        embedding_weight: f32,
    ) -> Vectorizer {
        let mut index: HashMap<String, u32> = HashMap::new();
        let mut df: Vec<u32> = Vec::new();
        let mut buf = Vec::new();
        let mut n = 0u32;
        for (text, ctx) in docs {
            n += 1;
            tokens(text, ctx, &mut buf);
            buf.sort_unstable();
            buf.dedup();
            for t in buf.drain(..) {
                let next = index.len() as u32;
                let id = *index.entry(t).or_insert(next);
                if id as usize == df.len() {
                    df.push(0);
                }
                df[id as usize] += 1;
            }
        }
        // Bound the model: keep the MAX_FEATURES most frequent tokens (weights are dense per label).
        if index.len() > MAX_FEATURES {
            let mut by_df: Vec<(String, u32)> = index.into_iter().collect();
            by_df.sort_by(|a, b| df[b.1 as usize].cmp(&df[a.1 as usize]).then_with(|| a.0.cmp(&b.0)));
            by_df.truncate(MAX_FEATURES);
            let kept_df: Vec<u32> = by_df.iter().map(|(_, id)| df[*id as usize]).collect();
            index = by_df.into_iter().enumerate().map(|(i, (t, _))| (t, i as u32)).collect();
            df = kept_df;
        }
        let idf = df.iter().map(|&d| ((1.0 + n as f32) / (1.0 + d as f32)).ln() + 1.0).collect();
        Vectorizer { index, idf, encoder, embedding_weight }
    }

    /// Features of a vector: the vocabulary, then the embedding's width.
    pub fn len(&self) -> usize {
        self.idf.len() + self.encoder.as_ref().map_or(0, |e| e.dim())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sublinear TF × IDF, L2-normalised (tokens unseen in training are dropped); with an
    /// encoder, its embedding × `embedding_weight` appended and the whole made unit length.
    pub fn transform(&self, text: &str, context: &[String]) -> Sparse {
        let tfidf = self.tfidf(text, context);
        let Some(encoder) = &self.encoder else {
            return tfidf;
        };
        let offset = self.idf.len() as u32;
        let embedding = encoder.embed(text);
        let mut v = tfidf;
        v.extend(embedding.iter().enumerate().map(|(i, &a)| (offset + i as u32, a * self.embedding_weight)));
        normalized(v)
    }

    fn tfidf(&self, text: &str, context: &[String]) -> Sparse {
        let mut buf = Vec::new();
        tokens(text, context, &mut buf);
        let mut counts: HashMap<u32, f32> = HashMap::new();
        for t in &buf {
            if let Some(&id) = self.index.get(t) {
                *counts.entry(id).or_default() += 1.0;
            }
        }
        normalized(counts.into_iter().map(|(id, tf)| (id, (1.0 + tf.ln()) * self.idf[id as usize])).collect())
    }
}

/// Features without a fitted vocabulary, for texts no model has been trained on: the same
/// tokens hashed (FNV-1a) into 2^20 buckets, sublinear TF, L2-normalised.
pub fn hashed(text: &str) -> Sparse {
    let mut buf = Vec::new();
    tokens(text, &[], &mut buf);
    let mut counts: HashMap<u32, f32> = HashMap::new();
    for t in &buf {
        let h = t.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
        *counts.entry(h & 0xF_FFFF).or_default() += 1.0;
    }
    normalized(counts.into_iter().map(|(id, tf)| (id, 1.0 + tf.ln())).collect())
}

/// Sorted by index and scaled to unit length (an all-zero vector stays as it is).
pub fn normalized(mut v: Sparse) -> Sparse {
    v.sort_unstable_by_key(|e| e.0);
    let norm = v.iter().map(|e| e.1 * e.1).sum::<f32>().sqrt();
    if norm > 0.0 {
        for e in &mut v {
            e.1 /= norm;
        }
    }
    v
}

/// Cosine similarity of two L2-normalised sparse vectors.
pub fn cosine(a: &Sparse, b: &Sparse) -> f32 {
    let (mut i, mut j, mut s) = (0, 0, 0.0);
    while i < a.len() && j < b.len() {
        match a[i].0.cmp(&b[j].0) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                s += a[i].1 * b[j].1;
                i += 1;
                j += 1;
            }
        }
    }
    s
}

/// One labelled example.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub text: String,
    /// Categorical context tokens, e.g. `station=ST040`.
    pub context: Vec<String>,
    pub label: String,
}

/// Training settings.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    pub epochs: usize,
    /// L2 penalty per example.
    pub l2: f32,
    pub learning_rate: f32,
    /// Weight each class by the inverse of its frequency (helps rare classes, i.e. macro-F1).
    pub balanced: bool,
    /// Fewest examples to train on; fewer and the model says it has too little history.
    pub min_examples: usize,
    pub seed: u64,
    /// A pretrained sentence encoder whose embedding joins the TF-IDF features.
    pub encoder: Option<Arc<Encoder>>,
    /// Weight of the embedding against the TF-IDF part.
    pub embedding_weight: f32,
}

/// The defaults were chosen by 5-fold cross-validation on the failure-mode training file
/// (epochs 20–80, L2 0–1e-3, learning rate 0.2–1, balanced or not: accuracy 0.66–0.70, so the
/// model is not sensitive to them); the held-out files were not used to choose.
impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 40,
            l2: 0.0,
            learning_rate: 0.5,
            balanced: true,
            min_examples: 20,
            seed: 17,
            encoder: None,
            embedding_weight: 1.0,
        }
    }
}

/// A label with its probability.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scored {
    pub label: String,
    pub confidence: f64,
}

/// A trained classifier: vectorizer, labels and one weight row per label.
#[derive(Debug, Clone)]
pub struct Classifier {
    pub vectorizer: Vectorizer,
    pub labels: Vec<String>,
    /// How many training examples carried each label.
    pub support: Vec<u32>,
    weights: Vec<f32>,
    bias: Vec<f32>,
}

impl Classifier {
    /// Train on `examples`. Refuses fewer than `config.min_examples` or a single label: a model
    /// with too little history says so instead of guessing.
    pub fn train(examples: &[Example], config: &TrainConfig) -> Result<Classifier, TextError> {
        if examples.len() < config.min_examples.max(1) {
            return Err(TextError {
                field: "history",
                reason: format!(
                    "too little history: {} labelled examples, at least {} needed",
                    examples.len(),
                    config.min_examples.max(1)
                ),
            });
        }
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for e in examples {
            *counts.entry(e.label.as_str()).or_default() += 1;
        }
        let kept: Vec<&Example>;
        let examples: &[&Example] = if counts.len() > MAX_LABELS {
            let mut ranked: Vec<(&str, usize)> = counts.into_iter().collect();
            ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            let top: std::collections::HashSet<&str> = ranked.iter().take(MAX_LABELS).map(|r| r.0).collect();
            kept = examples.iter().filter(|e| top.contains(e.label.as_str())).collect();
            &kept
        } else {
            kept = examples.iter().collect();
            &kept
        };
        let mut label_ix: HashMap<&str, usize> = HashMap::new();
        let mut labels: Vec<String> = Vec::new();
        let mut y = Vec::with_capacity(examples.len());
        for e in examples {
            let next = labels.len();
            let ix = *label_ix.entry(e.label.as_str()).or_insert_with(|| {
                labels.push(e.label.clone());
                next
            });
            y.push(ix);
        }
        if labels.len() < 2 {
            return Err(TextError { field: "history", reason: "too little history: only one label seen".into() });
        }
        let vectorizer = Vectorizer::fit(
            examples.iter().map(|e| (e.text.as_str(), e.context.as_slice())),
            config.encoder.clone(),
            config.embedding_weight,
        );
        let x: Vec<Sparse> = examples.iter().map(|e| vectorizer.transform(&e.text, &e.context)).collect();
        let (k, d) = (labels.len(), vectorizer.len());
        let mut support = vec![0u32; k];
        for &c in &y {
            support[c] += 1;
        }
        let class_weight: Vec<f32> = support
            .iter()
            .map(|&s| if config.balanced { examples.len() as f32 / (k as f32 * s as f32) } else { 1.0 })
            .collect();
        let mut w = vec![0f32; k * d];
        let mut b = vec![0f32; k];
        // AdaGrad accumulators, per weight.
        let mut gw = vec![1e-8f32; k * d];
        let mut gb = vec![1e-8f32; k];
        let mut order: Vec<usize> = (0..x.len()).collect();
        let mut rng = config.seed | 1;
        let mut p = vec![0f32; k];
        for _ in 0..config.epochs {
            // Fisher-Yates with xorshift: the same order for the same seed, on every machine.
            for i in (1..order.len()).rev() {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                order.swap(i, (rng % (i as u64 + 1)) as usize);
            }
            for &i in &order {
                scores(&w, &b, d, &x[i], &mut p);
                softmax(&mut p);
                let cw = class_weight[y[i]];
                for c in 0..k {
                    let g = cw * (p[c] - if c == y[i] { 1.0 } else { 0.0 });
                    gb[c] += g * g;
                    b[c] -= config.learning_rate * g / gb[c].sqrt();
                    let row = c * d;
                    for &(j, v) in &x[i] {
                        let idx = row + j as usize;
                        let gj = g * v + config.l2 * w[idx];
                        gw[idx] += gj * gj;
                        w[idx] -= config.learning_rate * gj / gw[idx].sqrt();
                    }
                }
            }
        }
        Ok(Classifier { vectorizer, labels, support, weights: w, bias: b })
    }

    /// Probabilities of every label for a text, best first.
    pub fn predict(&self, text: &str, context: &[String]) -> Vec<Scored> {
        let x = self.vectorizer.transform(text, context);
        self.predict_vector(&x)
    }

    /// As [`Classifier::predict`], for an already vectorised text.
    pub fn predict_vector(&self, x: &Sparse) -> Vec<Scored> {
        let mut p = vec![0f32; self.labels.len()];
        scores(&self.weights, &self.bias, self.vectorizer.len(), x, &mut p);
        softmax(&mut p);
        let mut out: Vec<Scored> = self
            .labels
            .iter()
            .zip(p)
            .map(|(label, conf)| Scored { label: label.clone(), confidence: conf as f64 })
            .collect();
        out.sort_by(|a, b| b.confidence.total_cmp(&a.confidence).then_with(|| a.label.cmp(&b.label)));
        out
    }
}

/// A labelled case a [`Learner`] keeps: its text, context tokens and label.
pub trait Case {
    fn text(&self) -> &str;
    fn context(&self) -> Vec<String>;
    fn label(&self) -> &str;
}

/// Labelled history and the model trained on it, for an agent that learns from the log: the
/// last `max_history` cases are kept (with their vectors, for similar cases), and the model is
/// retrained on a geometric schedule (10 % more cases, at least `min_step`, at most a tenth of
/// the history), so a long log costs a few dozen trainings, not one per case.
#[derive(Debug, Clone)]
pub struct Learner<T> {
    history: VecDeque<T>,
    vectors: VecDeque<Sparse>,
    model: Option<Classifier>,
    /// Cases the current model was trained on.
    trained_on: usize,
    /// Cases seen when training last ran.
    retrained_at: usize,
    seen: usize,
    error: Option<String>,
    min_history: usize,
    max_history: usize,
    min_step: usize,
    encoder: Option<Arc<Encoder>>,
}

impl<T: Case> Learner<T> {
    pub fn new(min_history: usize, max_history: usize, min_step: usize) -> Self {
        Learner {
            history: VecDeque::new(),
            vectors: VecDeque::new(),
            model: None,
            trained_on: 0,
            retrained_at: 0,
            seen: 0,
            error: None,
            min_history,
            max_history: max_history.max(min_history),
            min_step: min_step.max(1),
            encoder: None,
        }
    }

    /// Models trained from now on also use this sentence encoder's embedding.
    pub fn with_encoder(mut self, encoder: Option<Arc<Encoder>>) -> Self {
        self.encoder = encoder;
        self
    }

    pub fn model(&self) -> Option<&Classifier> {
        self.model.as_ref()
    }

    /// Cases the current model was trained on.
    pub fn trained_on(&self) -> usize {
        self.trained_on
    }

    /// Why there is no model: too little history, or what training said.
    pub fn why_not(&self) -> String {
        self.error.clone().unwrap_or_else(|| {
            format!("too little history: {} labelled cases, at least {} needed", self.seen, self.min_history)
        })
    }

    /// Keep a case and retrain when due.
    pub fn learn(&mut self, case: T) {
        if let Some(model) = &self.model {
            self.vectors.push_back(model.vectorizer.transform(case.text(), &case.context()));
        }
        self.history.push_back(case);
        while self.history.len() > self.max_history {
            self.history.pop_front();
            self.vectors.pop_front();
        }
        self.seen += 1;
        let due = if self.model.is_none() {
            self.seen >= self.min_history && self.seen >= self.retrained_at + 5
        } else {
            self.seen
                >= self.retrained_at
                    + (self.retrained_at / 10).clamp(self.min_step, (self.max_history / 10).max(self.min_step))
        };
        if !due {
            return;
        }
        self.retrained_at = self.seen;
        let examples: Vec<Example> = self
            .history
            .iter()
            .map(|c| Example { text: c.text().to_string(), context: c.context(), label: c.label().to_string() })
            .collect();
        let config =
            TrainConfig { min_examples: self.min_history, encoder: self.encoder.clone(), ..TrainConfig::default() };
        match Classifier::train(&examples, &config) {
            Ok(model) => {
                self.vectors = examples.iter().map(|e| model.vectorizer.transform(&e.text, &e.context)).collect();
                self.model = Some(model);
                self.trained_on = examples.len();
                self.error = None;
            }
            Err(e) => self.error = Some(e.reason),
        }
    }

    /// Past cases `keep` accepts, most similar to `x` first (cosine above 0).
    pub fn nearest(&self, x: &Sparse, keep: impl Fn(&T) -> bool) -> Vec<(f32, &T)> {
        let mut near: Vec<(f32, usize)> = self
            .vectors
            .iter()
            .enumerate()
            .filter(|(i, _)| keep(&self.history[*i]))
            .map(|(i, v)| (cosine(x, v), i))
            .filter(|(s, _)| *s > 0.0)
            .collect();
        near.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)));
        near.into_iter().map(|(s, i)| (s, &self.history[i])).collect()
    }
}

fn scores(w: &[f32], b: &[f32], d: usize, x: &Sparse, out: &mut [f32]) {
    for (c, o) in out.iter_mut().enumerate() {
        let row = &w[c * d..(c + 1) * d];
        *o = b[c] + x.iter().map(|&(j, v)| row[j as usize] * v).sum::<f32>();
    }
}

fn softmax(p: &mut [f32]) {
    let max = p.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in p.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in p.iter_mut() {
        *v /= sum;
    }
}

/// Scores of a classifier on labelled data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scores {
    pub n: usize,
    pub accuracy: f64,
    pub top3_accuracy: f64,
    pub macro_f1: f64,
    pub weighted_f1: f64,
    /// Labels of the test set never seen in training (every such example is a miss).
    pub unseen_labels: Vec<String>,
}

/// Accuracy, top-3 accuracy, macro-F1 (over the labels of the test set) and weighted F1 from
/// (truth, ranked predictions).
pub fn score(results: &[(String, Vec<String>)]) -> Scores {
    let n = results.len();
    let mut tp: HashMap<&str, f64> = HashMap::new();
    let mut fp: HashMap<&str, f64> = HashMap::new();
    let mut support: HashMap<&str, f64> = HashMap::new();
    let (mut top1, mut top3) = (0usize, 0usize);
    for (truth, ranked) in results {
        *support.entry(truth).or_default() += 1.0;
        match ranked.first() {
            Some(p) if p == truth => {
                top1 += 1;
                *tp.entry(truth).or_default() += 1.0;
            }
            Some(p) => *fp.entry(p.as_str()).or_default() += 1.0,
            None => {}
        }
        if ranked.iter().take(3).any(|p| p == truth) {
            top3 += 1;
        }
    }
    let (mut macro_sum, mut weighted) = (0.0, 0.0);
    for (label, s) in &support {
        let t = tp.get(label).copied().unwrap_or(0.0);
        let f = fp.get(label).copied().unwrap_or(0.0);
        let precision = if t + f > 0.0 { t / (t + f) } else { 0.0 };
        let recall = t / s;
        let f1 = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
        macro_sum += f1;
        weighted += f1 * s;
    }
    let denom = n.max(1) as f64;
    Scores {
        n,
        accuracy: top1 as f64 / denom,
        top3_accuracy: top3 as f64 / denom,
        macro_f1: macro_sum / support.len().max(1) as f64,
        weighted_f1: weighted / denom,
        unseen_labels: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(text: &str, label: &str) -> Example {
        Example { text: text.into(), context: Vec::new(), label: label.into() }
    }

    #[test]
    fn learns_misspelt_words_through_character_ngrams() {
        let mut train = Vec::new();
        for _ in 0..5 {
            train.push(ex("pump leaking oil", "Leaking"));
            train.push(ex("hose leak at coupling", "Leaking"));
            train.push(ex("bearing noisy squealing", "Noise"));
            train.push(ex("loud noise from gearbox", "Noise"));
            train.push(ex("motor will not start", "Failure to start"));
            train.push(ex("does not start on demand", "Failure to start"));
        }
        let model = Classifier::train(&train, &TrainConfig::default()).expect("enough history");
        // Misspellings never seen in training.
        assert_eq!(model.predict("leeking hose", &[])[0].label, "Leaking");
        assert_eq!(model.predict("squeeling", &[])[0].label, "Noise");
        let p = model.predict("wont start", &[]);
        assert_eq!(p[0].label, "Failure to start");
        let total: f64 = p.iter().map(|s| s.confidence).sum();
        assert!((total - 1.0).abs() < 1e-4, "{p:?}");
    }

    #[test]
    fn too_little_history_is_said_not_guessed() {
        let few = vec![ex("a", "x"), ex("b", "y")];
        let err = Classifier::train(&few, &TrainConfig::default()).expect_err("two examples");
        assert_eq!(err.field, "history");
        assert!(err.reason.contains("2 labelled examples"), "{err}");
        let one_label: Vec<Example> = (0..30).map(|i| ex(&format!("text {i}"), "x")).collect();
        assert!(Classifier::train(&one_label, &TrainConfig::default()).is_err());
    }

    #[test]
    fn bad_texts_are_refused_or_cut_with_the_reason() {
        assert_eq!(prepare("  ,;  ").map_err(|e| e.field), Err("text"));
        let huge = "é".repeat(10_000);
        let (cut, truncated) = prepare(&huge).expect("letters");
        assert!(truncated && cut.len() <= MAX_TEXT_BYTES);
        assert_eq!(prepare("Leak AT Pump").map(|p| p.0), Ok("leak at pump".to_string()));
    }

    #[test]
    fn scores_match_hand_computed_values() {
        let r = |t: &str, p: &[&str]| (t.to_string(), p.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let results = vec![r("a", &["a", "b"]), r("a", &["b", "a"]), r("b", &["b"]), r("c", &["a", "b", "c"])];
        let s = score(&results);
        assert_eq!(s.accuracy, 0.5);
        assert_eq!(s.top3_accuracy, 1.0);
        // a: P 1/2 R 1/2 F 0.5; b: P 1/2 R 1 F 2/3; c: 0.
        assert!((s.macro_f1 - (0.5 + 2.0 / 3.0) / 3.0).abs() < 1e-12, "{s:?}");
    }
}
