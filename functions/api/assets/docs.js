// Starts Swagger UI on the API's own description. Kept out of docs.html so that the page works under
// `Content-Security-Policy: script-src 'self'` (no inline script).
"use strict";

window.addEventListener("DOMContentLoaded", function () {
  window.ui = SwaggerUIBundle({
    // Relative: the page is /docs (or /<stage>/docs behind API Gateway), the description is beside it.
    url: "openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    tryItOutEnabled: true,
    displayRequestDuration: true,
    defaultModelsExpandDepth: 1,
    // Never send the description to the public validator (its badge is an image from another host).
    validatorUrl: null,
    // Credentials typed into "Authorize" stay in this page's memory.
    persistAuthorization: false,
    // Only the Authorization header that "Authorize" sets: no cookies or credentials the browser
    // stored, and no browser login dialog when /data_usage answers 401 with WWW-Authenticate.
    requestInterceptor: function (request) {
      request.credentials = "omit";
      return request;
    },
  });
});
