//! Grounded narratives: every claim cites the events or findings it rests on, as `[E:id]`
//! for an event and `[F:id]` for a finding, so a supervisor can open each one; [`citations`]
//! lists them back, so a test (or a reader) can check that every cited id exists.

use std::collections::BTreeSet;

/// The citation of one event.
pub fn cite(event_id: &str) -> String {
    format!("[E:{event_id}]")
}

/// The citation of one finding.
pub fn cite_finding(finding_id: &str) -> String {
    format!("[F:{finding_id}]")
}

/// Up to `max` event citations, then how many more there are.
pub fn cite_list(event_ids: &[String], max: usize) -> String {
    let mut text: String = event_ids.iter().take(max).map(|e| cite(e)).collect();
    if event_ids.len() > max {
        text.push_str(&format!(" and {} more", event_ids.len() - max));
    }
    text
}

/// Every citation in a text, as `E:id` / `F:id`.
pub fn citations(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find('[') {
        rest = &rest[start + 1..];
        if (rest.starts_with("E:") || rest.starts_with("F:"))
            && let Some(end) = rest.find(']')
        {
            let inner = &rest[..end];
            if inner.len() > 2 && !inner.contains(char::is_whitespace) && !inner[2..].contains('[') {
                out.insert(inner.to_string());
            }
            rest = &rest[end + 1..];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn citations_are_written_and_found_again() {
        let original = format!("Stopped {} after {}; also {}", cite("ev-1"), cite("ev-2"), cite_finding("F-9"));
        let found: Vec<String> = citations(&original).into_iter().collect();
        assert_eq!(found, vec!["E:ev-1", "E:ev-2", "F:F-9"]);
        assert_eq!(citations("[E:] [x] [E:a b] [E:ok]").into_iter().collect::<Vec<_>>(), vec!["E:ok"]);
        assert_eq!(cite_list(&["a".into(), "b".into(), "c".into()], 2), "[E:a][E:b] and 1 more");
    }
}
