/* Vigie's document viewer: keyboard shortcuts (listed on the page), the print button, and
   the details panel open beside the document on wide screens. Same-origin file under the
   strict CSP (no inline script); the page works without it, links and all. */
(function () {
  "use strict";

  var KEYS = {
    ArrowRight: "next", j: "next",
    ArrowLeft: "previous", k: "previous",
    Escape: "list", u: "list",
    o: "open", p: "print", d: "download"
  };

  function target(name) {
    return document.querySelector("[data-shortcut='" + name + "']");
  }

  function printDocument() {
    var frame = document.querySelector("iframe.viewer-frame");
    try {
      // The PDF is same-origin: its own viewer prints the document, not this page.
      frame.contentWindow.focus();
      frame.contentWindow.print();
    } catch (error) {
      window.print();
    }
  }

  function typing(element) {
    if (!element) { return false; }
    var tag = element.tagName;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || element.isContentEditable;
  }

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.altKey || event.ctrlKey || event.metaKey) { return; }
    if (typing(event.target)) { return; }
    var name = KEYS[event.key];
    var element = name && target(name);
    if (!element) { return; }
    event.preventDefault();
    if (name === "print") { printDocument(); } else { element.click(); }
  });

  var print = target("print");
  if (print && document.querySelector("iframe.viewer-frame")) {
    print.hidden = false;
    print.addEventListener("click", printDocument);
  }

  var details = document.querySelector("details.viewer-details");
  if (details && window.matchMedia("(min-width: 70em)").matches) {
    details.open = true;
  }
}());
