// Doorstep agent inbox: SLA countdowns, quick replies, Ctrl+Enter, live updates (list, counts, transcript,
// "also open by"), and opt-in browser notifications with a sound.
// Plain JS, no build step; every page works without it (forms post normally).
(function () {
  "use strict";

  var NOTIFY_KEY = "doorstep.inbox.notify";

  function slaText(due) {
    var seconds = Math.round((new Date(due).getTime() - Date.now()) / 1000);
    var abs = Math.abs(seconds), m = Math.floor(abs / 60), s = abs % 60;
    var clock = m + ":" + (s < 10 ? "0" : "") + s;
    return { text: seconds < 0 ? clock + " overdue" : clock + " left", overdue: seconds < 0 };
  }

  // ------------------------------------------------------------ notifications (opt-in, per browser)

  function notifyOn() {
    return localStorage.getItem(NOTIFY_KEY) === "on";
  }

  function beep() {
    // A short two-tone chime made on the spot (no audio file to fetch; CSP stays 'self').
    var Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return;
    try {
      var ctx = new Ctx(), gain = ctx.createGain();
      gain.connect(ctx.destination);
      gain.gain.setValueAtTime(0.15, ctx.currentTime);
      gain.gain.exponentialRampToValueAtTime(0.001, ctx.currentTime + 0.5);
      [880, 1320].forEach(function (hz, i) {
        var osc = ctx.createOscillator();
        osc.frequency.value = hz;
        osc.connect(gain);
        osc.start(ctx.currentTime + i * 0.15);
        osc.stop(ctx.currentTime + 0.5);
      });
    } catch (e) { /* no sound is no harm */ }
  }

  // Titles only: a notification never shows a customer's name, number or words.
  function notify(title, body) {
    var live = document.getElementById("notify-live");
    if (live) live.textContent = title + (body ? ": " + body : "");
    if (!notifyOn()) return;
    document.body.dataset.notified = String(Number(document.body.dataset.notified || 0) + 1);
    beep();
    if ("Notification" in window && Notification.permission === "granted") {
      try { new Notification(title, { body: body || "", tag: "doorstep-inbox" }); } catch (e) { /* ignore */ }
    }
  }

  function setupNotifyToggle() {
    var button = document.getElementById("notify-toggle");
    if (!button) return;
    button.hidden = false;
    function show() { button.textContent = "Notifications: " + (notifyOn() ? "on" : "off"); button.setAttribute("aria-pressed", String(notifyOn())); }
    show();
    button.addEventListener("click", function () {
      if (notifyOn()) {
        localStorage.setItem(NOTIFY_KEY, "off");
        show();
        return;
      }
      localStorage.setItem(NOTIFY_KEY, "on");
      show();
      if ("Notification" in window && Notification.permission === "default") {
        Notification.requestPermission().then(show, show);
      }
      beep();  // the click lets the page play sound from now on
    });
  }

  // ------------------------------------------------------------ SLA countdowns

  function tickSla() {
    document.querySelectorAll("[data-due]").forEach(function (el) {
      if (!el.dataset.due) return;
      var sla = slaText(el.dataset.due);
      el.textContent = sla.text;
      el.classList.toggle("alert", sla.overdue);
      var row = el.closest(".esc");
      if (row) row.classList.toggle("overdue", sla.overdue);
    });
  }

  // ------------------------------------------------------------ the list

  function rowsById(box) {
    var rows = {};
    box.querySelectorAll(".esc").forEach(function (li) {
      rows[li.dataset.id] = { said: li.dataset.said, mine: li.dataset.mine === "1", reason: li.querySelector(".reason").textContent };
    });
    return rows;
  }

  // The list polls with the search and filters it was rendered with (posted: a search text never goes in a URL).
  function pollList(form, box, state) {
    fetch(form.dataset.poll, { method: "POST", body: new URLSearchParams(state), credentials: "same-origin",
                               headers: { "Accept": "application/json" } })
      .then(function (r) { if (r.status === 401) { location.href = "/inbox/login"; } return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data) return;
        Object.keys(data.counts).forEach(function (view) {
          var el = form.querySelector('[data-count="' + view + '"]');
          if (el) el.textContent = data.counts[view];
        });
        var total = document.getElementById("view-total");
        if (total) total.textContent = data.total;
        if (box.dataset.last === data.html) return;
        var before = rowsById(box), first = !("last" in box.dataset);
        box.dataset.last = data.html;
        box.innerHTML = data.html;
        tickSla();
        if (first) return;
        var after = rowsById(box);
        Object.keys(after).forEach(function (id) {
          var row = after[id], was = before[id];
          if (!was) notify("New escalation", row.reason);
          else if (row.mine && row.said && row.said !== was.said) notify("Customer replied", row.reason);
        });
      }).catch(function () {});
  }

  // ------------------------------------------------------------ one conversation

  function showOthers(names) {
    var warn = document.getElementById("others-here");
    if (!warn || !names) return;
    warn.hidden = names.length === 0;
    var who = document.getElementById("others-names");
    if (who) who.textContent = names.join(", ");
  }

  // "I have this conversation open": a small write of its own, every 10 s, so other agents are warned.
  function heartbeat(root) {
    if (!root.dataset.here || !root.dataset.csrf) return;
    fetch(root.dataset.here, { method: "POST", credentials: "same-origin",
                               body: new URLSearchParams({ csrf: root.dataset.csrf }) })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) { if (data) showOthers(data.others_here); })
      .catch(function () {});
  }

  function pollConversation(root) {
    var url = root.dataset.live + "?v=" + encodeURIComponent(root.dataset.version || "");
    fetch(url, { credentials: "same-origin" })
      .then(function (r) { if (r.status === 401) { location.href = "/inbox/login"; } return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data) return;
        showOthers(data.others_here);
        if (!data.changed) return;
        root.dataset.version = data.version;
        var list = document.getElementById("transcript");
        var before = list.querySelectorAll(".msg").length;
        var atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
        list.innerHTML = data.html;
        if (atBottom || data.count > before) list.scrollTop = list.scrollHeight;
        var status = document.getElementById("status");
        if (status) status.textContent = data.status + (data.assignee ? " · " + data.assignee : "");
        var owner = document.getElementById("owner");
        if (owner) owner.textContent = (data.owner || "").replace("_", " ");
        if (data.count > before && data.last_author === "customer") {
          document.getElementById("live-status").textContent = "New message from the customer";
          if (data.assignee && data.assignee === root.dataset.me) notify("Customer replied", "in a conversation you own");
        }
      }).catch(function () {});
  }

  document.addEventListener("DOMContentLoaded", function () {
    tickSla();
    setInterval(tickSla, 1000);
    setupNotifyToggle();

    var form = document.getElementById("worklist"), box = document.getElementById("escalations");
    if (form && box) {
      var state = new FormData(form);
      state.set("view", state.get("current_view"));
      box.dataset.last = box.innerHTML;
      setInterval(function () { pollList(form, box, state); }, 3000);
    }

    var root = document.getElementById("conversation");
    if (root) {
      var list = document.getElementById("transcript");
      list.scrollTop = list.scrollHeight;
      setInterval(function () { pollConversation(root); }, 2000);
      heartbeat(root);
      setInterval(function () { heartbeat(root); }, 10000);
    }

    // "/" jumps to the search box (as in most inboxes), unless the agent is typing somewhere.
    var search = document.getElementById("q");
    document.addEventListener("keydown", function (event) {
      var typing = /^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement.tagName);
      if (search && event.key === "/" && !typing && !event.ctrlKey && !event.metaKey) {
        event.preventDefault();
        search.focus();
      }
    });

    var text = document.getElementById("reply-text");
    document.querySelectorAll(".quick-reply").forEach(function (button) {
      button.addEventListener("click", function () {
        // Inserted at the cursor, so a draft the agent already typed is kept (a space keeps words apart).
        var start = text.selectionStart;
        var gap = start > 0 && !/\s/.test(text.value.charAt(start - 1)) ? " " : "";
        text.setRangeText(gap + button.dataset.text, start, text.selectionEnd, "end");
        text.focus();
      });
    });
    if (text) {
      text.addEventListener("keydown", function (event) {
        if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
          event.preventDefault();
          text.form.requestSubmit();
        }
      });
    }
  });
})();
