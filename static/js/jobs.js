/* Background jobs pages (the dashboard, a job's page, the activity page): keep them
 * current and say what happened.
 *
 * - Polls the page's JSON twin every few seconds while the tab is visible, with
 *   If-None-Match, so an unchanged page costs a 304; patches what changed in place.
 *   A job page stops polling once its job has finished (and starts again after a Retry).
 * - Cancel opens a <dialog> naming the job; Cancel and Retry POST with the CSRF token and
 *   show the server's answer as a toast (also announced to screen readers).
 * - A job the user watches (on its page, or a running row on the dashboard) that finishes
 *   or fails raises a toast, and a browser notification if the user opted in. Toasts
 *   close by themselves (not while focused); a job page's tab title shows its progress.
 * - The dashboard's "Today" tiles and the activity page's numbers come with the
 *   dashboard's poll.
 * Without this script the pages still work: plain links, forms and a confirmation page. */
(function () {
  "use strict";

  var NOTIFY_KEY = "bulkjobs-notify";
  var toasts = document.getElementById("toasts");
  // The words this script shows, in the page's language (templates/bulkjobs/_js_text.html);
  // English where the page has none.
  var textElement = document.getElementById("jobs-text");
  var words = textElement ? textElement.dataset : {};
  function word(key, english) {
    return words[key] || english;
  }

  /* Toasts and notifications */

  // Toasts close by themselves: errors and warnings after longer, and never while the
  // pointer or the keyboard is on one (someone is reading it).
  var TOAST_MS = { error: 15000, warning: 12000 };
  var TOAST_DEFAULT_MS = 7000;

  function toast(text, level) {
    if (!toasts) return;
    var item = document.createElement("div");
    item.className = "toast message " + (level || "info");
    // Errors and warnings interrupt (alert); the rest waits its turn in the status region.
    if (level === "error" || level === "warning") item.setAttribute("role", "alert");
    var body = document.createElement("span");
    body.textContent = text;
    var close = document.createElement("button");
    close.type = "button";
    close.className = "toast-close";
    close.setAttribute("aria-label", word("dismiss", "Dismiss"));
    close.textContent = "×";
    close.addEventListener("click", function () {
      item.remove();
    });
    item.append(body, close);
    var timer = null;
    function later() {
      window.clearTimeout(timer);
      timer = window.setTimeout(function () {
        item.remove();
      }, TOAST_MS[level] || TOAST_DEFAULT_MS);
    }
    item.addEventListener("mouseenter", function () {
      window.clearTimeout(timer);
    });
    item.addEventListener("mouseleave", later);
    item.addEventListener("focusin", function () {
      window.clearTimeout(timer);
    });
    item.addEventListener("focusout", later);
    later();
    toasts.append(item);
    while (toasts.children.length > 4) toasts.firstElementChild.remove();
  }

  function notificationsWanted() {
    return (
      "Notification" in window &&
      Notification.permission === "granted" &&
      window.localStorage.getItem(NOTIFY_KEY) === "1"
    );
  }

  function finished(name, job) {
    var level = { completed: "success", partial: "warning", cancelled: "warning" }[job.badge];
    var text = name + ": " + job.status_label + ".";
    toast(text, level || "error");
    if (notificationsWanted()) {
      try {
        new Notification(word("jobFinished", "Background job finished"), {
          body: text,
          tag: "job-" + job.kind + "-" + job.id,
        });
      } catch (e) {
        /* Some browsers only allow notifications from a service worker; the toast remains. */
      }
    }
  }

  function setUpNotifyButtons() {
    if (!("Notification" in window)) return;
    document.querySelectorAll("[data-notify]").forEach(function (button) {
      var on = notificationsWanted();
      button.hidden = false;
      button.setAttribute("aria-pressed", on ? "true" : "false");
      button.textContent = on
        ? word("notificationsOn", "Notifications on")
        : word("notifyMe", "Notify me when jobs finish");
      if (button.dataset.ready) return;
      button.dataset.ready = "1";
      button.addEventListener("click", function () {
        if (notificationsWanted()) {
          window.localStorage.removeItem(NOTIFY_KEY);
          setUpNotifyButtons();
          toast(word("notificationsOff", "Browser notifications are off; finished jobs still show here."), "info");
          return;
        }
        Notification.requestPermission().then(function (permission) {
          if (permission === "granted") {
            window.localStorage.setItem(NOTIFY_KEY, "1");
            toast(
              word("notificationsAllowed", "You will get a browser notification when a job you watch finishes."),
              "success",
            );
          } else {
            toast(
              word("notificationsRefused", "The browser did not allow notifications; finished jobs still show here."),
              "warning",
            );
          }
          setUpNotifyButtons();
        });
      });
    });
  }

  /* Polling */

  // CSRF tokens are masked afresh on every render; ignore them when comparing HTML so an
  // unchanged form is not replaced (and does not lose focus) on each poll.
  var TOKEN = /name="csrfmiddlewaretoken" value="[^"]*"/g;
  function sameHtml(a, b) {
    return a.replace(TOKEN, "").trim() === b.replace(TOKEN, "").trim();
  }

  function Poller(url, interval, onData) {
    var etag = null;
    var inFlight = false;
    var again = false;
    var timer = null;
    var ticks = 0;

    function poll(force) {
      // A forced poll (after an action) wakes a stopped poller: a retried job runs again.
      if (timer === null) {
        if (!force) return;
        start();
      }
      if (inFlight) {
        // An action's result must not wait for the next tick: poll again right after.
        if (force) again = true;
        return;
      }
      inFlight = true;
      var headers = { Accept: "application/json" };
      if (etag && !force) headers["If-None-Match"] = etag;
      fetch(url + window.location.search, {
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
          if (data) onData(data);
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

    function start() {
      timer = window.setInterval(function () {
        ticks += 1;
        if (document.visibilityState === "visible") poll();
        // Hidden: only someone who asked for notifications is still watching, and a slow
        // poll is enough for them.
        else if (notificationsWanted() && ticks % 6 === 0) poll();
      }, interval);
    }

    function stop() {
      window.clearInterval(timer);
      timer = null;
    }

    start();
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "visible") poll();
    });
    return { poll: poll, stop: stop };
  }

  function fromHtml(html) {
    var tpl = document.createElement("template");
    tpl.innerHTML = html.trim();
    return tpl.content.firstElementChild;
  }

  function updateProgress(box, fresh) {
    // Moving the existing segments (instead of replacing the bar) lets them transition.
    var bar = box.querySelector("[role=progressbar]");
    var newBar = fresh.querySelector("[role=progressbar]");
    ["aria-valuenow", "aria-valuetext"].forEach(function (name) {
      bar.setAttribute(name, newBar.getAttribute(name));
    });
    newBar.querySelectorAll("rect[data-seg]").forEach(function (newRect) {
      var rect = bar.querySelector('rect[data-seg="' + newRect.dataset.seg + '"]');
      ["x", "width"].forEach(function (name) {
        rect.setAttribute(name, newRect.getAttribute(name));
      });
    });
    var legend = box.querySelector(".legend");
    var newLegend = fresh.querySelector(".legend");
    if (legend.innerHTML !== newLegend.innerHTML) legend.innerHTML = newLegend.innerHTML;
  }

  function interval(root) {
    return parseInt(root.dataset.interval, 10) || 10000;
  }

  /* The dashboard */

  function dashboard(root) {
    function updateRow(row, fresh) {
      row.dataset.status = fresh.dataset.status;
      row.dataset.finished = fresh.dataset.finished;
      fresh.querySelectorAll("td[data-col]").forEach(function (newCell) {
        var cell = row.querySelector('td[data-col="' + newCell.dataset.col + '"]');
        if (!cell || sameHtml(cell.innerHTML, newCell.innerHTML)) return;
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
        var fresh = fromHtml(job.html);
        var row = existing[String(job.id)];
        if (row) {
          // A row that was running when we last looked, and is not any more: it finished.
          if (row.dataset.finished === "false" && job.finished) finished(row.dataset.name, job);
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

    // The operators' overview: each company's queue health, replaced when it changed.
    var queueHealth = document.querySelector("[data-queue-health]");
    // A company's dashboard: the "Today" tiles, replaced when they changed.
    var activity = document.querySelector("[data-activity]");

    return Poller(root.dataset.pollUrl, interval(root), function (data) {
      data.kinds.forEach(updateSection);
      if (queueHealth && data.queue_health && !sameHtml(queueHealth.innerHTML, data.queue_health.html)) {
        queueHealth.innerHTML = data.queue_health.html;
      }
      if (activity && data.activity && !sameHtml(activity.innerHTML, data.activity.html)) {
        activity.innerHTML = data.activity.html;
      }
      root.dataset.lastPoll = new Date().toISOString();
    });
  }

  /* A job's page */

  function jobPage(root) {
    function updatePart(part, html) {
      if (sameHtml(part.innerHTML, html)) return;
      var fresh = document.createElement("div");
      fresh.innerHTML = html;
      if (part.dataset.part === "summary") {
        // Keep the bar so its segments move smoothly; the facts are plain text.
        updateProgress(part, fresh);
        part.querySelector(".facts").innerHTML = fresh.querySelector(".facts").innerHTML;
      } else {
        part.innerHTML = html;
      }
    }

    // The tab's title: "42% · Email job #3 · …" while it runs, its outcome once it stopped.
    function updateTitle(job) {
      var base = root.dataset.title;
      var at = document.title.indexOf(base);
      if (!base || at < 0) return;
      var still = !job.finished && !job.paused && !job.paused_by_person;
      document.title = (still ? job.percent + "%" : job.status_label) + " · " + document.title.slice(at);
    }

    var poller = Poller(root.dataset.pollUrl, interval(root), function (data) {
      updateTitle(data.job);
      Object.keys(data.parts).forEach(function (name) {
        var part = root.querySelector('[data-part="' + name + '"]');
        if (part) updatePart(part, data.parts[name]);
      });
      setUpNotifyButtons();
      root.dataset.lastPoll = new Date().toISOString();
      if (data.job.finished) {
        if (root.dataset.finished === "false") finished(root.dataset.name, data.job);
        root.dataset.finished = "true";
        // A finished job does not change by itself: nothing more to ask.
        poller.stop();
      } else {
        root.dataset.finished = "false";
      }
    });
    if (root.dataset.finished === "true") poller.stop();
    return poller;
  }

  /* The activity page: its summary numbers from the dashboard's poll */

  function activityPage(root) {
    return Poller(root.dataset.pollUrl, interval(root), function (data) {
      if (!data.activity) return;
      var fresh = document.createElement("div");
      fresh.innerHTML = data.activity.html;
      fresh.querySelectorAll("dl[data-numbers]").forEach(function (numbers) {
        var shown = root.querySelector('dl[data-numbers="' + numbers.dataset.numbers + '"]');
        if (shown && !sameHtml(shown.innerHTML, numbers.innerHTML)) shown.innerHTML = numbers.innerHTML;
      });
      root.dataset.lastPoll = new Date().toISOString();
    });
  }

  var dashRoot = document.getElementById("dashboard");
  var jobRoot = document.getElementById("job-page");
  var activityRoot = document.getElementById("activity-page");
  var page = null;
  if (dashRoot) page = dashboard(dashRoot);
  else if (jobRoot) page = jobPage(jobRoot);
  else if (activityRoot) activityPage(activityRoot);
  setUpNotifyButtons();
  if (!page) return;

  /* Actions */

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

  function showResult(data) {
    toast(data.message, data.level || (data.ok ? "success" : "warning"));
  }

  var dialog = document.getElementById("cancel-dialog");
  var dialogForm = dialog && dialog.querySelector("form");
  var opener = null;

  if (dialog && typeof dialog.showModal === "function") {
    document.addEventListener("click", function (event) {
      var link = event.target.closest("a.js-cancel");
      if (!link) return;
      event.preventDefault();
      opener = link;
      dialogForm.action = link.href;
      dialog.querySelector("[data-question]").textContent = link.dataset.question;
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
      // The result toast says it; the "job finished" toast would only repeat it.
      var watched = opener && (opener.closest("tr[data-job]") || document.getElementById("job-page"));
      if (watched) watched.dataset.finished = "true";
      postForm(dialogForm, dialogForm.action)
        .then(showResult)
        .catch(function () {
          toast(word("cancelFailed", "The job could not be cancelled; please try again."), "error");
        })
        .finally(function () {
          button.disabled = false;
          dialog.close();
          page.poll(true);
        });
    });
  }

  document.addEventListener("submit", function (event) {
    var form = event.target.closest("form.js-async");
    if (!form) return;
    event.preventDefault();
    postForm(form, form.action)
      .then(showResult)
      .catch(function () {
        toast(word("actionFailed", "That did not work; please try again."), "error");
      })
      .finally(function () {
        page.poll(true);
      });
  });
})();
