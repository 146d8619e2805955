// End-to-end test of the dashboard in headless Chromium (Debian's, driven by playwright-core).
// Started by crates/jidoka/tests/dashboard.rs against a running `jidoka demo`; prints one JSON
// line with what it saw and exits non-zero on the first failed check. Screenshots go to
// $ARTIFACTS.
//
// Env: BASE, SUP_USER, SUP_PASS, QE_USER, QE_PASS, OP_USER, OP_PASS, OP_TOKEN, ARTIFACTS,
//      NODE_PATH (where playwright-core is installed).
import { createRequire } from "node:module";
import path from "node:path";
import fs from "node:fs";

const require = createRequire(path.join(process.env.NODE_PATH, "noop.js"));
const { chromium } = require("playwright-core");

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`missing env ${k}`);
  return v;
};
const BASE = env("BASE");
const ARTIFACTS = env("ARTIFACTS");
fs.mkdirSync(ARTIFACTS, { recursive: true });

const seen = {};
function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});

async function shot(page, name) {
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
}

// Sign in with the keyboard only: tab to the fields, type, press Enter.
async function signIn(page, user, password) {
  await page.goto(`${BASE}/ui`);
  check(page.url().endsWith("/ui/login"), `an anonymous visit lands on the sign-in page, not ${page.url()}`);
  await page.focus('input[name="user"]');
  await page.keyboard.type(user);
  await page.keyboard.press("Tab");
  await page.keyboard.type(password);
  await Promise.all([page.waitForURL(`${BASE}/ui`), page.keyboard.press("Enter")]);
  const who = await page.textContent("header .who span");
  check(who.includes(user), `the header names the signed-in person: ${who}`);
}

try {
  // --- Operator, on a tablet: sees the line, no approvals, no approve button; the API says 403.
  const tablet = { viewport: { width: 1280, height: 800 }, deviceScaleFactor: 1, hasTouch: true };
  const opCtx = await browser.newContext(tablet);
  const op = await opCtx.newPage();
  // A wrong password is refused and says so.
  await op.goto(`${BASE}/ui/login`);
  await op.fill('input[name="user"]', env("OP_USER"));
  await op.fill('input[name="password"]', "not-the-password");
  await Promise.all([op.waitForURL(/error=credentials/), op.click('button[type="submit"]')]);
  check((await op.textContent('[role="alert"]')).includes("wrong password"), "a failed sign-in says why");
  await signIn(op, env("OP_USER"), env("OP_PASS"));
  const opNav = await op.$$eval("header nav a", (as) => as.map((a) => a.textContent));
  seen.operator_nav = opNav;
  check(!opNav.includes("Approvals") && !opNav.includes("Audit"), `operator nav: ${opNav}`);
  await op.waitForSelector("#latest li a", { timeout: 60000 });
  await shot(op, "01-operator-line-tablet");
  const queueResp = await op.goto(`${BASE}/ui/queue`);
  check(queueResp.status() === 403, `operator opening the queue gets 403, got ${queueResp.status()}`);

  // --- Supervisor, on a tablet: sees a HOLD arrive live, approves it with a reason.
  const supCtx = await browser.newContext(tablet);
  const sup = await supCtx.newPage();
  await signIn(sup, env("SUP_USER"), env("SUP_PASS"));
  // A finding pushed over server-sent events after the page loaded.
  await sup.waitForSelector("#latest li.new", { timeout: 60000 });
  await sup.waitForSelector('#latest li.new[data-verdict="HOLD"]', { timeout: 90000 });
  seen.live_hold = await sup.textContent('#latest li.new[data-verdict="HOLD"] a');
  const units = await sup.$$eval("#stations tbody tr td:nth-child(2)", (tds) => tds.map((t) => Number(t.textContent)));
  check(units.length >= 1 && units.some((u) => u > 0), `units per station are shown: ${units}`);
  await shot(sup, "02-supervisor-line-live-hold");

  await sup.goto(`${BASE}/ui/queue?verdict=HOLD`);
  // The first HOLD case: one finding with its own form, or the findings about one problem
  // (a unit at a station: the torque and the sequence HOLD of one bolt) with one form.
  const card = sup.locator("ol.queue > li", { has: sup.locator("form.decide") }).first();
  await card.waitFor({ timeout: 30000 });
  check((await card.getAttribute("data-verdict")) === "HOLD", "the first decidable card in the HOLD filter is a HOLD");
  const single = (await card.locator("div.action form.decide").count()) > 0;
  const caseId = await card.getAttribute("data-case");
  seen.case_of_several = !single;
  const reasonText = (await card.locator(single ? "p.reason" : "ul.findings li div").first().textContent()).trim();
  check(reasonText.length > 10, `the HOLD carries its reason: ${reasonText}`);
  const findingLink = await card.locator(single ? "h2 a" : "ul.findings a").first().getAttribute("href");
  const actionId = single
    ? await card.locator("div.action:has(form.decide)").first().getAttribute("data-action")
    : (await card.locator('input[name="actions"]').getAttribute("value")).split(",").find((id) => id) || null;
  seen.action_id = actionId;
  seen.finding = findingLink;
  await shot(sup, "03-supervisor-queue");
  // Approve without a reason: the browser refuses to send the form (required field).
  const form = single ? card.locator(`div.action[data-action="${actionId}"] form.decide`) : card.locator("form.decide");
  await form.locator("button.approve").click();
  check(sup.url().includes("/ui/queue"), "an approval without a reason is not sent");
  await form.locator("textarea").fill("torque trace checked at the station; hold the unit for rework");
  if (single) {
    await Promise.all([sup.waitForURL(/\/ui\/findings\//), form.locator("button.approve").click()]);
  } else {
    // A case decided at once goes back to the queue; its findings' pages show each action.
    await Promise.all([sup.waitForURL(/\/ui\/queue/), form.locator("button.approve").click()]);
    // Unless a newer finding about the same problem has joined it since.
    const again = sup.locator(`li[data-case="${caseId}"] input[name="actions"]`);
    const left = (await again.count()) === 0 || !(await again.getAttribute("value")).split(",").includes(actionId);
    check(left, "a decided case's actions leave the queue");
    await sup.goto(`${BASE}${findingLink}`);
  }
  // The finding page shows the action approved, then delivered by the outbox.
  let status = "";
  for (let i = 0; i < 40; i++) {
    status = (await sup.textContent(`div.action[data-action="${actionId}"] .status`)).trim();
    if (status === "delivered") break;
    await sup.waitForTimeout(500);
    await sup.reload();
  }
  seen.status_after_approval = status;
  check(status === "delivered", `the approved action is executed (delivered), got ${status}`);
  const history = await sup.textContent(`div.action[data-action="${actionId}"] ol.history`);
  check(
    history.includes(`user:${env("SUP_USER")} approved`) && history.includes("hold the unit for rework"),
    `the action's history names who approved it and why: ${history}`,
  );
  check((await sup.locator(`div.action[data-action="${actionId}"] form.decide`).count()) === 0, "no buttons on a decided action");
  // The finding page: curve against the envelope for a tightening, features, the tool's chart.
  seen.finding_has_curve = (await sup.locator("figure svg").count()) > 0;
  await shot(sup, "04-supervisor-finding-after-approval");

  // --- The build queue: a roof-glass shortage declared from the page gets a re-sequencing
  // proposal within seconds; approved on its finding, the simulated line follows it.
  await sup.goto(`${BASE}/ui/build-queue`);
  const queued = await sup.locator("#build-queue tbody tr").count();
  check(queued > 30, `the build queue shows the coming units: ${queued}`);
  seen.build_queue_frozen_rows = await sup.locator("#build-queue tbody tr.frozen").count();
  await sup.selectOption('form.declare select[name="resource"]', "ROOF-GLASS");
  await sup.fill('form.declare input[name="from_minutes"]', "45");
  await sup.fill('form.declare input[name="for_minutes"]', "120");
  await sup.fill('form.declare input[name="reason"]', "glass truck late");
  await Promise.all([sup.waitForURL(`${BASE}/ui/build-queue`), sup.click("form.declare button")]);
  const decide = 'a[href^="/ui/findings/"]:has-text("Decide the proposal")';
  for (let i = 0; i < 60 && (await sup.locator(decide).count()) === 0; i++) {
    await sup.waitForTimeout(500);
    await sup.reload();
  }
  check((await sup.locator(decide).count()) === 1, "a re-sequencing proposal waits for a decision");
  seen.proposal_figures = await sup.$$eval("#proposal-figures tbody tr", (trs) =>
    trs.map((tr) => [...tr.cells].map((c) => c.textContent.trim())),
  );
  await shot(sup, "08-supervisor-build-queue-proposal");
  const proposalLink = await sup.getAttribute(decide, "href");
  await sup.goto(`${BASE}${proposalLink}`);
  const reseqForm = sup.locator("div.action form.decide").first();
  await reseqForm.locator("textarea").fill("keep the line running while the glass is late");
  await Promise.all([sup.waitForURL(/\/ui\/findings\//), reseqForm.locator("button.approve").click()]);
  let reseqStatus = "";
  for (let i = 0; i < 60; i++) {
    reseqStatus = (await sup.textContent("div.action .status")).trim();
    if (reseqStatus === "delivered") break;
    await sup.waitForTimeout(500);
    await sup.reload();
  }
  seen.resequence_status = reseqStatus;
  seen.resequence_history = (await sup.textContent("div.action ol.history")).trim();
  seen.resequence_action = await sup.getAttribute("div.action", "data-action");
  // A unit put on hold from the page: listed among the disruptions, with a new proposal.
  await sup.goto(`${BASE}/ui/build-queue`);
  const heldVin = (await sup.textContent("#build-queue tbody tr:nth-child(50) td:nth-child(3)")).trim();
  await sup.fill("form.hold textarea", heldVin);
  await sup.fill('form.hold input[name="reason"]', "paint defect found at the audit");
  await Promise.all([sup.waitForURL(`${BASE}/ui/build-queue`), sup.click("form.hold button")]);
  const disruptions = await sup.textContent("main");
  seen.hold_declared = disruptions.includes(`${heldVin} on hold`) && disruptions.includes("paint defect found");
  seen.held_vin = heldVin;

  // --- The material forecast: every part the line has taken, with its explanation.
  await sup.goto(`${BASE}/ui/shortages`);
  seen.shortage_rows = await sup.locator("#shortages tbody tr").count();
  seen.shortage_frame = (await sup.textContent("#shortages")).includes("SUBFRAME-F");
  await shot(sup, "09-supervisor-material-forecast");

  // --- A torque HOLD: the curve against its golden envelope, the features, the tool's chart.
  let torqueId = null;
  for (let i = 0; i < 120 && !torqueId; i++) {
    const r = await fetch(`${BASE}/api/findings?agent=torque-audit&verdict=HOLD&limit=1`, {
      headers: { Authorization: `Bearer ${env("OP_TOKEN")}` },
    });
    torqueId = ((await r.json()).items[0] || {}).finding_id || null;
    if (!torqueId) await sup.waitForTimeout(500);
  }
  check(torqueId, "a torque-audit HOLD from the simulated line");
  await sup.goto(`${BASE}/ui/findings/${encodeURIComponent(torqueId)}`);
  const curve = sup.locator("figure svg").first();
  check((await curve.locator("path, polyline").count()) > 0, "the tightening curve is drawn");
  check((await sup.locator("h2", { hasText: "Features" }).count()) === 1, "the features are listed");
  check((await sup.locator("h2", { hasText: "Detectors that fired" }).count()) === 1, "the detector that fired is named");
  seen.spc_points = await sup.locator("svg[aria-label^='SPC chart'] circle").count();
  check(seen.spc_points > 0, "the tool's SPC chart has points");
  seen.torque_finding = torqueId;
  await shot(sup, "04b-supervisor-torque-finding");

  // --- The operator still sees no button on that finding, and the API refuses the operator.
  await op.goto(`${BASE}${findingLink}`);
  check((await op.locator("button.approve").count()) === 0, "no approve button for the operator");
  const api = await fetch(`${BASE}/api/actions/${encodeURIComponent(actionId)}/approve`, {
    method: "POST",
    headers: { Authorization: `Bearer ${env("OP_TOKEN")}`, "Content-Type": "application/json" },
    body: JSON.stringify({ reason: "operator tries" }),
  });
  seen.operator_api_status = api.status;
  check(api.status === 403, `the API answers the operator 403, got ${api.status}`);
  // A form posted by the operator's session is refused by the server too (not just hidden).
  const forged = await op.evaluate(async (id) => {
    const r = await fetch(`/ui/actions/${encodeURIComponent(id)}/decide`, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: "decision=approve&reason=x&csrf=x",
    });
    return r.status;
  }, actionId);
  seen.operator_form_status = forged;
  check(forged === 403, `the dashboard refuses the operator's form, got ${forged}`);
  await shot(op, "05-operator-finding-no-buttons");

  // --- Quality engineer, on a desktop: the audit record of the approval, the chain verified,
  // the defect Pareto.
  const qeCtx = await browser.newContext({ viewport: { width: 1600, height: 1000 } });
  const qe = await qeCtx.newPage();
  await signIn(qe, env("QE_USER"), env("QE_PASS"));
  await qe.goto(`${BASE}/ui/audit?verify=1`);
  const verify = await qe.textContent("#verify");
  check(verify.includes("Chain intact"), `the audit chain verifies: ${verify}`);
  // The action's history, found by its id.
  await qe.fill('input[name="ref"]', actionId);
  await Promise.all([qe.waitForURL(/ref=/), qe.click("form:has(input[name=ref]) button")]);
  const rows = await qe.$$eval("#audit tbody tr", (trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent)));
  seen.audit_history = rows.map((r) => r[3].split(" ")[0]).reverse();
  const row = rows.find((r) => r[4] === actionId && r[3].startsWith("action_approved"));
  check(row, `an action_approved audit record for ${actionId}`);
  check(row[2] === `user:${env("SUP_USER")}`, `the record names the approver: ${row}`);
  seen.audit_row = row;
  await shot(qe, "06-quality-audit");
  const exp = await qe.evaluate(async () => {
    const r = await fetch("/ui/audit/export?from=1&to=5");
    return { status: r.status, lines: (await r.text()).trim().split("\n").length };
  });
  check(exp.status === 200 && exp.lines === 5, `export of records 1..5: ${JSON.stringify(exp)}`);
  await qe.goto(`${BASE}/ui/patterns`);
  const pareto = await qe.locator("svg[aria-label='Defect Pareto'] rect").count();
  seen.pareto_bars = pareto;
  await shot(qe, "07-quality-defects");

  // --- Accessibility (WCAG 2 A/AA, contrast included) of every page, with axe-core. The page's
  // own content security policy would block the injected checker, so this context bypasses it.
  const axeSource = fs.readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
  const a11yCtx = await browser.newContext({ viewport: { width: 1280, height: 800 }, bypassCSP: true });
  const a11y = await a11yCtx.newPage();
  await a11y.goto(`${BASE}/ui/login`);
  const a11yPages = ["/ui/login"];
  await a11y.fill('input[name="user"]', env("QE_USER"));
  await a11y.fill('input[name="password"]', env("QE_PASS"));
  await Promise.all([a11y.waitForURL(`${BASE}/ui`), a11y.click('button[type="submit"]')]);
  a11yPages.push("/ui", "/ui/queue", findingLink, `/ui/findings/${encodeURIComponent(torqueId)}`, "/ui/patterns", "/ui/audit", "/ui/build-queue", "/ui/shortages");
  const violations = [];
  for (const p of a11yPages) {
    if (p !== "/ui/login") await a11y.goto(`${BASE}${p}`);
    else {
      const anon = await browser.newContext({ bypassCSP: true });
      const ap = await anon.newPage();
      await ap.goto(`${BASE}${p}`);
      await ap.addScriptTag({ content: axeSource });
      const r = await ap.evaluate(() => axe.run(document, { runOnly: ["wcag2a", "wcag2aa"] }));
      violations.push(...r.violations.map((v) => `${p}: ${v.id} (${v.impact}) ${v.nodes.length}× ${v.nodes[0].target}`));
      await anon.close();
      continue;
    }
    await a11y.addScriptTag({ content: axeSource });
    const r = await a11y.evaluate(() => axe.run(document, { runOnly: ["wcag2a", "wcag2aa"] }));
    violations.push(...r.violations.map((v) => `${p}: ${v.id} (${v.impact}) ${v.nodes.length}× ${v.nodes[0].target}`));
  }
  seen.a11y_pages = a11yPages.length;
  seen.a11y_violations = violations;
  check(violations.length === 0, `WCAG 2 AA violations: ${violations.join("; ")}`);

  // --- Keyboard: every control on the queue is reachable with Tab and shows focus.
  await sup.goto(`${BASE}/ui/queue`);
  await sup.keyboard.press("Tab");
  const first = await sup.evaluate(() => document.activeElement.textContent);
  check(first.includes("Skip to content"), `the first Tab stop skips to the content: ${first}`);

  console.log(JSON.stringify({ ok: true, ...seen }));
  await browser.close();
} catch (err) {
  console.log(JSON.stringify({ ok: false, error: String(err && err.message), ...seen }));
  await browser.close();
  process.exit(1);
}
