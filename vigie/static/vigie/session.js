/* Vigie — the session's idle limit, seen from the page (same-origin, no inline script: the
   CSP allows only 'self').

   1. Before the server ends an idle session, the page says so and offers to stay logged in
      (a GET of the home page, which counts as activity on the server).
   2. When the limit has passed, the page goes to the login page, which says the session
      expired (the server alone decides: a session another tab kept alive goes home instead).
   3. A form marked data-draft="key" (the break-the-glass justification) is copied into this
      tab's sessionStorage as it is typed, and put back if the page is opened again (after
      logging in again). An element with data-draft-done="key" (the emergency banner, once
      access is granted) forgets it. sessionStorage dies with the tab. */
(function () {
  "use strict";

  var DRAFT_PREFIX = "vigie-draft:";
  var WARN_BEFORE_SECONDS = 120;

  function keepDrafts() {
    document.querySelectorAll("[data-draft-done]").forEach(function (el) {
      try { sessionStorage.removeItem(DRAFT_PREFIX + el.getAttribute("data-draft-done")); } catch (e) { /* storage off */ }
    });
    document.querySelectorAll("form[data-draft]").forEach(function (form) {
      var key = DRAFT_PREFIX + form.getAttribute("data-draft");
      var fields = form.querySelectorAll("textarea[data-keep], select[data-keep], input[data-keep]");
      var saved = null;
      try { saved = JSON.parse(sessionStorage.getItem(key) || "null"); } catch (e) { saved = null; }
      // A form the server sent back with errors keeps its own values; a fresh one gets the draft.
      if (saved && typeof saved === "object" && !form.hasAttribute("data-bound")) {
        fields.forEach(function (field) {
          var value = saved[field.name];
          if (typeof value === "string" && value) { field.value = value; }
        });
      }
      function save() {
        var data = {};
        fields.forEach(function (field) { data[field.name] = field.value; });
        try { sessionStorage.setItem(key, JSON.stringify(data)); } catch (e) { /* storage off */ }
      }
      fields.forEach(function (field) {
        field.addEventListener("input", save);
        field.addEventListener("change", save);
      });
    });
  }

  function watchIdle() {
    var limit = parseInt(document.body.getAttribute("data-idle-seconds") || "", 10);
    var box = document.getElementById("idle-warning");
    if (!limit || !box) { return; }
    var remaining = document.getElementById("idle-remaining");
    var stay = document.getElementById("idle-stay");
    var warnAfter = Math.max(limit - WARN_BEFORE_SECONDS, Math.floor(limit / 2));
    var lastActivity = Date.now();
    var ticker = null;

    function secondsIdle() { return (Date.now() - lastActivity) / 1000; }

    function tick() {
      var idle = secondsIdle();
      if (idle >= limit + 2) {
        // The server has ended the session by now: its login page says so, and brings the
        // person back here once logged in. Not a reload of this page: if another tab kept
        // the session alive, reloading a record would open it again with nobody looking.
        window.clearInterval(ticker);
        window.location.assign("/accounts/login/?expired=1&next=" +
          encodeURIComponent(window.location.pathname + window.location.search));
        return;
      }
      if (idle >= warnAfter) {
        if (remaining) { remaining.textContent = String(Math.max(1, Math.ceil((limit - idle) / 60))); }
        // Announced (role=alert), not focused: the doctor may be typing in a form.
        if (box.hidden) { box.hidden = false; }
      }
    }

    if (stay) {
      stay.addEventListener("click", function () {
        fetch("/", { credentials: "same-origin", cache: "no-store" }).then(function (response) {
          if (response.ok && !response.redirected) {
            lastActivity = Date.now();
            box.hidden = true;
          } else {
            window.location.assign(window.location.pathname + window.location.search);
          }
        });
      });
    }
    ticker = window.setInterval(tick, 1000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    keepDrafts();
    watchIdle();
  });
}());
