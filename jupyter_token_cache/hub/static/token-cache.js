// jupyter-token-cache admin page (/hub/token-cache). Plain script, no build, no other origin:
// it reads GET {api}/stats every few seconds, and GET {api}/tokens only when asked (filters,
// pages, the refresh button, a reset) or when the stats say tokens were minted or ended
// (their last event id moved), at most every LIST_EVERY; it calls DELETE {api} or
// DELETE {api}/users/{name} to reset, following a reset that runs on (202) at its handle,
// GET {api}/resets/{id}; and it draws the chart as inline SVG. Requests carry the hub's
// XSRF token (window.jhdata.xsrf_token) in the X-XSRFToken header, as the hub's own pages
// send it with their API calls. Every value is written with textContent; no token is ever
// received or shown.
(function () {
  "use strict";

  var root = document.getElementById("token-cache");
  if (!root) return;
  var api = root.dataset.api;
  var refreshMs = 1000 * Number(root.dataset.refreshSeconds || 3);
  var xsrf = (window.jhdata && window.jhdata.xsrf_token) || "";
  var SAMPLES = 100; // chart window: 100 refreshes (5 minutes at 3 s)
  var PAGE = 50;
  var LIST_EVERY = 6000; // ms: the listing follows the stats' changes at most this often
  var FOLLOW_MS = 1000; // a reset that runs on is looked at every second
  var samples = [];
  var filter = { user: "", kind: "", service: "" };
  var offset = 0;
  var busy = false;
  var listed = { at: 0, event: undefined };

  function $(id) {
    return document.getElementById(id);
  }

  function request(method, path, accept) {
    var headers = { "X-XSRFToken": xsrf };
    if (accept) headers.Accept = accept;
    return fetch(api + path, {
      method: method,
      headers: headers,
      credentials: "same-origin",
      cache: "no-store",
    }).then(function (r) {
      return r
        .json()
        .catch(function () {
          return {};
        })
        .then(function (body) {
          if (!r.ok) {
            var err = new Error((body && body.message) || r.status + " " + r.statusText);
            err.status = r.status;
            throw err;
          }
          return body;
        });
    });
  }

  function say(text, isError) {
    var el = $("tc-status");
    el.textContent = text;
    el.className = "tc-status alert " + (isError ? "alert-danger" : "alert-info");
    if (!text) el.className = "tc-status";
  }

  function when(iso) {
    if (!iso) return "";
    var d = new Date(iso);
    return isNaN(d) ? String(iso) : d.toLocaleString();
  }

  function setText(id, value) {
    $(id).textContent = value;
  }

  // -- stats ------------------------------------------------------------------------------

  function showStats(s) {
    setText("tc-backend", s.backend + (s.enabled === false ? " (disabled)" : ""));
    var health = s.health || { available: s.available };
    var badge = $("tc-health");
    badge.textContent = health.available ? "available" : "unavailable";
    badge.className = "badge " + (health.available ? "text-bg-success" : "text-bg-danger");
    setText("tc-health-since", health.since ? "since " + when(health.since) : "");
    setText(
      "tc-last-error",
      health.last_error
        ? health.last_error + (health.last_error_at ? " (" + when(health.last_error_at) + ")" : "")
        : "none",
    );
    ["hits", "misses", "mints", "entries", "evictions", "errors"].forEach(function (name) {
      setText("tc-" + name, s[name] == null ? "–" : String(s[name])); // null: not counted
    });
    var asked = (s.hits || 0) + (s.misses || 0);
    setText("tc-hit-rate", asked ? ((100 * s.hits) / asked).toFixed(1) + " %" : "–");
    setText("tc-updated", new Date().toLocaleTimeString());
    samples.push({ hits: s.hits || 0, misses: s.misses || 0, mints: s.mints || 0 });
    if (samples.length > SAMPLES + 1) samples.shift();
    drawChart();
  }

  var SVG = "http://www.w3.org/2000/svg";

  function svg(name, attrs, text) {
    var el = document.createElementNS(SVG, name);
    Object.keys(attrs).forEach(function (k) {
      el.setAttribute(k, attrs[k]);
    });
    if (text !== undefined) el.textContent = text;
    return el;
  }

  function drawChart() {
    var chart = $("tc-chart");
    while (chart.firstChild) chart.removeChild(chart.firstChild);
    // drawn in the element's own pixels, so that text keeps its shape at any width
    var W = Math.max(300, Math.round(chart.getBoundingClientRect().width) || 600),
      H = 160,
      left = 30,
      bottom = H - 14,
      top = 8;
    var series = { hits: [], misses: [], mints: [] };
    for (var i = 1; i < samples.length; i++) {
      Object.keys(series).forEach(function (k) {
        // a counter that went down (a restarted hub) starts over from zero
        series[k].push(Math.max(0, samples[i][k] - samples[i - 1][k]));
      });
    }
    var n = series.hits.length;
    var max = 1;
    Object.keys(series).forEach(function (k) {
      max = Math.max.apply(null, [max].concat(series[k]));
    });
    chart.appendChild(svg("line", { class: "tc-axis", x1: left, y1: bottom, x2: W, y2: bottom }));
    chart.appendChild(svg("line", { class: "tc-axis", x1: left, y1: top, x2: left, y2: bottom }));
    chart.appendChild(svg("text", { x: 2, y: top + 10 }, String(max)));
    chart.appendChild(svg("text", { x: 2, y: bottom }, "0"));
    chart.appendChild(
      svg("text", { x: left + 4, y: H - 2 }, Math.round((SAMPLES * refreshMs) / 60000) + " min ago"),
    );
    chart.appendChild(svg("text", { x: W - 30, y: H - 2 }, "now"));
    chart.setAttribute("viewBox", "0 0 " + W + " " + H);
    var step = (W - left) / SAMPLES;
    Object.keys(series).forEach(function (k) {
      var points = series[k].map(function (v, j) {
        var x = W - (n - 1 - j) * step;
        var y = bottom - ((bottom - top) * v) / max;
        return x.toFixed(1) + "," + y.toFixed(1);
      });
      if (points.length) chart.appendChild(svg("polyline", { class: "tc-" + k, points: points.join(" ") }));
    });
    var sum = function (k) {
      return series[k].reduce(function (a, b) {
        return a + b;
      }, 0);
    };
    chart.setAttribute(
      "aria-label",
      n
        ? "Over the last " + Math.round((n * refreshMs) / 1000) + " seconds: " + sum("hits") +
            " hits, " + sum("misses") + " misses, " + sum("mints") + " mints"
        : "No samples yet",
    );
  }

  // -- tokens -----------------------------------------------------------------------------

  function query() {
    var q = new URLSearchParams();
    Object.keys(filter).forEach(function (k) {
      if (filter[k]) q.set(k, filter[k]);
    });
    q.set("offset", String(offset));
    q.set("limit", String(PAGE));
    return "/tokens?" + q.toString();
  }

  function showTokens(page) {
    var items = Array.isArray(page) ? page : page.items || [];
    var pagination = page._pagination || { offset: offset, total: items.length, next: null };
    var body = $("tc-tokens").tBodies[0];
    var rows = items.map(function (t) {
      var tr = document.createElement("tr");
      tr.dataset.user = t.user;
      [
        t.id,
        t.user,
        t.kind,
        t.service || "",
        t.session_kind || "",
        t.server === null || t.server === undefined ? "" : t.server || "(default)",
        when(t.created),
        t.expires_at ? when(t.expires_at) : "never",
        when(t.last_activity),
      ].forEach(function (value, i) {
        var cell = document.createElement(i === 0 ? "th" : "td");
        if (i === 0) cell.scope = "row";
        cell.textContent = value;
        tr.appendChild(cell);
      });
      return tr;
    });
    body.replaceChildren.apply(body, rows);
    var first = items.length ? pagination.offset + 1 : 0;
    setText(
      "tc-tokens-caption",
      items.length
        ? "Tokens " + first + "–" + (pagination.offset + items.length) + " of " + pagination.total
        : "No minted tokens" + (filter.user || filter.kind || filter.service ? " match the filter" : ""),
    );
    $("tc-prev").disabled = offset === 0;
    $("tc-next").disabled = !pagination.next;
  }

  function listTokens() {
    listed.at = Date.now();
    return request("GET", query(), "application/jupyterhub-pagination+json").then(
      showTokens,
      tokensUnavailable,
    );
  }

  function tokensUnavailable(err) {
    $("tc-tokens").tBodies[0].replaceChildren();
    setText(
      "tc-tokens-caption",
      err.status === 404 ? "This hub does not list minted tokens yet." : "Tokens: " + err.message,
    );
  }

  // -- refresh ----------------------------------------------------------------------------

  function refresh() {
    if (busy) return Promise.resolve();
    busy = true;
    var done = function () {
      busy = false;
    };
    return request("GET", "/stats")
      .then(
        function (s) {
          showStats(s);
          // the listing costs the hub more than the stats: only when something changed
          var last = s.events ? s.events.last_id : null;
          if (last !== listed.event && Date.now() - listed.at >= LIST_EVERY) {
            listed.event = last;
            return listTokens();
          }
        },
        function (err) {
          say("Could not read the stats: " + err.message, true);
        },
      )
      .then(done, done);
  }

  $("tc-filter").addEventListener("submit", function (e) {
    e.preventDefault();
    filter = {
      user: $("tc-filter-user").value.trim(),
      kind: $("tc-filter-kind").value,
      service: $("tc-filter-service").value.trim(),
    };
    offset = 0;
    listTokens();
  });
  $("tc-prev").addEventListener("click", function () {
    offset = Math.max(0, offset - PAGE);
    listTokens();
  });
  $("tc-next").addEventListener("click", function () {
    offset += PAGE;
    listTokens();
  });
  $("tc-refresh").addEventListener("click", function () {
    listTokens();
  });

  // -- reset ------------------------------------------------------------------------------

  var pending = null;

  function confirmReset(user) {
    var revoke = $("tc-reset-revoke").checked;
    pending = { user: user, revoke: revoke };
    var who = user ? "user " + user : "every user";
    setText(
      "tc-confirm-text",
      "Forget the cached tokens of " + who + (revoke ? " and revoke (delete) the tokens the cache minted for them in the hub?" : "? Their tokens stay valid in the hub."),
    );
    $("tc-confirm").showModal();
  }

  $("tc-reset-form").addEventListener("submit", function (e) {
    e.preventDefault();
    var user = $("tc-reset-user").value.trim();
    if (!user) {
      say("Enter the name of the user to reset.", true);
      $("tc-reset-user").focus();
      return;
    }
    confirmReset(user);
  });
  $("tc-reset-all-button").addEventListener("click", function () {
    confirmReset(null);
  });
  $("tc-confirm").addEventListener("close", function () {
    var dialog = $("tc-confirm");
    var what = pending;
    pending = null;
    if (dialog.returnValue !== "confirm" || !what) return;
    var path = what.user ? "/users/" + encodeURIComponent(what.user) : "";
    var who = "Reset " + (what.user ? "user " + what.user : "all users") + ": ";
    request("DELETE", path + (what.revoke ? "?revoke=true" : ""))
      .then(function (answer) {
        return answer.state ? follow(answer, who) : answer;
      })
      .then(function (answer) {
        say(who + (answer.revoked || 0) + " token(s) revoked.", false);
        return listTokens();
      })
      .catch(function (err) {
        say("Reset failed: " + err.message, true);
      });
  });

  // a reset that runs on (202): look at its handle until it is done
  function follow(reset, who) {
    if (reset.state === "failed") throw new Error(reset.error || "see the hub's log");
    if (reset.state !== "running") return reset;
    say(who + "revoking, " + (reset.revoked || 0) + " token(s) so far…", false);
    return new Promise(function (resolve) {
      window.setTimeout(resolve, FOLLOW_MS);
    }).then(function () {
      return request("GET", "/resets/" + encodeURIComponent(reset.id)).then(function (next) {
        return follow(next, who);
      });
    });
  }

  window.addEventListener("resize", drawChart);
  drawChart();
  refresh();
  window.setInterval(refresh, refreshMs);
})();
