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

  function pollList(box) {
    fetch(box.dataset.poll, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { if (r.status === 401) { location.href = "/inbox/login"; } return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html === null) return;
        if (box.dataset.last !== html) {
          box.dataset.last = html;
          box.innerHTML = html;
          var count = document.getElementById("open-count");
          if (count) count.textContent = box.querySelectorAll(".esc").length;
          tickSla();
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

    var box = document.getElementById("escalations");
    if (box) setInterval(function () { pollList(box); }, 3000);

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
