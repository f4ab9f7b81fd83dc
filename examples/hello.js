// The smallest worker: `isola dev examples/hello.js`, then `curl http://127.0.0.1:8787/`.
export default {
  fetch() {
    return new Response("Hello from Isola!\n");
  },
};
