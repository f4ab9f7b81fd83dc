// A small JSON API routed with URLPattern. `env.GREETING` comes from `--var GREETING=...`.
const items = new Map([
  ["1", { id: "1", name: "anvil" }],
  ["2", { id: "2", name: "rocket skates" }],
]);

const routes = {
  list: new URLPattern({ pathname: "/api/items" }),
  item: new URLPattern({ pathname: "/api/items/:id" }),
};

const error = (status, message) => Response.json({ error: message }, { status });

export default {
  async fetch(request, env) {
    const greeting = env.GREETING ?? "hello";
    if (routes.list.test(request.url)) {
      if (request.method === "POST") {
        const body = await request.json().catch(() => null);
        if (body === null || typeof body !== "object" || Array.isArray(body)) {
          return error(400, "expected a JSON object");
        }
        const item = { ...body, id: crypto.randomUUID() };
        items.set(item.id, item);
        return Response.json(item, { status: 201 });
      }
      if (request.method !== "GET") return error(405, "method not allowed");
      return Response.json({ greeting, items: [...items.values()] });
    }
    const match = routes.item.exec(request.url);
    if (match) {
      if (request.method !== "GET") return error(405, "method not allowed");
      const item = items.get(match.pathname.groups.id);
      return item ? Response.json({ greeting, item }) : error(404, "not found");
    }
    return error(404, "not found");
  },
};
