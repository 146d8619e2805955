//! MQTT topic names and filters (MQTT 3.1.1 §4.7): `+` matches one level, `#` the rest.

/// Why a topic filter is not valid, for the configuration's error list.
pub fn check_filter(filter: &str) -> Result<(), String> {
    if filter.is_empty() {
        return Err("must not be empty".into());
    }
    if filter.len() > 65_535 {
        return Err("is longer than 65535 bytes".into());
    }
    if filter.contains('\0') {
        return Err("must not contain NUL".into());
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i + 1 != levels.len()) {
            return Err(format!("`#` must be a whole level and the last one (level {i} is `{level}`)"));
        }
        if level.contains('+') && *level != "+" {
            return Err(format!("`+` must be a whole level (level {i} is `{level}`)"));
        }
    }
    Ok(())
}

/// Does `topic` (a concrete topic name) match `filter`? Topics starting with `$` match only
/// filters that name that first level (§4.7.2), so `#` does not take `$SYS`.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// A topic name safe to build from plant values: the separators and wildcards it must not
/// carry become `_`.
pub fn level(value: &str) -> String {
    let cleaned: String =
        value.chars().map(|c| if matches!(c, '/' | '+' | '#' | '\0') || c.is_control() { '_' } else { c }).collect();
    if cleaned.is_empty() { "_".into() } else { cleaned }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_as_the_standard_says() {
        let cases = [
            ("plant/+/scan", "plant/ST010/scan", true),
            ("plant/+/scan", "plant/ST010/x/scan", false),
            ("plant/#", "plant", true),
            ("plant/#", "plant/a/b/c", true),
            ("#", "anything/at/all", true),
            ("#", "$SYS/broker/uptime", false),
            ("$SYS/#", "$SYS/broker/uptime", true),
            ("+/+", "a/", true),
            ("a/b", "a/b/", false),
            ("spBv1.0/line1/+/edge/#", "spBv1.0/line1/NDATA/edge", true),
        ];
        for (filter, topic, expected) in cases {
            assert_eq!(matches(filter, topic), expected, "{filter} vs {topic}");
        }
    }

    #[test]
    fn bad_filters_are_named() {
        assert!(check_filter("a/#/b").is_err());
        assert!(check_filter("a/b#").is_err());
        assert!(check_filter("a/x+").is_err());
        assert!(check_filter("").is_err());
        assert!(check_filter("a/+/b/#").is_ok());
    }

    #[test]
    fn levels_never_carry_separators() {
        assert_eq!(level("ST/0+1#"), "ST_0_1_");
        assert_eq!(level(""), "_");
    }
}
