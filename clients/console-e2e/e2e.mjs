// The console end to end, in the distribution's headless Chromium, driven
// by playwright-core over the DevTools protocol:
//   1. an administrator signs in with a password and a TOTP code;
//   2. locks a user from the Users page;
//   3. finds that event in the audit trail, under a verified chain;
// then reads a patient's access log, engages and releases the kill switch
// (PHI stops and flows again), and draws the research charts. A screenshot of each step is
// saved. Any Content-Security-Policy violation or script error fails it.
//
//   node e2e.mjs BASE_URL ORG ADMIN_EMAIL USER_EMAIL OUT_DIR   (password on stdin;
//   E2E_PATIENT: a patient id; E2E_ADMIN_TOKEN: a bearer token that reads PHI)
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import * as OTPAuth from "otpauth";
import { chromium } from "playwright-core";

const [base, org, adminEmail, userEmail, out] = process.argv.slice(2);
if (!out) {
  console.error("usage: node e2e.mjs BASE_URL ORG ADMIN_EMAIL USER_EMAIL OUT_DIR < password");
  process.exit(2);
}
const password = readFileSync(0, "utf8").trim();
mkdirSync(out, { recursive: true });

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

async function api(method, path, token, body) {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: {
      "Content-Type": "application/json",
      ...(token ? { Authorization: `Bearer ${token}` } : {}),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

// The administrator enrols an authenticator over the API (as an app
// would), so the console sign-in below must pass the second factor.
const login = await api("POST", "/api/v1/auth/login", null, { org, email: adminEmail, password });
check(login.status === 200 && login.body.access_token, `admin login: ${JSON.stringify(login)}`);
const enrol = await api("POST", "/api/v1/auth/mfa/totp/enroll", login.body.access_token, {});
check(enrol.status === 200, `enrol: ${JSON.stringify(enrol)}`);
const totp = OTPAuth.URI.parse(enrol.body.otpauth_uri);
const activated = await api("POST", "/api/v1/auth/mfa/totp/activate", login.body.access_token, { code: totp.generate() });
check(activated.status === 200, `activate: ${JSON.stringify(activated)}`);
// A code is accepted once: sign in with the next one.
const step = () => Math.floor(Date.now() / 1000 / totp.period);
const used = step();
while (step() === used) await new Promise((r) => setTimeout(r, 250));

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
const problems = [];
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.on("console", (msg) => {
    const text = msg.text();
    if (msg.type() === "error" && !/status of 40[134]/.test(text)) problems.push(`console: ${text}`);
  });
  page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
  const shot = (name) => page.screenshot({ path: join(out, name), fullPage: true });

  // 1. Sign in: password, then the TOTP code.
  await page.goto(`${base}/console/`);
  await page.waitForSelector("form#login");
  await shot("01-sign-in.png");
  await page.fill("form#login input[name=org]", org);
  await page.fill("form#login input[name=email]", adminEmail);
  await page.fill("form#login input[name=password]", password);
  await page.click("form#login button[type=submit]");
  await page.waitForSelector("form#totp");
  // A wrong code first: refused, and the form stays.
  await page.fill("form#totp input[name=code]", "000000" === totp.generate() ? "111111" : "000000");
  await page.click("form#totp button[type=submit]");
  await page.waitForSelector("#status.error");
  check((await page.textContent("#status")).includes("401"), "a wrong code is refused");
  await page.fill("form#totp input[name=code]", totp.generate());
  await page.click("form#totp button[type=submit]");
  await page.waitForSelector("main[data-view=audit] #chain-state");
  check(await page.isVisible("#nav"), "navigation after sign-in");
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === "__Host-carapace_session");
  check(session && session.httpOnly && session.sameSite === "Strict", "HttpOnly SameSite=Strict session cookie");
  await shot("02-signed-in.png");

  // 2. Lock the user.
  await page.click("#nav button[data-view=users]");
  const row = `main[data-view=users] tr[data-email="${userEmail}"]`;
  await page.waitForSelector(`${row} button[data-action=lock]`);
  await page.click(`${row} button[data-action=lock]`);
  await page.waitForSelector(`${row} button[data-action=unlock]`);
  check((await page.textContent(row)).includes("locked"), "the row says locked");
  await shot("03-user-locked.png");
  // The API agrees: the user cannot sign in.
  const locked = await api("POST", "/api/v1/auth/login", null, { org, email: userEmail, password });
  check(locked.status === 401, `a locked user's sign-in: ${locked.status}`);

  // 3. Find the event in the audit trail.
  await page.click("#nav button[data-view=audit]");
  await page.waitForSelector("main[data-view=audit] svg.chart rect");
  const chain = await page.textContent("#chain-state");
  check(chain.includes("verified"), `chain state: ${chain}`);
  // An administrator's change is a security event; its detail names it.
  await page.fill("form#audit-filter input[name=action]", "security.admin_action");
  await page.click("form#audit-filter button[type=submit]");
  await page.waitForSelector("#audit-results tr.event");
  const events = await page.$$eval("#audit-results tr.event", (rows) => rows.map((r) => r.textContent));
  const lockEvents = events.filter((e) => e.includes("user.locked"));
  check(lockEvents.length === 1 && lockEvents[0].includes("allowed"), `events: ${events}`);
  await shot("04-audit-event.png");

  // Markup an attacker can get into the trail (a search filter is recorded
  // in the read's detail) is shown as text: no element, no script.
  const payload = `<img src=x onerror="window.pwned=1">`;
  await page.fill("form#audit-filter input[name=action]", "");
  await page.fill("form#audit-filter input[name=actor]", payload);
  await page.click("form#audit-filter button[type=submit]");
  await page.waitForSelector("#audit-results p.note");
  await page.fill("form#audit-filter input[name=actor]", "");
  await page.fill("form#audit-filter input[name=action]", "audit.read");
  await page.click("form#audit-filter button[type=submit]");
  await page.waitForFunction(() => [...document.querySelectorAll("#audit-results tr.event")].some((r) => r.textContent.includes("<img")));
  check(await page.evaluate(() => document.querySelector("#audit-results img") === null && window.pwned === undefined), "markup in an event stays text");

  // A patient's access log: the registration is in it.
  await page.click("#nav button[data-view=access]");
  await page.fill("main[data-view=access] input[name=patient]", process.env.E2E_PATIENT);
  await page.click("main[data-view=access] button[type=submit]");
  await page.waitForSelector("#access-results tr.event");
  const accesses = await page.$$eval("#access-results tr.event", (rows) => rows.map((r) => r.textContent));
  check(accesses.some((e) => e.includes("patient.create")), `access log: ${accesses}`);

  // The kill switch: engaged with a reason, PHI stops; released, it flows.
  const phi = async () => (await api("GET", "/api/v1/patients?limit=1", process.env.E2E_ADMIN_TOKEN)).status;
  check((await phi()) === 200, "PHI served before the switch");
  await page.click("#nav button[data-view=kill]");
  await page.fill("main[data-view=kill] input[name=reason]", "console test: suspected credential leak");
  await page.click("main[data-view=kill] button[type=submit]");
  await page.waitForSelector("main[data-view=kill] .badge.bad");
  await shot("05-kill-switch.png");
  check((await phi()) === 503, "PHI refused while the switch is engaged");
  await page.click("main[data-view=kill] button[type=submit]");
  await page.waitForSelector("main[data-view=kill] .badge.ok");
  check((await phi()) === 200, "PHI served again after release");

  // The research aggregates, small cells withheld.
  await page.click("#nav button[data-view=research]");
  await page.waitForSelector("main[data-view=research] svg.chart");
  const drawn = await page.$$eval("main[data-view=research] rect.bar-count", (r) => r.length);
  const withheld = await page.$$eval("main[data-view=research] rect.bar-withheld", (r) => r.length);
  check(drawn >= 1 && withheld >= 1, `research bars: ${drawn} drawn, ${withheld} withheld`);
  await shot("06-research.png");

  // Sign out ends the session: a reload shows the sign-in form.
  await page.click("#signout");
  await page.waitForSelector("form#login");
  await page.reload();
  await page.waitForSelector("form#login");
} finally {
  await browser.close();
}
check(problems.length === 0, problems.join("\n"));
console.log(`console e2e ok: signed in with TOTP, locked ${userEmail}, found user.locked in the trail; screenshots in ${out}`);
