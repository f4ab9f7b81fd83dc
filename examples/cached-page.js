// A rendered catalogue page a CDN may keep: `Cache-Control: public, max-age=60` lets Isola's
// response cache answer repeat requests without running the worker; after 60 s the cache asks
// again with `If-None-Match`, and the worker answers 304 while the catalogue is unchanged.
// `stale-while-revalidate` lets the cache serve the old page while it asks.
const products = Array.from({ length: 200 }, (_, i) => ({
  id: i + 1,
  name: `Product ${i + 1}`,
  price: ((i * 7919) % 10000) / 100,
}));
const version = "catalogue-v1";
const etag = `"${version}"`;

const escape = (text) =>
  String(text).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);

function render() {
  const rows = products
    .map((p) => `<tr><td>${p.id}</td><td>${escape(p.name)}</td><td>${p.price.toFixed(2)}</td></tr>`)
    .join("");
  return `<!doctype html><html><head><title>Catalogue</title></head><body><h1>Catalogue</h1><table>${rows}</table><p>rendered at ${new Date().toISOString()}</p></body></html>`;
}

const caching = {
  "cache-control": "public, max-age=60, stale-while-revalidate=600",
  etag,
};

export default {
  fetch(request) {
    if (request.headers.get("if-none-match") === etag) {
      return new Response(null, { status: 304, headers: caching });
    }
    return new Response(render(), {
      headers: { ...caching, "content-type": "text/html; charset=utf-8" },
    });
  },
};
