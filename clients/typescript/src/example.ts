// A small program on the generated client (`just client`): it signs in
// with a local account, registers three patients, reads one back, pages
// through the organization's patients two at a time, and handles a
// problem+json error. Types come from openapi.json: a request or answer
// the API does not have does not compile.
//
//   node dist/example.js BASE_URL ORG EMAIL   (password on stdin)

import createClient from "openapi-fetch";
import { readFileSync } from "node:fs";

import type { components, paths } from "./schema.js";

type Problem = components["schemas"]["Problem"];
type Patient = components["schemas"]["PatientView"];

function fail(message: string): never {
  console.error(`example: ${message}`);
  process.exit(1);
}

/** An API error as the program reports it: the problem's code and status. */
function describe(problem: Problem | undefined, status: number): string {
  return problem ? `${problem.status} ${problem.code}: ${problem.title}` : `status ${status}`;
}

async function main(): Promise<void> {
  const [baseUrl, org, email] = process.argv.slice(2);
  if (!baseUrl || !org || !email) {
    fail("usage: example BASE_URL ORG EMAIL (password on stdin)");
  }
  const password = readFileSync(0, "utf8").split("\n")[0] ?? "";

  // Sign in.
  const api = createClient<paths>({ baseUrl });
  const login = await api.POST("/api/v1/auth/login", {
    body: { org, email, password },
  });
  if (!login.data) {
    fail(`login: ${describe(login.error, login.response.status)}`);
  }
  const token = login.data.access_token;
  api.use({
    onRequest({ request }) {
      request.headers.set("Authorization", `Bearer ${token}`);
      return request;
    },
  });

  // Register three patients and read the first back.
  const created: Patient[] = [];
  for (const given of ["Ada", "Ben", "Cyd"]) {
    const res = await api.POST("/api/v1/patients", {
      body: { given_name: given, family_name: "Example", birth_date: "1980-02-03" },
    });
    if (!res.data) {
      fail(`create: ${describe(res.error, res.response.status)}`);
    }
    created.push(res.data);
  }
  const first = created[0];
  if (!first) {
    fail("nothing created");
  }
  const read = await api.GET("/api/v1/patients/{id}", {
    params: { path: { id: first.id } },
  });
  if (!read.data || read.data.given_name !== "Ada") {
    fail(`read: ${describe(read.error, read.response.status)}`);
  }
  console.log(`read ${read.data.given_name} ${read.data.family_name}, born ${read.data.birth_date}`);

  // Page through the organization's patients, two at a time.
  const seen: string[] = [];
  let cursor: string | undefined;
  let pages = 0;
  do {
    const page = await api.GET("/api/v1/patients", {
      params: { query: cursor ? { limit: "2", cursor } : { limit: "2" } },
    });
    if (!page.data) {
      fail(`list: ${describe(page.error, page.response.status)}`);
    }
    seen.push(...page.data.items.map((p) => p.id));
    cursor = page.data.next_cursor ?? undefined;
    pages += 1;
  } while (cursor && pages < 50);
  for (const p of created) {
    if (!seen.includes(p.id)) {
      fail(`patient ${p.id} missing from the listing`);
    }
  }
  console.log(`listed ${seen.length} patients in ${pages} pages`);

  // A patient that does not exist: a problem+json answer, typed.
  const missing = await api.GET("/api/v1/patients/{id}", {
    params: { path: { id: "00000000-0000-7000-8000-000000000000" } },
  });
  if (missing.data || !missing.error) {
    fail("a missing patient was found");
  }
  const type = missing.response.headers.get("content-type") ?? "";
  if (!type.startsWith("application/problem+json") || missing.error.code !== "not_found") {
    fail(`unexpected error answer: ${type} ${describe(missing.error, missing.response.status)}`);
  }
  console.log(`missing patient: ${describe(missing.error, missing.response.status)}`);

  // Bad input: the problem names the field.
  const bad = await api.POST("/api/v1/patients", {
    body: { given_name: "", family_name: "Example", birth_date: "1980-13-45" },
  });
  const fields = bad.error?.errors?.map((e) => e.field) ?? [];
  if (bad.response.status !== 422 || !fields.includes("birth_date")) {
    fail(`bad input: ${describe(bad.error, bad.response.status)} ${fields.join(",")}`);
  }
  console.log(`refused: ${fields.join(", ")}`);
  console.log("typescript client example: ok");
}

main().catch((e: unknown) => fail(String(e)));
