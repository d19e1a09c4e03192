// A small, dependency-free API explorer over /openapi.json (used when Swagger UI is not installed).
(function () {
  "use strict";
  var root = document.getElementById("docs");

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    (children || []).forEach(function (c) {
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return node;
  }

  function resolve(schema, doc) {
    if (schema && schema.$ref) {
      return doc.components.schemas[schema.$ref.split("/").pop()] || {};
    }
    return schema || {};
  }

  function example(schema, doc, depth) {
    schema = resolve(schema, doc);
    if (depth > 4) return null;
    if (schema.default !== undefined) return schema.default;
    if (schema.anyOf) return example(schema.anyOf[0], doc, depth + 1);
    switch (schema.type) {
      case "object":
        var out = {};
        Object.keys(schema.properties || {}).forEach(function (k) {
          out[k] = example(schema.properties[k], doc, depth + 1);
        });
        return out;
      case "array": return [example(schema.items, doc, depth + 1)];
      case "integer": return 0;
      case "number": return 0.0;
      case "boolean": return false;
      case "string": return "";
      default: return null;
    }
  }

  function operation(path, method, op, doc) {
    var params = op.parameters || [];
    var inputs = {};
    var fields = params.map(function (p) {
      var input = el("input", { placeholder: (p.schema && p.schema.type) || "string" });
      inputs[p.name] = { input: input, where: p.in };
      return el("label", {}, [p.name + (p.required ? " *" : "") + " (" + p.in + ")", input]);
    });
    var bodyBox = null;
    if (op.requestBody) {
      var schema = op.requestBody.content["application/json"].schema;
      bodyBox = el("textarea", {});
      bodyBox.value = JSON.stringify(example(schema, doc, 0), null, 2);
    }
    var output = el("pre", {}, []);
    var button = el("button", { type: "button" }, ["Send"]);
    button.addEventListener("click", function () {
      var url = path;
      var query = new URLSearchParams();
      Object.keys(inputs).forEach(function (name) {
        var value = inputs[name].input.value;
        if (inputs[name].where === "path") url = url.replace("{" + name + "}", encodeURIComponent(value));
        else if (value !== "") query.append(name, value);
      });
      if (query.toString()) url += "?" + query.toString();
      var init = { method: method.toUpperCase(), headers: {} };
      if (bodyBox) { init.body = bodyBox.value; init.headers["content-type"] = "application/json"; }
      output.textContent = "…";
      fetch(url, init).then(function (r) {
        return r.text().then(function (text) {
          try { text = JSON.stringify(JSON.parse(text), null, 2); } catch (e) { /* not JSON */ }
          output.textContent = r.status + " " + r.statusText + "\n\n" + text;
        });
      }).catch(function (e) { output.textContent = String(e); });
    });
    var responses = el("pre", {}, [JSON.stringify(op.responses, null, 2)]);
    var body = el("div", { class: "body" }, [].concat(
      op.description ? [el("p", {}, [op.description])] : [],
      fields, bodyBox ? [el("p", {}, ["JSON body"]), bodyBox] : [],
      [button, output, el("p", {}, ["Responses"]), responses]));
    return el("details", {}, [
      el("summary", {}, [
        el("span", { class: "method " + method }, [method.toUpperCase()]),
        el("span", { class: "path" }, [path]),
        el("span", { class: "summary" }, [op.summary || ""]),
      ]),
      body,
    ]);
  }

  fetch(root.dataset.openapiUrl).then(function (r) { return r.json(); }).then(function (doc) {
    var groups = {};
    Object.keys(doc.paths).forEach(function (path) {
      Object.keys(doc.paths[path]).forEach(function (method) {
        var op = doc.paths[path][method];
        var tag = (op.tags && op.tags[0]) || "default";
        (groups[tag] = groups[tag] || []).push(operation(path, method, op, doc));
      });
    });
    root.textContent = "";
    Object.keys(groups).sort().forEach(function (tag) {
      root.appendChild(el("h2", {}, [tag]));
      groups[tag].forEach(function (node) { root.appendChild(node); });
    });
  }).catch(function (e) { root.textContent = "Could not load the API description: " + e; });
})();
