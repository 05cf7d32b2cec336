/* Background jobs dashboard: polls the JSON endpoint every 10 s while the tab is
 * visible, with If-None-Match so an unchanged dashboard costs a 304, and patches
 * changed cells in place. Cancel opens a <dialog> and POSTs with the CSRF token.
 * Without this script the page still works: plain links, forms and a confirm page. */
(function () {
  "use strict";
  var root = document.getElementById("dashboard");
  if (!root) return;
  var pollUrl = root.dataset.pollUrl;
  var interval = parseInt(root.dataset.interval, 10) || 10000;
  var etag = null;
  var inFlight = false;
  var live = document.getElementById("live-status");

  function announce(text) {
    if (live) live.textContent = text;
  }

  function rowFromHtml(html) {
    var tpl = document.createElement("template");
    tpl.innerHTML = html.trim();
    return tpl.content.firstElementChild;
  }

  function updateProgress(cell, fresh) {
    // Moving the existing bar (instead of replacing it) lets its width transition smoothly.
    var bar = cell.querySelector("[role=progressbar]");
    var newBar = fresh.querySelector("[role=progressbar]");
    ["aria-valuenow", "aria-valuetext"].forEach(function (name) {
      bar.setAttribute(name, newBar.getAttribute(name));
    });
    // The fill is an SVG rect: its class and width are attributes (no inline style, which
    // the Content-Security-Policy forbids).
    var fill = bar.querySelector("rect");
    var newFill = newBar.querySelector("rect");
    ["class", "width"].forEach(function (name) {
      fill.setAttribute(name, newFill.getAttribute(name));
    });
    cell.querySelector(".progress-text").textContent =
      fresh.querySelector(".progress-text").textContent;
  }

  // CSRF tokens are masked afresh on every render; ignore them when comparing cells so
  // an unchanged Retry button is not replaced (and does not lose focus) on each poll.
  var TOKEN = /name="csrfmiddlewaretoken" value="[^"]*"/g;
  function sameHtml(a, b) {
    return a.innerHTML.replace(TOKEN, "") === b.innerHTML.replace(TOKEN, "");
  }

  function updateRow(row, fresh) {
    row.dataset.status = fresh.dataset.status;
    fresh.querySelectorAll("td[data-col]").forEach(function (newCell) {
      var cell = row.querySelector('td[data-col="' + newCell.dataset.col + '"]');
      if (!cell || sameHtml(cell, newCell)) return;
      if (newCell.dataset.col === "progress") updateProgress(cell, newCell);
      else cell.innerHTML = newCell.innerHTML;
    });
  }

  function updateSection(kind) {
    var section = root.querySelector('section[data-kind="' + kind.name + '"]');
    if (!section) return;
    var health = section.querySelector("[data-health]");
    if (health.textContent !== kind.health.message) health.textContent = kind.health.message;
    health.classList.toggle("warning", kind.health.overdue);
    var body = section.querySelector("[data-rows]");
    var existing = {};
    body.querySelectorAll("tr[data-job]").forEach(function (tr) {
      existing[tr.dataset.job] = tr;
    });
    var previous = null;
    kind.jobs.forEach(function (job) {
      var fresh = rowFromHtml(job.html);
      var row = existing[String(job.id)];
      if (row) {
        updateRow(row, fresh);
        delete existing[String(job.id)];
      } else {
        row = fresh;
      }
      var expected = previous ? previous.nextElementSibling : body.firstElementChild;
      if (expected !== row) body.insertBefore(row, expected);
      previous = row;
    });
    Object.keys(existing).forEach(function (id) {
      existing[id].remove();
    });
    section.querySelector("[data-empty]").hidden = kind.jobs.length > 0;
  }

  var again = false;

  function poll(force) {
    if (inFlight) {
      // An action's result must not wait for the next tick: poll again right after.
      if (force) again = true;
      return;
    }
    if (!force && document.visibilityState !== "visible") return;
    inFlight = true;
    var headers = { Accept: "application/json" };
    if (etag && !force) headers["If-None-Match"] = etag;
    fetch(pollUrl + window.location.search, {
      headers: headers,
      cache: "no-store",
      credentials: "same-origin",
    })
      .then(function (response) {
        if (response.status === 304) return null;
        if (!response.ok) throw new Error("HTTP " + response.status);
        etag = response.headers.get("ETag");
        return response.json();
      })
      .then(function (data) {
        if (data) data.kinds.forEach(updateSection);
        root.dataset.lastPoll = new Date().toISOString();
      })
      .catch(function () {
        /* A failed poll is retried on the next tick; the page stays as it was. */
      })
      .finally(function () {
        inFlight = false;
        if (again) {
          again = false;
          poll(true);
        }
      });
  }

  window.setInterval(poll, interval);
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") poll();
  });

  function postForm(form, action) {
    return fetch(action, {
      method: "POST",
      body: new FormData(form),
      headers: { Accept: "application/json" },
      credentials: "same-origin",
    }).then(function (response) {
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.json();
    });
  }

  var dialog = document.getElementById("cancel-dialog");
  var dialogForm = dialog && dialog.querySelector("form");
  var opener = null;

  if (dialog && typeof dialog.showModal === "function") {
    root.addEventListener("click", function (event) {
      var link = event.target.closest("a.js-cancel");
      if (!link) return;
      event.preventDefault();
      opener = link;
      dialogForm.action = link.href;
      dialog.querySelector("[data-job-id]").textContent = "#" + link.dataset.job;
      dialog.showModal();
    });
    dialog.querySelector("[data-close]").addEventListener("click", function () {
      dialog.close();
    });
    dialog.addEventListener("close", function () {
      if (opener && document.body.contains(opener)) opener.focus();
    });
    dialogForm.addEventListener("submit", function (event) {
      event.preventDefault();
      var button = dialogForm.querySelector("button[type=submit]");
      button.disabled = true;
      postForm(dialogForm, dialogForm.action)
        .then(function (data) {
          announce(data.message);
        })
        .catch(function () {
          announce("The job could not be cancelled; please try again.");
        })
        .finally(function () {
          button.disabled = false;
          dialog.close();
          poll(true);
        });
    });
  }

  root.addEventListener("submit", function (event) {
    var form = event.target.closest("form.js-async");
    if (!form) return;
    event.preventDefault();
    postForm(form, form.action)
      .then(function (data) {
        announce(data.message);
      })
      .catch(function () {
        announce("That did not work; please try again.");
      })
      .finally(function () {
        poll(true);
      });
  });
})();
