/* The instance change page's pairing QR code, kept current without a reload
 * (instances.admin: InstanceAdmin.qr_image draws it, qr_state_view answers
 * what it is now). While the server says a new code may still come
 * (connecting, awaiting the scan), the page asks every POLL_MS and swaps the
 * drawing and the line under it; once the instance is paired, or stopped
 * for any other reason, it shows that and asks no more. A request that
 * fails is tried again, less often each time.
 *
 * The drawing is SVG the server made (segno writes only path data). It is
 * parsed in an inert document and only an <svg> element is taken into the
 * page; the line under it goes in as text. */
(function () {
  "use strict";
  var POLL_MS = 2000;
  var MAX_DELAY_MS = 30000;

  function drawing(markup) {
    var parsed = new DOMParser().parseFromString(markup, "text/html");
    var svg = parsed.body.firstElementChild;
    if (!svg || svg.localName !== "svg" || svg.querySelector("script, foreignObject")) return null;
    return document.importNode(svg, true);
  }

  function show(box, state, shown) {
    var current = box.querySelector("svg");
    if (!state.svg) {
      if (current) current.remove();
    } else if (state.svg !== shown || !current) {
      var next = drawing(state.svg);
      if (next && current) current.replaceWith(next);
      else if (next) box.prepend(next);
    }
    box.querySelector(".blast-qr-note").textContent = state.note;
    box.setAttribute("data-status", state.status);
    box.setAttribute("data-live", state.live ? "1" : "");
  }

  function follow(box) {
    var url = box.getAttribute("data-state-url");
    var delay = POLL_MS;
    var shown = null;
    function later() { window.setTimeout(tick, delay); }
    function tick() {
      if (document.hidden) { later(); return; }
      fetch(url, {headers: {"Accept": "application/json"}, credentials: "same-origin", cache: "no-store"})
        .then(function (response) {
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.json();
        })
        .then(function (state) {
          show(box, state, shown);
          shown = state.svg;
          delay = POLL_MS;
          if (state.live) later();
        })
        .catch(function () {
          delay = Math.min(delay * 2, MAX_DELAY_MS);
          later();
        });
    }
    later();
  }

  document.querySelectorAll(".blast-qr[data-live='1'][data-state-url]").forEach(follow);
})();
