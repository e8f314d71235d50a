// The Carapace admin and compliance console. It uses the public API only,
// signed in with a cookie session (HttpOnly session cookies; the CSRF token
// is repeated in X-CSRF-Token on every unsafe request). It builds the page
// with DOM calls and text nodes only: nothing it shows is parsed as markup.
"use strict";

(() => {
  const API = "/api/v1";
  const OUTCOMES = ["allowed", "denied", "not_found", "error"];
  const ROLES = ["admin", "clinician", "staff", "viewer", "compliance", "service"];
  const SVG = "http://www.w3.org/2000/svg";
  const app = document.getElementById("app");
  const nav = document.getElementById("nav");
  const statusLine = document.getElementById("status");

  // ---- building blocks -------------------------------------------------

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === false || v === null || v === undefined) continue;
      if (k.startsWith("on:")) el.addEventListener(k.slice(3), v);
      else if (k === "text") el.textContent = v;
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  function s(tag, attrs, ...children) {
    const el = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
    for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return el;
  }

  function say(message, isError) {
    statusLine.textContent = message || "";
    statusLine.className = isError ? "error" : "";
  }

  function field(label, input) {
    return h("label", {}, label, input);
  }

  function table(headers, rows) {
    return h("table", {},
      h("thead", {}, h("tr", {}, headers.map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, rows));
  }

  function badge(text, kind) {
    return h("span", { class: `badge ${kind}` }, text);
  }

  function formValues(form) {
    const out = {};
    for (const [k, v] of new FormData(form).entries()) {
      if (typeof v === "string" && v.trim() !== "") out[k] = v.trim();
    }
    return out;
  }

  // ---- the API ---------------------------------------------------------

  class ApiProblem extends Error {
    constructor(status, problem) {
      const fields = (problem.errors || []).map((e) => `${e.field}: ${e.message}`).join("; ");
      super(`${problem.title || "Request failed"} (${status})${problem.detail ? `: ${problem.detail}` : ""}${fields ? ` [${fields}]` : ""}`);
      this.status = status;
      this.problem = problem;
    }
  }

  function csrf() {
    const c = document.cookie.split("; ").find((p) => p.startsWith("__Host-carapace_csrf="));
    return c ? decodeURIComponent(c.slice(c.indexOf("=") + 1)) : "";
  }

  async function call(method, path, body, retried) {
    const headers = { Accept: "application/json" };
    if (method !== "GET") headers["X-CSRF-Token"] = csrf();
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const res = await fetch(path.startsWith("/") ? path : `${API}/${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
    });
    if (res.status === 401 && !retried && !path.startsWith("auth/")) {
      // The access cookie lasts minutes: refresh once, then try again.
      const refreshed = await fetch(`${API}/auth/refresh`, {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
        body: "{}",
        credentials: "same-origin",
      });
      if (refreshed.ok) return call(method, path, body, true);
      showLogin("Your session ended; sign in again.");
      throw new ApiProblem(401, { title: "Signed out" });
    }
    const text = await res.text();
    if (!res.ok) throw new ApiProblem(res.status, text ? JSON.parse(text) : {});
    // No content (204) is a success too.
    return text ? JSON.parse(text) : true;
  }

  const get = (path) => call("GET", path);
  const post = (path, body) => call("POST", path, body === undefined ? {} : body);

  // Runs an action, reporting its failure (a problem+json) on the status line.
  async function attempt(what, action) {
    say(`${what}…`);
    try {
      const out = await action();
      say(`${what}: done.`);
      return out;
    } catch (e) {
      say(e instanceof ApiProblem ? e.message : `${what} failed: ${e.message}`, true);
      return undefined;
    }
  }

  // ---- sign in ---------------------------------------------------------

  function showLogin(message) {
    nav.hidden = true;
    say(message || "");
    const form = h("form", { id: "login" },
      field("Organization", h("input", { name: "org", required: true, maxlength: 63, autocomplete: "organization" })),
      field("E-mail", h("input", { name: "email", type: "email", required: true, maxlength: 254, autocomplete: "username" })),
      field("Password", h("input", { name: "password", type: "password", required: true, maxlength: 128, autocomplete: "current-password" })),
      h("button", { type: "submit" }, "Sign in"));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const v = formValues(form);
      const out = await attempt("Signing in", () => post("auth/login", { org: v.org, email: v.email, password: v.password, mode: "cookie" }));
      if (!out) return;
      if (out.mfa_required) showTotp(out.mfa_token);
      else signedIn();
    });
    app.replaceChildren(h("section", { class: "login" }, h("h2", {}, "Sign in"), form,
      h("p", { class: "note" }, "Administrators and compliance officers sign in with their authenticator code.")));
  }

  function showTotp(mfaToken) {
    const form = h("form", { id: "totp" },
      field("Authenticator code", h("input", { name: "code", required: true, inputmode: "numeric", autocomplete: "one-time-code", maxlength: 32 })),
      h("button", { type: "submit" }, "Verify"));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const out = await attempt("Verifying", () => post("auth/mfa/verify", { mfa_token: mfaToken, code: formValues(form).code || "", mode: "cookie" }));
      if (out) signedIn();
    });
    app.replaceChildren(h("section", { class: "login" }, h("h2", {}, "Second factor"), form));
  }

  // Administrators and compliance officers both read the audit trail.
  function signedIn() {
    nav.hidden = false;
    show("audit");
  }

  // ---- users -----------------------------------------------------------

  async function users() {
    const list = await get("users");
    const reason = h("input", { id: "mfa-reason", maxlength: 500, placeholder: "why (10-500 characters), e.g. the ticket" });
    const act = (u, what, path, body) => h("button", {
      type: "button", class: what === "Deactivate" ? "danger" : "quiet", "data-action": what.toLowerCase(),
      "on:click": async () => { if (await attempt(`${what} ${u.email}`, () => post(path, body && body()))) render("users", `${what}: ${u.email} done.`); },
    }, what);
    const rows = list.map((u) => h("tr", { "data-email": u.email },
      h("td", {}, u.email),
      h("td", {}, u.roles.join(", ")),
      h("td", {}, u.active ? (u.locked ? badge("locked", "bad") : badge("active", "ok")) : badge("deactivated", "warn"),
        u.throttled ? badge("throttled", "warn") : null),
      h("td", {}, u.mfa_enabled ? "yes" : "no"),
      h("td", { class: "actions" },
        u.active && !u.locked ? act(u, "Lock", `users/${u.id}/lock`) : null,
        u.active && u.locked ? act(u, "Unlock", `users/${u.id}/unlock`) : null,
        u.active && u.mfa_enabled ? act(u, "Reset MFA", `users/${u.id}/mfa/reset`, () => ({ reason: reason.value })) : null,
        u.active ? act(u, "Deactivate", `users/${u.id}/deactivate`) : null)));
    const form = h("form", { class: "row" },
      field("E-mail", h("input", { name: "email", type: "email", required: true, maxlength: 254 })),
      h("fieldset", {}, h("legend", {}, "Roles"),
        ROLES.filter((r) => r !== "service").map((r) => h("label", { class: "check" }, h("input", { type: "checkbox", name: "role", value: r }), r))),
      h("button", { type: "submit" }, "Invite"));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const roles = [...form.querySelectorAll("input[name=role]:checked")].map((i) => i.value);
      const email = form.elements.email.value.trim();
      if (await attempt(`Inviting ${email}`, () => post("users", { email, roles }))) render("users", `Invited ${email}; the invitation was mailed.`);
    });
    return [
      h("section", {}, h("h2", {}, "Users"),
        table(["E-mail", "Roles", "State", "MFA", ""], rows),
        h("p", {}, field("Reason for an MFA reset (recorded in the audit trail)", reason))),
      h("section", {}, h("h2", {}, "Invite a user"), form),
    ];
  }

  // ---- service keys ----------------------------------------------------

  async function keys() {
    const list = await get("service-keys");
    const rows = list.map((k) => h("tr", {},
      h("td", {}, k.name), h("td", {}, k.roles.join(", ")), h("td", {}, k.created_at),
      h("td", {}, k.last_used_at || "never"), h("td", {}, k.revoked_at ? badge("revoked", "warn") : badge("active", "ok")),
      h("td", { class: "actions" }, k.revoked_at ? null : h("button", {
        type: "button", class: "danger",
        "on:click": async () => {
          if (await attempt(`Revoking ${k.name}`, () => call("DELETE", `service-keys/${k.id}`))) render("keys", `Revoked ${k.name}.`);
        },
      }, "Revoke"))));
    const shown = h("div", {});
    const form = h("form", { class: "row" },
      field("Name", h("input", { name: "name", required: true, maxlength: 100 })),
      h("fieldset", {}, h("legend", {}, "Roles"),
        ["service", "viewer", "staff", "clinician"].map((r) => h("label", { class: "check" }, h("input", { type: "checkbox", name: "role", value: r }), r))),
      h("button", { type: "submit" }, "Create"));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const roles = [...form.querySelectorAll("input[name=role]:checked")].map((i) => i.value);
      const out = await attempt("Creating the key", () => post("service-keys", { name: form.elements.name.value.trim(), roles }));
      if (out) {
        await render("keys", "Key created: copy it now, it is not shown again.");
        app.append(h("section", {}, h("h2", {}, `New key: ${out.name}`), h("p", { class: "secret" }, out.key || "")));
      }
    });
    return [h("section", {}, h("h2", {}, "Service keys"), table(["Name", "Roles", "Created", "Last used", "State", ""], rows)),
      h("section", {}, h("h2", {}, "Create a service key"), form, shown)];
  }

  // ---- organization settings --------------------------------------------

  async function org() {
    const cur = await get("organization/settings");
    const select = (name, options, value) => h("select", { name },
      options.map((o) => h("option", { value: o, selected: o === value }, o)));
    const form = h("form", { class: "row" },
      field("Clinicians reach", select("clinician_scope", ["care_team", "organization"], cur.clinician_scope)),
      field("MFA for PHI", select("phi_mfa", ["all_staff", "admin"], cur.phi_mfa)),
      field("Reason (to relax MFA)", h("input", { name: "phi_mfa_reason", maxlength: 500 })),
      field("Calendar feeds show", select("calendar_detail", ["minimal", "initials"], cur.calendar_detail)),
      h("label", { class: "check" }, h("input", { type: "checkbox", name: "external_referrals", checked: cur.external_referrals }), "external referrals"),
      h("label", { class: "check" }, h("input", { type: "checkbox", name: "ai_baa", checked: cur.ai_baa }), "AI business associate agreement signed"),
      h("button", { type: "submit" }, "Save"));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const v = formValues(form);
      const body = {
        clinician_scope: v.clinician_scope, phi_mfa: v.phi_mfa, calendar_detail: v.calendar_detail,
        external_referrals: form.elements.external_referrals.checked, ai_baa: form.elements.ai_baa.checked,
      };
      if (v.phi_mfa_reason) body.phi_mfa_reason = v.phi_mfa_reason;
      if (await attempt("Saving the settings", () => call("PUT", "organization/settings", body))) render("org", "Settings saved.");
    });
    return [h("section", {}, h("h2", {}, "Organization settings"), form)];
  }

  // ---- audit trail -----------------------------------------------------

  // The last 30 days (UTC), each with its counts (zero where none).
  function lastMonth(counted) {
    const byDay = new Map(counted.map((d) => [d.day, d]));
    const today = Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), new Date().getUTCDate());
    const days = [];
    for (let i = 29; i >= 0; i--) {
      const day = new Date(today - i * 86400000).toISOString().slice(0, 10);
      days.push(byDay.get(day) || { day, allowed: 0, denied: 0, not_found: 0, error: 0 });
    }
    return days;
  }

  function dailyChart(counted) {
    const days = lastMonth(counted);
    const width = 720, height = 180, left = 40, bottom = 22;
    const max = Math.max(1, ...days.map((d) => OUTCOMES.reduce((n, o) => n + d[o], 0)));
    const step = (width - left) / Math.max(days.length, 1);
    const svg = s("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "audit events per day by outcome" });
    svg.append(s("text", { x: 0, y: 12 }, String(max)), s("text", { x: 0, y: height - bottom }, "0"));
    days.forEach((d, i) => {
      let y = height - bottom;
      for (const o of OUTCOMES) {
        const bar = ((height - bottom - 16) * d[o]) / max;
        if (bar > 0) {
          y -= bar;
          const rect = s("rect", { class: `bar-${o}`, x: left + i * step + 1, y, width: Math.max(step - 2, 1), height: bar });
          rect.append(s("title", {}, `${d.day}: ${d[o]} ${o}`));
          svg.append(rect);
        }
      }
      if (i % 5 === 4) {
        svg.append(s("text", { x: left + (i + 1) * step, y: height - 6, "text-anchor": "end" }, d.day.slice(5)));
      }
    });
    return h("div", {},
      h("div", { class: "legend" }, OUTCOMES.map((o) => h("span", {}, h("span", { class: `swatch ${o}` }), o.replace("_", " ")))),
      counted.length ? svg : h("p", { class: "note" }, "No events in the last 30 days."));
  }

  function chainPanel(state) {
    if (!state) return h("p", { class: "note" }, "The chain could not be verified now.");
    const verdict = state.state === "verified"
      ? badge("verified", "ok")
      : badge(`broken at position ${state.finding.position}: ${state.finding.problem}`, "bad");
    return h("div", { id: "chain-state" },
      h("p", {}, "Chain: ", verdict),
      h("p", { class: "note" }, `${state.entries} events chained, head ${state.head}, ${state.checkpoints} signed checkpoints matched, ${state.pending} awaiting chaining; verified ${state.verified_at}.`),
      h("p", { class: "note" }, "The off-site witness is compared by `carapace audit verify`."));
  }

  async function audit() {
    const [days, chainState] = await Promise.all([get("audit-events/daily"), get("audit-chain").catch(() => null)]);
    const results = h("div", { id: "audit-results" });
    const form = h("form", { class: "row", id: "audit-filter" },
      field("Actor", h("input", { name: "actor", maxlength: 256 })),
      field("Action", h("input", { name: "action", maxlength: 256, placeholder: "security.admin_action" })),
      field("Outcome", h("select", { name: "outcome" }, h("option", { value: "" }, "any"), OUTCOMES.map((o) => h("option", { value: o }, o)))),
      field("Resource type", h("input", { name: "resource_type", maxlength: 256 })),
      field("Resource id", h("input", { name: "resource_id", maxlength: 256 })),
      field("From (RFC 3339)", h("input", { name: "from", maxlength: 40, placeholder: "2026-12-01T00:00:00Z" })),
      field("To", h("input", { name: "to", maxlength: 40 })),
      h("button", { type: "submit" }, "Search"));
    const search = async (params, cursor) => {
      const q = new URLSearchParams({ ...params, limit: "50" });
      if (cursor) q.set("cursor", cursor);
      const page = await attempt("Searching the trail", () => get(`audit-events?${q}`));
      if (page) eventTable(results, page, (next) => search(params, next), !!cursor);
    };
    form.addEventListener("submit", (ev) => { ev.preventDefault(); search(formValues(form)); });
    const verify = h("button", { type: "button", class: "quiet", "on:click": () => render("audit", "Chain verified again.") }, "Verify again");
    return [
      h("section", {}, h("h2", {}, "Events per day"), dailyChart(days.days)),
      h("section", {}, h("h2", {}, "Chain verification"), chainPanel(chainState), verify),
      h("section", {}, h("h2", {}, "Find events"), form, results),
    ];
  }

  function eventTable(into, page, more, appended) {
    const rows = page.items.map((e) => h("tr", { class: "event" },
      h("td", {}, e.at), h("td", {}, e.actor, e.acting_for ? ` (for ${e.acting_for})` : ""),
      h("td", {}, e.action), h("td", {}, e.resource_type, e.resource_id ? ` ${e.resource_id}` : ""),
      h("td", {}, badge(e.outcome, e.outcome === "allowed" ? "ok" : "bad")),
      h("td", {}, e.origin.client_ip || ""), h("td", {}, e.detail || "")));
    const next = page.next_cursor ? h("button", { type: "button", class: "quiet", "on:click": () => more(page.next_cursor) }, "Next page") : null;
    const block = h("div", {}, rows.length ? table(["When", "Actor", "Action", "Resource", "Outcome", "From", "Detail"], rows) : h("p", { class: "note" }, "No events."), next);
    if (appended) into.append(block); else into.replaceChildren(block);
  }

  // ---- a patient's access log --------------------------------------------

  async function access() {
    const results = h("div", { id: "access-results" });
    const form = h("form", { class: "row" },
      field("Patient id", h("input", { name: "patient", required: true, maxlength: 36, pattern: "[0-9a-fA-F\\-]{36}" })),
      h("button", { type: "submit" }, "Show"));
    const load = async (id, cursor) => {
      const q = new URLSearchParams({ limit: "50" });
      if (cursor) q.set("cursor", cursor);
      const page = await attempt("Reading the access log", () => get(`patients/${encodeURIComponent(id)}/access-log?${q}`));
      if (page) eventTable(results, page, (next) => load(id, next), !!cursor);
    };
    form.addEventListener("submit", (ev) => { ev.preventDefault(); load(form.elements.patient.value.trim()); });
    return [h("section", {}, h("h2", {}, "A patient's access log"),
      h("p", { class: "note" }, "Who read or changed the record, when, from where, with what outcome. Reading it is recorded."), form, results)];
  }

  // ---- research aggregates ---------------------------------------------

  function cellChart(title, cells) {
    const rowH = 24, width = 380, labelW = 110;
    const max = Math.max(1, ...cells.map((c) => c.count || 0));
    const svg = s("svg", { class: "chart", viewBox: `0 0 ${width} ${Math.max(cells.length, 1) * rowH + 4}`, role: "img", "aria-label": title });
    cells.forEach((c, i) => {
      const y = i * rowH + 2;
      svg.append(s("text", { x: 0, y: y + 15 }, c.label.slice(0, 16)));
      if (c.count === null) {
        svg.append(s("rect", { class: "bar-withheld", x: labelW, y: y + 3, width: 40, height: rowH - 6 }),
          s("text", { x: labelW + 46, y: y + 15 }, "withheld (< 11)"));
      } else {
        const w = ((width - labelW - 40) * c.count) / max;
        svg.append(s("rect", { class: "bar-count", x: labelW, y: y + 3, width: Math.max(w, 1), height: rowH - 6 }),
          s("text", { x: labelW + w + 6, y: y + 15 }, String(c.count)));
      }
    });
    return h("section", {}, h("h2", {}, title), cells.length ? svg : h("p", { class: "note" }, "Nothing to show."));
  }

  async function research() {
    const r = await get("analytics/research");
    return [
      h("p", { class: "note" }, "De-identified aggregates. A cell counting fewer than 11 patients is withheld (drawn dashed), so no small group can be singled out."),
      h("p", {}, h("span", { class: "swatch withheld" }), "withheld"),
      h("div", { class: "grid" },
        cellChart("Patients per age band", r.age_bands), cellChart("Patients per sex", r.sexes),
        cellChart("Patients per medication", r.medications), cellChart("Patients per side effect", r.side_effects),
        cellChart("Appointments per month", r.appointments_per_month)),
    ];
  }

  // ---- kill switch -------------------------------------------------------

  async function kill() {
    const k = await get("admin/kill-switch");
    const reason = h("input", { name: "reason", maxlength: 500, required: !k.engaged });
    const form = h("form", { class: "row" },
      k.engaged ? null : field("Why (recorded)", reason),
      h("button", { type: "submit", class: k.engaged ? "" : "danger" }, k.engaged ? "Release: serve PHI again" : "Engage: stop serving PHI"));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const body = k.engaged ? { engaged: false } : { engaged: true, reason: reason.value.trim() };
      if (await attempt("Changing the kill switch", () => call("PUT", "admin/kill-switch", body))) render("kill", "Kill switch changed.");
    });
    return [h("section", {}, h("h2", {}, "Kill switch"),
      h("p", {}, "State: ", k.engaged ? badge("engaged: PHI is not served", "bad") : badge("released", "ok")),
      k.reason ? h("p", { class: "note" }, `Reason: ${k.reason}`) : null,
      k.changed_by ? h("p", { class: "note" }, `Changed by ${k.changed_by} at ${k.changed_at}`) : null,
      form)];
  }

  // ---- navigation ------------------------------------------------------

  const VIEWS = { users, keys, org, audit, access, research, kill };

  async function render(name, message) {
    for (const b of nav.querySelectorAll("button[data-view]")) {
      if (b.dataset.view === name) b.setAttribute("aria-current", "page");
      else b.removeAttribute("aria-current");
    }
    try {
      const parts = await VIEWS[name]();
      app.replaceChildren(...parts);
      app.dataset.view = name;
      say(message || "");
    } catch (e) {
      if (e instanceof ApiProblem && e.status === 401) return;
      app.replaceChildren(h("section", {}, h("h2", {}, "Not available"),
        h("p", {}, e instanceof ApiProblem && e.status === 403 ? "Your roles do not allow this page." : e.message)));
      app.dataset.view = name;
      say(e.message, true);
    }
  }

  function show(name) {
    render(name);
  }

  nav.addEventListener("click", (ev) => {
    const view = ev.target instanceof HTMLElement ? ev.target.dataset.view : undefined;
    if (view) show(view);
  });
  document.getElementById("signout").addEventListener("click", async () => {
    await attempt("Signing out", () => post("auth/logout", {}));
    showLogin("Signed out.");
  });

  // A session may already be open (a reload): try it, else sign in.
  fetch(`${API}/audit-events/daily`, { credentials: "same-origin", cache: "no-store" })
    .then((res) => (res.status === 401 ? showLogin() : signedIn()), () => showLogin());
})();
