// Stands in for `ext:deno_net/02_tls.js`, which deno_fetch loads for `Deno.createHttpClient`.
// Workers have no client certificates, so the one function fetch asks for refuses.
(function () {
  return {
    loadTlsKeyPair() {
      throw new TypeError("client TLS certificates are not supported in Isola workers");
    },
  };
})();
