// jitprov admin console: the mapping editor and the connection forms. Served from /static
// (CSP script-src 'self'); every page works without it (each action is a plain form POST).
(function () {
  "use strict";

  var DEBOUNCE_MS = 400;

  function text(tag, value, className) {
    var el = document.createElement(tag);
    if (className) el.className = className;
    el.textContent = value;
    return el;
  }

  // Select line `line` (1-based) of a textarea, so an error can be jumped to.
  function selectLine(area, line) {
    var lines = area.value.split("\n");
    var start = 0;
    for (var i = 0; i < line - 1 && i < lines.length; i++) start += lines[i].length + 1;
    var end = start + (lines[line - 1] || "").length;
    area.focus();
    area.setSelectionRange(start, end);
    var lineHeight = area.scrollHeight / Math.max(lines.length, 1);
    area.scrollTop = Math.max(0, (line - 3) * lineHeight);
  }

  function showProblems(box, area, answer) {
    box.textContent = "";
    if (answer.ok) {
      box.appendChild(text("p", "No problem found" + (answer.summary ? ": " + answer.summary : "."),
                           "ok-text"));
      return;
    }
    var list = document.createElement("ul");
    list.className = "problems";
    answer.problems.forEach(function (p) {
      var item = document.createElement("li");
      item.className = "problem";
      var where = text("strong", p.line ? "Line " + p.line : "File");
      item.appendChild(where);
      if (p.rule) {
        item.appendChild(document.createTextNode(" · "));
        item.appendChild(text("code", p.rule));
      }
      item.appendChild(document.createTextNode(": " + p.message));
      if (p.line) {
        item.setAttribute("data-line", String(p.line));
        item.tabIndex = 0;
      }
      list.appendChild(item);
    });
    box.appendChild(list);
  }

  function liveValidation() {
    var form = document.getElementById("mapping-form");
    var area = document.getElementById("mapping");
    var box = document.getElementById("mapping-problems");
    if (!form || !area || !box) return;
    var url = form.getAttribute("data-validate");
    var token = form.querySelector("input[name=csrf_token]");
    var timer = null;
    var sequence = 0;

    function check() {
      var mine = ++sequence;
      var body = new URLSearchParams();
      body.set("csrf_token", token ? token.value : "");
      body.set("mapping", area.value);
      fetch(url, {method: "POST", body: body, credentials: "same-origin",
                  headers: {"Accept": "application/json"}})
        .then(function (r) {
          if (!r.ok) throw new Error("HTTP " + r.status);
          return r.json();
        })
        .then(function (answer) { if (mine === sequence) showProblems(box, area, answer); })
        .catch(function () {
          if (mine !== sequence) return;
          box.textContent = "";
          box.appendChild(text("p", "Could not check the mapping now; use the Check button.",
                               "muted"));
        });
    }

    area.addEventListener("input", function () {
      if (timer) clearTimeout(timer);
      timer = setTimeout(check, DEBOUNCE_MS);
      // a preview no longer describes the text: saving needs a new one
      var save = document.getElementById("save");
      if (save && !save.disabled) {
        save.disabled = true;
        save.parentNode.appendChild(text("span", " The mapping changed: preview its impact again.",
                                         "stale"));
      }
    });
    function jump(event) {
      var item = event.target.closest ? event.target.closest("[data-line]") : null;
      if (!item) return;
      if (event.type === "keydown" && event.key !== "Enter") return;
      selectLine(area, parseInt(item.getAttribute("data-line"), 10));
    }
    box.addEventListener("click", jump);
    box.addEventListener("keydown", jump);
    box.querySelectorAll("[data-line]").forEach(function (el) {
      if (el.getAttribute("data-line")) el.tabIndex = 0;
    });
  }

  // <input type=file data-fills=ID> reads the chosen file into the textarea #ID (the console's
  // forms carry no files: the document travels as the textarea's text).
  function fileIntoTextarea() {
    document.querySelectorAll("input[type=file][data-fills]").forEach(function (input) {
      input.addEventListener("change", function () {
        var target = document.getElementById(input.getAttribute("data-fills"));
        var file = input.files && input.files[0];
        if (!target || !file) return;
        if (file.size > 1024 * 1024) {
          window.alert("This file is larger than 1 MiB: give its URL instead.");
          input.value = "";
          return;
        }
        var reader = new FileReader();
        reader.onload = function () { target.value = String(reader.result); };
        reader.readAsText(file);
      });
    });
  }

  function ready() {
    liveValidation();
    fileIntoTextarea();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", ready);
  } else {
    ready();
  }
})();
