// Starts Swagger UI from files served by the app itself: no CDN, works offline.
window.addEventListener("load", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.openapiUrl,
    dom_id: "#swagger-ui",
    deepLinking: true,
    tryItOutEnabled: true,
    validatorUrl: null, // the default would call an online validator
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
