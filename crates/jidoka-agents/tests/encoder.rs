//! The sentence encoder against the reference: token ids as BERT's uncased WordPiece tokenizer
//! gives them, and embeddings as the reference implementation of the same weights computes them
//! (values recorded from a NumPy forward pass of all-MiniLM-L6-v2, whose paraphrase similarity
//! matches sentence-transformers' published behaviour). The model is installed by
//! `scripts/minilm.sh`; under CI=true a missing model fails the test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{encoder, simulate};
use jidoka_agents::andon::{AndonAgent, AndonConfig};
use jidoka_agents::quality::{QualityAgent, QualityConfig};
use jidoka_agents::text::{Classifier, Example, TrainConfig};
use jidoka_agents::{Agent, Router};
use jidoka_model::Finding;
use std::sync::Arc;

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn tokens_and_embeddings_match_the_reference() {
    let Some(enc) = encoder() else { return };
    assert_eq!(enc.dim(), 384);
    let cases: [(&str, &[u32], [f32; 6]); 3] = [
        ("squeeling", &[101, 5490, 5657, 18809, 2290, 102], [-0.00209, -0.07641, 0.04219, 0.00778, -0.08972, -0.05612]),
        (
            "oil leak at pump seal",
            &[101, 3514, 17271, 2012, 10216, 7744, 102],
            [-0.06555, 0.00708, 0.07821, -0.02207, 0.03993, -0.02303],
        ),
        (
            "Café déjà-vu: bolt #3 cross-threaded!",
            &[101, 7668, 2139, 3900, 1011, 24728, 1024, 10053, 1001, 1017, 2892, 1011, 26583, 999, 102],
            [-0.09737, -0.0007, -0.02163, -0.04826, 0.00824, -0.01586],
        ),
    ];
    for (text, ids, head) in cases {
        assert_eq!(enc.tokens(text), ids, "{text}");
        let e = enc.embed(text);
        assert!((cosine(&e, &e) - 1.0).abs() < 1e-4, "{text}: not unit length");
        for (i, (got, want)) in e.iter().zip(head).enumerate() {
            assert!((got - want).abs() < 2e-4, "{text}: dimension {i} is {got}, reference {want}");
        }
    }
    let (a, b, c) = (
        enc.embed("A cat is sitting on a mat"),
        enc.embed("The cat sits on the mat"),
        enc.embed("hydraulic pump overheating"),
    );
    assert!((cosine(&a, &b) - 0.9726).abs() < 1e-3, "paraphrase similarity {}", cosine(&a, &b));
    assert!(cosine(&a, &c).abs() < 0.01, "unrelated similarity {}", cosine(&a, &c));
}

#[test]
fn arbitrary_text_gives_bounded_tokens_and_a_finite_unit_embedding() {
    use proptest::prelude::*;
    let Some(enc) = encoder() else { return };
    let config = ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() };
    proptest!(config, |(text in "\\PC{0,300}")| {
        let ids = enc.tokens(&text);
        prop_assert!(ids.len() >= 2 && ids.len() <= jidoka_agents::encoder::MAX_TOKENS);
        prop_assert_eq!((ids[0], ids[ids.len() - 1]), (101, 102));
        let e = enc.embed_uncached(&text);
        prop_assert!(e.iter().all(|a| a.is_finite()));
        prop_assert!((cosine(&e, &e) - 1.0).abs() < 1e-3);
    });
}

#[test]
fn long_empty_and_odd_texts_embed_without_panicking() {
    let Some(enc) = encoder() else { return };
    let long = "torque low on bolt ".repeat(500);
    assert_eq!(enc.tokens(&long).len(), jidoka_agents::encoder::MAX_TOKENS);
    assert_eq!(enc.tokens(""), vec![101, 102]);
    assert_eq!(enc.tokens("\u{0}\u{fffd}\u{7}"), vec![101, 102]);
    // A word longer than 100 characters is one unknown token.
    assert_eq!(enc.tokens(&"x".repeat(101)), vec![101, 100, 102]);
    for text in [long.as_str(), "", "漏油 ölverlust 🔧🔧", "\u{0}"] {
        let e = enc.embed(text);
        assert!(e.iter().all(|a| a.is_finite()), "{text:?}");
    }
}

/// The encoder's prior knowledge: with five coded examples per class, spellings never seen in
/// training ("squealing", "dripping") land in the right class only with the embedding.
#[test]
fn the_embedding_places_words_the_history_never_saw() {
    let Some(enc) = encoder() else { return };
    let history = [
        ("Noise", ["loud bang", "grinding sound", "rattling", "knocking noise", "humming loud"]),
        ("Leaking", ["oil on floor", "hose weeping", "seal failed fluid out", "puddle under pump", "coolant loss"]),
        ("Overheating", ["running hot", "temp high", "thermal trip", "burning smell", "too warm"]),
    ];
    let examples: Vec<Example> = history
        .iter()
        .flat_map(|(label, texts)| {
            texts.iter().map(|t| Example { text: t.to_string(), context: vec![], label: label.to_string() })
        })
        .collect();
    let plain = TrainConfig { min_examples: 5, ..TrainConfig::default() };
    let with = TrainConfig { encoder: Some(Arc::new(enc)), ..plain.clone() };
    let (plain, with) = (Classifier::train(&examples, &plain).unwrap(), Classifier::train(&examples, &with).unwrap());
    let unseen = [("squealing", "Noise"), ("dripping", "Leaking"), ("scorching", "Overheating")];
    let right = |m: &Classifier| unseen.iter().filter(|(t, want)| m.predict(t, &[])[0].label == *want).count();
    assert_eq!(right(&with), 3, "with the embedding");
    assert!(right(&plain) < 3, "TF-IDF alone placed all three: the test shows nothing");
}

/// The agents with the encoder: NCR triage suggests codes with similar past NCRs, Andon triage
/// learns its routing, and nothing fails.
#[test]
fn the_agents_triage_with_the_encoder() {
    let Some(enc) = encoder() else { return };
    let enc = Some(Arc::new(enc));
    let agents: Vec<Box<dyn Agent>> = vec![
        Box::new(QualityAgent::new(QualityConfig::default(), enc.clone())),
        Box::new(AndonAgent::new(AndonConfig::default(), enc)),
    ];
    let mut router = Router::new(agents);
    let mut findings: Vec<Finding> = Vec::new();
    for e in &simulate(3000, 11) {
        router.process(e, &mut findings);
    }
    assert!(!findings.iter().any(|f| f.kind == "agent.failure"));
    let ncr: Vec<&Finding> = findings.iter().filter(|f| f.kind == "ncr.triage").collect();
    let suggested: Vec<&&Finding> =
        ncr.iter().filter(|f| f.details["suggestions"].as_array().is_some_and(|s| s.len() == 3)).collect();
    assert!(suggested.len() > ncr.len() / 2, "{} of {}", suggested.len(), ncr.len());
    assert!(suggested.iter().all(|f| f.details["similar"].as_array().is_some_and(|s| !s.is_empty())));
    assert!(findings.iter().any(|f| f.kind == "andon.triage" && f.details["method"] == "model"));
}
