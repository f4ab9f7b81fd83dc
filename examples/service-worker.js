// Service-worker syntax: vars are globals. `isola dev examples/service-worker.js --var GREETING=hi`
addEventListener("fetch", (event) => {
  const greeting = typeof GREETING !== "undefined" ? GREETING : "hello";
  event.respondWith(new Response(`${greeting} from a service worker\n`));
});
