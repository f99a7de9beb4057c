// n8n-style helper methods on String, Number and Array ("".isEmpty(), [].sum(), ...).
// Python evaluates this file into an execution's context only once one of its
// expressions names one of these methods (expressions.py, _EXTENSION_NAMES), so most
// executions never pay for parsing it. Defined non-enumerable, so for-in and JSON
// are unaffected.
(function () {
  "use strict";

  function define(proto, name, fn) {
    Object.defineProperty(proto, name, {
      value: fn,
      writable: true,
      configurable: true,
      enumerable: false,
    });
  }

  define(String.prototype, "isEmpty", function () {
    return this.length === 0;
  });
  define(String.prototype, "toTitleCase", function () {
    return this.toLowerCase().replace(/(^|[\s\-_])(\p{L})/gu, function (_, sep, ch) {
      return sep + ch.toUpperCase();
    });
  });
  define(String.prototype, "toSnakeCase", function () {
    return this.replace(/([a-z0-9])([A-Z])/g, "$1_$2")
      .replace(/[^\p{L}\p{N}]+/gu, "_")
      .replace(/^_+|_+$/g, "")
      .toLowerCase();
  });
  define(String.prototype, "isEmail", function () {
    return /^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(this);
  });
  define(String.prototype, "extractDomain", function () {
    const s = String(this).trim();
    const at = s.match(/^[^\s@/]+@([^\s@/]+)$/);
    if (at) return at[1].toLowerCase();
    const url = s.match(/^(?:[a-z][a-z0-9+.-]*:)?\/\/(?:[^@/?#]*@)?([^:/?#]+)/i);
    if (url) return url[1].toLowerCase();
    const bare = s.match(/^([a-z0-9-]+(?:\.[a-z0-9-]+)+)(?:[:/?#]|$)/i);
    return bare ? bare[1].toLowerCase() : undefined;
  });
  define(String.prototype, "toNumber", function () {
    const s = this.trim();
    const n = s === "" ? NaN : Number(s);
    if (Number.isNaN(n)) throw new TypeError(`cannot convert "${this}" to a number`);
    return n;
  });

  define(Number.prototype, "round", function (decimals) {
    const f = Math.pow(10, decimals || 0);
    return Math.round(this * f) / f;
  });
  define(Number.prototype, "floor", function () {
    return Math.floor(this);
  });
  define(Number.prototype, "ceil", function () {
    return Math.ceil(this);
  });
  define(Number.prototype, "format", function () {
    // en-US grouping with at most three fraction digits, like Intl.NumberFormat's default.
    const n = Number(this);
    if (!Number.isFinite(n)) return String(n);
    const [int, frac] = String(Math.round(Math.abs(n) * 1000) / 1000).split(".");
    const grouped = int.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    return (n < 0 ? "-" : "") + grouped + (frac ? "." + frac : "");
  });

  function numbers(arr) {
    return arr.filter(function (v) {
      return typeof v === "number" && !Number.isNaN(v);
    });
  }
  define(Array.prototype, "first", function () {
    return this[0];
  });
  define(Array.prototype, "last", function () {
    return this[this.length - 1];
  });
  define(Array.prototype, "isEmpty", function () {
    return this.length === 0;
  });
  define(Array.prototype, "unique", function () {
    const seen = new Set();
    return this.filter(function (v) {
      const key = v !== null && typeof v === "object" ? "o:" + JSON.stringify(v) : v;
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    });
  });
  define(Array.prototype, "sum", function () {
    return numbers(this).reduce(function (a, b) {
      return a + b;
    }, 0);
  });
  define(Array.prototype, "average", function () {
    const ns = numbers(this);
    return ns.length === 0 ? 0 : ns.sum() / ns.length;
  });
  define(Array.prototype, "min", function () {
    const ns = numbers(this);
    return ns.length === 0 ? undefined : Math.min.apply(null, ns);
  });
  define(Array.prototype, "max", function () {
    const ns = numbers(this);
    return ns.length === 0 ? undefined : Math.max.apply(null, ns);
  });
  define(Array.prototype, "chunk", function (size) {
    if (!(size >= 1)) throw new RangeError("chunk size must be at least 1");
    const out = [];
    for (let i = 0; i < this.length; i += size) out.push(this.slice(i, i + size));
    return out;
  });
  define(Array.prototype, "compact", function () {
    return this.filter(function (v) {
      return v !== null && v !== undefined && v !== "";
    });
  });
})();
