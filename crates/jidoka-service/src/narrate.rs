//! Optional rewriting of a finding's narrative by a language model behind an OpenAI-compatible
//! endpoint (an on-prem model server: vLLM, llama.cpp's server, TGI, ...). The grounded
//! narrative the agents write stays the record; the rewrite is only shown when it keeps every
//! citation (`[E:event-id]`, `[F:finding-id]`) of the original and adds none, and when it came
//! back in time. Otherwise the original is shown with the reason.

use jidoka_agents::narrative::citations;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// `[narrative]`: where the model is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NarrativeConfig {
    /// The API root, e.g. `http://llm.plant.local:8000/v1` (`/chat/completions` is added).
    pub endpoint: String,
    pub model: String,
    /// Environment variable holding the API key, if the server wants one.
    #[serde(default)]
    pub api_key_env: Option<String>,
    #[serde(default = "timeout_ms")]
    pub timeout_ms: u64,
}

fn timeout_ms() -> u64 {
    20_000
}

impl NarrativeConfig {
    pub fn validate(&self, path: &str, errors: &mut Vec<(String, String)>) {
        if !(self.endpoint.starts_with("http://") || self.endpoint.starts_with("https://")) {
            errors.push((format!("{path}.endpoint"), "must be an http:// or https:// URL".into()));
        }
        if self.model.trim().is_empty() {
            errors.push((format!("{path}.model"), "must not be empty".into()));
        }
        if let Some(var) = &self.api_key_env
            && std::env::var(var).is_err()
        {
            errors.push((format!("{path}.api_key_env"), format!("environment variable ${var} is not set")));
        }
        if !(500..=300_000).contains(&self.timeout_ms) {
            errors.push((format!("{path}.timeout_ms"), "must be between 500 and 300000".into()));
        }
    }
}

/// What to show for a narrative.
#[derive(Debug, Clone, PartialEq)]
pub enum Shown {
    /// The model's rewrite, which kept every citation.
    Rewritten { text: String, model: String },
    /// The original, and why the rewrite is not shown.
    Original { reason: String },
}

const INSTRUCTIONS: &str = "You rewrite root-cause narratives from a car assembly plant's quality system for \
    the line supervisor who has to act on them. Use plain, short sentences. Keep every citation token of the \
    form [E:...] or [F:...] exactly as written, next to the claim it supports. Do not add facts, numbers, \
    causes or citations that are not in the text. Answer with the rewritten narrative only.";

/// Whether `rewritten` cites exactly what `original` cites; the first difference otherwise.
pub fn same_citations(original: &str, rewritten: &str) -> Result<(), String> {
    let (before, after) = (citations(original), citations(rewritten));
    if let Some(lost) = before.difference(&after).next() {
        return Err(format!("the rewrite dropped the citation [{lost}]"));
    }
    if let Some(added) = after.difference(&before).next() {
        return Err(format!("the rewrite cited [{added}], which the narrative does not"));
    }
    Ok(())
}

/// A client for one model endpoint, remembering what it answered per finding.
#[derive(Debug)]
pub struct Narrator {
    config: NarrativeConfig,
    agent: ureq::Agent,
    key: Option<String>,
    cache: Mutex<HashMap<String, Shown>>,
}

impl Narrator {
    pub fn new(config: NarrativeConfig) -> Narrator {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_millis(config.timeout_ms)))
            .build()
            .into();
        let key = config.api_key_env.as_ref().and_then(|v| std::env::var(v).ok());
        Narrator { config, agent, key, cache: Mutex::new(HashMap::new()) }
    }

    /// The narrative of finding `id` as it should be shown (asked once per finding; an
    /// unreachable model is asked again next time).
    pub fn show(&self, id: &str, narrative: &str) -> Shown {
        if let Some(s) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(id) {
            return s.clone();
        }
        let shown = match self.ask(narrative) {
            Ok(text) => match same_citations(narrative, &text) {
                Ok(()) => Shown::Rewritten { text, model: self.config.model.clone() },
                Err(reason) => Shown::Original { reason },
            },
            Err(reason) => return Shown::Original { reason },
        };
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_string(), shown.clone());
        shown
    }

    fn ask(&self, narrative: &str) -> Result<String, String> {
        let url = format!("{}/chat/completions", self.config.endpoint.trim_end_matches('/'));
        let body = json!({
            "model": self.config.model,
            "temperature": 0,
            "messages": [
                {"role": "system", "content": INSTRUCTIONS},
                {"role": "user", "content": narrative},
            ],
        });
        let mut req = self.agent.post(&url).header("Content-Type", "application/json");
        if let Some(key) = &self.key {
            req = req.header("Authorization", format!("Bearer {key}"));
        }
        let mut resp = req.send_json(&body).map_err(|e| format!("the model endpoint cannot be reached: {e}"))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_string()
            .map_err(|e| format!("reading the model's answer: {e}"))?;
        if !(200..300).contains(&status) {
            return Err(format!("the model endpoint answered HTTP {status}"));
        }
        let answer: Value = serde_json::from_str(&text).map_err(|e| format!("the model's answer is not JSON: {e}"))?;
        answer["choices"][0]["message"]["content"]
            .as_str()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| "the model's answer has no choices[0].message.content".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewrite_must_cite_exactly_what_the_narrative_cites() {
        let original = "NCR 7 [E:ev-1] looks like NCR 3 [E:ev-2], reworked [E:ev-3].";
        assert_eq!(same_citations(original, "Like NCR 3 [E:ev-2] (reworked [E:ev-3]), NCR 7 [E:ev-1]."), Ok(()));
        assert_eq!(
            same_citations(original, "NCR 7 [E:ev-1] is like NCR 3 [E:ev-2]."),
            Err("the rewrite dropped the citation [E:ev-3]".into())
        );
        assert_eq!(
            same_citations(original, "NCR 7 [E:ev-1] [E:ev-2] [E:ev-3] [E:ev-9]."),
            Err("the rewrite cited [E:ev-9], which the narrative does not".into())
        );
    }
}
