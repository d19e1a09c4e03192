// Formats prices in the shop's locale: a feature in JavaScript, under the same kernel.
//   GET /prices/format?amount=12.5                  -> {"text": "12,50 €", ...}
//   request "price.format" {amount, currency?}      -> {"text": ..., "locale": ...}
//   on "product.created" it publishes "price.formatted" {id, text}
"use strict";

const path = require("node:path");
const { HttpError, Sidecar } = require(path.join(__dirname, "../../../tools/sidecar/node/microcore_sidecar.js"));

const locale = process.env.PRICE_LOCALE || "en-US";
const defaultCurrency = process.env.PRICE_CURRENCY || "USD";

function format(amount, currency = defaultCurrency) {
  const text = new Intl.NumberFormat(locale, { style: "currency", currency }).format(amount);
  return { text, locale, amount, currency };
}

function checked(raw, currency) {
  const amount = Number(raw);
  if (raw === undefined || raw === "" || !Number.isFinite(amount)) {
    throw new HttpError(422, "validation_error", `amount must be a number, got ${JSON.stringify(raw)}`);
  }
  if (currency !== undefined && !/^[A-Z]{3}$/.test(currency)) {
    throw new HttpError(422, "validation_error", `currency must be an ISO 4217 code like EUR, got ${JSON.stringify(currency)}`);
  }
  return format(amount, currency);
}

const sidecar = new Sidecar();

// `fields` are validated by the kernel before the request reaches us (422 naming the field)
// and documented in /openapi.json, like a Python route's request model.
sidecar.route("GET", "/prices/format", async (req) => format(req.data.amount), {
  fields: { amount: "float" },
  summary: "A price formatted in the shop's locale",
  tags: ["products"],
});

sidecar.respond("price.format", async (payload) => checked(payload.amount, payload.currency));

sidecar.subscribe("product.created", async (event) => {
  const { id, price } = event.payload;
  await sidecar.publish("price.formatted", { id, text: format(price).text });
});

sidecar.start().catch((error) => {
  console.error(error);
  process.exit(1);
});
