/* The send page: show the list fields only when one card goes to a list, and bring what
 * the server answered into view (the error summary, or the preview) with the focus.
 * Without this script every field shows and the summary and preview take the focus
 * through their autofocus attribute. */
(function () {
  "use strict";

  var form = document.querySelector(".send-form");
  if (form) {
    var listOnly = form.querySelectorAll("[data-list-only]");
    var update = function () {
      var chosen = form.querySelector('input[name="recipient_mode"]:checked');
      var toList = chosen && chosen.value === "list";
      for (var i = 0; i < listOnly.length; i++) listOnly[i].hidden = !toList;
    };
    form.addEventListener("change", function (event) {
      if (event.target.name === "recipient_mode") update();
    });
    update();
  }

  var target = document.getElementById("error-summary") || document.getElementById("preview");
  if (target) {
    target.scrollIntoView({ block: "start" });
    target.focus();
  }
})();
