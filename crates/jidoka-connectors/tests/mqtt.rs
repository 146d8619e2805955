//! The MQTT decoder on arbitrary input: topic templates, conversions, event envelopes and
//! Sparkplug B state never panic, every refusal names its field, and every accepted message
//! is a valid event.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use jidoka_connectors::mqtt::source::Decoder;
use jidoka_connectors::mqtt::sparkplug::{Metric, MetricValue, Payload};
use jidoka_connectors::mqtt::{MqttSourceConfig, TopicConfig};
use proptest::prelude::*;

fn decoder() -> Decoder {
    let mut cfg = MqttSourceConfig::new("p", "127.0.0.1:1883");
    let topics: Vec<TopicConfig> = toml::from_str::<toml::Table>(
        r#"
        [[t]]
        filter = "plant/+/scan"
        kind = "component_scanned"
        txn_id = "{/id?}"
        occurred_at = "{/ts?}"
        fields = { vin = "{/vin}", station = "{topic:1}", part_number = "P-{/part}", quantity = "{/q?}" }
        convert = { quantity = { scale = 2.0 } }
        [[t]]
        filter = "jidoka/#"
        format = "event"
        [[t]]
        filter = "spBv1.0/#"
        format = "sparkplug_b"
    "#,
    )
    .unwrap()["t"]
        .clone()
        .try_into()
        .unwrap();
    cfg.topics = topics;
    let mut errors = Vec::new();
    cfg.validate("sources[0]", &mut errors);
    assert!(errors.is_empty(), "{errors:?}");
    Decoder::new(&cfg).unwrap()
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<f64>().prop_map(|f| serde_json::json!(f)),
        any::<i64>().prop_map(|i| serde_json::json!(i)),
        "[a-zA-Z0-9/ _-]{0,12}".prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("id".to_string()),
                    Just("vin".to_string()),
                    Just("part".to_string()),
                    Just("q".to_string()),
                    Just("ts".to_string()),
                    Just("kind".to_string()),
                    Just("data".to_string()),
                    "[a-z]{1,4}".prop_map(String::from)
                ],
                inner,
                0..6
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]

    #[test]
    fn json_messages_never_panic_and_refusals_name_a_field(value in json_value(), station in "[A-Z0-9+#]{0,6}") {
        let mut d = decoder();
        let now = chrono::Utc::now();
        let topic = format!("plant/{station}/scan");
        let payload = serde_json::to_vec(&value).unwrap();
        for topic in [topic.as_str(), "jidoka/x"] {
            let out = d.decode(topic, &payload, now);
            for r in &out.reasons {
                prop_assert!(r.contains(": "), "{r}");
            }
            for e in &out.events {
                // What was accepted is a valid event: it survives the store's own parser.
                let text = serde_json::to_string(e).unwrap();
                prop_assert!(jidoka_model::Event::parse_str(&text, now).is_ok(), "{text}");
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), which in 0usize..6) {
        let mut d = decoder();
        let topic = ["plant/ST1/scan", "jidoka/e", "spBv1.0/g/NBIRTH/e", "spBv1.0/g/DDATA/e/d", "spBv1.0/g/NDEATH/e", "spBv1.0/bad"][which];
        let out = d.decode(topic, &bytes, chrono::Utc::now());
        for r in &out.reasons {
            prop_assert!(r.contains(": "), "{r}");
        }
    }

    #[test]
    fn sparkplug_streams_with_any_sequence_never_panic(
        msgs in prop::collection::vec((0u64..300, 0usize..5, prop::collection::vec((0u64..8, any::<f64>(), any::<bool>()), 0..6)), 1..30)
    ) {
        let mut d = decoder();
        let topics = ["spBv1.0/g/NBIRTH/e", "spBv1.0/g/DBIRTH/e/d", "spBv1.0/g/DDATA/e/d", "spBv1.0/g/NDATA/e", "spBv1.0/g/DDEATH/e/d"];
        for (seq, t, metrics) in msgs {
            let payload = Payload {
                seq: Some(seq),
                timestamp: Some(1_764_000_000_000),
                metrics: metrics
                    .iter()
                    .map(|(alias, v, named)| Metric {
                        name: named.then(|| format!("m{alias}")),
                        alias: Some(*alias),
                        datatype: Some(10),
                        value: Some(MetricValue::DoubleValue(*v)),
                        ..Metric::default()
                    })
                    .collect(),
                ..Payload::default()
            };
            let out = d.decode(topics[t], &payload.to_bytes(), chrono::Utc::now());
            for e in &out.events {
                let text = serde_json::to_string(e).unwrap();
                prop_assert!(jidoka_model::Event::parse_str(&text, chrono::Utc::now()).is_ok());
            }
        }
    }
}
