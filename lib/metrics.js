"use strict";
// Metrics of a server: the native side's counters and figures (connections by transport and
// Engine.IO version, sockets and rooms per namespace, events and bytes both ways, broadcasts
// and deliveries, slow clients dropped, handshake errors) plus what JavaScript sees (Redis
// outages, cluster requests that timed out, shakehand failures, the delay from an event's
// arrival to its handler), as an object and as Prometheus text.

/** Upper bounds (seconds) of the handler-delay histogram. */
const DELAY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

/** What JavaScript counts for one server. */
class JsCounters {
  constructor() {
    this.adapterUp = null;
    this.adapterDisconnects = 0;
    this.adapterReconnects = 0;
    this.requestTimeouts = 0;
    this.shakehandFailures = 0;
    this.delayCounts = new Array(DELAY_BUCKETS.length + 1).fill(0);
    this.delaySum = 0;
    this.delayCount = 0;
  }
  /** A batch of events reached JavaScript; `queuedAt` is when its oldest was queued (Unix ms). */
  batch(queuedAt, events) {
    if (!(queuedAt > 0) || !events) return;
    const now = performance.timeOrigin + performance.now();
    const s = Math.max(0, now - queuedAt) / 1000;
    let i = 0;
    while (i < DELAY_BUCKETS.length && s > DELAY_BUCKETS[i]) i++;
    this.delayCounts[i] += events;
    this.delaySum += s * events;
    this.delayCount += events;
  }
  adapter(up) {
    if (up && this.adapterUp === false) this.adapterReconnects++;
    if (!up && this.adapterUp !== false) this.adapterDisconnects++;
    this.adapterUp = up;
  }
  /** Counts a cluster request's failure if it timed out; rethrows it. */
  request(err) {
    if (err && /time(d)? ?out/i.test(String(err.message || err))) this.requestTimeouts++;
    throw err;
  }
  snapshot() {
    let cumulative = 0;
    const buckets = DELAY_BUCKETS.map((le, i) => [le, (cumulative += this.delayCounts[i])]);
    buckets.push(["+Inf", this.delayCount]);
    return {
      adapter: { up: this.adapterUp, disconnects: this.adapterDisconnects, reconnects: this.adapterReconnects },
      requestTimeouts: this.requestTimeouts,
      shakehandFailures: this.shakehandFailures,
      handlerDelay: { buckets, sum: this.delaySum, count: this.delayCount },
    };
  }
}

const esc = (v) => String(v).replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
const labelText = (labels) => {
  const keys = Object.keys(labels);
  return keys.length ? `{${keys.map((k) => `${k}="${esc(labels[k])}"`).join(",")}}` : "";
};

/**
 * Prometheus text of `list`: `[{labels, metrics}]` (one entry per server; `labels` such as
 * `{server: "host:port"}` are added to every sample).
 */
function prometheusText(list) {
  const families = new Map();
  const add = (name, type, help, labels, value) => {
    if (!families.has(name)) families.set(name, { type, help, samples: [] });
    families.get(name).samples.push(`${name}${labelText(labels)} ${Number.isFinite(value) ? value : 0}`);
  };
  for (const { labels = {}, metrics: m } of list) {
    if (!m) continue;
    for (const transport of ["polling", "websocket"]) {
      for (const eio of ["3", "4"]) {
        add("weroll_native_connections", "gauge", "Open Engine.IO connections, by transport and Engine.IO version.", { ...labels, transport, eio }, m.connections[transport][eio]);
      }
    }
    for (const ns of m.namespaces) {
      add("weroll_native_sockets", "gauge", "Connected sockets, by namespace.", { ...labels, namespace: ns.name }, ns.sockets);
      add("weroll_native_rooms", "gauge", "Rooms with members on this server, by namespace.", { ...labels, namespace: ns.name }, ns.rooms);
    }
    const counters = [
      ["weroll_native_sessions_opened_total", "Engine.IO sessions opened.", m.sessionsOpened],
      ["weroll_native_handshake_errors_total", "Requests refused with an Engine.IO error.", m.handshakeErrors],
      ["weroll_native_slow_clients_dropped_total", "Clients dropped because their queue outgrew its bounds.", m.slowClientsDropped],
      ["weroll_native_events_received_total", "Events received from clients.", m.eventsIn],
      ["weroll_native_received_bytes_total", "Bytes of events received from clients.", m.bytesIn],
      ["weroll_native_events_sent_total", "Events sent to clients (each recipient counts).", m.eventsOut],
      ["weroll_native_sent_bytes_total", "Bytes of events sent to clients.", m.bytesOut],
      ["weroll_native_broadcasts_total", "Broadcasts delivered on this server.", m.broadcasts],
      ["weroll_native_deliveries_total", "Deliveries made by those broadcasts.", m.deliveries],
      ["weroll_native_shakehand_failures_total", "Realtime shakehands that failed.", m.shakehandFailures],
      ["weroll_native_redis_disconnects_total", "Times the cluster adapter lost Redis.", m.adapter.disconnects],
      ["weroll_native_redis_reconnects_total", "Times the cluster adapter got Redis back.", m.adapter.reconnects],
      ["weroll_native_request_timeouts_total", "Cluster requests that timed out.", m.requestTimeouts],
    ];
    for (const [name, help, value] of counters) add(name, "counter", help, labels, value);
    if (m.adapter.up !== null) add("weroll_native_redis_up", "gauge", "Whether the cluster adapter reaches Redis.", labels, m.adapter.up ? 1 : 0);
    const h = m.handlerDelay;
    const hist = "weroll_native_handler_delay_seconds";
    for (const [le, count] of h.buckets) add(hist, "histogram", "Delay from an event's arrival to its JavaScript handler.", { ...labels, le }, count);
    families.get(hist).samples.push(`${hist}_sum${labelText(labels)} ${h.sum}`, `${hist}_count${labelText(labels)} ${h.count}`);
  }
  const out = [];
  for (const [name, f] of families) out.push(`# HELP ${name} ${f.help}`, `# TYPE ${name} ${f.type}`, ...f.samples);
  return out.join("\n") + "\n";
}

module.exports = { JsCounters, prometheusText, DELAY_BUCKETS };
