//! Sentence embeddings from a small pretrained encoder, for short maintenance and defect texts.
//!
//! TF-IDF learns only from the plant's own history, so it cannot know that "squeeling" is a
//! noise or "bogged" a blockage until someone has coded one. A sentence encoder pretrained on
//! general English brings that knowledge: its embedding joins the TF-IDF features of the triage
//! models (see [`crate::text::Vectorizer`]).
//!
//! The encoder is a BERT-style transformer in the layout of sentence-transformers'
//! `all-MiniLM-L6-v2` (6 layers, 384 wide, WordPiece vocabulary, mean pooling, unit length),
//! read from a directory holding `config.json`, `vocab.txt` and `model.safetensors` (F32), as a
//! registry package ships it (`scripts/minilm.sh`). The forward pass is written out here in
//! plain Rust (no ML runtime to build): a five-word text takes a few milliseconds on one core,
//! and embeddings are cached by text, so retraining on a growing history costs little.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use unicode_normalization::UnicodeNormalization;

/// Most WordPiece tokens an input becomes (with `[CLS]` and `[SEP]`); the rest is cut, as a
/// triage text is short and its first words carry it.
pub const MAX_TOKENS: usize = 128;

/// Embeddings per cache generation (two are kept: about 60 MB at 384 wide).
const CACHE_ENTRIES: usize = 20_000;

/// Why an encoder cannot be loaded: the file, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderError {
    pub field: String,
    pub reason: String,
}

impl std::fmt::Display for EncoderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl std::error::Error for EncoderError {}

fn err(field: impl Into<String>, reason: impl Into<String>) -> EncoderError {
    EncoderError { field: field.into(), reason: reason.into() }
}

/// A dense layer, weights `out × inp` row-major (as PyTorch stores them).
struct Linear {
    w: Vec<f32>,
    b: Vec<f32>,
    inp: usize,
    out: usize,
}

struct Norm {
    g: Vec<f32>,
    b: Vec<f32>,
}

struct Layer {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    attention_norm: Norm,
    up: Linear,
    down: Linear,
    output_norm: Norm,
}

/// A loaded sentence encoder. Cheap to share (`Arc`); embedding is thread-safe.
pub struct Encoder {
    name: String,
    vocab: HashMap<String, u32>,
    lowercase: bool,
    unk: u32,
    cls: u32,
    sep: u32,
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Vec<f32>,
    embedding_norm: Norm,
    layers: Vec<Layer>,
    hidden: usize,
    heads: usize,
    eps: f32,
    max_positions: usize,
    cache: Mutex<Cache>,
}

/// Embeddings by text in two generations: a text used since the current one began stays
/// cached; when the current generation is full it becomes the old one and the oldest is
/// dropped. A retraining that touches every case of a history smaller than the generation
/// keeps all of them.
#[derive(Default)]
struct Cache {
    current: HashMap<String, Arc<[f32]>>,
    old: HashMap<String, Arc<[f32]>>,
}

impl Cache {
    fn get(&mut self, text: &str) -> Option<Arc<[f32]>> {
        if let Some(e) = self.current.get(text) {
            return Some(e.clone());
        }
        let e = self.old.remove(text)?;
        self.put(text, e.clone());
        Some(e)
    }

    fn put(&mut self, text: &str, e: Arc<[f32]>) {
        if self.current.len() >= CACHE_ENTRIES {
            self.old = std::mem::take(&mut self.current);
        }
        self.current.insert(text.to_string(), e);
    }
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("name", &self.name)
            .field("vocab", &self.vocab.len())
            .field("layers", &self.layers.len())
            .field("hidden", &self.hidden)
            .finish()
    }
}

/// Tensors by name: shape and F32 values.
type Tensors = HashMap<String, (Vec<usize>, Vec<f32>)>;

/// The F32 tensors of a safetensors file (integer buffers such as position ids are skipped).
fn read_safetensors(path: &Path) -> Result<Tensors, EncoderError> {
    let field = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| err(&field, e.to_string()))?;
    let head_len = bytes
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_le_bytes)
        .ok_or_else(|| err(&field, "shorter than the 8-byte header length"))?;
    let head_end = usize::try_from(head_len)
        .ok()
        .and_then(|n| n.checked_add(8))
        .filter(|&end| end <= bytes.len())
        .ok_or_else(|| err(&field, format!("header length {head_len} runs past the end of the file")))?;
    let head: HashMap<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..head_end]).map_err(|e| err(&field, format!("header: {e}")))?;
    let data = &bytes[head_end..];
    let mut out = HashMap::new();
    for (name, info) in head {
        if name == "__metadata__" {
            continue;
        }
        let dtype = info.get("dtype").and_then(|d| d.as_str()).unwrap_or("");
        if dtype != "F32" {
            // Integer buffers (position ids) are not weights; anything else is unsupported.
            if dtype.starts_with('I') || dtype.starts_with('U') {
                continue;
            }
            return Err(err(&field, format!("tensor {name}: dtype {dtype}, only F32 is read")));
        }
        let numbers = |key: &str| -> Option<Vec<usize>> {
            info.get(key)?.as_array()?.iter().map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok())).collect()
        };
        let shape =
            numbers("shape").ok_or_else(|| err(&field, format!("tensor {name}: shape is not a list of sizes")))?;
        let offsets = numbers("data_offsets").unwrap_or_default();
        let [start, end] = offsets[..] else {
            return Err(err(&field, format!("tensor {name}: data_offsets is not [start, end]")));
        };
        let bytes_needed = shape.iter().try_fold(4usize, |n, &d| n.checked_mul(d));
        let raw = data
            .get(start..end)
            .filter(|r| Some(r.len()) == bytes_needed)
            .ok_or_else(|| err(&field, format!("tensor {name}: offsets {start}..{end} do not hold shape {shape:?}")))?;
        let values = raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        out.insert(name, (shape, values));
    }
    Ok(out)
}

struct Weights {
    tensors: Tensors,
    field: String,
}

impl Weights {
    /// A tensor by name (with or without the `bert.` prefix), checked against its shape.
    fn take(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>, EncoderError> {
        let (found, values) = self
            .tensors
            .remove(name)
            .or_else(|| self.tensors.remove(&format!("bert.{name}")))
            .ok_or_else(|| err(&self.field, format!("tensor {name} is missing")))?;
        if found != shape {
            return Err(err(&self.field, format!("tensor {name} has shape {found:?}, expected {shape:?}")));
        }
        Ok(values)
    }

    fn linear(&mut self, name: &str, inp: usize, out: usize) -> Result<Linear, EncoderError> {
        Ok(Linear {
            w: self.take(&format!("{name}.weight"), &[out, inp])?,
            b: self.take(&format!("{name}.bias"), &[out])?,
            inp,
            out,
        })
    }

    fn norm(&mut self, name: &str, n: usize) -> Result<Norm, EncoderError> {
        Ok(Norm { g: self.take(&format!("{name}.weight"), &[n])?, b: self.take(&format!("{name}.bias"), &[n])? })
    }
}

fn config_usize(config: &serde_json::Value, key: &str, field: &str) -> Result<usize, EncoderError> {
    config
        .get(key)
        .and_then(|v| v.as_u64())
        .and_then(|v| usize::try_from(v).ok())
        .filter(|&v| v > 0)
        .ok_or_else(|| err(field, format!("{key} is missing or not a positive integer")))
}

impl Encoder {
    /// Load an encoder from a directory with `config.json`, `vocab.txt` and `model.safetensors`
    /// (and optionally `tokenizer_config.json` for `do_lower_case`). Every problem names the file.
    pub fn load(dir: &Path) -> Result<Encoder, EncoderError> {
        let config_path = dir.join("config.json");
        let field = config_path.display().to_string();
        let config: serde_json::Value = std::fs::read(&config_path)
            .map_err(|e| err(&field, e.to_string()))
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| err(&field, e.to_string())))?;
        let model_type = config.get("model_type").and_then(|v| v.as_str()).unwrap_or("");
        if model_type != "bert" {
            return Err(err(&field, format!("model_type {model_type:?}: only BERT-style encoders are read")));
        }
        let act = config.get("hidden_act").and_then(|v| v.as_str()).unwrap_or("");
        if act != "gelu" {
            return Err(err(&field, format!("hidden_act {act:?}: only gelu is implemented")));
        }
        let hidden = config_usize(&config, "hidden_size", &field)?;
        let heads = config_usize(&config, "num_attention_heads", &field)?;
        let n_layers = config_usize(&config, "num_hidden_layers", &field)?;
        let inner = config_usize(&config, "intermediate_size", &field)?;
        let vocab_size = config_usize(&config, "vocab_size", &field)?;
        let max_positions = config_usize(&config, "max_position_embeddings", &field)?;
        let type_vocab = config_usize(&config, "type_vocab_size", &field)?;
        let eps = config.get("layer_norm_eps").and_then(|v| v.as_f64()).unwrap_or(1e-12) as f32;
        for (key, value, most) in [
            ("hidden_size", hidden, 4096),
            ("num_attention_heads", heads, 128),
            ("num_hidden_layers", n_layers, 64),
            ("intermediate_size", inner, 16384),
            ("vocab_size", vocab_size, 1_000_000),
            ("max_position_embeddings", max_positions, 8192),
            ("type_vocab_size", type_vocab, 16),
        ] {
            if value > most {
                return Err(err(&field, format!("{key} {value} is more than {most}: not a small sentence encoder")));
            }
        }
        if hidden % heads != 0 {
            return Err(err(&field, format!("hidden_size {hidden} is not a multiple of num_attention_heads {heads}")));
        }
        let lowercase = std::fs::read(dir.join("tokenizer_config.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|c| c.get("do_lower_case").and_then(|v| v.as_bool()))
            .unwrap_or(true);

        let vocab_path = dir.join("vocab.txt");
        let vocab_field = vocab_path.display().to_string();
        let text = std::fs::read_to_string(&vocab_path).map_err(|e| err(&vocab_field, e.to_string()))?;
        let lines = text.lines().count();
        if lines > vocab_size {
            return Err(err(&vocab_field, format!("{lines} tokens, config says {vocab_size}")));
        }
        // A token listed twice keeps its first id, as the reference tokenizer's does not matter:
        // every id stays below `vocab_size`, so the embedding row exists.
        let mut vocab: HashMap<String, u32> = HashMap::with_capacity(lines);
        for (i, t) in text.lines().enumerate() {
            vocab.entry(t.to_string()).or_insert(i as u32);
        }
        let special = |t: &str| vocab.get(t).copied().ok_or_else(|| err(&vocab_field, format!("no {t} token")));
        let (unk, cls, sep) = (special("[UNK]")?, special("[CLS]")?, special("[SEP]")?);

        let model_path = dir.join("model.safetensors");
        let mut w = Weights { tensors: read_safetensors(&model_path)?, field: model_path.display().to_string() };
        let word = w.take("embeddings.word_embeddings.weight", &[vocab_size, hidden])?;
        let position = w.take("embeddings.position_embeddings.weight", &[max_positions, hidden])?;
        let token_type = w.take("embeddings.token_type_embeddings.weight", &[type_vocab, hidden])?;
        let embedding_norm = w.norm("embeddings.LayerNorm", hidden)?;
        let mut layers = Vec::with_capacity(n_layers);
        for l in 0..n_layers {
            let p = format!("encoder.layer.{l}");
            layers.push(Layer {
                q: w.linear(&format!("{p}.attention.self.query"), hidden, hidden)?,
                k: w.linear(&format!("{p}.attention.self.key"), hidden, hidden)?,
                v: w.linear(&format!("{p}.attention.self.value"), hidden, hidden)?,
                o: w.linear(&format!("{p}.attention.output.dense"), hidden, hidden)?,
                attention_norm: w.norm(&format!("{p}.attention.output.LayerNorm"), hidden)?,
                up: w.linear(&format!("{p}.intermediate.dense"), hidden, inner)?,
                down: w.linear(&format!("{p}.output.dense"), inner, hidden)?,
                output_norm: w.norm(&format!("{p}.output.LayerNorm"), hidden)?,
            });
        }
        let name =
            dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| dir.display().to_string());
        Ok(Encoder {
            name,
            vocab,
            lowercase,
            unk,
            cls,
            sep,
            word,
            position,
            token_type,
            embedding_norm,
            layers,
            hidden,
            heads,
            eps,
            max_positions,
            cache: Mutex::new(Cache::default()),
        })
    }

    /// Width of an embedding.
    pub fn dim(&self) -> usize {
        self.hidden
    }

    /// WordPiece tokens of a text, as BERT's uncased tokenizer makes them: control and format
    /// characters dropped, accents stripped (the combining marks of the common blocks) and
    /// lower-cased, punctuation split off, each word matched
    /// greedily against the vocabulary (`[UNK]` when it cannot be), `[CLS]` … `[SEP]` around,
    /// at most [`MAX_TOKENS`].
    pub fn tokens(&self, text: &str) -> Vec<u32> {
        let limit = MAX_TOKENS.min(self.max_positions);
        let mut ids = vec![self.cls];
        for word in basic_words(text, self.lowercase) {
            if ids.len() + 1 >= limit {
                break;
            }
            self.wordpiece(&word, &mut ids);
        }
        ids.truncate(limit - 1);
        ids.push(self.sep);
        ids
    }

    fn wordpiece(&self, word: &str, ids: &mut Vec<u32>) {
        let chars: Vec<char> = word.chars().collect();
        if chars.len() > 100 {
            ids.push(self.unk);
            return;
        }
        let mut pieces = Vec::new();
        let mut start = 0;
        let mut piece = String::new();
        while start < chars.len() {
            let mut end = chars.len();
            let mut found = None;
            while start < end {
                piece.clear();
                if start > 0 {
                    piece.push_str("##");
                }
                piece.extend(&chars[start..end]);
                if let Some(&id) = self.vocab.get(&piece) {
                    found = Some(id);
                    break;
                }
                end -= 1;
            }
            match found {
                Some(id) => {
                    pieces.push(id);
                    start = end;
                }
                None => {
                    ids.push(self.unk);
                    return;
                }
            }
        }
        ids.extend(pieces);
    }

    /// The unit-length mean-pooled embedding of a text (cached). An empty text gives the
    /// embedding of `[CLS] [SEP]`.
    pub fn embed(&self, text: &str) -> Arc<[f32]> {
        if let Some(e) = self.cache.lock().ok().and_then(|mut c| c.get(text)) {
            return e;
        }
        let e: Arc<[f32]> = self.embed_uncached(text).into();
        if let Ok(mut cache) = self.cache.lock() {
            cache.put(text, e.clone());
        }
        e
    }

    /// The embedding computed afresh, without the cache (for timing).
    pub fn embed_uncached(&self, text: &str) -> Vec<f32> {
        self.forward(&self.tokens(text))
    }

    fn forward(&self, ids: &[u32]) -> Vec<f32> {
        let (h, n) = (self.hidden, ids.len());
        let mut x = vec![0f32; n * h];
        for (t, &id) in ids.iter().enumerate() {
            let row = &mut x[t * h..(t + 1) * h];
            let word = &self.word[id as usize * h..(id as usize + 1) * h];
            let pos = &self.position[t * h..(t + 1) * h];
            for i in 0..h {
                row[i] = word[i] + pos[i] + self.token_type[i];
            }
        }
        layer_norm(&mut x, h, &self.embedding_norm, self.eps);
        let dh = h / self.heads;
        let scale = 1.0 / (dh as f32).sqrt();
        let (mut q, mut k, mut v, mut ctx, mut tmp, mut inner) =
            (Vec::new(), Vec::new(), Vec::new(), vec![0f32; n * h], Vec::new(), Vec::new());
        let mut att = vec![0f32; n];
        for layer in &self.layers {
            linear(&x, n, &layer.q, &mut q);
            linear(&x, n, &layer.k, &mut k);
            linear(&x, n, &layer.v, &mut v);
            for head in 0..self.heads {
                let off = head * dh;
                for i in 0..n {
                    let qi = &q[i * h + off..i * h + off + dh];
                    for j in 0..n {
                        att[j] = dot(qi, &k[j * h + off..j * h + off + dh]) * scale;
                    }
                    let max = att.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let mut sum = 0.0;
                    for a in &mut att {
                        *a = (*a - max).exp();
                        sum += *a;
                    }
                    let out = &mut ctx[i * h + off..i * h + off + dh];
                    out.fill(0.0);
                    for j in 0..n {
                        let a = att[j] / sum;
                        for (o, vj) in out.iter_mut().zip(&v[j * h + off..j * h + off + dh]) {
                            *o += a * vj;
                        }
                    }
                }
            }
            linear(&ctx, n, &layer.o, &mut tmp);
            add_norm(&mut x, &tmp, h, &layer.attention_norm, self.eps);
            linear(&x, n, &layer.up, &mut inner);
            for a in &mut inner {
                *a = gelu(*a);
            }
            linear(&inner, n, &layer.down, &mut tmp);
            add_norm(&mut x, &tmp, h, &layer.output_norm, self.eps);
        }
        let mut pooled = vec![0f32; h];
        for t in 0..n {
            for (p, a) in pooled.iter_mut().zip(&x[t * h..(t + 1) * h]) {
                *p += a;
            }
        }
        let norm = pooled.iter().map(|a| a * a).sum::<f32>().sqrt();
        if norm > 0.0 {
            for p in &mut pooled {
                *p /= norm;
            }
        }
        pooled
    }
}

/// BERT's basic tokenizer: words and single punctuation marks.
fn basic_words(text: &str, lowercase: bool) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let flush = |current: &mut String, words: &mut Vec<String>| {
        if !current.is_empty() {
            words.push(std::mem::take(current));
        }
    };
    let cleaned: String = if lowercase {
        text.to_lowercase().nfd().filter(|c| !is_combining_mark(*c)).collect()
    } else {
        text.to_string()
    };
    for c in cleaned.chars() {
        if c == '\0' || c == '\u{fffd}' || (c.is_control() && !c.is_whitespace()) || is_format(c) {
            continue;
        }
        if c.is_whitespace() {
            flush(&mut current, &mut words);
        } else if is_punctuation(c) || is_cjk(c) {
            flush(&mut current, &mut words);
            words.push(c.to_string());
        } else {
            current.push(c);
        }
    }
    flush(&mut current, &mut words);
    words
}

/// Punctuation as BERT splits it off: every ASCII non-alphanumeric printable character, and
/// the Unicode punctuation (category P) of the Latin-1, general, supplemental, CJK and
/// full-width blocks. Symbols such as `°`, `±` or `€` stay inside their word, as there.
fn is_punctuation(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_punctuation();
    }
    matches!(c as u32,
        0x00A1 | 0x00A7 | 0x00AB | 0x00B6 | 0x00B7 | 0x00BB | 0x00BF | 0x037E | 0x0387
        | 0x055A..=0x055F | 0x0589 | 0x05BE | 0x05C0 | 0x05C3 | 0x05C6 | 0x05F3 | 0x05F4
        | 0x060C | 0x060D | 0x061B | 0x061F | 0x066A..=0x066D | 0x06D4
        | 0x2010..=0x2027 | 0x2030..=0x2043 | 0x2045..=0x2051 | 0x2053..=0x205E
        | 0x207D | 0x207E | 0x208D | 0x208E | 0x2308..=0x230B | 0x2329 | 0x232A
        | 0x2768..=0x2775 | 0x27C5 | 0x27C6 | 0x27E6..=0x27EF | 0x2983..=0x2998
        | 0x29D8..=0x29DB | 0x29FC | 0x29FD | 0x2E00..=0x2E4F
        | 0x3001..=0x3003 | 0x3008..=0x3011 | 0x3014..=0x301F | 0x3030 | 0x303D | 0x30A0 | 0x30FB
        | 0xFE10..=0xFE19 | 0xFE30..=0xFE52 | 0xFE54..=0xFE61 | 0xFE63 | 0xFE68 | 0xFE6A | 0xFE6B
        | 0xFF01..=0xFF03 | 0xFF05..=0xFF0A | 0xFF0C..=0xFF0F | 0xFF1A | 0xFF1B | 0xFF1F | 0xFF20
        | 0xFF3B..=0xFF3D | 0xFF3F | 0xFF5B | 0xFF5D | 0xFF5F..=0xFF65)
}

/// Invisible format characters (category Cf), which BERT drops with the control characters.
fn is_format(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x0600..=0x0605 | 0x061C | 0x06DD | 0x070F | 0x180E | 0x200B..=0x200F
        | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF | 0xFFF9..=0xFFFB)
}

fn is_combining_mark(c: char) -> bool {
    matches!(c as u32, 0x0300..=0x036F | 0x1AB0..=0x1AFF | 0x1DC0..=0x1DFF | 0x20D0..=0x20FF | 0xFE20..=0xFE2F)
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F | 0x2B820..=0x2CEAF | 0xF900..=0xFAFF | 0x2F800..=0x2FA1F)
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight running sums, so the compiler vectorises the loop.
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `out = x · Wᵀ + b` for `n` rows of `x`.
fn linear(x: &[f32], n: usize, l: &Linear, out: &mut Vec<f32>) {
    out.clear();
    out.resize(n * l.out, 0.0);
    for t in 0..n {
        let row = &x[t * l.inp..(t + 1) * l.inp];
        for o in 0..l.out {
            out[t * l.out + o] = dot(row, &l.w[o * l.inp..(o + 1) * l.inp]) + l.b[o];
        }
    }
}

fn layer_norm(x: &mut [f32], h: usize, norm: &Norm, eps: f32) {
    for row in x.chunks_exact_mut(h) {
        let mean = row.iter().sum::<f32>() / h as f32;
        let var = row.iter().map(|a| (a - mean) * (a - mean)).sum::<f32>() / h as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for ((a, g), b) in row.iter_mut().zip(&norm.g).zip(&norm.b) {
            *a = (*a - mean) * inv * g + b;
        }
    }
}

fn add_norm(x: &mut [f32], delta: &[f32], h: usize, norm: &Norm, eps: f32) {
    for (a, d) in x.iter_mut().zip(delta) {
        *a += d;
    }
    layer_norm(x, h, norm, eps);
}

/// GELU with the exact error function, as BERT's `gelu`.
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x / std::f32::consts::SQRT_2))
}

/// The error function (Abramowitz & Stegun 7.1.26, absolute error below 1.5e-7), in f64.
fn erf(x: f32) -> f32 {
    let x = f64::from(x);
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let y = 1.0
        - (((((1.061_405_429 * t - 1.453_152_027) * t) + 1.421_413_741) * t - 0.284_496_736) * t + 0.254_829_592)
            * t
            * (-x * x).exp();
    (if x < 0.0 { -y } else { y }) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_tokenizer_splits_punctuation_strips_accents_and_drops_controls() {
        assert_eq!(
            basic_words("Café déjà-vu: bolt #3\u{7}!", true),
            vec!["cafe", "deja", "-", "vu", ":", "bolt", "#", "3", "!"]
        );
        assert_eq!(basic_words("  ", true), Vec::<String>::new());
        assert_eq!(basic_words("Ölwechsel 漏油", true), vec!["olwechsel", "漏", "油"]);
        // Symbols stay in their word, invisible format characters go, Unicode punctuation splits.
        assert_eq!(basic_words("90° ±2\u{ad}mm «ok»", true), vec!["90°", "±2mm", "«", "ok", "»"]);
        assert_eq!(basic_words("\u{feff}bolt\u{200b}nut", true), vec!["boltnut"]);
    }

    #[test]
    fn erf_matches_known_values() {
        for (x, want) in [(0.0f32, 0.0f32), (0.5, 0.520_499_9), (1.0, 0.842_700_8), (-2.0, -0.995_322_3)] {
            assert!((erf(x) - want).abs() < 1e-6, "erf({x}) = {}", erf(x));
        }
    }

    #[test]
    fn dot_handles_remainders() {
        let a: Vec<f32> = (0..19).map(|i| i as f32).collect();
        assert_eq!(dot(&a, &a), (0..19).map(|i| (i * i) as f32).sum::<f32>());
    }

    #[test]
    fn a_damaged_safetensors_file_is_refused_with_the_reason() {
        let dir = std::env::temp_dir().join(format!("jidoka-safetensors-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("model.safetensors");
        let with_header = |head: &str, data: &[u8]| {
            let mut b = (head.len() as u64).to_le_bytes().to_vec();
            b.extend_from_slice(head.as_bytes());
            b.extend_from_slice(data);
            b
        };
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![1, 2, 3], "shorter than"),
            (u64::MAX.to_le_bytes().to_vec(), "runs past the end"),
            (with_header("{not json", &[]), "header"),
            (with_header(r#"{"a":{"dtype":"F16","shape":[1],"data_offsets":[0,2]}}"#, &[0, 0]), "only F32"),
            (with_header(r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#, &[0; 4]), "do not hold"),
            (with_header(r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,99]}}"#, &[0; 4]), "do not hold"),
            (with_header(r#"{"a":{"dtype":"F32","shape":[1]}}"#, &[0; 4]), "data_offsets"),
        ];
        for (bytes, want) in cases {
            std::fs::write(&file, &bytes).unwrap();
            let e = read_safetensors(&file).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains(want), "{want}: {e}");
        }
        std::fs::write(
            &file,
            with_header(r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, &1f32.to_le_bytes()),
        )
        .unwrap();
        assert_eq!(read_safetensors(&file).unwrap()["a"], (vec![1], vec![1.0]));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_directory_without_a_model_is_named() {
        let dir = std::env::temp_dir().join("jidoka-encoder-missing");
        let e = Encoder::load(&dir).unwrap_err();
        assert!(e.field.ends_with("config.json"), "{e}");
    }
}
