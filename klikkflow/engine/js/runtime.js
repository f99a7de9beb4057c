// KlikkFlow expression runtime: evaluated once into every fresh QuickJS context.
// Python compiles each {{ }} template into a function registered here, then calls
// __kf.run once per evaluate() with all items as one JSON string; the item loop
// runs in JS and the results come back as one JSON string.
// Only what every execution needs lives here: QuickJS parses this file into each
// new context. The n8n-style helpers (extensions.js) and Luxon are loaded by Python only
// when an expression names them. A context serves the executions of one workflow version
// one after the other (expressions.py, ExpressionEngine.reuse).
(function (g) {
  "use strict";
  // Taken now: expressions may replace the global JSON, not the runtime's.
  const parse = JSON.parse;
  const stringify = JSON.stringify;

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
      return `Uncaught ${typeof e === "string" ? e : stringify(e)}`;
    } catch (_) {
      return `Uncaught ${String(e)}`;
    }
  }

  // What compiled templates use (the only part of the runtime left on the global object).
  g.__kf = Object.freeze({
    // Text rendering of a segment's value inside a larger string, as n8n does.
    str(v) {
      if (v === null || v === undefined) return "";
      if (typeof v === "object") {
        if (typeof v.toJSON === "function" && !Array.isArray(v)) return String(v.toJSON());
        return stringify(v);
      }
      return String(v);
    },
    factory(id) {
      return fns[id];
    },
  });

  // ---- reuse: an engine goes on to the next execution of its workflow version only if
  // expressions left the global object and the core built-ins as they found them.
  const ownNames = Object.getOwnPropertyNames;
  const ownSymbols = Object.getOwnPropertySymbols;
  const CORE = [Object, Array, String, Number, Boolean, Function, Symbol, Date, RegExp, Map,
    Set, WeakMap, WeakSet, Promise, Error, TypeError, RangeError, SyntaxError, ReferenceError,
    BigInt, ArrayBuffer, Uint8Array];
  const watched = [];
  for (let i = 0; i < CORE.length; i++) watched.push(CORE[i], CORE[i].prototype);
  watched.push(Math, JSON, Reflect, Object.getPrototypeOf(Uint8Array),
    Object.getPrototypeOf(Uint8Array.prototype), Object.getPrototypeOf([][Symbol.iterator]()),
    Object.getPrototypeOf(Object.getPrototypeOf([][Symbol.iterator]())));
  let globalNames = null; // the global object's own names, in order
  let globalValues = null;
  let globalSymbols = 0;
  let counts = null; // own property count of each watched object

  function countOf(o) {
    return ownNames(o).length + ownSymbols(o).length;
  }

  function seal() {
    globalNames = ownNames(g);
    globalSymbols = ownSymbols(g).length;
    globalValues = [];
    for (let i = 0; i < globalNames.length; i++) globalValues.push(g[globalNames[i]]);
    counts = [];
    for (let i = 0; i < watched.length; i++) counts.push(countOf(watched[i]));
  }

  function intact() {
    const names = ownNames(g);
    if (names.length !== globalNames.length || ownSymbols(g).length !== globalSymbols) {
      return false;
    }
    for (let i = 0; i < names.length; i++) {
      const v = g[names[i]];
      // (NaN is the one value not equal to itself)
      if (names[i] !== globalNames[i] || (v !== globalValues[i] && v === v)) return false;
    }
    for (let i = 0; i < watched.length; i++) {
      if (countOf(watched[i]) !== counts[i]) return false;
    }
    return true;
  }

  // Python takes these handles once and removes them from the global object, out of
  // expressions' reach.
  g.__kfApi = {
    register(factory) {
      fns.push(factory);
      return fns.length - 1;
    },
    configure(envText, nodeNamesText) {
      env = parse(envText);
      const names = parse(nodeNamesText);
      knownNodes = names === null ? null : new Set(names);
      outputs.clear();
    },
    useLuxon() {
      luxon = g.luxon;
    },
    setOutput(name, itemsText) {
      outputs.set(name, parse(itemsText));
    },
    forgetOutput(name) {
      outputs.delete(name);
    },
    where() {
      return stringify(state);
    },
    seal: seal,
    intact: intact,
    run(fnId, itemsText, full, runIndex) {
      state.fn = 0;
      state.item = 0;
      state.seg = 0;
      state.error = null;
      const raw = parse(itemsText);
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
            chunks.push(stringify(out).slice(1, -1));
            out = [];
          }
        }
        if (out.length > 0) chunks.push(stringify(out).slice(1, -1));
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
