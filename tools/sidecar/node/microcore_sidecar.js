// microcore_sidecar.js: the reference client of the microcore sidecar protocol, version 1.
// No dependencies (Node.js >= 18). The protocol is JSON lines over stdin/stdout, or NATS
// messages on the subjects the kernel names in its environment (transport = "nats" or
// "auto" in the .sidecar.toml: a small NATS core client over `net` below); see the
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
// Over stdio, stdout carries the protocol, so console.log and console.info are sent to
// stderr; the kernel logs both under this sidecar's name.
"use strict";

const { AsyncLocalStorage } = require("node:async_hooks");
const net = require("node:net");
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

/**
 * A minimal NATS core client (the text protocol: INFO, CONNECT, SUB, PUB, MSG, PING/PONG,
 * +OK/-ERR): one subscription, plain TCP, user and password or token from the URL.
 * Messages published before the server has confirmed the subscription wait in a queue.
 */
class NatsLink {
  constructor(urls, subscribeTo, onMessage, onClose) {
    this.urls = urls.split(",").map((url) => url.trim()).filter(Boolean);
    this.subscribeTo = subscribeTo;
    this.onMessage = onMessage;
    this.onClose = onClose;
    this.queue = [];
    this.connected = false; // the server answered our PING: CONNECT and SUB are in
    this.maxPayload = Infinity;
    this.buffer = Buffer.alloc(0);
    this.payload = null; // [header bytes, total bytes] of the MSG/HMSG being read
    this.ready = new Promise((resolve, reject) => {
      this._resolve = resolve;
      this._reject = reject;
    });
    this.ready.catch(() => {}); // whoever awaits it sees the failure
    this._connect(0);
  }

  publish(subject, text) {
    const data = Buffer.from(text, "utf8");
    if (data.length > this.maxPayload) {
      throw new SidecarError("payload_too_large", `a message of ${data.length} bytes is over NATS's max_payload (${this.maxPayload})`);
    }
    const frame = Buffer.concat([Buffer.from(`PUB ${subject} ${data.length}\r\n`), data, Buffer.from("\r\n")]);
    if (this.connected) this.socket.write(frame);
    else this.queue.push(frame);
  }

  close() {
    this.closing = true;
    if (this.socket) this.socket.end();
  }

  _connect(index) {
    const url = new URL(this.urls[index]);
    this.url = url;
    this.greeted = false;
    const socket = net.createConnection({ host: url.hostname, port: Number(url.port) || 4222 });
    socket.setNoDelay(true);
    this.socket = socket;
    socket.on("data", (chunk) => this._data(chunk));
    socket.on("error", (error) => {
      this.lastError = error;
    });
    socket.on("close", () => {
      if (this.closing) return;
      if (!this.greeted && index + 1 < this.urls.length) return this._connect(index + 1);
      const why = `NATS connection to ${this.url.host} closed${this.lastError ? `: ${this.lastError.message}` : ""}`;
      if (!this.connected) this._reject(new SidecarError("nats_unavailable", why));
      this.onClose(why);
    });
  }

  _greet(info) {
    if (info.tls_required) {
      this.lastError = new Error("the server requires TLS, which this minimal client does not speak");
      this.socket.destroy();
      return;
    }
    this.maxPayload = info.max_payload || Infinity;
    const options = { verbose: false, pedantic: false, lang: "node-microcore-sidecar", version: "1", protocol: 1, headers: false };
    const user = decodeURIComponent(this.url.username);
    const pass = decodeURIComponent(this.url.password);
    if (user && pass) Object.assign(options, { user, pass });
    else if (user) options.auth_token = user;
    this.socket.write(`CONNECT ${JSON.stringify(options)}\r\nSUB ${this.subscribeTo} 1\r\nPING\r\n`);
  }

  _data(chunk) {
    this.buffer = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : chunk;
    for (;;) {
      if (this.payload) {
        const [headers, total] = this.payload;
        if (this.buffer.length < total + 2) return;
        const data = this.buffer.subarray(headers, total).toString("utf8");
        this.buffer = this.buffer.subarray(total + 2);
        this.payload = null;
        this.onMessage(data);
        continue;
      }
      const end = this.buffer.indexOf("\r\n");
      if (end < 0) return;
      const line = this.buffer.subarray(0, end).toString("utf8");
      this.buffer = this.buffer.subarray(end + 2);
      const words = line.split(" ");
      const op = words[0].toUpperCase();
      if (op === "MSG") this.payload = [0, Number(words[words.length - 1])];
      else if (op === "HMSG") this.payload = [Number(words[words.length - 2]), Number(words[words.length - 1])];
      else if (op === "PING") this.socket.write("PONG\r\n");
      else if (op === "PONG" && !this.connected) {
        this.connected = true;
        for (const frame of this.queue) this.socket.write(frame);
        this.queue = [];
        this._resolve();
      } else if (op === "INFO" && !this.greeted) {
        this.greeted = true;
        this._greet(JSON.parse(line.slice(5)));
      } else if (op === "-ERR") {
        this.lastError = new Error(`NATS: ${line.slice(5)}`);
        console.error(`microcore_sidecar: ${this.lastError.message}`);
      }
    }
  }
}

class Sidecar {
  /**
   * The transport is the kernel's choice, read from the environment it starts the program
   * with (MICROCORE_SIDECAR_TRANSPORT, ..._NATS_URL, ..._SUBJECT_IN, ..._SUBJECT_OUT).
   */
  constructor({ input = process.stdin, output = process.stdout, timeout = 10, env = process.env } = {}) {
    this.output = output;
    this.timeout = timeout; // seconds, for the kernel's answers to registrations and publishes
    this.identity = null;
    this.registrations = [];
    this.handlers = new Map(); // "event:<pattern>" | "http:<METHOD path>" -> handler
    this.pending = new Map();
    this.nextId = 1;
    this.cause = new AsyncLocalStorage(); // the kernel message being handled (causality)
    this.stopHooks = [];
    this.link = null;
    if (env.MICROCORE_SIDECAR_TRANSPORT === "nats") {
      this.subjectOut = env.MICROCORE_SIDECAR_SUBJECT_OUT;
      this.link = new NatsLink(
        env.MICROCORE_SIDECAR_NATS_URL,
        env.MICROCORE_SIDECAR_SUBJECT_IN,
        (text) => this._receive(text),
        (why) => {
          console.error(`microcore_sidecar: ${why}; exiting (the kernel restarts this sidecar)`);
          process.exit(1);
        },
      );
      input.on("end", () => this._stop()); // the kernel closes stdin to stop it, too
      input.on("close", () => this._stop());
      input.resume();
      return;
    }
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
    if (this.link) await this.link.ready;
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
    if (this.link) this.link.publish(this.subjectOut, JSON.stringify(message));
    else this.output.write(JSON.stringify(message) + "\n");
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
    if (message.type === "stop") {
      this._stop();
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
    if (this.stopping) return;
    this.stopping = true;
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
    if (this.link) this.link.close();
    process.exit(0);
  }
}

module.exports = { HttpError, PROTOCOL, Sidecar, SidecarError, reply };
