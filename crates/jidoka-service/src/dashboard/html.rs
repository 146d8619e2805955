//! HTML and SVG building blocks of the dashboard: escaping, the page frame, and the charts.
//! Every value from the log or the store goes through [`esc`] before it reaches a page.

use super::view::ToolChart;
use jidoka_agents::patterns::ParetoBar;
use std::fmt::Write;

/// Escape text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// The navigation of a page: the links the role may use and the signed-in person.
#[derive(Debug)]
pub struct Nav<'a> {
    pub current: &'a str,
    pub links: Vec<(&'static str, &'static str)>,
    pub user: &'a str,
    pub role: &'a str,
    pub csrf: &'a str,
}

/// The page frame: header with navigation and the signed-in person, then `body`.
pub fn page(title: &str, nav: Option<&Nav<'_>>, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 2048);
    out.push_str("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    let _ = write!(out, "<title>{} · Jidoka</title>", esc(title));
    out.push_str("<link rel=\"stylesheet\" href=\"/ui/static/app.css\">");
    out.push_str("<script src=\"/ui/static/app.js\" defer></script></head><body>");
    out.push_str("<a class=\"skip\" href=\"#main\">Skip to content</a><header><span class=\"brand\">Jidoka</span>");
    if let Some(nav) = nav {
        out.push_str("<nav aria-label=\"Main\">");
        for (href, label) in &nav.links {
            let current = if *href == nav.current { " aria-current=\"page\"" } else { "" };
            let _ = write!(out, "<a href=\"{href}\"{current}>{label}</a>");
        }
        let _ = write!(
            out,
            "</nav><form class=\"who\" method=\"post\" action=\"/ui/logout\"><span>{} · {}</span>\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\">Sign out</button></form>",
            esc(nav.user),
            esc(nav.role),
            esc(nav.csrf)
        );
    }
    let _ = write!(out, "</header><main id=\"main\"><h1>{}</h1>{body}</main></body></html>", esc(title));
    out
}

/// A verdict or severity badge.
pub fn badge(text: &str) -> String {
    let class = match text {
        "HOLD" | "critical" => "hold",
        "REVIEW" | "warning" => "review",
        "PASS" | "info" => "pass",
        _ => "plain",
    };
    format!("<span class=\"badge {class}\">{}</span>", esc(text))
}

/// A horizontal Pareto chart of defect codes (bars and the cumulative share), as SVG.
pub fn pareto_svg(bars: &[ParetoBar]) -> String {
    let bars = &bars[..bars.len().min(12)];
    let row = 30.0;
    let (w, left, right) = (640.0, 150.0, 80.0);
    let h = 20.0 + row * bars.len().max(1) as f64;
    let max = bars.iter().map(|b| b.count).max().unwrap_or(1).max(1) as f64;
    let mut out = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"Defect Pareto\" \
         xmlns=\"http://www.w3.org/2000/svg\">"
    );
    for (i, b) in bars.iter().enumerate() {
        let y = 10.0 + row * i as f64;
        let len = (w - left - right) * b.count as f64 / max;
        let _ = write!(
            out,
            "<text x=\"{:.0}\" y=\"{:.1}\" text-anchor=\"end\" class=\"label\">{}</text>\
             <rect x=\"{left}\" y=\"{y:.1}\" width=\"{len:.1}\" height=\"{:.1}\" class=\"bar\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" class=\"value\">{} · {:.0}%</text>",
            left - 8.0,
            y + row * 0.55,
            esc(&b.code),
            row - 8.0,
            left + len + 6.0,
            y + row * 0.55,
            b.count,
            b.cumulative_share * 100.0
        );
    }
    out.push_str("</svg>");
    out
}

/// A tool's individuals chart: the values, the centre line and ±1/2/3σ from the baseline,
/// points that broke a Western Electric rule drawn as alarms.
pub fn spc_svg(chart: &ToolChart) -> String {
    let (w, h, m) = (640.0, 260.0, 44.0);
    let values: Vec<f64> = chart.points.iter().map(|p| p.value).collect();
    if values.is_empty() {
        return "<p>No tightenings of this tool yet.</p>".into();
    }
    let (mut lo, mut hi) = values.iter().fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(*v), h.max(*v)));
    if let Some((mean, sigma)) = chart.baseline {
        lo = lo.min(mean - 3.5 * sigma);
        hi = hi.max(mean + 3.5 * sigma);
    }
    if hi - lo < 1e-9 {
        hi += 0.5;
        lo -= 0.5;
    }
    let n = values.len().max(2) as f64;
    let x = |i: usize| m + (w - 2.0 * m) * i as f64 / (n - 1.0);
    let y = |v: f64| h - m + (h - 2.0 * m) * -(v - lo) / (hi - lo);
    let mut out = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"SPC chart of tool {}\" \
         xmlns=\"http://www.w3.org/2000/svg\">",
        esc(&chart.tool)
    );
    if let Some((mean, sigma)) = chart.baseline {
        for (k, class, label) in [(0.0, "centre", "x̄"), (3.0, "limit", "+3σ"), (-3.0, "limit", "−3σ")] {
            let yy = y(mean + k * sigma);
            let _ = write!(
                out,
                "<line x1=\"{m}\" x2=\"{:.1}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" class=\"{class}\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" class=\"label\">{label} {:.3}</text>",
                w - m,
                w - m + 2.0,
                yy + 4.0,
                mean + k * sigma
            );
        }
        for k in [1.0, 2.0, -1.0, -2.0] {
            let yy = y(mean + k * sigma);
            let _ = write!(out, "<line x1=\"{m}\" x2=\"{:.1}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" class=\"zone\"/>", w - m);
        }
    }
    let mut path = String::new();
    for (i, v) in values.iter().enumerate() {
        let _ = write!(path, "{}{:.1},{:.1}", if i == 0 { "M" } else { " L" }, x(i), y(*v));
    }
    let _ = write!(out, "<path d=\"{path}\" class=\"series\"/>");
    for (i, p) in chart.points.iter().enumerate() {
        let class = if p.rules.is_empty() { "point" } else { "alarm" };
        let _ = write!(
            out,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"{}\" class=\"{class}\"><title>{} {:.4}{}</title></circle>",
            x(i),
            y(p.value),
            if p.rules.is_empty() { 2.0 } else { 4.5 },
            esc(&p.event_id),
            p.value,
            if p.rules.is_empty() { String::new() } else { format!(" — rule {}", esc(&p.rules.join("; "))) }
        );
    }
    let _ = write!(
        out,
        "<text x=\"{m}\" y=\"{:.1}\" class=\"label\">last {} tightenings, final torque / target</text></svg>",
        h - 10.0,
        values.len()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_attributes() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }
}
