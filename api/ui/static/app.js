// Progressive enhancement only: every page works without this file.
// - [data-job-poll]: poll the job's JSON and update the page until the job finishes;
// - button[data-copy]: copy the text of the element it names.
(function () {
  "use strict";

  function badge(state) {
    var span = document.createElement("span");
    span.className = "badge badge-" + String(state).replace(/_/g, "-");
    span.textContent = String(state).replace(/_/g, " ");
    return span;
  }

  function setField(root, name, value, asBadge) {
    var target = root.querySelector('[data-field="' + name + '"]');
    if (!target) return;
    var text = value === null || value === undefined || value === "" ? "—" : String(value);
    if (asBadge && text !== "—") {
      target.replaceChildren(badge(text));
    } else if (target.textContent !== text) {
      target.textContent = text;
    }
  }

  function poll(root) {
    var url = root.getAttribute("data-job-poll");
    var delay = 1000;
    function tick() {
      fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (response) {
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.json();
        })
        .then(function (job) {
          delay = 1000;
          setField(root, "state", job.state, true);
          setField(root, "step", job.step || "waiting for a worker");
          setField(root, "message", job.message);
          setField(root, "period_state", job.period_state, true);
          setField(root, "settlement_state", job.settlement_state, true);
          setField(root, "error", job.error);
          if (job.finished) {
            setField(root, "hint", job.state === "succeeded" ? "Finished." : "The job failed.");
            root.setAttribute("data-finished", job.state);
            return;
          }
          window.setTimeout(tick, delay);
        })
        .catch(function () {
          delay = Math.min(delay * 2, 15000);
          window.setTimeout(tick, delay);
        });
    }
    tick();
  }

  function enableCopy(button) {
    if (!navigator.clipboard) return;
    button.hidden = false;
    button.addEventListener("click", function () {
      var source = document.getElementById(button.getAttribute("data-copy"));
      if (!source) return;
      var label = button.textContent;
      navigator.clipboard.writeText(source.textContent.trim()).then(function () {
        button.textContent = "Copied";
        window.setTimeout(function () { button.textContent = label; }, 2000);
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-job-poll]").forEach(poll);
    document.querySelectorAll("button[data-copy]").forEach(enableCopy);
  });
})();
