// A real-world worker: hono routes, zod validates, jose signs and verifies JWTs with
// crypto.subtle, preact renders HTML on the server.
import { Hono } from "hono";
import { SignJWT, generateKeyPair, jwtVerify } from "jose";
import { render } from "preact-render-to-string";
import { z } from "zod";
import { Page } from "./products.jsx";

const ISSUER = "isola-router-app";
const encoder = new TextEncoder();
const secretOf = (env) => encoder.encode(env.JWT_SECRET ?? "dev-secret-change-me");

// Never try to compile validators with `new Function`: Isola (like workerd) refuses code
// generation from strings, and jitless skips even zod's guarded feature probe.
z.config({ jitless: true });

const NewUser = z.object({
  name: z.string().min(1),
  email: z.email(),
});

const app = new Hono();

app.get("/", (c) => c.html(`<!doctype html>${render(<Page greeting={c.env.GREETING ?? "Hello"} />)}`));

app.get("/api/hello/:name", (c) => c.json({ message: `${c.env.GREETING ?? "Hello"}, ${c.req.param("name")}!` }));

app.post("/api/users", async (c) => {
  const parsed = NewUser.safeParse(await c.req.json().catch(() => null));
  if (!parsed.success) {
    const issues = parsed.error.issues.map((issue) => ({ path: issue.path, message: issue.message }));
    return c.json({ error: "invalid", issues }, 400);
  }
  return c.json({ id: crypto.randomUUID(), ...parsed.data }, 201);
});

app.post("/api/token", async (c) => {
  const body = await c.req.json().catch(() => ({}));
  if (typeof body.sub !== "string" || body.sub.length === 0) {
    return c.json({ error: "sub is required" }, 400);
  }
  const token = await new SignJWT({})
    .setProtectedHeader({ alg: "HS256" })
    .setSubject(body.sub)
    .setIssuer(ISSUER)
    .setIssuedAt()
    .setExpirationTime("1h")
    .sign(secretOf(c.env));
  return c.json({ token });
});

app.get("/api/me", async (c) => {
  const token = c.req.header("authorization")?.replace(/^Bearer /, "");
  try {
    const { payload } = await jwtVerify(token ?? "", secretOf(c.env), { issuer: ISSUER });
    return c.json({ sub: payload.sub });
  } catch {
    return c.json({ error: "unauthorized" }, 401);
  }
});

app.get("/api/sign-es256", async (c) => {
  const { publicKey, privateKey } = await generateKeyPair("ES256");
  const token = await new SignJWT({ scope: "demo" }).setProtectedHeader({ alg: "ES256" }).setIssuer(ISSUER).sign(privateKey);
  const { payload } = await jwtVerify(token, publicKey, { issuer: ISSUER });
  return c.json({ verified: payload.scope === "demo", alg: "ES256" });
});

app.notFound((c) => c.json({ error: "not found" }, 404));

export default app;
