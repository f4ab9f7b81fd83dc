// A worker that spins on /spin until its CPU limit (cpu_ms) stops it, and answers "ok"
// otherwise: the noisy tenant of `isola bench tenants` (noisy-neighbour, cpu-limit-storm).
export default {
  fetch(request) {
    if (new URL(request.url).pathname.endsWith("/spin")) {
      for (;;) {}
    }
    return new Response("ok");
  },
};
