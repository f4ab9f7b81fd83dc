// HTMLRewriter on a 1 MiB page (the `html-rewrite` bench scenario): every link gets
// rel="nofollow" as the page streams through in 64 KiB chunks. Each request rewrites 1 MiB,
// so requests per second are MiB/s.
const ROW = '<li><a href="/articles/1">An article</a> <span class="meta">by someone</span></li>\n';
const HEAD = "<!DOCTYPE html><html><head><title>Links</title></head><body><ul>\n";
const TAIL = "</ul></body></html>\n";
const SIZE = 1 << 20;
const page = new TextEncoder().encode(
  HEAD + ROW.repeat(Math.floor((SIZE - HEAD.length - TAIL.length) / ROW.length)) + TAIL,
);
const CHUNK = 64 * 1024;

function original() {
  let offset = 0;
  const body = new ReadableStream({
    pull(controller) {
      if (offset >= page.length) return controller.close();
      controller.enqueue(page.subarray(offset, offset + CHUNK));
      offset += CHUNK;
    },
  }, { highWaterMark: 0 });
  return new Response(body, { headers: { "content-type": "text/html; charset=utf-8" } });
}

export default {
  fetch() {
    return new HTMLRewriter()
      .on("a", { element: (el) => el.setAttribute("rel", "nofollow") })
      .transform(original());
  },
};
