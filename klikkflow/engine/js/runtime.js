// KlikkFlow expression runtime: evaluated once into every fresh QuickJS context.
// Python compiles each {{ }} template into a function registered here, then calls
// __kf.run once per evaluate() with all items as one JSON string; the item loop
// runs in JS and the results come back as one JSON string.
// Only what every execution needs lives here: QuickJS parses this file into each
// new context, so its size is paid per execution. The n8n-style helpers
// (extensions.js) and Luxon are loaded by Python only when an expression names them.
(function (g) {
  "use strict";

  // ---- node outputs ($node["Name"], $("Name"))
  const outputs = new Map(); // name -> items
  let knownNodes = null; // Set of the workflow's node names, when the workflow lists them

  function itemsOf(name) {
    const items = outputs.get(name);
    if (items !== undefined) return items;
    if (knownNodes !== null && !knownNodes.has(name)) {
      throw new ReferenceError(`no node named "${name}" in this workflow`);
    }
    throw new ReferenceError(`node "${name}" has not run yet, so it has no output`);
  }

  function nodeAccess(name, cur) {
    const items = itemsOf(name);
    function paired() {
      if (items.length === 0) throw new ReferenceError(`node "${name}" returned no items`);
      return cur.i < items.length ? items[cur.i] : items[0];
    }
    return {
      get item() {
        return paired();
      },
      get json() {
        return paired().json;
      },
      get binary() {
        return paired().binary;
      },
      first() {
        return items[0];
      },
      last() {
        return items[items.length - 1];
      },
      all() {
        return items;
      },
      itemMatching(index) {
        return index < items.length ? items[index] : items[0];
      },
    };
  }

  // ---- per-run context shared by the compiled templates
  const CHUNK = 1024;
  const state = { fn: 0, item: 0, seg: 0, error: null };
  const fns = [];
  let env = { vars: {}, execution: {}, workflow: {} };
  let luxon = null;

  function runContext(raw, full, cur, runIndex) {
    const itemAt = full
      ? function (i) {
          return raw[i];
        }
      : function (i) {
          return { json: raw[i] };
        };
    const accessCache = new Map();
    function access(name) {
      let a = accessCache.get(name);
      if (a === undefined) accessCache.set(name, (a = nodeAccess(String(name), cur)));
      return a;
    }
    const r = {
      state: state,
      runIndex: runIndex,
      vars: env.vars,
      execution: env.execution,
      workflow: env.workflow,
      input: {
        get item() {
          return itemAt(cur.i);
        },
        all() {
          return raw.map(function (_, i) {
            return itemAt(i);
          });
        },
        first() {
          return raw.length ? itemAt(0) : undefined;
        },
        last() {
          return raw.length ? itemAt(raw.length - 1) : undefined;
        },
      },
      node: new Proxy(
        {},
        {
          get(_, name) {
            return typeof name === "string" ? access(name) : undefined;
          },
        },
      ),
      $: access,
    };
    if (luxon !== null) {
      r.DateTime = luxon.DateTime;
      r.Duration = luxon.Duration;
      r.Interval = luxon.Interval;
      r.now = luxon.DateTime.now();
      r.today = r.now.startOf("day");
    }
    return r;
  }

  function describe(e) {
    if (e instanceof Error) return `${e.name}: ${e.message}`;
    // QuickJS throws null when it runs out of memory while raising out-of-memory.
    if (e === null) return "InternalError: out of memory (null thrown)";
    try {
      return `Uncaught ${typeof e === "string" ? e : JSON.stringify(e)}`;
    } catch (_) {
      return `Uncaught ${String(e)}`;
    }
  }

  g.__kf = {
    // Text rendering of a segment's value inside a larger string, as n8n does.
    str(v) {
      if (v === null || v === undefined) return "";
      if (typeof v === "object") {
        if (typeof v.toJSON === "function" && !Array.isArray(v)) return String(v.toJSON());
        return JSON.stringify(v);
      }
      return String(v);
    },
    register(factory) {
      fns.push(factory);
      return fns.length - 1;
    },
    factory(id) {
      return fns[id];
    },
    configure(envText, nodeNamesText) {
      env = JSON.parse(envText);
      const names = JSON.parse(nodeNamesText);
      knownNodes = names === null ? null : new Set(names);
    },
    useLuxon(lib) {
      luxon = lib;
    },
    setOutput(name, itemsText) {
      outputs.set(name, JSON.parse(itemsText));
    },
    forgetOutput(name) {
      outputs.delete(name);
    },
    where() {
      return JSON.stringify(state);
    },
    run(fnId, itemsText, full, runIndex) {
      state.fn = 0;
      state.item = 0;
      state.seg = 0;
      state.error = null;
      const raw = JSON.parse(itemsText);
      const cur = { i: 0 };
      const build = fns[fnId](runContext(raw, full, cur, runIndex));
      const n = raw.length;
      // Results are serialized in chunks, so a large run holds JSON text rather than
      // all the result objects at once.
      const chunks = [];
      let out = [];
      try {
        for (let i = 0; i < n; i++) {
          cur.i = i;
          state.item = i;
          const it = raw[i];
          out.push(full ? build(it.json, it.binary, i) : build(it, undefined, i));
          if (out.length === CHUNK) {
            chunks.push(JSON.stringify(out).slice(1, -1));
            out = [];
          }
        }
        if (out.length > 0) chunks.push(JSON.stringify(out).slice(1, -1));
        // (join, not +: the Python binding cannot read QuickJS rope strings)
        return ["[", chunks.join(","), "]"].join("");
      } catch (e) {
        try {
          state.error = describe(e);
        } catch (_) {
          state.error = null; // out of memory even for the message: Python reports e itself
        }
        throw e;
      }
    },
  };
})(globalThis);
