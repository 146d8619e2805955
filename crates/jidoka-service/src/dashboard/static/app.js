// Jidoka dashboard: live updates of the line page over server-sent events. Data from the
// server is only ever set as text, never parsed as HTML.
"use strict";
(function () {
  const latest = document.getElementById("latest");
  const stations = document.getElementById("stations");
  if (!latest || !stations || !window.EventSource) return;
  const set = (key, value) => {
    const el = document.querySelector('[data-live="' + key + '"]');
    if (el) el.textContent = String(value);
  };
  const badge = (text, cls) => {
    const b = document.createElement("span");
    b.className = "badge " + cls;
    b.textContent = text;
    return b;
  };
  const cls = (t) => (t === "HOLD" || t === "critical" ? "hold" : t === "REVIEW" || t === "warning" ? "review" : "pass");
  const es = new EventSource("/ui/live");
  es.addEventListener("line", (e) => {
    const s = JSON.parse(e.data);
    for (const key of ["critical", "warning", "info"]) set("open." + key, s.open_by_severity[key] || 0);
    set("cases", s.pending_cases);
    set("andons", s.line.andons_open);
    set("andon-label", s.line.line_stopped ? "Andon open · LINE STOPPED" : "Andon open");
    const tile = document.querySelector('[data-live="andons"]').parentElement;
    tile.className = "tile " + (s.line.line_stopped ? "stopped" : s.line.andons_open > 0 ? "andon" : "");
    const body = stations.tBodies[0];
    for (const st of s.line.stations) {
      let row = body.querySelector('tr[data-station="' + CSS.escape(st.station) + '"]');
      if (!row) {
        row = body.insertRow();
        row.dataset.station = st.station;
        const th = document.createElement("th");
        th.scope = "row";
        th.textContent = st.station;
        row.appendChild(th);
        for (let i = 0; i < 4; i++) row.insertCell();
      }
      row.cells[1].textContent = st.units;
      row.cells[2].textContent = st.current_vin || "—";
      row.cells[3].textContent = st.tightenings + " (" + st.tightenings_nok + ")";
      const a = row.cells[4];
      a.replaceChildren(
        st.andon
          ? badge(st.andon.fault_code + (st.andon.line_stopped ? " · stopped" : ""), st.andon.line_stopped ? "hold" : "review")
          : badge("clear", "pass"),
      );
    }
  });
  es.addEventListener("finding", (e) => {
    const f = JSON.parse(e.data);
    const li = document.createElement("li");
    li.className = "new";
    li.dataset.verdict = f.verdict;
    const link = document.createElement("a");
    link.href = "/ui/findings/" + encodeURIComponent(f.finding_id);
    link.textContent = f.kind;
    const meta = document.createElement("span");
    meta.className = "muted";
    meta.textContent = " " + (f.station || "") + " · " + f.occurred_at;
    const reason = document.createElement("div");
    reason.textContent = f.reason;
    li.append(badge(f.verdict, cls(f.verdict)), " ", badge(f.severity, cls(f.severity)), " ", link, meta, reason);
    latest.prepend(li);
    while (latest.children.length > 30) latest.lastElementChild.remove();
  });
})();
