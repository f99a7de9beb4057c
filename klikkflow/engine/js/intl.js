// A minimal Intl for Luxon: QuickJS ships without Intl, and Luxon needs
// Intl.DateTimeFormat for zone offsets and locale resolution. English (en-US) only;
// zones are UTC, plus IANA zones whose offset tables Python hands over through
// __kfIntl.addZone (QuickJS cannot call back into Python under a time limit).
(function (g) {
  "use strict";
  const zones = new Map(); // name -> { starts: ms[], offsets: minutes[] }
  const UTC_NAMES = new Set(["UTC", "Etc/UTC", "GMT", "Etc/GMT", "Z"]);
  let defaultZone = "UTC";

  function offsetMinutes(zone, ms) {
    if (UTC_NAMES.has(zone)) return 0;
    const t = zones.get(zone);
    if (t === undefined) return null;
    let lo = 0;
    let hi = t.starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (t.starts[mid] <= ms) lo = mid;
      else hi = mid - 1;
    }
    return t.offsets[lo];
  }

  function pad(n, style) {
    return style === "2-digit" ? String(n).padStart(2, "0").slice(-2) : String(n);
  }

  function DateTimeFormat(locale, opts) {
    if (!(this instanceof DateTimeFormat)) return new DateTimeFormat(locale, opts);
    const o = opts || {};
    const tz = o.timeZone === undefined ? defaultZone : String(o.timeZone);
    if (offsetMinutes(tz, 0) === null) throw new RangeError(`Invalid time zone specified: ${tz}`);
    this._tz = tz;
    this._o = o;
  }
  DateTimeFormat.prototype.resolvedOptions = function () {
    return { locale: "en-US", calendar: "gregory", numberingSystem: "latn", timeZone: this._tz };
  };
  DateTimeFormat.prototype.formatToParts = function (date) {
    const ms = date === undefined ? Date.now() : +date;
    const d = new Date(ms + offsetMinutes(this._tz, ms) * 60000);
    const o = this._o;
    const hasTime = o.hour !== undefined || o.minute !== undefined || o.second !== undefined;
    const hasDate = o.year !== undefined || o.month !== undefined || o.day !== undefined || !hasTime;
    const parts = [];
    const part = (type, value) => parts.push({ type: type, value: value });
    const year = d.getUTCFullYear();
    if (hasDate) {
      part("month", pad(d.getUTCMonth() + 1, o.month));
      part("literal", "/");
      part("day", pad(d.getUTCDate(), o.day));
      part("literal", "/");
      part("year", String(year > 0 ? year : 1 - year));
    }
    if (o.era) {
      part("literal", " ");
      part("era", year > 0 ? "AD" : "BC");
    }
    if (hasTime) {
      if (hasDate) part("literal", ", ");
      const h = d.getUTCHours();
      const h12 = o.hour12 !== false && o.hourCycle !== "h23";
      part("hour", h12 ? String(h % 12 === 0 ? 12 : h % 12) : pad(h, "2-digit"));
      part("literal", ":");
      part("minute", pad(d.getUTCMinutes(), "2-digit"));
      part("literal", ":");
      part("second", pad(d.getUTCSeconds(), "2-digit"));
      if (h12) {
        part("literal", " ");
        part("dayPeriod", h < 12 ? "AM" : "PM");
      }
    }
    if (o.timeZoneName) {
      const off = offsetMinutes(this._tz, ms);
      const h = Math.floor(Math.abs(off) / 60);
      const m = Math.abs(off) % 60;
      const name = off === 0 ? "UTC" : `GMT${off < 0 ? "-" : "+"}${h}${m ? ":" + pad(m, "2-digit") : ""}`;
      part("literal", " ");
      part("timeZoneName", name);
    }
    return parts;
  };
  DateTimeFormat.prototype.format = function (date) {
    return this.formatToParts(date)
      .map((p) => p.value)
      .join("");
  };

  function NumberFormat(locale, opts) {
    if (!(this instanceof NumberFormat)) return new NumberFormat(locale, opts);
  }
  NumberFormat.prototype.format = function (n) {
    return Number(n).format();
  };
  NumberFormat.prototype.resolvedOptions = function () {
    return { locale: "en-US", numberingSystem: "latn" };
  };

  g.Intl = { DateTimeFormat: DateTimeFormat, NumberFormat: NumberFormat };
  g.__kfIntl = {
    addZone(name, tableText) {
      const table = JSON.parse(tableText);
      zones.set(name, { starts: table.map((r) => r[0]), offsets: table.map((r) => r[1]) });
    },
    setDefaultZone(name) {
      defaultZone = name;
    },
  };
})(globalThis);
