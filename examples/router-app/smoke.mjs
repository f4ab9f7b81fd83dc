// Smoke-tests the built bundle under Node: every route, status and body shape.
// `npm run smoke` runs it with --disallow-code-generation-from-strings, as Isola does.
import assert from "node:assert/strict";
import worker from "./dist/worker.js";

const env = { GREETING: "Hi" };
const ctx = { waitUntil() {}, passThroughOnException() {} };
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

async function call(method, path, { body, token } = {}) {
  const headers = new Headers();
  if (body !== undefined) headers.set("content-type", "application/json");
  if (token !== undefined) headers.set("authorization", `Bearer ${token}`);
  const request = new Request(`http://x${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const response = await worker.fetch(request, env, ctx);
  const type = response.headers.get("content-type") ?? "";
  const payload = type.includes("json") ? await response.json() : await response.text();
  console.log(`${method} ${path} → ${response.status} ${type}`);
  return { status: response.status, type, payload };
}

let r = await call("GET", "/");
assert.equal(r.status, 200);
assert.match(r.type, /^text\/html/);
assert.ok(r.payload.includes("<h1>Isola router app</h1>"), r.payload);
assert.equal(r.payload.match(/<li[ >]/g)?.length, 3, r.payload);

r = await call("GET", "/api/hello/ada");
assert.deepEqual([r.status, r.payload], [200, { message: "Hi, ada!" }]);

r = await call("POST", "/api/users", { body: { name: "Ada", email: "ada@example.com" } });
assert.equal(r.status, 201);
assert.match(r.payload.id, UUID);
assert.deepEqual({ ...r.payload, id: "" }, { id: "", name: "Ada", email: "ada@example.com" });

r = await call("POST", "/api/users", { body: { name: "", email: "nope" } });
assert.equal(r.status, 400);
assert.equal(r.payload.error, "invalid");
assert.equal(r.payload.issues.length, 2, JSON.stringify(r.payload));
for (const issue of r.payload.issues) {
  assert.ok(Array.isArray(issue.path) && typeof issue.message === "string", JSON.stringify(issue));
}
assert.deepEqual(r.payload.issues.map((i) => i.path).sort(), [["email"], ["name"]]);

r = await call("POST", "/api/token", { body: { sub: "user-1" } });
assert.equal(r.status, 200);
const token = r.payload.token;
const [header, claims] = token.split(".").slice(0, 2).map((part) => JSON.parse(atob(part.replace(/-/g, "+").replace(/_/g, "/"))));
assert.equal(header.alg, "HS256");
assert.equal(claims.iss, "isola-router-app");
assert.equal(claims.sub, "user-1");
assert.equal(claims.exp - claims.iat, 3600);

r = await call("GET", "/api/me", { token });
assert.deepEqual([r.status, r.payload], [200, { sub: "user-1" }]);

for (const bad of [undefined, "not-a-token", `${token.slice(0, -2)}xx`]) {
  r = await call("GET", "/api/me", { token: bad });
  assert.deepEqual([r.status, r.payload], [401, { error: "unauthorized" }]);
}

r = await call("GET", "/api/sign-es256");
assert.deepEqual([r.status, r.payload], [200, { verified: true, alg: "ES256" }]);

r = await call("GET", "/nope");
assert.deepEqual([r.status, r.payload], [404, { error: "not found" }]);

console.log("router-app smoke test: all routes OK");
