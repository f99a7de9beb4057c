// KlikkFlow expression runtime: evaluated once into every fresh QuickJS context.
// Python compiles each {{ }} template into a function registered here, then calls
// __kf.run once per evaluate() with all items as one JSON string; the item loop
// runs in JS and the results come back as one JSON string.
// Only what every execution needs lives here: QuickJS parses this file into each
// new context. The n8n-style helpers (extensions.js) and Luxon are loaded by Python only
// when an expression names them. A context may serve the executions of one workflow
// version one after the other (expressions.py, ExpressionEngine.reusable).
(function (g) {
  "use strict";
  // Taken now: expressions may replace built-ins, never the ones the runtime uses.
  const parse = JSON.parse;
  const stringify = JSON.stringify;
  const apply = Reflect.apply;
  const create = Object.create;
  const sliceText = String.prototype.slice;
  const joinList = Array.prototype.join;

  // ---- node outputs ($node["Name"], $("Name")), in objects without a prototype
  let outputs = create(null); // name -> items
  let knownNodes = null; // the workflow's node names (as keys), when the workflow lists them

  function itemsOf(name) {
    const items = outputs[name];
    if (items !== undefined) return items;
    if (knownNodes !== null && !(name in knownNodes)) {
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
    const accessCache = create(null);
    function access(name) {
      const key = String(name);
      let a = accessCache[key];
      if (a === undefined) accessCache[key] = a = nodeAccess(key, cur);
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
  // its expressions left the global object and the built-ins as they found them.
  // The built-ins (the global object's values, their prototypes, the iterator and
  // generator prototypes no global names) take no new properties: `seal` makes them
  // non-extensible, so an expression cannot add to them or change their prototype. The
  // three prototypes the helpers (extensions.js) add to stay open until those are loaded;
  // for them and for the global object, `intact` compares prototype, extensibility and
  // property count, and for each global its descriptor. Only descriptors are read: no
  // getter an expression may have put somewhere runs.
  const ownKeys = Reflect.ownKeys;
  const describe1 = Object.getOwnPropertyDescriptor;
  const protoOf = Object.getPrototypeOf;
  const extensible = Object.isExtensible;
  const close = Object.preventExtensions;
  const same = Object.is;
  const HELPED = [Array.prototype, Number.prototype, String.prototype];
  let open = []; // the global object and the still open prototypes
  let record = null; // per open object: [prototype, extensible, key count]
  let globalKeys = null;
  let globalSlots = null; // per global: value, get, set

  // Built-in prototypes no global names.
  const arrayIterator = protoOf([][Symbol.iterator]());
  const HIDDEN = [
    arrayIterator,
    protoOf(arrayIterator),
    protoOf(""[Symbol.iterator]()),
    protoOf(new Map()[Symbol.iterator]()),
    protoOf(new Set()[Symbol.iterator]()),
    protoOf(function* () {}),
    protoOf(function* () {}).prototype,
    protoOf(async function () {}),
    protoOf(Uint8Array),
    protoOf(Uint8Array.prototype),
  ];

  function isObject(v) {
    return (typeof v === "object" && v !== null) || typeof v === "function";
  }

  function has(list, o) {
    for (let i = 0; i < list.length; i++) if (list[i] === o) return true;
    return false;
  }

  // helped: the helpers are loaded, their prototypes close too.
  function seal(helped) {
    const builtIns = [];
    globalKeys = ownKeys(g);
    globalSlots = [];
    for (let i = 0; i < globalKeys.length; i++) {
      const d = describe1(g, globalKeys[i]);
      globalSlots[globalSlots.length] = d.value;
      globalSlots[globalSlots.length] = d.get;
      globalSlots[globalSlots.length] = d.set;
      if (isObject(d.value)) builtIns[builtIns.length] = d.value;
    }
    const named = builtIns.length;
    for (let i = 0; i < named; i++) {
      const d = describe1(builtIns[i], "prototype");
      if (d !== undefined && isObject(d.value)) builtIns[builtIns.length] = d.value;
    }
    for (let i = 0; i < HIDDEN.length; i++) builtIns[builtIns.length] = HIDDEN[i];
    open = [g];
    for (let i = 0; i < builtIns.length; i++) {
      const o = builtIns[i];
      if (o === g) continue;
      if (helped || !has(HELPED, o)) close(o);
      else if (!has(open, o)) open[open.length] = o;
    }
    record = [];
    for (let i = 0; i < open.length; i++) {
      const o = open[i];
      record[i] = [protoOf(o), extensible(o), ownKeys(o).length];
    }
  }

  function intact() {
    const keys = ownKeys(g);
    if (keys.length !== globalKeys.length) return false;
    for (let i = 0; i < keys.length; i++) {
      if (keys[i] !== globalKeys[i]) return false;
      const d = describe1(g, keys[i]);
      const k = 3 * i;
      if (!same(d.value, globalSlots[k]) || d.get !== globalSlots[k + 1]) return false;
      if (d.set !== globalSlots[k + 2]) return false;
    }
    for (let i = 0; i < open.length; i++) {
      const o = open[i];
      const r = record[i];
      if (protoOf(o) !== r[0] || extensible(o) !== r[1] || ownKeys(o).length !== r[2]) {
        return false;
      }
    }
    return true;
  }

  // Python takes these handles once and removes them from the global object, out of
  // expressions' reach.
  g.__kfApi = {
    register(factory) {
      fns[fns.length] = factory;
      return fns.length - 1;
    },
    configure(envText, nodeNamesText) {
      env = parse(envText);
      const names = parse(nodeNamesText);
      knownNodes = null;
      if (names !== null) {
        knownNodes = create(null);
        for (let i = 0; i < names.length; i++) knownNodes[names[i]] = true;
      }
      outputs = create(null);
    },
    useLuxon() {
      luxon = g.luxon;
    },
    setOutput(name, itemsText) {
      outputs[name] = parse(itemsText);
    },
    forgetOutput(name) {
      delete outputs[name];
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
          out[out.length] = full ? build(it.json, it.binary, i) : build(it, undefined, i);
          if (out.length === CHUNK) {
            chunks[chunks.length] = apply(sliceText, stringify(out), [1, -1]);
            out = [];
          }
        }
        if (out.length > 0) chunks[chunks.length] = apply(sliceText, stringify(out), [1, -1]);
        // (join, not +: the Python binding cannot read QuickJS rope strings)
        return apply(joinList, ["[", apply(joinList, chunks, [","]), "]"], [""]);
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
