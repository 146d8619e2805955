//! Arbitrary MQTT messages through the source's decoder: a plant's JSON mapping (templates,
//! conversions, arrays), Jidoka's event envelope and Sparkplug B (protobuf, births, aliases,
//! sequence numbers) with state kept across messages. None may panic; every refusal must name
//! a field.

#![no_main]

use jidoka_connectors::mqtt::{Format, MqttSourceConfig, TopicConfig, source::Decoder};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn config() -> MqttSourceConfig {
    let mut cfg = MqttSourceConfig::new("fuzz", "127.0.0.1:1883");
    cfg.topics.push(json_mapping());
    for (filter, format) in [("jidoka/events", Format::Event), ("spBv1.0/#", Format::SparkplugB)] {
        let mut t = TopicConfig::new(filter, format);
        if format == Format::SparkplugB {
            t.stations.insert("d".into(), "ST090".into());
        }
        cfg.topics.push(t);
    }
    cfg
}

fn json_mapping() -> TopicConfig {
    let fields = [
        ("tightening_id", "{/id}"),
        ("station", "{topic:1}"),
        ("tool", "T-{/tool?}"),
        ("pset", "1"),
        ("joint", "J"),
        ("final_torque_nm", "{/t}"),
        ("final_angle_deg", "{/a}"),
        ("curve.angle_deg", "{/c/a?}"),
        ("curve.torque_nm", "{/c/t?}"),
    ];
    TopicConfig {
        filter: "plant/+/t".into(),
        format: Format::Json,
        kind: Some("tightening_result".into()),
        txn_id: Some("{/id?}".into()),
        occurred_at: Some("{/ts?}".into()),
        correlation_id: None,
        fields: fields.iter().map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string()))).collect(),
        convert: [("final_torque_nm".to_string(), jidoka_connectors::mqtt::mapping::ConvertSpec::Named("lbf.ft->N.m".into()))]
            .into_iter()
            .collect(),
        stations: Default::default(),
    }
}

static TOPICS: &[&str] = &[
    "plant/ST010/t",
    "jidoka/events",
    "spBv1.0/g/NBIRTH/e",
    "spBv1.0/g/DBIRTH/e/d",
    "spBv1.0/g/DDATA/e/d",
    "spBv1.0/g/NDATA/e",
    "spBv1.0/g/NDEATH/e",
    "spBv1.0/g/DDEATH/e/d",
];

fuzz_target!(|data: &[u8]| {
    static CFG: OnceLock<MqttSourceConfig> = OnceLock::new();
    let cfg = CFG.get_or_init(config);
    let Ok(mut decoder) = Decoder::new(cfg) else { return };
    let now = chrono::DateTime::from_timestamp(1_764_000_000, 0).unwrap_or_default();
    // Several messages from one input, so Sparkplug state carries from one to the next.
    for chunk in data.split(|&b| b == 0xA5).take(16) {
        let Some((&which, payload)) = chunk.split_first() else { continue };
        let topic = TOPICS[which as usize % TOPICS.len()];
        let out = decoder.decode(topic, payload, now);
        for r in &out.reasons {
            assert!(r.contains(':'), "a reason without its field: {r}");
        }
    }
});
