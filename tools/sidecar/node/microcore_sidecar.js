// microcore_sidecar.js: the reference client of the microcore sidecar protocol, version 1.
// No dependencies (Node.js >= 18). The protocol is JSON lines over stdin/stdout; see the
// "Sidecars" section of microcore's README. Copy this file, or require it by path:
//
//   const { Sidecar, HttpError } = require("../../../tools/sidecar/node/microcore_sidecar.js");
//   const sidecar = new Sidecar();
//   sidecar.respond("price.format", async (payload) => ({ text: format(payload.amount) }));
//   sidecar.route("GET", "/prices/{cents:int}", async (req) => ({ text: format(req.params.cents) }));
//   sidecar.subscribe("product.created", async (event) => { ... });
//   await sidecar.start();                      // hello -> registrations -> ready
//   await sidecar.publish("price.formatted", { id: 7 });
//
// stdout carries the protocol, so console.log and console.info are sent to stderr, which the
// kernel logs under this sidecar's name.
"use strict";

const { AsyncLocalStorage } = require("node:async_hooks");
const readline = require("node:readline");

const PROTOCOL = 1;

/** Throw from a route handler to answer that status in microcore's error shape. */
class HttpError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** An error the kernel answered (no_responder, timeout, not declared...). */
class SidecarError extends Error {
  constructor(code, message, status) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

/** Full control of a route's answer: status, headers and one of json, text, bodyBase64. */
function reply({ status, headers, json, text, bodyBase64 } = {}) {
  const answer = { status, headers: headers || {} };
  if (text !== undefined) answer.text = text;
  else if (bodyBase64 !== undefined) answer.body_base64 = bodyBase64;
  else if (json !== undefined) answer.json = json;
  return new Reply(answer);
}

class Reply {
  constructor(answer) {
    this.answer = answer;
  }
}

class Sidecar {
  constructor({ input = process.stdin, output = process.stdout, timeout = 10 } = {}) {
    this.output = output;
    this.timeout = timeout; // seconds, for the kernel's answers to registrations and publishes
    this.identity = null;
    this.registrations = [];
    this.handlers = new Map(); // "event:<pattern>" | "http:<METHOD path>" -> handler
    this.pending = new Map();
    this.nextId = 1;
    this.cause = new AsyncLocalStorage(); // the kernel message being handled (causality)
    this.stopHooks = [];
    console.log = console.info = (...args) => console.error(...args);
    const lines = readline.createInterface({ input, crlfDelay: Infinity });
    lines.on("line", (line) => this._receive(line));
    lines.on("close", () => this._stop());
  }

  /** Receive the events matching `pattern`; a non-null return value answers a request. */
  subscribe(pattern, handler, { retries = 0 } = {}) {
    this.handlers.set(`event:${pattern}`, (message) => handler(message.event));
    this.registrations.push({ type: "subscribe", pattern, retries });
  }

  /** Answer request `name` with `await handler(payload, event)`. */
  respond(name, handler) {
    this.handlers.set(`event:${name}`, (message) => handler(message.event.payload, message.event));
    this.registrations.push({ type: "respond", name });
  }

  /**
   * Serve `method path` (Starlette syntax, declared in the .sidecar.toml). The handler gets
   * {method, path, route, params, query, headers, body, data, client, identity} and returns
   * the JSON body, or reply({status, headers, json | text | bodyBase64}). Options: fields
   * ({name: "str" | "int" | "float" | "bool", "?" suffix when optional: checked and
   * converted by the kernel, data holds them), status_code, summary, tags, auth, timeout.
   */
  route(method, path, handler, options = {}) {
    const verb = method.toUpperCase();
    this.handlers.set(`http:${verb} ${path}`, handler);
    this.registrations.push({ type: "route", method: verb, path, ...options });
  }

  /** Call `hook()` when the kernel stops this sidecar (stdin closed), before exiting. */
  onStop(hook) {
    this.stopHooks.push(hook);
  }

  /** Say hello, register everything, then say ready: from then on it serves. */
  async start() {
    const welcome = await this._call({ type: "hello", protocol: PROTOCOL });
    this.identity = welcome.identity;
    for (const registration of this.registrations) {
      await this._call(registration);
    }
    await this._call({ type: "ready" });
    return this;
  }

  /** Publish an event; resolves to its id. */
  async publish(name, payload) {
    const answer = await this._call({ type: "publish", name, payload, cause: this.cause.getStore() });
    return answer.id;
  }

  /** Send a request and resolve to the first reply (SidecarError: no_responder, timeout). */
  async request(name, payload, { timeout = 5 } = {}) {
    const message = { type: "request", name, payload, timeout, cause: this.cause.getStore() };
    return this._call(message, timeout + this.timeout);
  }

  /** A structured log line under this sidecar's name. */
  log(level, message, fields = {}) {
    this._send({ type: "log", level, message, fields });
  }

  // -- inside ---------------------------------------------------------------------------

  _send(message) {
    this.output.write(JSON.stringify(message) + "\n");
  }

  _call(message, timeout = this.timeout) {
    const id = `n${this.nextId++}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new SidecarError("timeout", `no answer to ${message.type} within ${timeout} s`));
      }, timeout * 1000);
      this.pending.set(id, { resolve, reject, timer });
      this._send({ ...message, id });
    });
  }

  _receive(line) {
    if (!line.trim()) return;
    let message;
    try {
      message = JSON.parse(line);
    } catch (error) {
      console.error(`microcore_sidecar: not a protocol message: ${line}`);
      return;
    }
    if (message.type === "result" || message.type === "error") {
      const waiter = this.pending.get(message.id);
      if (!waiter) return;
      this.pending.delete(message.id);
      clearTimeout(waiter.timer);
      if (message.type === "result") waiter.resolve(message.result);
      else waiter.reject(new SidecarError(message.error.code, message.error.message, message.error.status));
      return;
    }
    const key = message.type === "event" ? `event:${message.subscription}` : `http:${message.method} ${message.route}`;
    const handler = message.type === "http" ? this._httpHandler(message) : this.handlers.get(key);
    if (!handler) {
      this._send(this._error(message.id, new SidecarError("no_handler", `nothing handles ${key}`)));
      return;
    }
    this.cause.run(message.id, async () => {
      try {
        const value = await handler(message);
        this._send({ type: "result", id: message.id, result: this._result(message, value) });
      } catch (error) {
        this._send(this._error(message.id, error));
      }
    });
  }

  _httpHandler(message) {
    for (const [key, handler] of this.handlers) {
      if (key === `http:${message.method} ${message.route}`) return handler;
      if (message.method === "HEAD" && key === `http:GET ${message.route}`) return handler;
    }
    return undefined;
  }

  _result(message, value) {
    if (message.type !== "http") return value === undefined ? null : value;
    if (value instanceof Reply) return value.answer;
    if (value === undefined || value === null) return { status: 204 };
    return { json: value };
  }

  _error(id, error) {
    if (error instanceof HttpError) {
      return { type: "error", id, error: { code: error.code, message: error.message, status: error.status } };
    }
    const code = error && error.code && typeof error.code === "string" ? error.code : "error";
    const text = error && error.stack ? error.stack : String(error);
    console.error(text);
    return { type: "error", id, error: { code, message: error && error.message ? error.message : String(error) } };
  }

  async _stop() {
    for (const waiter of this.pending.values()) {
      clearTimeout(waiter.timer);
      waiter.reject(new SidecarError("stopped", "the kernel closed the connection"));
    }
    this.pending.clear();
    for (const hook of this.stopHooks) {
      try {
        await hook();
      } catch (error) {
        console.error(error);
      }
    }
    process.exit(0);
  }
}

module.exports = { HttpError, PROTOCOL, Sidecar, SidecarError, reply };
