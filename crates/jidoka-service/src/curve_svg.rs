//! A tightening's torque-angle curve as SVG, against its joint's golden envelope: the picture a
//! quality engineer opens from a torque finding.

use jidoka_model::event::Curve;

/// An SVG of `curve` (torque over the angle turned) with the golden envelope as a band.
pub fn svg(curve: &Curve, envelope: Option<&[(f64, f64, f64)]>, title: &str) -> String {
    let (w, h, m) = (640.0, 400.0, 48.0);
    let sign = if curve.torque_nm.iter().copied().fold(0.0, f64::min).abs()
        > curve.torque_nm.iter().copied().fold(0.0, f64::max)
    {
        -1.0
    } else {
        1.0
    };
    let a0 = curve.angle_deg.first().copied().unwrap_or(0.0);
    let pts: Vec<(f64, f64)> =
        curve.angle_deg.iter().zip(&curve.torque_nm).map(|(a, t)| ((a - a0).abs(), t * sign)).collect();
    let env = envelope.unwrap_or(&[]);
    let max_x = pts.iter().map(|p| p.0).chain(env.iter().map(|e| e.0)).fold(1e-9, f64::max);
    let max_y = pts.iter().map(|p| p.1).chain(env.iter().map(|e| e.2)).fold(1e-9, f64::max) * 1.05;
    let min_y = pts.iter().map(|p| p.1).fold(0.0, f64::min);
    let x = |v: f64| m + (w - 2.0 * m) * v / max_x;
    let y = |v: f64| h - m - (h - 2.0 * m) * (v - min_y) / (max_y - min_y).max(1e-9);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{m}\" y=\"20\">{}</text>\n",
        crate::dashboard::html::esc(title)
    );
    if !env.is_empty() {
        let upper: Vec<String> = env.iter().map(|e| format!("{:.1},{:.1}", x(e.0), y(e.2))).collect();
        let lower: Vec<String> = env.iter().rev().map(|e| format!("{:.1},{:.1}", x(e.0), y(e.1.max(min_y)))).collect();
        s.push_str(&format!(
            "<polygon points=\"{} {}\" fill=\"#9ecae1\" fill-opacity=\"0.5\" stroke=\"none\"><title>golden envelope (median ± 3 scale)</title></polygon>\n",
            upper.join(" "),
            lower.join(" ")
        ));
    }
    // At most ~1,000 points: a long curve is decimated, keeping each bucket's extremes.
    let step = (pts.len() / 500).max(1);
    let mut line = Vec::with_capacity(pts.len() / step * 2 + 2);
    for chunk in pts.chunks(step) {
        let lo = chunk.iter().fold(chunk[0], |b, p| if p.1 < b.1 { *p } else { b });
        let hi = chunk.iter().fold(chunk[0], |b, p| if p.1 > b.1 { *p } else { b });
        for p in if lo.0 <= hi.0 { [lo, hi] } else { [hi, lo] } {
            line.push(format!("{:.1},{:.1}", x(p.0), y(p.1)));
        }
    }
    s.push_str(&format!(
        "<polyline points=\"{}\" fill=\"none\" stroke=\"#d62728\" stroke-width=\"1.5\"/>\n",
        line.join(" ")
    ));
    s.push_str(&format!(
        "<line x1=\"{m}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"black\"/><line x1=\"{m}\" y1=\"{m}\" x2=\"{m}\" y2=\"{0}\" stroke=\"black\"/>\n",
        h - m,
        w - m
    ));
    s.push_str(&format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">angle {:.0}°</text><text x=\"4\" y=\"{}\">{:.2} N·m</text><text x=\"4\" y=\"{}\">{:.2}</text>\n</svg>\n",
        w - m,
        h - m + 20.0,
        max_x,
        m,
        max_y,
        h - m,
        min_y
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_draws_curve_and_envelope() {
        let c = Curve { angle_deg: vec![0.0, 10.0, 20.0], torque_nm: vec![0.0, 5.0, 10.0], time_s: vec![] };
        let s = svg(&c, Some(&[(5.0, 1.0, 3.0), (15.0, 6.0, 9.0)]), "a <b>");
        assert!(
            s.starts_with("<svg") && s.contains("<polyline") && s.contains("<polygon") && s.contains("a &lt;b&gt;")
        );
    }
}
