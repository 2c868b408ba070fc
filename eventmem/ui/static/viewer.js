// eventmem viewer: a little progressive enhancement; every page works without it.
"use strict";
(function () {
  // Hide the messages that are out of the buffer (the checkbox on the buffer page).
  var hide = document.getElementById("hide-gone");
  if (hide) {
    hide.addEventListener("change", function () {
      document.body.classList.toggle("hide-gone", hide.checked);
    });
  }
  // Pointing at a tool call outlines its result, and the other way round.
  function pair(el, on) {
    var id = el.getAttribute("data-call") || el.getAttribute("data-result");
    if (!id) return;
    document.querySelectorAll(".msg").forEach(function (msg) {
      var calls = msg.querySelectorAll(".call[data-call]");
      var match = msg.getAttribute("data-result") === id;
      calls.forEach(function (c) { if (c.getAttribute("data-call") === id) match = true; });
      if (match) msg.classList.toggle("linked", on);
    });
  }
  document.querySelectorAll(".call[data-call], .msg[data-result]").forEach(function (el) {
    el.addEventListener("mouseenter", function () { pair(el, true); });
    el.addEventListener("mouseleave", function () { pair(el, false); });
  });
})();
