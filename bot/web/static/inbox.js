// Doorstep agent inbox: SLA countdowns, quick replies, Ctrl+Enter, and polling for live updates.
// Plain JS, no build step; every page works without it (forms post normally).
(function () {
  "use strict";

  function slaText(due) {
    var seconds = Math.round((new Date(due).getTime() - Date.now()) / 1000);
    var abs = Math.abs(seconds), m = Math.floor(abs / 60), s = abs % 60;
    var clock = m + ":" + (s < 10 ? "0" : "") + s;
    return { text: seconds < 0 ? clock + " overdue" : clock + " left", overdue: seconds < 0 };
  }

  function notify(title, body) {}

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
        if (box.dataset.last !== data.html) {
          var before = {};
          box.querySelectorAll(".esc").forEach(function (li) { before[li.dataset.id] = true; });
          var first = !("last" in box.dataset);
          box.dataset.last = data.html;
          box.innerHTML = data.html;
          tickSla();
          if (!first) {
            box.querySelectorAll(".esc").forEach(function (li) {
              if (!before[li.dataset.id]) notify("New escalation", li.querySelector(".reason").textContent);
            });
          }
        }
      }).catch(function () {});
  }

  function pollConversation(root) {
    var url = root.dataset.live + "?v=" + encodeURIComponent(root.dataset.version || "");
    fetch(url, { credentials: "same-origin" })
      .then(function (r) { if (r.status === 401) { location.href = "/inbox/login"; } return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data || !data.changed) return;
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
        }
      }).catch(function () {});
  }

  document.addEventListener("DOMContentLoaded", function () {
    tickSla();
    setInterval(tickSla, 1000);

    var form = document.getElementById("worklist"), box = document.getElementById("escalations");
    if (form && box) {
      var state = new FormData(form);
      state.set("view", state.get("current_view"));
      setInterval(function () { pollList(form, box, state); }, 3000);
    }

    var root = document.getElementById("conversation");
    if (root) {
      var list = document.getElementById("transcript");
      list.scrollTop = list.scrollHeight;
      setInterval(function () { pollConversation(root); }, 2000);
    }

    var text = document.getElementById("reply-text");
    document.querySelectorAll(".quick-reply").forEach(function (button) {
      button.addEventListener("click", function () {
        text.value = button.dataset.text;
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
