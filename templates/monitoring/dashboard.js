/* The live dashboard: renders the state embedded in the page, then applies
 * the sections the server pushes over the WebSocket. Every value goes into
 * the page through textContent, never as HTML. The one markup is a pairing
 * QR code, SVG the server drew (segno writes only path data): it is parsed
 * in an inert document and only an <svg> element is taken into the page.
 * No library, no network access beyond this server. */
(function () {
  "use strict";
  var config = window.BLAST_DASHBOARD;
  var state = JSON.parse(document.getElementById("dashboard-state").textContent);
  var SVG = "http://www.w3.org/2000/svg";
  var updates = 0;

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) { node.setAttribute(name, attrs[name]); });
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function badge(text, cls) { return el("span", {"class": "badge " + cls}, text); }
  function ago(iso) {
    var s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (s < 60) return Math.round(s) + "s ago";
    if (s < 3600) return Math.round(s / 60) + "m ago";
    if (s < 86400) return Math.round(s / 3600) + "h ago";
    return Math.round(s / 86400) + "d ago";
  }
  function text(id, value) { document.getElementById(id).textContent = String(value); }

  function renderSummary(s) {
    text("score", s.score);
    var status = document.getElementById("status");
    status.textContent = s.status;
    status.className = "badge " + s.status;
    text("pass-score", s.pass_score);
    text("connected", s.connected);
    text("expected", s.expected);
    text("open-breakers", s.open_breakers);
    var counts = document.getElementById("counts");
    counts.replaceChildren();
    Object.keys(s.by_status).forEach(function (name) {
      var li = el("li", {"data-status": name});
      li.append(badge(name.replace("_", " "), "s-" + name), el("b", {"class": "count"}, s.by_status[name]));
      counts.append(li);
    });
    var checks = document.getElementById("checks");
    checks.replaceChildren();
    (s.checks || []).forEach(function (c) {
      var li = el("li", {"data-check": c.name});
      var value = c.value === null || c.value === undefined ? "" : c.value + " " + (c.unit || "");
      li.append(el("span", {}, c.name + (c.output ? " — " + c.output : "")), el("span", {}, value));
      li.prepend(badge(c.status, c.status));
      checks.append(li);
    });
  }

  function renderGateways(rows) {
    var list = document.getElementById("gateways");
    list.replaceChildren();
    (rows || []).forEach(function (g) {
      var li = el("li", {"data-gateway": g.name, "data-state": g.state});
      var detail = g.state === "down"
        ? " — down " + ago(g.down_since) + (g.reason ? " (" + g.reason + ")" : "") + "; probing"
        : "";
      li.append(badge(g.state, g.state === "down" ? "fail" : "pass"), el("span", {}, g.name + detail));
      list.append(li);
    });
  }

  function renderWorkers(rows) {
    var list = document.getElementById("workers");
    if (!list) return;
    list.replaceChildren();
    (rows || []).forEach(function (w) {
      var li = el("li", {"data-worker": w.worker});
      li.append(el("span", {}, w.worker + " — " + w.sessions + " of " + w.capacity + " sessions"));
      list.append(li);
    });
  }

  function renderInstances(section) {
    var body = document.getElementById("instances");
    var seen = {};
    section.rows.forEach(function (row, index) {
      seen[row.key] = true;
      var tr = body.querySelector('tr[data-key="' + row.key + '"]');
      if (!tr) tr = el("tr", {"data-key": row.key});
      tr.setAttribute("data-status", row.status);
      tr.replaceChildren(
        el("td", {"class": "name"}, row.name),
        el("td", {}, row.tenant),
        el("td", {"class": "status"}).appendChild(badge(row.status, "s-" + row.status)).parentNode,
        el("td", {}, row.desired),
        el("td", {"class": "breaker"}).appendChild(badge(row.breaker, "b-" + row.breaker)).parentNode,
        el("td", {"class": "reason"}, row.reason),
        el("td", {"class": "since", "title": row.since}, ago(row.since))
      );
      if (body.children[index] !== tr) body.insertBefore(tr, body.children[index] || null);
    });
    Array.prototype.slice.call(body.children).forEach(function (tr) {
      if (!seen[tr.getAttribute("data-key")]) tr.remove();
    });
    text("rows-note", section.rows.length < section.total
      ? "(showing " + section.rows.length + " of " + section.total + ", problems first)"
      : "(" + section.total + ")");
  }

  function renderEvents(events) {
    var list = document.getElementById("events");
    list.replaceChildren();
    events.forEach(function (e) {
      var li = el("li", {"data-event": e.id});
      li.append(
        el("span", {"class": "muted", "title": e.at}, new Date(e.at).toLocaleTimeString() + " "),
        el("b", {}, e.tenant + "/" + e.instance + " "),
        el("span", {}, e.kind + (e.reason ? " (" + e.reason + ")" : "") + (e.message ? ": " + e.message : "")),
        el("span", {"class": "muted"}, e.actor ? " · " + e.actor : "")
      );
      list.append(li);
    });
  }

  function drawing(markup) {
    var parsed = new DOMParser().parseFromString(markup, "text/html");
    var root = parsed.body.firstElementChild;
    if (!root || root.localName !== "svg" || root.querySelector("script, foreignObject")) return null;
    return document.importNode(root, true);
  }

  // The drawing each pairing card shows, by instance key: a card is redrawn
  // only when its code changed.
  var drawn = {};

  function pairingCard(row) {
    var li = el("li", {"data-key": row.key});
    li.append(
      el("b", {"class": "name"}, row.tenant + "/" + row.name),
      el("span", {"class": "qr"}),
      el("span", {"class": "muted expires"})
    );
    return li;
  }

  function renderPairing(section) {
    var list = document.getElementById("pairing");
    var seen = {};
    section.rows.forEach(function (row, index) {
      seen[row.key] = true;
      var li = list.querySelector('li[data-key="' + row.key + '"]') || pairingCard(row);
      if (drawn[row.key] !== row.svg) {
        var image = drawing(row.svg);
        li.querySelector(".qr").replaceChildren(image || "");
        drawn[row.key] = row.svg;
      }
      li.querySelector(".expires").textContent = row.expires_at
        ? "expires " + new Date(row.expires_at).toLocaleTimeString()
        : "";
      if (list.children[index] !== li) list.insertBefore(li, list.children[index] || null);
    });
    Array.prototype.slice.call(list.children).forEach(function (li) {
      var key = li.getAttribute("data-key");
      if (!seen[key]) { li.remove(); delete drawn[key]; }
    });
    text("pairing-note", section.rows.length
      ? (section.more ? "(the first " + section.rows.length + ")" : "(" + section.rows.length + ")")
      : "(none)");
  }

  function renderInbound(rows) {
    var list = document.getElementById("inbound");
    list.replaceChildren();
    rows.forEach(function (m) {
      var li = el("li", {"data-inbound": m.id});
      li.append(
        el("span", {"class": "muted", "title": m.at}, new Date(m.at).toLocaleTimeString() + " "),
        el("b", {}, m.tenant + "/" + m.instance + " "),
        el("span", {"class": "sender"}, "from " + m.sender + (m.action ? " (" + m.action + ")" : "") + ": "),
        el("span", {"class": "text"}, m.text)
      );
      list.append(li);
    });
  }

  function svg(tag, attrs) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attrs).forEach(function (name) { node.setAttribute(name, attrs[name]); });
    return node;
  }

  function renderChart(chart) {
    var box = document.getElementById("chart");
    text("chart-hours", chart.hours);
    box.replaceChildren();
    var W = 800, H = 180, L = 34, R = 40, T = 8, B = 20;
    var until = Date.now() / 1000, since = until - chart.hours * 3600;
    function x(t) { return L + (W - L - R) * Math.max(0, Math.min(1, (t - since) / (until - since))); }
    var maxCount = 1;
    chart.points.forEach(function (p) { maxCount = Math.max(maxCount, p.expected, p.connected); });
    [0, 50, 80, 100].forEach(function (v) {
      var y = T + (H - T - B) * (1 - v / 100);
      box.append(svg("line", {x1: L, x2: W - R, y1: y, y2: y, stroke: v === 80 ? "#9a6700" : "#d0d7de",
        "stroke-dasharray": v === 80 ? "4 3" : ""}));
      var label = svg("text", {x: 4, y: y + 3});
      label.textContent = String(v);
      box.append(label);
    });
    var right = svg("text", {x: W - R + 4, y: T + 8});
    right.textContent = String(maxCount);
    box.append(right);
    var left = svg("text", {x: L, y: H - 4});
    left.textContent = "-" + chart.hours + "h";
    var now = svg("text", {x: W - R - 18, y: H - 4});
    now.textContent = "now";
    box.append(left, now);
    function line(values, colour, cls) {
      if (!values.length) return;
      box.append(svg("polyline", {points: values.join(" "), fill: "none", stroke: colour, "stroke-width": 2,
        "class": cls}));
    }
    line(chart.points.map(function (p) {
      return x(p.t).toFixed(1) + "," + (T + (H - T - B) * (1 - p.score / 100)).toFixed(1);
    }), "#0969da", "score-line");
    line(chart.points.map(function (p) {
      return x(p.t).toFixed(1) + "," + (T + (H - T - B) * (1 - p.connected / maxCount)).toFixed(1);
    }), "#1a7f37", "connected-line");
    var legend = svg("text", {x: L + 60, y: H - 4});
    legend.textContent = chart.points.length
      ? "blue: score (0-100, left) · green: connected (right scale)"
      : "no snapshot yet (one is recorded each minute)";
    box.append(legend);
  }

  var renderers = {
    summary: renderSummary,
    gateways: renderGateways,
    workers: renderWorkers,
    instances: renderInstances,
    pairing: renderPairing,
    events: renderEvents,
    inbound: renderInbound,
    chart: renderChart
  };

  function apply(sections) {
    Object.keys(renderers).forEach(function (name) {
      if (sections[name] !== undefined) {
        state[name] = sections[name];
        renderers[name](sections[name]);
      }
    });
  }

  function setLive(live) {
    var conn = document.getElementById("conn");
    conn.textContent = live ? "live" : "reconnecting…";
    conn.className = live ? "live" : "";
  }

  var delay = 1000;
  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + location.host + config.wsPath);
    socket.onopen = function () { delay = 1000; setLive(true); };
    socket.onmessage = function (message) {
      var data = JSON.parse(message.data);
      if (data.type === "update") {
        updates += 1;
        document.body.setAttribute("data-updates", String(updates));
        apply(data);
      }
    };
    socket.onclose = function () {
      setLive(false);
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
  }

  apply(state);
  // Relative times and the chart's window move with the clock.
  setInterval(function () { renderInstances(state.instances); renderChart(state.chart); }, 30000);
  connect();
})();
