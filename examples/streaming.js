// Streaming both ways: GET /stream sends five lines 100 ms apart; POST /echo streams the
// request body back as it arrives.
export default {
  fetch(request) {
    const { pathname } = new URL(request.url);
    if (pathname === "/echo" && request.method === "POST") {
      return new Response(request.body, {
        headers: { "content-type": request.headers.get("content-type") ?? "application/octet-stream" },
      });
    }
    if (pathname === "/stream") {
      const encoder = new TextEncoder();
      let n = 0;
      const body = new ReadableStream({
        async pull(controller) {
          if (n === 5) return controller.close();
          await new Promise((resolve) => setTimeout(resolve, 100));
          controller.enqueue(encoder.encode(`chunk ${n++}\n`));
        },
      });
      return new Response(body, { headers: { "content-type": "text/plain;charset=UTF-8" } });
    }
    return new Response("try GET /stream or POST /echo\n", { status: 404 });
  },
};
