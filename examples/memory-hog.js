// A worker that grows arrays on /grow until its memory limit (memory_mb) stops it, and
// answers "ok" otherwise: the memory-killed tenant of `isola bench soak`.
export default {
  fetch(request) {
    if (new URL(request.url).pathname.endsWith("/grow")) {
      const kept = [];
      for (;;) kept.push(new Array(100_000).fill(kept.length));
    }
    return new Response("ok");
  },
};
