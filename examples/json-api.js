// A small JSON API routed with URLPattern. `env.GREETING` comes from `--var GREETING=...`.
const items = new Map([
  ["1", { id: "1", name: "anvil" }],
  ["2", { id: "2", name: "rocket skates" }],
]);

const routes = {
  list: new URLPattern({ pathname: "/api/items" }),
  item: new URLPattern({ pathname: "/api/items/:id" }),
};

export default {
  async fetch(request, env) {
    const greeting = env.GREETING ?? "hello";
    if (routes.list.test(request.url)) {
      if (request.method === "POST") {
        const body = await request.json();
        const item = { id: crypto.randomUUID(), name: String(body.name ?? "") };
        items.set(item.id, item);
        return Response.json(item, { status: 201 });
      }
      return Response.json({ greeting, items: [...items.values()] });
    }
    const match = routes.item.exec(request.url);
    if (match) {
      const item = items.get(match.pathname.groups.id);
      return item ? Response.json({ greeting, item }) : Response.json({ error: "not found" }, { status: 404 });
    }
    return Response.json({ error: "not found" }, { status: 404 });
  },
};
